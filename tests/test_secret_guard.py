"""The secret guard: credentials are found and refused, ordinary text is left alone."""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import random
import string
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memkit import secret_guard, secret_patterns
from memkit.errors import SecretRefused
from memkit.secret_guard import (
    SecretFinding,
    check_fields,
    check_new_values,
    check_text,
    find_secrets,
    redact_secrets,
)

from .conftest import examples

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"


def fake(prefix: str, length: int, alphabet: str = ALNUM, *, seed: int = 0) -> str:
    """A made-up credential: `prefix` and `length` random characters with digits and both cases.

    Built at run time so that no credential-shaped literal sits in this file.
    """
    rng = random.Random(f"{prefix}|{length}|{alphabet}|{seed}")
    while True:
        body = "".join(rng.choice(alphabet) for _ in range(length))
        wanted = [string.digits, string.ascii_uppercase, string.ascii_lowercase]
        if all(any(c in body for c in kind) for kind in wanted if set(kind) & set(alphabet)):
            return prefix + body


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


JWT = ".".join(
    [
        b64url({"alg": "HS256", "typ": "JWT"}),
        b64url({"sub": "1234567890", "name": "Priya", "iat": 1730800000}),
        fake("", 43, URLSAFE),
    ]
)
PEM_BODY = "\n".join(fake("", 64, ALNUM + "+/", seed=n) for n in range(4))


def pem(label: str) -> str:
    return f"-----BEGIN {label}-----\n{PEM_BODY}\n-----END {label}-----"


# (id, text around the secret, the secret, expected kind). "{}" marks where the secret goes.
DETECTED: list[tuple[str, str, str, str]] = [
    ("openai-legacy", "my key is {} ok", fake("sk-", 48), "OpenAI API key"),
    ("openai-project", "OPENAI_API_KEY={}", fake("sk-proj-", 120, URLSAFE), "OpenAI API key"),
    ("openai-service", "key: {}", fake("sk-svcacct-", 80, URLSAFE), "OpenAI API key"),
    ("anthropic", "use {} for claude", fake("sk-ant-api03-", 93, URLSAFE), "Anthropic API key"),
    ("aws-akia", "aws key {} here", fake("AKIA", 16, UPPER_DIGITS), "AWS access key id"),
    ("aws-asia", "temporary {}", fake("ASIA", 16, UPPER_DIGITS), "AWS access key id"),
    ("aws-docs-example", "id {} from the docs", "AKIA" + "IOSFODNN7EXAMPLE", "AWS access key id"),
    (
        "aws-secret",
        "aws_secret_access_key = {}",
        fake("", 40, ALNUM + "/+"),
        "AWS secret access key",
    ),
    (
        "aws-secret-env",
        'export AWS_SECRET_ACCESS_KEY="{}"',
        fake("", 40, ALNUM + "/+", seed=1),
        "AWS secret access key",
    ),
    ("github-ghp", "token {} works", fake("ghp_", 36), "GitHub token"),
    ("github-gho", "oauth {}", fake("gho_", 36), "GitHub token"),
    ("github-ghu", "user-to-server {}", fake("ghu_", 36), "GitHub token"),
    ("github-ghs", "app {}", fake("ghs_", 36), "GitHub token"),
    ("github-ghr", "refresh {}", fake("ghr_", 36), "GitHub token"),
    (
        "github-pat",
        "fine-grained {}",
        fake("github_pat_", 22) + fake("_", 59, seed=1),
        "GitHub token",
    ),
    ("gitlab", "ci uses {}", fake("glpat-", 20, URLSAFE), "GitLab token"),
    (
        "slack-bot",
        "bot: {}",
        f"xoxb-{fake('', 12, string.digits)}-{fake('', 13, string.digits)}-{fake('', 24)}",
        "Slack token",
    ),
    (
        "slack-user",
        "user token {}",
        f"xoxp-{fake('', 11, string.digits)}-{fake('', 12, string.digits)}-{fake('', 32)}",
        "Slack token",
    ),
    (
        "slack-webhook",
        "post to {} daily",
        "https://hooks.slack.com/services/"
        + f"{fake('T', 8, UPPER_DIGITS)}/{fake('B', 10, UPPER_DIGITS)}/{fake('', 24)}",
        "Slack webhook URL",
    ),
    ("google", "maps key {}", fake("AIza", 35, URLSAFE), "Google API key"),
    ("stripe-secret", "billing {}", fake("sk_live_", 24), "Stripe secret key"),
    ("stripe-restricted", "billing {}", fake("rk_live_", 24), "Stripe secret key"),
    ("huggingface", "HF token {}", fake("hf_", 34, string.ascii_letters), "Hugging Face token"),
    ("npm", "npm publish with {}", fake("npm_", 36), "npm token"),
    ("pypi", "twine password {}", fake("pypi-AgEIcHlwaS5vcmc", 60, URLSAFE), "PyPI token"),
    ("jwt", "session {} expires", JWT, "JSON web token"),
    ("pem-rsa", "key:\n{}\nend", pem("RSA PRIVATE KEY"), "private key block"),
    ("pem-openssh", "{}", pem("OPENSSH PRIVATE KEY"), "private key block"),
    ("pem-ec", "{}", pem("EC PRIVATE KEY"), "private key block"),
    ("pem-pkcs8", "{}", pem("PRIVATE KEY"), "private key block"),
    ("pem-encrypted", "{}", pem("ENCRYPTED PRIVATE KEY"), "private key block"),
    ("pem-pgp", "{}", pem("PGP PRIVATE KEY BLOCK"), "private key block"),
    (
        "pem-unterminated",
        "pasted half a key:\n{}\n\nand then stopped",
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}",
        "private key block",
    ),
    ("password-equals", "db login: password={}", "hunter2butlonger", "password assignment"),
    ("password-colon", "password: {}", "Tr0ub4dor&3", "password assignment"),
    ("password-quoted-word", 'password = "{}"', "sunflower", "password assignment"),
    ("password-env", "DB_PASSWORD={}", "correct-H0rse-9", "password assignment"),
    ("password-json", '{{"user": "bob", "password": "{}"}}', "s3cr3t-P4ss", "password assignment"),
    ("password-yaml-bold", "**Password:** {}", "Sunny-Day-42", "password assignment"),
    ("password-flag", "mysql --password {} -u root", "Hunter2go", "password assignment"),
    (
        "password-in-query",
        "GET /login?user=bob&password={}&x=1",
        "pa55word9",
        "password assignment",
    ),
    ("passwd", "passwd = '{}'", "Zq8-mK2p", "password assignment"),
    ("pwd", "pwd={}", "Winter2024!", "password assignment"),
    ("passphrase", 'passphrase: "{}"', "blue-Otter-17", "password assignment"),
    ("secret", 'secret="{}"', "q8Zr2LmN4pX7", "secret assignment"),
    ("client-secret", "client_secret: {}", "7f3kQ9zP2mX8vL1c", "secret assignment"),
    ("secret-key", "SECRET_KEY = '{}'", "django-insecure-4k#x9", "secret assignment"),
    ("api-key", "api_key={}", "AbC123xYz789QwE456", "API key assignment"),
    ("api-key-dashed", '"api-key": "{}"', "a8F3k2P9q7Z1m4X6", "API key assignment"),
    ("apikey", "APIKEY: {}", "0a1b2c3d4e5f6g7h8i9j", "API key assignment"),
    ("token", "token={}", "4f8Kz2Qp9Lm3Xv7B", "token assignment"),
    ("token-env", "GITHUB_TOKEN: '{}'", "r4nd0mT0k3nV4lu3", "token assignment"),
    (
        "token-in-url-query",
        "https://api.example.com/v1?access_token={}",
        "Xy7Qp2Lm9Kz4",
        "token assignment",
    ),
    ("private-key-value", "private_key: {}", fake("", 32, ALNUM + "+/"), "secret key assignment"),
    ("bearer-header", "Authorization: Bearer {}", fake("", 32, URLSAFE), "bearer token"),
    ("bearer-curl", "curl -H 'Authorization: Bearer {}' url", fake("", 40), "bearer token"),
    ("bearer-bare", "send bearer {} with it", fake("", 24, seed=2), "bearer token"),
    ("basic-auth", "Authorization: Basic {}", "dXNlcjpwYXNzd29yZDEyMw==", "basic auth header"),
    ("url-https", "clone https://alice:{}@git.example.com/r.git", "S3cure-Pa55", "password in URL"),
    ("url-postgres", "DATABASE_URL=postgres://app:{}@db:5432/app", "pG7xk2Lq", "password in URL"),
    ("high-entropy-base62", "the session id was {} today", fake("", 32), "high-entropy token"),
    ("high-entropy-base64", "blob {} end", fake("", 44, ALNUM + "+/"), "high-entropy token"),
    (
        "high-entropy-lower",
        "code {} end",
        fake("", 32, string.ascii_lowercase + string.digits),
        "high-entropy token",
    ),
    ("high-entropy-upper", "code {} end", fake("", 30, UPPER_DIGITS), "high-entropy token"),
    # Hex bodies, which the entropy test takes for checksums: known by their prefix.
    ("digitalocean-pat", "do token {}", fake("dop_v1_", 64, HEX), "DigitalOcean token"),
    ("digitalocean-oauth", "{}", fake("doo_v1_", 64, HEX, seed=1), "DigitalOcean token"),
    ("digitalocean-refresh", "{}", fake("dor_v1_", 64, HEX, seed=2), "DigitalOcean token"),
    ("shopify-access", "shop {}", fake("shpat_", 32, HEX), "Shopify token"),
    ("shopify-shared-secret", "{}", fake("shpss_", 32, HEX, seed=1), "Shopify token"),
    ("shopify-custom-app", "{}", fake("shpca_", 32, HEX, seed=2), "Shopify token"),
    ("shopify-private-app", "{}", fake("shppa_", 32, HEX, seed=3), "Shopify token"),
    (
        "postman",
        "postman {}",
        f"PMAK-{fake('', 24, HEX)}-{fake('', 34, HEX, seed=1)}",
        "Postman API key",
    ),
    ("databricks", "host token {}", fake("dapi", 32, HEX), "Databricks token"),
    ("twilio", "twilio {}", fake("SK", 32, HEX), "Twilio API key"),
    (
        "age",
        "{}",
        fake("AGE-SECRET-KEY-1", 58, "023456789ACDEFGHJKLMNPQRSTUVWXYZ"),
        "age secret key",
    ),
    # Parts joined by dots or colons, which runs of token characters never span.
    (
        "sendgrid",
        "mail {}",
        f"SG.{fake('', 22, URLSAFE)}.{fake('', 43, URLSAFE, seed=1)}",
        "SendGrid API key",
    ),
    ("doppler", "{}", fake("dp.pt.", 43), "Doppler token"),
    ("vault", "VAULT_TOKEN {}", fake("hvs.", 90, URLSAFE), "HashiCorp Vault token"),
    (
        "telegram",
        "bot {}",
        f"{fake('', 10, string.digits)}:AA{fake('', 33, URLSAFE)}",
        "Telegram bot token",
    ),
    # Right after "-", "_" or "/": a token still starts there.
    ("aws-after-dash", "deploy-{}", fake("AKIA", 16, UPPER_DIGITS, seed=3), "AWS access key id"),
    ("aws-after-underscore", "CI_{}", fake("AKIA", 16, UPPER_DIGITS, seed=4), "AWS access key id"),
    ("aws-after-slash", "keys/{}", fake("AKIA", 16, UPPER_DIGITS, seed=5), "AWS access key id"),
    (
        "aws-lowercased-tag",
        "tags: [{}]",
        fake("akia", 16, string.ascii_lowercase + string.digits),
        "AWS access key id",
    ),
    ("github-after-underscore", "MY_{}", fake("ghp_", 36, seed=3), "GitHub token"),
    ("openai-after-slash", "keys/{}", fake("sk-proj-", 64, seed=3), "OpenAI API key"),
    ("jwt-after-dash", "x-{}", JWT, "JSON web token"),
    ("digitalocean-after-dash", "prod-{}", fake("dop_v1_", 64, HEX, seed=4), "DigitalOcean token"),
    ("password-with-star", "password={}", "Sunny*rVSDb696", "password assignment"),
    ("password-with-dot", "password={}", "Cobalt.a1a16z62", "password assignment"),
    ("password-url-hash", "postgres://app:{}@db:5432/app", "Otter#Uqng7C58", "password in URL"),
    (
        "base64-of-a-credential",
        "blob {} end",
        base64.b64encode(b"password=hunter2butlonger for the db").decode().rstrip("="),
        "base64-encoded credential",
    ),
]


@pytest.mark.parametrize(
    ("template", "secret", "kind"),
    [case[1:] for case in DETECTED],
    ids=[case[0] for case in DETECTED],
)
def test_detects(template: str, secret: str, kind: str) -> None:
    text = template.format(secret)
    findings = find_secrets(text)
    assert [f.kind for f in findings] == [kind]
    (finding,) = findings
    assert finding.line == text[: text.index(secret)].count("\n") + 1
    assert secret not in finding.excerpt
    assert f"({len(secret)} chars)" in finding.excerpt or kind == "private key block"


@pytest.mark.parametrize(
    ("template", "secret", "kind"),
    [case[1:] for case in DETECTED],
    ids=[case[0] for case in DETECTED],
)
def test_redaction_replaces_exactly_the_secret(template: str, secret: str, kind: str) -> None:
    text = template.format(secret)
    redacted = redact_secrets(text)
    assert secret not in redacted
    assert redacted == template.format(f"[REDACTED:{kind}]")
    assert find_secrets(redacted) == []


def test_excerpt_shows_a_few_characters_and_the_length() -> None:
    key = fake("sk-proj-", 40)
    (finding,) = find_secrets(f"key {key}")
    assert finding == SecretFinding("OpenAI API key", 1, "sk-pr…(48 chars)")


def test_short_passwords_show_at_most_one_character() -> None:
    (finding,) = find_secrets("password=hunter2x")
    assert finding.excerpt == "password=h…(8 chars)"


def test_private_key_excerpt_shows_only_the_header() -> None:
    block = pem("OPENSSH PRIVATE KEY")
    (finding,) = find_secrets(f"notes\n{block}")
    assert finding.line == 2
    assert finding.excerpt == f"-----BEGIN OPENSSH PRIVATE KEY-----…({len(block)} chars)"
    assert PEM_BODY[:20] not in finding.excerpt


def test_several_secrets_come_back_in_order_with_their_lines() -> None:
    github = fake("ghp_", 36)
    text = f"first line\npassword: Tr0ub4dor&3\n\nand {github} on line four\nAKIA{'Z' * 15}7"
    assert [(f.kind, f.line) for f in find_secrets(text)] == [
        ("password assignment", 2),
        ("GitHub token", 4),
        ("AWS access key id", 5),
    ]


def test_a_provider_key_inside_an_assignment_is_reported_once_by_its_provider() -> None:
    key = fake("sk-proj-", 64)
    assert [f.kind for f in find_secrets(f'OPENAI_API_KEY="{key}"')] == ["OpenAI API key"]
    assert [f.kind for f in find_secrets(f"token={JWT}")] == ["JSON web token"]


NOT_SECRETS: list[tuple[str, str]] = [
    ("prose-forgot", "I forgot my password again"),
    ("prose-policy", "the password policy requires 12 characters"),
    ("prose-colon", "Password: must be at least 12 characters long."),
    ("prose-reset", "To reset your password: open Settings, then Security."),
    ("prose-token", "token: the unit a language model reads and writes"),
    ("prose-secret", "The secret to good sourdough is patience."),
    ("prose-bearer", "Send a bearer token in the Authorization header."),
    ("prose-api-key", "Ask Priya for the API key; never paste it into notes."),
    ("ulid", "record 01JD3Z8K5Q9M2W7X4T6R1B0C3E was superseded by 01JD3Z9A7B6C5D4E3F2G1H0J9K"),
    ("ulid-frontmatter", "---\nid: 01JD3Z8K5Q9M2W7X4T6R1B0C3E\ntype: semantic\n---\nbody"),
    ("memkit-file-name", "see memory/prefers-dark-mode-3b0c3e.md"),
    ("uuid", "request 550e8400-e29b-41d4-a716-446655440000 failed"),
    ("uuid-upper", "GUID {6F9619FF-8B86-D011-B42D-00C04FC964FF}"),
    ("git-sha", "fixed in commit 3f786850e387550fdab836ed7e6dc881de23001b"),
    ("git-short-sha", "see 3f78685 and a1b2c3d"),
    (
        "sha256-digest",
        "image@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    ("hex-colours", "colours #ff00aa, #FFF and #1e1e1e"),
    ("iso-timestamps", "created 2024-11-05T14:03:22Z, updated 2024-11-05T14:03:22.123456+00:00"),
    ("posix-path", "/usr/lib/python3.11/site-packages/memkit/secret_guard.py"),
    ("home-path", "~/code/memkit/tests/test_secret_guard.py"),
    ("windows-path", r"C:\Users\alice\AppData\Local\memkit\cache2024\index.db"),
    ("long-relative-path", "src/components/Button2/variants/PrimaryButtonLarge3.tsx"),
    ("arch-path", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
    ("url", "https://github.com/owner/repo/blob/main/memkit/vault.py#L42"),
    (
        "url-with-ids",
        "https://docs.google.com/document/d/1aBcD3EfGhIjKlMnOpQrStUvWxYz0123456789abcd/edit",
    ),
    ("url-with-port", "http://localhost:8080/api/v1/items?page=2&sort=desc"),
    ("markdown-link", "[the docs](https://example.com/guide/getting-started#install-2)"),
    ("snake-case", "call snake_case_function_name_that_is_long() first"),
    ("snake-case-digits", "test_parse_rfc3339_timestamp_with_offset failed"),
    ("camel-case", "getUserAccountSettingsV2Handler and parseHttp2FrameHeaderBytes"),
    ("constants", "TLS_AES_256_GCM_SHA384 and MAX_RETRY_COUNT_FOR_HTTP2_REQUESTS"),
    ("model-names", "claude-3-5-sonnet-20241022, gpt-4o-mini-2024-07-18, text-embedding-3-small"),
    ("lowercase-blob", "abcdefghijklmnopqrstuvwxyzabcd thisisalongwordwithoutanyspaces"),
    ("alphabet", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
    (
        "markdown",
        "# Notes\n\n- **bold** and _italic_\n- `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
    ),
    ("email", "mail priya.raman+memkit@example-corp.co.uk or bob@example.com"),
    ("phones", "call +1 (555) 123-4567 or +44 20 7946 0958"),
    ("versions", "v1.2.3, 1.2.3-beta.4+build.567, Python 3.12.1, numpy==1.26.4"),
    ("placeholder-angle", "password: <your-password>"),
    ("placeholder-stars", "api_key=***"),
    ("placeholder-xxx", "token=xxx and secret=xxxxxxxxxxxxxxxx"),
    ("placeholder-changeme", "password=changeme"),
    ("placeholder-env", "API_KEY=${OPENAI_API_KEY}"),
    ("placeholder-your", "api_key: YOUR_API_KEY_HERE"),
    ("placeholder-bearer", "Authorization: Bearer <token>"),
    ("placeholder-bearer-var", "Authorization: Bearer $TOKEN"),
    ("placeholder-url", "https://user:password@example.com and postgres://app:${DB_PASS}@db/app"),
    ("empty-values", 'password=\ntoken: ""\nsecret:'),
    ("code-env-lookup", 'api_key = os.environ["OPENAI_API_KEY"]'),
    ("code-getpass", "password = getpass.getpass()"),
    ("code-variable", "client = Client(token=token, api_key=settings.API_KEY)"),
    ("code-annotation", "password: str | None = None\ntoken: Optional[str]"),
    ("code-call", "token = b64encode(userpass)"),
    ("config-numbers", "max_tokens: 4096\ntoken_count=512\npassword_min_length: 12"),
    ("pwd-path", "PWD=/home/alice/project\npwd: /tmp"),
    ("cli-flag-alone", "pass --password to be prompted, or --token-file PATH"),
    (
        "data-uri",
        "![x](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk)",
    ),
    (
        "integrity",
        'integrity="sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC"',
    ),
    ("certificate", pem("CERTIFICATE")),
    ("public-key", pem("PUBLIC KEY")),
    ("ssh-public-key-comment", "ssh-ed25519 key for priya@laptop"),
    (
        "ssh-public-keys",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv5d8Xq2Lp7Rm3Nk9Ws4Tz1Yb6Hc0Fj8Qe5Ua2Ox7Vi priya@laptop\n"
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC7x9Kp2Lm3Nq4Rs5Tu6Vw7Xy8Za1Bc2De3Fg4Hi5Jk6 bob@host",
    ),
    ("hex-number", "P = 0xA9FB57DBA1EEA9BC3E660A909D838D718C397AA3B561A6F7901E0E82974856A7"),
    ("type-annotation-digits", "private_key: Ed25519PrivateKey\nauth_token: OAuth2BearerToken"),
    ("name-of-a-secret", 'CHALLENGE_PASSWORD: "challengePassword"'),
    ("html-escaped", "<code>{pem: &#x3C;string>[, passphrase: &#x3C;string>]}</code>"),
    ("pem-header-mentioned", 'paste the key; it starts "-----BEGIN OPENSSH PRIVATE KEY-----".'),
    (
        "base64-of-prose",
        "encoded "
        + base64.b64encode(b"The quick brown fox jumps over the lazy dog again and again").decode(),
    ),
    (
        "base64url-of-prose",
        base64.urlsafe_b64encode(b"Meeting notes: ship v2 on Tuesday, Dana reviews").decode(),
    ),
    ("lowercase-ulid-and-typeid", "01jd3z8k5q9m2w7x4t6r1b0c3e and user_01h455vb4pex5vsknk084sn02q"),
    ("hf-identifiers", "load_hf_AutoModelForSequenceClassification, hf_hub_download"),
    (
        "near-provider-words",
        "desk-sk-lamp, task_live_updates, risk-AKIA-review, asiapacificsoutheast",
    ),
    ("dotted-settings", "password=settings.DB_PASSWORD\ntoken=hashlib.sha256"),
    (
        "md5-and-sha1",
        "md5 d41d8cd98f00b204e9800998ecf8427e, sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
    ),
    (
        "container-digest",
        "ghcr.io/owner/app@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
    ),
    ("memkit-paths", "see memory/long-term/deploy-with-akia-key-rotation-3b0c3e.md"),
]


@pytest.mark.parametrize("text", [case[1] for case in NOT_SECRETS], ids=[c[0] for c in NOT_SECRETS])
def test_ordinary_text_is_not_flagged(text: str) -> None:
    assert find_secrets(text) == []
    assert redact_secrets(text) == text
    check_text(text)


VOCABULARY = (
    "the a an and or but if then when while for to of in on at by with from into over under about "
    "password passwords token tokens secret secrets key keys bearer authorization api login user "
    "forgot remember prefers likes uses wrote deploy server database meeting project notes Priya "
    "Python pytest memkit vault Markdown git commit branch release version configuration "
    "internationalization responsibilities characteristically incomprehensibilities "
    "OpenAI GitHub AWS Slack Stripe JSON YAML HTTP always never again today tomorrow 12 2024 "
)
WORDS = VOCABULARY.split()


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=80))
def test_plain_words_are_never_secrets(words: list[str]) -> None:
    assert find_secrets(" ".join(words)) == []


def test_redaction_keeps_everything_around_the_secrets() -> None:
    key = fake("sk-proj-", 64)
    github = fake("ghp_", 36)
    block = pem("RSA PRIVATE KEY")
    text = (
        "Notes for the deploy:\n"
        f"OPENAI_API_KEY={key}\n"
        f"the GitHub token is {github} (rotate monthly)\n"
        f"{block}\n"
        "db: postgres://app:pG7xk2Lq@db.internal:5432/app\n"
        "password: Tr0ub4dor&3\n"
        "done."
    )
    redacted = redact_secrets(text)
    assert redacted == (
        "Notes for the deploy:\n"
        "OPENAI_API_KEY=[REDACTED:OpenAI API key]\n"
        "the GitHub token is [REDACTED:GitHub token] (rotate monthly)\n"
        "[REDACTED:private key block]\n"
        "db: postgres://app:[REDACTED:password in URL]@db.internal:5432/app\n"
        "password: [REDACTED:password assignment]\n"
        "done."
    )
    assert find_secrets(redacted) == []


def test_redacting_clean_text_changes_nothing() -> None:
    text = "Priya prefers dark mode.\nRecord 01JD3Z8K5Q9M2W7X4T6R1B0C3E, 2024-11-05T14:03:22Z.\n"
    assert redact_secrets(text) == text


def test_check_text_refuses_with_one_message_per_finding() -> None:
    github = fake("ghp_", 36)
    text = f"token {github}\nand password=hunter2butlonger"
    with pytest.raises(SecretRefused) as caught:
        check_text(text)
    assert caught.value.findings == [
        f"GitHub token on line 1: {github[:5]}…(40 chars)",
        "password assignment on line 2: password=hu…(16 chars)",
    ]
    message = str(caught.value)
    assert github not in message and "hunter2butlonger" not in message
    assert "--allow-secrets" not in message and "allow_secrets" not in message
    assert "Rewrite it without the credential" in message


def test_check_text_allows_secrets_when_asked() -> None:
    check_text(f"token {fake('ghp_', 36)}", allow_secrets=True)


def test_check_text_passes_clean_text() -> None:
    check_text("I forgot my password again; the API key lives in 1Password.")


def test_findings_are_frozen() -> None:
    finding = SecretFinding("bearer token", 1, "abc…(32 chars)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.line = 2  # type: ignore[misc]


def test_non_ascii_text_keeps_positions_right() -> None:
    key = fake("ghp_", 36)
    text = f"Ünïcödé ✓ 日本語\nclé: {key} — fin"
    (finding,) = find_secrets(text)
    assert (finding.kind, finding.line) == ("GitHub token", 2)
    assert redact_secrets(text) == "Ünïcödé ✓ 日本語\nclé: [REDACTED:GitHub token] — fin"


def test_ten_kilobytes_of_ordinary_notes_have_no_findings() -> None:
    paragraph = (
        "Priya prefers short answers and dark mode; she forgot her password again on Monday. "
        "Record 01JD3Z8K5Q9M2W7X4T6R1B0C3E was updated 2024-11-05T14:03:22Z, see "
        "https://github.com/owner/repo/blob/main/memkit/vault.py and commit 3f786850e387550f. "
        "The project lives at ~/code/memkit and uses pytest with max_tokens: 4096.\n"
    )
    text = (paragraph * (10_240 // len(paragraph) + 1))[:10_240]
    assert find_secrets(text) == []


@pytest.mark.parametrize(
    "chunk",
    [
        "-----BEGIN RSA PRIVATE KEY-----\n",  # headers without END lines
        "-----BEGIN CERTIFICATE-----\n",
        "password=",
        "https://a:b@c ",
        "--token ",
        fake("", 24) + ".",  # a long line of random tokens
        "ab/",  # one endless run of token characters
    ],
    ids=[
        "private-headers",
        "certificate-headers",
        "assignments",
        "url-credentials",
        "flags",
        "tokens",
        "one-run",
    ],
)
def test_adversarial_input_does_not_hang(chunk: str) -> None:
    # Not a speed test (benchmarks measure speed): a quadratic regex here once took minutes on
    # 1 MB, so a bound two orders of magnitude above the normal time catches a hang.
    text = chunk * (200_000 // len(chunk))
    started = time.perf_counter()
    find_secrets(text)
    assert time.perf_counter() - started < 10.0


def test_uses_only_the_standard_library() -> None:
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for module in (secret_guard, secret_patterns)
        for node in ast.walk(ast.parse(Path(module.__file__ or "").read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    allowed = {
        "__future__",
        "base64",
        "binascii",
        "bisect",
        "collections.abc",
        "dataclasses",
        "collections",
        "itertools",
        "math",
        "re",
        "typing",
        "memkit.errors",
        "memkit.secret_patterns",
    }
    assert imported <= allowed


def test_check_fields_names_the_field_and_where_it_came_from() -> None:
    key = fake("AKIA", 16, UPPER_DIGITS, seed=9)
    with pytest.raises(SecretRefused) as caught:
        check_fields({"id": "m-1", "session": f"s-{key}", "speaker": "user"}, where="chat.jsonl:3")
    message = str(caught.value)
    assert message.startswith("chat.jsonl:3: refused: ")
    assert "AWS access key id in session" in message
    assert key not in message and "allow" not in message
    check_fields({"session": f"s-{key}"}, allow_secrets=True)
    check_fields({"id": "m-1", "session": "s-2026-11-04", "speaker": "Dana"})


def test_check_fields_sees_a_key_with_its_value_and_nested_values() -> None:
    with pytest.raises(SecretRefused, match=r"password assignment in attributes\.password"):
        check_fields({"attributes": {"password": "Tr0ub4dor&3"}})
    token = fake("ghp_", 36, seed=8)
    with pytest.raises(SecretRefused, match="GitHub token in attributes"):
        check_fields({"attributes": {token: True}})
    with pytest.raises(SecretRefused, match=r"GitHub token in source\.deep"):
        check_fields({"source": {"deep": [1, None, {"x": [token]}]}})
    check_fields({"attributes": {"password_min_length": 12, "age": 41, "likes": ["tea"]}})


def test_check_new_values_checks_only_what_a_rewrite_adds() -> None:
    token = fake("ghp_", 36, seed=7)
    old_meta = {"id": "X", "tags": [token]}
    old_body = f"first\n{token}\nlast\n"
    # What the file already held (allowed once) is not refused again...
    check_new_values(
        {"id": "X", "tags": [token, "new"]},
        old_body + "more\n",
        old_meta=old_meta,
        old_body=old_body,
    )
    # ...but a new tag, key or line is.
    other = fake("glpat-", 20, URLSAFE, seed=7)
    with pytest.raises(SecretRefused, match="GitLab token in aliases"):
        check_new_values(
            {**old_meta, "aliases": [other]}, old_body, old_meta=old_meta, old_body=old_body
        )
    with pytest.raises(SecretRefused, match="GitLab token on line 4 of the text"):
        check_new_values(
            old_meta, old_body + f"see {other}\n", old_meta=old_meta, old_body=old_body
        )
    # A new private key block is seen whole, across its lines.
    with pytest.raises(SecretRefused, match="private key block on line 4"):
        check_new_values(
            old_meta, old_body + pem("RSA PRIVATE KEY"), old_meta=old_meta, old_body=old_body
        )


def test_check_new_values_checks_the_file_name_when_nothing_else_is_found() -> None:
    key = fake("AKIA", 16, UPPER_DIGITS, seed=6)
    with pytest.raises(SecretRefused, match="in the file name"):
        check_new_values({"id": "X"}, "ordinary\n", file_name=f"note-{key}.md")
    with pytest.raises(SecretRefused) as caught:
        check_new_values({"title": key}, "ordinary\n", file_name=f"note-{key.lower()}.md")
    assert caught.value.findings == ["AWS access key id in title: AKI…(20 chars)"]
