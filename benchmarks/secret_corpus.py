"""Fake credentials of 50+ kinds pushed through every field and channel into a vault; leaks counted.

Every secret here is generated at run time from a seeded random source (the right prefix and
alphabet, random characters): realistic in shape, never a real credential.

Entry points (`benchmarks/torture.py` imports this module; tests use its fast parts):

- `secret_corpus(instances_per_kind=6, salt="")` -> list of `Secret`: `kind`, `text` (what is put
  into a field: the credential, in its usual context where it needs one, `password=...`,
  `Authorization: Bearer ...`), `needle` (the characters that must never reach a vault file).
  The kinds cover provider tokens, private key blocks, JWTs, passwords in assignments and URLs,
  auth headers and generic random tokens; a third of the instances sit right after `-`, `_`
  or `/` (`deploy-AKIA...`), where the guard once looked past them.
- `ORDINARY_TEXTS`: text that must never be refused (git SHAs, UUIDs, ULIDs, URLs, code,
  checksums, base64 of ordinary text, data: images, ...); `false_positives()` lists the ones the
  guard flags (the target is none).
- `CHANNELS`: name -> function(`Harness`, secret text) that pushes one value through one field of
  one channel: the CLI (`remember` text/--title/--tag/--subject, `entity` name/--alias/
  --relate/--kind/--set key and value/--note on new and existing entities, `import` messages'
  text/id/session/speaker, --session and the file name), the Python API (Vault, Memory,
  Entities, Episodes, Learning), the MCP tools (when the mcp package is importable) and
  learning (entries returned by the scripted test model server, `tests/llm_server.py`, in
  agentic and propose modes).
- `run_secret_channels(vault_dir, *, instances_per_kind=6, channels=None) -> dict`: creates a
  fresh vault at `vault_dir`, pushes every secret through every channel (each attempt gets its
  own instance, so a leak names its channel), then reads every file under the vault except
  `.memkit/` and counts the needles found (exactly, and case-folded: file names are slugs).
  Returns `{"kinds", "secrets", "attempts", "leaked", "leaked_casefolded", "leaks": [{channel,
  kind, files}], "channels": {name: {"attempts", "refused", "accepted"}}, "skipped": {name:
  why}, "errors": {name: first unexpected exception}, "ordinary_texts", "false_positives",
  "seconds"}`.

    python benchmarks/secret_corpus.py [--instances 6] [--channel NAME ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import string
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `tests.llm_server` (the scripted model server) and memkit

from memkit import Vault  # noqa: E402
from memkit.errors import ImportFormatError, MemkitError, SecretRefused  # noqa: E402
from memkit.secret_guard import find_secrets  # noqa: E402

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
UPPER_DIGITS = string.ascii_uppercase + string.digits
LOWER_HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
BECH32 = "023456789ACDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class Secret:
    kind: str
    text: str  # what goes into a field
    needle: str  # what must never be found in a vault file


class _Gen:
    """Random strings with at least one character of each class the alphabet offers."""

    def __init__(self, seed: str) -> None:
        self.rng = random.Random(seed)

    def chars(self, length: int, alphabet: str = ALNUM) -> str:
        classes = [c for c in (string.digits, string.ascii_uppercase, string.ascii_lowercase)]
        while True:
            body = "".join(self.rng.choice(alphabet) for _ in range(length))
            wanted = [k for k in classes if set(k) & set(alphabet)]
            if length < 8 or all(any(c in body for c in k) for k in wanted):
                return body

    def digits(self, length: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(length))

    def password(self) -> str:
        words = ["Sunny", "Otter", "Falcon", "Maple", "Quartz", "Tiger", "Cobalt", "Juniper"]
        return (
            self.rng.choice(words)
            + self.rng.choice("!#%&*-_.")
            + self.chars(6, ALNUM)
            + self.digits(2)
        )


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _pem(g: _Gen, label: str) -> tuple[str, str]:
    lines = [g.chars(64, B64) for _ in range(5)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----", lines[1]


def _bare(value: str) -> tuple[str, str]:
    return value, value


# kind -> function(generator) -> (text, needle)
KINDS: dict[str, Callable[[_Gen], tuple[str, str]]] = {
    "OpenAI legacy key": lambda g: _bare("sk-" + g.chars(48)),
    "OpenAI project key": lambda g: _bare("sk-proj-" + g.chars(120, URLSAFE)),
    "OpenAI service account key": lambda g: _bare("sk-svcacct-" + g.chars(80, URLSAFE)),
    "OpenAI admin key": lambda g: _bare("sk-admin-" + g.chars(80, URLSAFE)),
    "Anthropic API key": lambda g: _bare("sk-ant-api03-" + g.chars(93, URLSAFE) + "AA"),
    "AWS access key id": lambda g: _bare("AKIA" + g.chars(16, UPPER_DIGITS)),
    "AWS temporary key id": lambda g: _bare("ASIA" + g.chars(16, UPPER_DIGITS)),
    "AWS secret access key": lambda g: (lambda v: (f"aws_secret_access_key = {v}", v))(
        g.chars(40, B64)
    ),
    "GitHub classic token": lambda g: _bare("ghp_" + g.chars(36)),
    "GitHub OAuth token": lambda g: _bare("gho_" + g.chars(36)),
    "GitHub user-to-server token": lambda g: _bare("ghu_" + g.chars(36)),
    "GitHub server-to-server token": lambda g: _bare("ghs_" + g.chars(36)),
    "GitHub refresh token": lambda g: _bare("ghr_" + g.chars(36)),
    "GitHub fine-grained token": lambda g: _bare(
        "github_pat_11" + g.chars(20, UPPER_DIGITS) + "_" + g.chars(59)
    ),
    "GitLab token": lambda g: _bare("glpat-" + g.chars(20, URLSAFE)),
    "Slack bot token": lambda g: _bare(f"xoxb-{g.digits(12)}-{g.digits(13)}-{g.chars(24)}"),
    "Slack user token": lambda g: _bare(f"xoxp-{g.digits(11)}-{g.digits(12)}-{g.chars(32)}"),
    "Slack webhook URL": lambda g: _bare(
        "https://hooks.slack.com/services/"
        f"T{g.chars(8, UPPER_DIGITS)}/B{g.chars(10, UPPER_DIGITS)}/{g.chars(24)}"
    ),
    "Google API key": lambda g: _bare("AIza" + g.chars(35, URLSAFE)),
    "Stripe live secret key": lambda g: _bare("sk_live_" + g.chars(24)),
    "Stripe restricted key": lambda g: _bare("rk_live_" + g.chars(24)),
    "Hugging Face token": lambda g: _bare("hf_" + g.chars(34, string.ascii_letters)),
    "npm token": lambda g: _bare("npm_" + g.chars(36)),
    "PyPI token": lambda g: _bare("pypi-AgEIcHlwaS5vcmc" + g.chars(60, URLSAFE)),
    "JSON web token": lambda g: _bare(
        ".".join(
            [
                _b64url({"alg": "HS256", "typ": "JWT"}),
                _b64url({"sub": g.digits(10), "name": "Priya", "iat": int(g.digits(10))}),
                g.chars(43, URLSAFE),
            ]
        )
    ),
    "RSA private key": lambda g: _pem(g, "RSA PRIVATE KEY"),
    "OpenSSH private key": lambda g: _pem(g, "OPENSSH PRIVATE KEY"),
    "EC private key": lambda g: _pem(g, "EC PRIVATE KEY"),
    "PKCS8 private key": lambda g: _pem(g, "PRIVATE KEY"),
    "PGP private key": lambda g: _pem(g, "PGP PRIVATE KEY BLOCK"),
    "password assignment": lambda g: (lambda v: (f"password={v}", v))(g.password()),
    "database password in URL": lambda g: (
        lambda v: (f"postgres://app:{v}@db.internal:5432/app", v)
    )(g.password()),
    "bearer header": lambda g: (lambda v: (f"Authorization: Bearer {v}", v))(g.chars(40, URLSAFE)),
    "basic auth header": lambda g: (lambda v: (f"Authorization: Basic {v}", v))(
        base64.b64encode(f"deploy:{g.password()}".encode()).decode()
    ),
    "API key assignment": lambda g: (lambda v: (f'api_key: "{v}"', v))(g.chars(32)),
    "DigitalOcean personal token": lambda g: _bare("dop_v1_" + g.chars(64, LOWER_HEX)),
    "DigitalOcean OAuth token": lambda g: _bare("doo_v1_" + g.chars(64, LOWER_HEX)),
    "DigitalOcean refresh token": lambda g: _bare("dor_v1_" + g.chars(64, LOWER_HEX)),
    "Shopify access token": lambda g: _bare("shpat_" + g.chars(32, LOWER_HEX)),
    "Shopify shared secret": lambda g: _bare("shpss_" + g.chars(32, LOWER_HEX)),
    "Shopify custom app token": lambda g: _bare("shpca_" + g.chars(32, LOWER_HEX)),
    "Shopify private app token": lambda g: _bare("shppa_" + g.chars(32, LOWER_HEX)),
    "SendGrid API key": lambda g: _bare(f"SG.{g.chars(22, URLSAFE)}.{g.chars(43, URLSAFE)}"),
    "Twilio API key": lambda g: _bare("SK" + g.chars(32, LOWER_HEX)),
    "Telegram bot token": lambda g: _bare(f"{g.digits(10)}:AA{g.chars(33, URLSAFE)}"),
    "Databricks token": lambda g: _bare("dapi" + g.chars(32, LOWER_HEX)),
    "HashiCorp Vault token": lambda g: _bare("hvs." + g.chars(90, URLSAFE)),
    "Postman API key": lambda g: _bare(f"PMAK-{g.chars(24, LOWER_HEX)}-{g.chars(34, LOWER_HEX)}"),
    "Grafana service account token": lambda g: _bare(f"glsa_{g.chars(32)}_{g.chars(8, LOWER_HEX)}"),
    "age secret key": lambda g: _bare("AGE-SECRET-KEY-1" + g.chars(58, BECH32)),
    "Linear API key": lambda g: _bare("lin_api_" + g.chars(40)),
    "Notion token": lambda g: _bare("ntn_" + g.chars(46)),
    "Groq API key": lambda g: _bare("gsk_" + g.chars(52)),
    "Replicate token": lambda g: _bare("r8_" + g.chars(37)),
    "Doppler token": lambda g: _bare("dp.pt." + g.chars(43)),
    "Azure storage account key": lambda g: (
        lambda v: (f"DefaultEndpointsProtocol=https;AccountName=prod;AccountKey={v}", v)
    )(g.chars(86, B64) + "=="),
    "generic random token": lambda g: _bare(g.chars(40)),
}

# Where an instance sits: on its own, or glued after "-", "_" or "/" (a boundary once missed).
_GLUES = ("", "deploy-", "CI_", "keys/")


def secret_corpus(instances_per_kind: int = 6, salt: str = "") -> list[Secret]:
    """`instances_per_kind` fresh fake credentials of every kind in KINDS; `salt` varies them."""
    secrets: list[Secret] = []
    for kind, make in KINDS.items():
        for number in range(instances_per_kind):
            text, needle = make(_Gen(f"{kind}|{number}|{salt}"))
            glue = _GLUES[number % len(_GLUES)]
            secrets.append(Secret(kind, glue + text, needle))
    return secrets


ORDINARY_TEXTS: tuple[str, ...] = (
    "fixed in commit 3f786850e387550fdab836ed7e6dc881de23001b, see also a1b2c3d",
    "git log shows 9fceb02d0ae598e95dc970b74767f19372d61af8 and d6cd1e2bd19e03a81132a23b2025920577f84e37",
    "request 550e8400-e29b-41d4-a716-446655440000 failed; retry 6f9619ff-8b86-d011-b42d-00c04fc964ff",
    "record 01JD3Z8K5Q9M2W7X4T6R1B0C3E was superseded by 01JD3Z9A7B6C5D4E3F2G1H0J9K",
    "https://github.com/owner/repo/blob/main/memkit/vault.py#L42",
    "https://docs.google.com/document/d/1aBcD3EfGhIjKlMnOpQrStUvWxYz0123456789abcd/edit",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG",
    "https://example.com/callback?state=af0ifjsldkj&code=SplxlOBeZQQYbYS6WxSbIA",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5 d41d8cd98f00b204e9800998ecf8427e, sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
    'integrity="sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC"',
    "def get_user_account_settings(user_id: int) -> dict[str, Any]:\n    return db.fetch(user_id)",
    "const parseHttp2FrameHeaderBytes = (buf) => buf.readUInt32BE(0) >>> 8;",
    "password = os.environ['DB_PASSWORD']\ntoken = settings.API_TOKEN",
    "max_tokens: 4096\ntoken_count=512\npassword_min_length: 12",
    "I forgot my password again; the API key lives in 1Password.",
    "the secret to good sourdough is patience",
    "![logo](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk)",
    "encoded note "
    + base64.b64encode(b"The quick brown fox jumps over the lazy dog again and again").decode(),
    "config blob " + base64.b64encode(b"Priya prefers dark mode in every editor she uses").decode(),
    "urlsafe "
    + base64.urlsafe_b64encode(b"Meeting notes: ship v2 on Tuesday, Dana reviews").decode(),
    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6 and ~/code/memkit/tests/test_secret_guard.py",
    r"C:\Users\alice\AppData\Local\memkit\cache2024\index.db",
    "claude-3-5-sonnet-20241022, gpt-4o-mini-2024-07-18, text-embedding-3-small",
    "TLS_AES_256_GCM_SHA384 and MAX_RETRY_COUNT_FOR_HTTP2_REQUESTS",
    "load_hf_AutoModelForSequenceClassification and from_pretrained_DistilBertTokenizerFast",
    "npm install left-pad@1.3.0 && pip install requests==2.32.3",
    "P = 0xA9FB57DBA1EEA9BC3E660A909D838D718C397AA3B561A6F7901E0E82974856A7",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv5d8Xq2Lp7Rm3Nk9Ws4Tz1Yb6Hc0Fj8Qe5Ua2Ox7Vi priya@laptop",
    "docker pull ghcr.io/owner/app@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
    "see memory/long-term/prefers-dark-mode-3b0c3e.md and learning/persona/code-first-9x8y7z.md",
    "the-deploy-key-rotation-runbook-2024-11-05-final-v2.md",
    "Priya's ticket PROJ-12345 blocks PROJ-12346; standup at 09:30 UTC",
    "colours #ff00aa, #FFF and #1e1e1e; v1.2.3-beta.4+build.567",
    "skip_serializing_if_none_and_default_values_for_nested_struct_fields",
    "desk-sk-lamp, task_live_updates, risk-AKIA-review (ticket)",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
)


def false_positives(texts: Iterable[str] = ORDINARY_TEXTS) -> list[str]:
    """The ordinary texts the guard flags (the target is none)."""
    return [text for text in texts if find_secrets(text)]


# --- channels -----------------------------------------------------------------------------------


@dataclass
class Harness:
    """One vault and the clients every channel needs, opened once."""

    vault: Vault
    work: Path  # scratch files (import inputs) outside the vault
    counter: int = 0
    llm_server: Any = None
    llm: Any = None
    mcp: Any = None
    memory: Any = None
    learning: Any = None
    proposal: str = ""  # a proposal to reject
    entity: str = ""  # an entity that exists
    closers: list[Callable[[], None]] = field(default_factory=list)

    def unique(self) -> str:
        self.counter += 1
        return f"n{self.counter:05d}"

    def cli(self, *args: str) -> None:
        from click.testing import CliRunner

        from memkit.cli import cli

        result = CliRunner().invoke(cli, ["--vault", str(self.vault.root), *args])
        if result.exit_code != 0:
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
            raise _Refused(result.output)

    def import_lines(self, messages: list[dict[str, Any]], *args: str, name: str = "") -> None:
        path = self.work / (name or f"{self.unique()}.jsonl")
        path.write_text("\n".join(json.dumps(m) for m in messages) + "\n", "utf-8")
        self.cli("import", str(path), *args)

    def mcp_call(self, tool: str, **arguments: Any) -> None:
        from memkit.mcp_server import build_server

        if self.mcp is None:
            self.mcp = build_server(self.vault)
        try:
            result = asyncio.run(self.mcp.call_tool(tool, arguments))
        except Exception as error:  # the SDK's ToolError: the tool refused
            raise _Refused(str(error)) from None
        if getattr(result, "is_error", getattr(result, "isError", False)):
            raise _Refused(str(result))

    def learn(self, mode: str, **fields: Any) -> None:
        from memkit.conversations import ConversationMessage
        from memkit.learning import Learning
        from memkit.timeutil import utcnow

        if self.llm_server is None:
            from memkit.llm import LLMClient, LLMConfig
            from tests.llm_server import ScriptedLLMServer

            self.llm_server = ScriptedLLMServer()
            self.closers.append(self.llm_server.close)
            self.llm = LLMClient(
                LLMConfig(
                    model="test-model",
                    base_url=self.llm_server.base_url,
                    api_key=None,
                    timeout_seconds=5,
                    max_retries=0,
                )
            )
            self.closers.append(self.llm.close)
        unique = self.unique()
        entry = {
            "store": "insights",
            "op": "add",
            "target": None,
            "title": f"Deploy note {unique}",
            "text": f"Deploys go out on Tuesdays ({unique}).",
            "importance": 0.6,
            "tags": ["deploy"],
            "evidence": ["m-1"],
            "rationale": "said so",
        }
        entry.update(fields)
        self.llm_server.reply_json({"entries": [entry]})
        message = ConversationMessage("We deploy on Tuesdays.", "user", "m-1", "s-1", utcnow())
        if self.learning is None:
            self.learning = Learning(self.vault, llm=self.llm)
            self.closers.append(self.learning.close)
        report = self.learning.learn([message], mode=mode, stores=["insights", "decisions"])
        if report.refused:
            raise _Refused(report.refused[0].reason)

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()


class _Refused(Exception):
    """A channel said no (exit 1, a tool error, a refused learned entry)."""


class _NotApplicable(Exception):
    """This secret cannot travel this way (a file name cannot hold a "/")."""


def _existing(h: Harness) -> str:
    """An entity that exists already; refused attempts leave it as it was, so one serves all."""
    if not h.entity:
        from memkit.entities import Entities

        h.entity = f"Existing {h.unique()}"
        Entities(h.vault).upsert(h.entity, kind="person", aliases=[f"alias {h.entity}"])
    return h.entity


def _entity(h: Harness, *args: str, existing: bool) -> None:
    h.cli("entity", _existing(h) if existing else f"Entity {h.unique()}", *args)


def _existing_entity_api(h: Harness, **changes: Any) -> None:
    from memkit.entities import Entities

    Entities(h.vault).upsert(_existing(h), **changes)


def _api_update(h: Harness, change: Callable[[Any, str], None], secret: str) -> None:
    record = h.vault.create("long-term", f"An ordinary fact {h.unique()}.")
    change(record, secret)
    h.vault.update(record)


def _episode(h: Harness, secret: str, **fields: Any) -> None:
    from memkit.conversations import ConversationMessage, Episodes

    values: dict[str, Any] = {"text": f"ordinary {h.unique()}", "speaker": "user"}
    values.update({key: secret for key in fields})
    Episodes(h.vault).record([ConversationMessage(**values)])


def _learning_api(h: Harness, **fields: Any) -> None:
    from memkit.learning import Learning

    unique = h.unique()
    values: dict[str, Any] = {"text": f"Ordinary entry {unique}.", "title": f"Entry {unique}"}
    values.update(fields)
    text = values.pop("text")
    Learning(h.vault).propose("insights", text, **values)


def _reject(h: Harness, reason: str, *, via_mcp: bool = False) -> None:
    from memkit.learning import Learning

    if not h.proposal:  # a refused rejection leaves the proposal waiting: it serves again
        text = f"Something to reject {h.unique()}."
        h.proposal = Learning(h.vault).propose("insights", text).id
    if via_mcp:
        h.mcp_call("reject", ref=h.proposal, reason=reason)
    else:
        h.cli("reject", h.proposal, "--reason", reason)
    h.proposal = ""


def _mcp_entity(h: Harness, existing: bool, **arguments: Any) -> None:
    name = _existing(h) if existing else f"Entity {h.unique()}"
    h.mcp_call("entity", name=arguments.pop("name", name), **arguments)


def _file_name(secret: str) -> str:
    """The secret as a file name, when one can hold it."""
    if "/" in secret or "\n" in secret or len(secret) > 200:
        raise _NotApplicable
    return secret


Channel = Callable[[Harness, str], object]  # what it returns is not looked at

CHANNELS: dict[str, Channel] = {
    # The CLI
    "cli remember TEXT": lambda h, s: h.cli("remember", f"Note {h.unique()}: {s}"),
    "cli remember --title": lambda h, s: h.cli("remember", f"Fact {h.unique()}", "--title", s),
    "cli remember --tag": lambda h, s: h.cli("remember", f"Fact {h.unique()}", "--tag", s),
    "cli remember --subject": lambda h, s: h.cli("remember", f"Fact {h.unique()}", "--subject", s),
    "cli remember short-term --tag": lambda h, s: h.cli(
        "remember", f"Item {h.unique()}", "--type", "short-term", "--tag", s
    ),
    "cli entity NAME": lambda h, s: h.cli("entity", s, "--kind", "person"),
    "cli entity new --alias": lambda h, s: _entity(h, "--alias", s, existing=False),
    "cli entity new --relate": lambda h, s: _entity(h, "--relate", f"knows={s}", existing=False),
    "cli entity new --kind": lambda h, s: _entity(h, "--kind", s, existing=False),
    "cli entity new --set value": lambda h, s: _entity(h, "--set", f"note={s}", existing=False),
    "cli entity new --set key": lambda h, s: _entity(h, "--set", f"{s}=yes", existing=False),
    "cli entity new --note": lambda h, s: _entity(h, "--note", s, existing=False),
    "cli entity existing --alias": lambda h, s: _entity(h, "--alias", s, existing=True),
    "cli entity existing --relate": lambda h, s: _entity(
        h, "--relate", f"knows={s}", existing=True
    ),
    "cli entity existing --kind": lambda h, s: _entity(h, "--kind", s, existing=True),
    "cli entity existing --set value": lambda h, s: _entity(h, "--set", f"note={s}", existing=True),
    "cli entity existing --set key": lambda h, s: _entity(h, "--set", f"{s}=yes", existing=True),
    "cli entity existing --note": lambda h, s: _entity(h, "--note", s, existing=True),
    "cli import text": lambda h, s: h.import_lines([{"role": "user", "content": f"key {s}"}]),
    "cli import text --short-term": lambda h, s: h.import_lines(
        [{"role": "user", "content": f"key {s}"}], "--short-term"
    ),
    "cli import id": lambda h, s: h.import_lines([{"role": "user", "content": "hi", "id": s}]),
    "cli import session": lambda h, s: h.import_lines(
        [{"role": "user", "content": "hi", "session": s}]
    ),
    "cli import speaker": lambda h, s: h.import_lines([{"role": s, "content": "hi"}]),
    "cli import --session": lambda h, s: h.import_lines(
        [{"role": "user", "content": f"hi {h.unique()}"}], "--session", s
    ),
    "cli import file name": lambda h, s: h.import_lines(
        [{"role": "user", "content": f"hi {h.unique()}"}], name=_file_name(s) + ".jsonl"
    ),
    "cli reject --reason": lambda h, s: _reject(h, s),
    # The Python API
    "api Vault.create body": lambda h, s: h.vault.create("long-term", f"Note: {s}"),
    "api Vault.create title": lambda h, s: h.vault.create("long-term", "ordinary", title=s),
    "api Vault.create tags": lambda h, s: h.vault.create("long-term", "ordinary", tags=[s]),
    "api Vault.create extra value": lambda h, s: h.vault.create(
        "long-term", "ordinary", extra={"where": {"nested": [s]}}
    ),
    "api Vault.create extra key": lambda h, s: h.vault.create(
        "long-term", "ordinary", extra={s: "yes"}
    ),
    "api Vault.create source": lambda h, s: h.vault.create(
        "long-term", "ordinary", source={"tool": s}
    ),
    "api Vault.update new tag": lambda h, s: _api_update(
        h, lambda r, v: r.meta.__setitem__("tags", [v]), s
    ),
    "api Vault.update new key": lambda h, s: _api_update(
        h, lambda r, v: r.meta.__setitem__("extra", {v: 1}), s
    ),
    "api Vault.update body": lambda h, s: _api_update(
        h, lambda r, v: setattr(r, "body", r.body + f"\nand {v}\n"), s
    ),
    "api Memory.remember subject": lambda h, s: _memory(h).remember(
        f"Fact {h.unique()}", subject=s
    ),
    "api Entities.upsert attributes": lambda h, s: _existing_entity_api(
        h, attributes={"login": {"password": s}}
    ),
    "api Entities.upsert aliases": lambda h, s: _existing_entity_api(h, aliases=[s]),
    "api Entities.upsert relations": lambda h, s: _existing_entity_api(h, relations=[("knows", s)]),
    "api Episodes.record text": lambda h, s: _episode(h, f"key {s}", text=True),
    "api Episodes.record id": lambda h, s: _episode(h, s, message_id=True),
    "api Episodes.record session": lambda h, s: _episode(h, s, session=True),
    "api Episodes.record speaker": lambda h, s: _episode(h, s, speaker=True),
    "api Learning.propose title": lambda h, s: _learning_api(h, title=s),
    "api Learning.propose text": lambda h, s: _learning_api(h, text=s),
    "api Learning.propose rationale": lambda h, s: _learning_api(h, rationale=s),
    "api Learning.propose tags": lambda h, s: _learning_api(h, tags=[s]),
    # The MCP tools
    "mcp remember text": lambda h, s: h.mcp_call("remember", text=f"Note {h.unique()}: {s}"),
    "mcp remember title": lambda h, s: h.mcp_call("remember", text=f"Fact {h.unique()}", title=s),
    "mcp remember tags": lambda h, s: h.mcp_call("remember", text=f"Fact {h.unique()}", tags=[s]),
    "mcp remember subject": lambda h, s: h.mcp_call(
        "remember", text=f"Fact {h.unique()}", subject=s
    ),
    "mcp entity name": lambda h, s: _mcp_entity(h, False, name=s, kind="person"),
    "mcp entity aliases": lambda h, s: _mcp_entity(h, True, aliases=[s]),
    "mcp entity relations": lambda h, s: _mcp_entity(h, True, relations=[f"knows={s}"]),
    "mcp entity kind": lambda h, s: _mcp_entity(h, True, kind=s),
    "mcp entity attribute value": lambda h, s: _mcp_entity(h, True, attributes={"note": s}),
    "mcp entity attribute key": lambda h, s: _mcp_entity(h, True, attributes={s: "yes"}),
    "mcp entity note": lambda h, s: _mcp_entity(h, True, note=s),
    "mcp record_interaction text": lambda h, s: h.mcp_call(
        "record_interaction",
        messages=[{"role": "user", "content": f"key {s}"}],
        short_term=True,
    ),
    "mcp record_interaction id": lambda h, s: h.mcp_call(
        "record_interaction", messages=[{"role": "user", "content": "hi", "id": s}]
    ),
    "mcp record_interaction session": lambda h, s: h.mcp_call(
        "record_interaction",
        messages=[{"role": "user", "content": f"hi {h.unique()}"}],
        session=s,
        short_term=True,
    ),
    "mcp record_interaction speaker": lambda h, s: h.mcp_call(
        "record_interaction", messages=[{"speaker": s, "text": f"hi {h.unique()}"}]
    ),
    "mcp propose text": lambda h, s: h.mcp_call("propose", store="insights", text=s),
    "mcp propose title": lambda h, s: h.mcp_call(
        "propose", store="insights", text=f"Entry {h.unique()}.", title=s
    ),
    "mcp propose rationale": lambda h, s: h.mcp_call(
        "propose", store="insights", text=f"Entry {h.unique()}.", rationale=s
    ),
    "mcp reject reason": lambda h, s: _reject(h, s, via_mcp=True),
    # Learning: entries returned by the (scripted) model
    "learn agentic title": lambda h, s: h.learn("agentic", title=s),
    "learn agentic text": lambda h, s: h.learn("agentic", text=s),
    "learn agentic tags": lambda h, s: h.learn("agentic", tags=[s]),
    "learn agentic rationale": lambda h, s: h.learn("agentic", store="decisions", rationale=s),
    "learn propose title": lambda h, s: h.learn("propose", title=s),
    "learn propose text": lambda h, s: h.learn("propose", text=s),
    "learn propose tags": lambda h, s: h.learn("propose", tags=[s]),
    "learn propose rationale": lambda h, s: h.learn("propose", rationale=s),
    "learn propose rationale (decisions)": lambda h, s: h.learn(
        "propose", store="decisions", rationale=s
    ),
}


def _memory(h: Harness) -> Any:
    from memkit.memory import Memory

    if h.memory is None:
        h.memory = Memory(h.vault)
        h.closers.append(h.memory.close)
    return h.memory


def _unavailable(name: str) -> str | None:
    """Why a channel cannot run here (its optional package is missing), or None."""
    if name.startswith("mcp "):
        try:
            import mcp  # noqa: F401
        except ImportError:
            return "the mcp package is not installed"
    if name.startswith("learn "):
        try:
            import tests.llm_server  # noqa: F401
        except ImportError:
            return "tests/llm_server.py (the scripted model server) is not importable"
    return None


def _vault_files(root: Path) -> Iterator[tuple[str, str]]:
    """(vault-relative path, text) of every file in the vault except derived state; file
    names count as text too (a file named after a credential leaks it)."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.split("/", 1)[0] == ".memkit" or path.is_symlink():
            continue
        if path.is_file():
            yield relative, relative + "\n" + path.read_bytes().decode("utf-8", "replace")


def run_secret_channels(
    vault_dir: Path,
    *,
    instances_per_kind: int = 6,
    channels: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Push every secret through every channel into a fresh vault at `vault_dir`; count leaks.

    Each (channel, secret) attempt gets its own instance, so a needle found in a file names the
    channel it came through. See the module docstring for the keys of the result.
    """
    started = time.perf_counter()
    vault_dir = Path(vault_dir)
    vault = Vault.init(vault_dir)
    wanted = list(CHANNELS) if channels is None else list(channels)
    unknown = [name for name in wanted if name not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown channels: {', '.join(unknown)}")
    attempts: list[tuple[str, Secret]] = []
    stats: dict[str, dict[str, int]] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}  # channel -> the first unexpected exception
    with tempfile.TemporaryDirectory(prefix="memkit-secret-inputs-") as work:
        harness = Harness(vault, Path(work))
        try:
            for name in wanted:
                why = _unavailable(name)
                if why is not None:
                    skipped[name] = why
                    continue
                counts = stats.setdefault(name, {"attempts": 0, "refused": 0, "accepted": 0})
                channel_started = time.perf_counter()
                for secret in secret_corpus(instances_per_kind, salt=name):
                    counts["attempts"] += 1
                    attempts.append((name, secret))
                    try:
                        CHANNELS[name](harness, secret.text)
                    except _NotApplicable:
                        counts["attempts"] -= 1
                        attempts.pop()
                    except (_Refused, SecretRefused, ImportFormatError, MemkitError):
                        counts["refused"] += 1
                    except Exception as error:  # a crash is a finding too, not the end
                        counts["errors"] = counts.get("errors", 0) + 1
                        errors.setdefault(name, f"{type(error).__name__}: {error}"[:300])
                    else:
                        counts["accepted"] += 1  # written, with the credential redacted or not
                counts["ms"] = round((time.perf_counter() - channel_started) * 1000)
        finally:
            harness.close()
    files = list(_vault_files(vault_dir))
    folded = [(path, text.casefold()) for path, text in files]
    leaks: list[dict[str, Any]] = []
    leaked_folded = 0
    for name, secret in attempts:
        exact = [path for path, text in files if secret.needle in text]
        needle = secret.needle.casefold()
        loose = [path for path, text in folded if needle in text]
        if exact or loose:
            leaks.append({"channel": name, "kind": secret.kind, "files": exact or loose})
            leaked_folded += not exact
    kinds = len(KINDS)
    return {
        "kinds": kinds,
        "secrets": kinds * instances_per_kind,
        "attempts": len(attempts),
        "leaked": len(leaks) - leaked_folded,
        "leaked_casefolded": leaked_folded,
        "leaks": leaks,
        "channels": stats,
        "skipped": skipped,
        "errors": errors,
        "ordinary_texts": len(ORDINARY_TEXTS),
        "false_positives": len(false_positives()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=6, help="instances of each kind")
    parser.add_argument("--channel", action="append", help="only this channel (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memkit-secret-corpus-") as tmp:
        result = run_secret_channels(
            Path(tmp) / "vault", instances_per_kind=args.instances, channels=args.channel
        )
    print("| channel | attempts | refused | accepted | leaked | ms |\n|---|---|---|---|---|---|")
    per_channel: dict[str, int] = {}
    for leak in result["leaks"]:
        per_channel[leak["channel"]] = per_channel.get(leak["channel"], 0) + 1
    for name, counts in result["channels"].items():
        print(
            f"| {name} | {counts['attempts']} | {counts['refused']} | {counts['accepted']} "
            f"| {per_channel.get(name, 0)} | {counts['ms']} |"
        )
    for name, why in result["skipped"].items():
        print(f"| {name} | skipped: {why} | | | | |")
    print(
        f"\n{result['kinds']} kinds, {result['secrets']} secrets per channel, "
        f"{result['attempts']} attempts: {result['leaked']} leaked "
        f"(+{result['leaked_casefolded']} case-folded); "
        f"{result['false_positives']} false positives in {result['ordinary_texts']} ordinary "
        f"texts; {result['seconds']} s"
    )
    for leak in result["leaks"][:20]:
        print(f"leak: {leak['channel']}: {leak['kind']} in {', '.join(leak['files'])}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), "utf-8")
    return 0 if not result["leaks"] and not result["false_positives"] else 1


if __name__ == "__main__":
    sys.exit(main())
