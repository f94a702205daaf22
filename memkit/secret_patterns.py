"""What credentials look like: provider formats, assignment keywords, placeholders, entropy."""

# The secret guard's detector table and the rules that tell a credential from ordinary text
# (a word, an identifier, a hash, a path); `secret_guard` scans text with them. Its names are
# the guard's own, not an API. Standard library only: the guard runs on every write.

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple


class _LazyPattern:
    """A regex compiled on its first use, so that importing this module stays cheap.

    After the first call its methods are the compiled pattern's own bound methods (instance
    attributes shadow the class's), so later calls cost what `re.Pattern` calls cost.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def _compile(self) -> re.Pattern[str]:
        compiled = re.compile(self.pattern)
        self.__dict__.update(
            match=compiled.match,
            search=compiled.search,
            fullmatch=compiled.fullmatch,
            findall=compiled.findall,
            sub=compiled.sub,
            split=compiled.split,
        )
        return compiled

    def match(self, *args: Any) -> re.Match[str] | None:
        return self._compile().match(*args)

    def search(self, *args: Any) -> re.Match[str] | None:
        return self._compile().search(*args)

    def fullmatch(self, *args: Any) -> re.Match[str] | None:
        return self._compile().fullmatch(*args)

    def findall(self, *args: Any) -> list[Any]:
        return self._compile().findall(*args)

    def sub(self, *args: Any) -> str:
        return self._compile().sub(*args)

    def split(self, *args: Any) -> list[Any]:
        return self._compile().split(*args)


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _has_letter_and_digit(value: str) -> bool:
    return _has_digit(value) and any(c.isalpha() for c in value)


def _mixed_case(value: str) -> bool:
    return any(c.isupper() for c in value) and any(c.islower() for c in value)


def _mixed_case_and_digit(value: str) -> bool:
    return _has_digit(value) and _mixed_case(value)


def _always(value: str) -> bool:
    return True


# --- Provider formats: a fixed prefix, then random characters ----------------------------------

# A token starts where a word does ("desk-..." holds no "sk-"); after "-", "_" or "/" it may
# start too: `deploy-AKIA...`, `MY_ghp_...`, `keys/sk-...` are still credentials.
_B = r"(?<![A-Za-z0-9])"


class _Provider(NamedTuple):
    kind: str
    starts: tuple[str, ...]  # the first two characters of every token of this kind
    pattern: _LazyPattern  # matched where a run of token characters starts
    valid: Callable[[str], bool]  # the whole match must look random enough


_PROVIDERS: tuple[_Provider, ...] = (
    _Provider(
        "Anthropic API key",
        ("sk",),
        _LazyPattern(_B + r"sk-ant-[A-Za-z0-9_\-]{20,}"),
        _has_letter_and_digit,
    ),
    _Provider(
        "OpenAI API key",
        ("sk",),
        _LazyPattern(_B + r"sk-(?!ant-)(?:(?:proj|svcacct|admin|None)-)?[A-Za-z0-9_\-]{20,}"),
        _mixed_case_and_digit,
    ),
    _Provider(
        "AWS access key id",
        ("AK", "AS", "ak", "as"),
        _LazyPattern(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|akia|asia)[A-Za-z0-9]{16,}(?![A-Za-z0-9])"),
        # Upper case as issued; lower case (a lowercased tag) only when it reads as random.
        lambda token: token.isupper() or (token.islower() and _random_tail(token[4:])),
    ),
    _Provider(
        "GitHub token",
        ("gh", "gi"),
        _LazyPattern(_B + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
        _has_letter_and_digit,
    ),
    _Provider(
        "GitLab token",
        ("gl",),
        _LazyPattern(_B + r"glpat-[A-Za-z0-9_\-]{20,}"),
        _has_letter_and_digit,
    ),
    _Provider(
        "Slack token",
        ("xo",),
        _LazyPattern(_B + r"xox[abprs]-[A-Za-z0-9\-]{20,}"),
        _has_digit,
    ),
    _Provider(
        "Google API key",
        ("AI",),
        _LazyPattern(_B + r"AIza[A-Za-z0-9_\-]{35}(?![A-Za-z0-9])"),
        _always,
    ),
    _Provider(
        "Stripe secret key",
        ("sk", "rk"),
        _LazyPattern(_B + r"[sr]k_live_[A-Za-z0-9]{16,}"),
        _always,
    ),
    _Provider(
        "Hugging Face token",
        ("hf",),
        _LazyPattern(_B + r"hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9])"),
        # not hf_AutoModelForSequence...; lowercased (a tag) when it reads as random
        lambda token: (_mixed_case(token) or token.islower()) and _random_tail(token[3:]),
    ),
    _Provider(
        "npm token",
        ("np",),
        _LazyPattern(_B + r"npm_[A-Za-z0-9]{36,}"),
        _has_letter_and_digit,
    ),
    _Provider(
        "PyPI token",
        ("py",),
        _LazyPattern(_B + r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
        _always,
    ),
    # Hex bodies: the generic entropy test takes hex for checksums, so these need their prefix.
    _Provider(
        "DigitalOcean token",
        ("do",),
        _LazyPattern(_B + r"do[opr]_v1_[a-f0-9]{64}(?![A-Za-z0-9])"),
        _always,
    ),
    _Provider(
        "Shopify token",
        ("sh",),
        _LazyPattern(_B + r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}(?![A-Za-z0-9])"),
        _always,
    ),
    _Provider(
        "Postman API key",
        ("PM", "pm"),
        _LazyPattern(_B + r"(?:PMAK|pmak)-[a-f0-9]{24}-[a-f0-9]{34}(?![A-Za-z0-9])"),
        _always,
    ),
    _Provider(
        "Databricks token",
        ("da",),
        _LazyPattern(_B + r"dapi[a-f0-9]{32}(?:-\d)?(?![A-Za-z0-9])"),
        _has_letter_and_digit,
    ),
    _Provider(
        "Twilio API key",
        ("SK", "sk"),
        _LazyPattern(_B + r"(?:SK|sk)[a-f0-9]{32}(?![A-Za-z0-9])"),
        _has_letter_and_digit,
    ),
    _Provider(
        "age secret key",
        ("AG",),
        _LazyPattern(_B + r"AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}(?![A-Za-z0-9])"),
        _always,
    ),
)
_PROVIDERS_BY_START: dict[str, tuple[_Provider, ...]] = {
    start: tuple(p for p in _PROVIDERS if start in p.starts)
    for start in {start for p in _PROVIDERS for start in p.starts}
}
_JWT = _LazyPattern(_B + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")
# Tokens made of parts joined by dots, which runs of token characters never span.
_DOTTED: tuple[tuple[bytes, str, _LazyPattern], ...] = (
    (
        b"SG.",
        "SendGrid API key",
        _LazyPattern(_B + r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}(?![A-Za-z0-9])"),
    ),
    (
        b"dp.",
        "Doppler token",
        _LazyPattern(_B + r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}(?![A-Za-z0-9])"),
    ),
    (
        b"hv",
        "HashiCorp Vault token",
        _LazyPattern(_B + r"hv[sbr]\.[A-Za-z0-9_\-]{24,}(?![A-Za-z0-9_\-])"),
    ),
)
_TELEGRAM = _LazyPattern(r"(?<![A-Za-z0-9])[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}(?![A-Za-z0-9])")
_SLACK_WEBHOOK = _LazyPattern(
    r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/\-]{20,}"
)

_BLOCK_HEADER = _LazyPattern(r"-----BEGIN (?P<label>[A-Z0-9 ]{1,40})-----")
_BLOCK_MAX = 16_384  # the longest armored block looked for (an 8192-bit RSA key is ~6.5 KB)
# A private key pasted without its END line: the lines after the header that look like its body.
_UNTERMINATED_BODY = _LazyPattern(r"[^\n]*(?:\n[ \t]*[A-Za-z0-9+/=:,\-][^\n]*){0,200}")
_PEM_BODY = _LazyPattern(r"[A-Za-z0-9+/=]{20,}")


# --- Credentials known by what stands before them ----------------------------------------------

_AWS_SECRET = _LazyPattern(
    r"(?i)aws_?secret_?(?:access_?)?key[\"']?[ \t]*(?::=|=>|=|:)[ \t]*[\"']?"
    r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
)
_BEARER = _LazyPattern(r"(?i)bearer[ \t]+(?P<value>[A-Za-z0-9\-._~+/]{16,}=*)")
_BASIC = _LazyPattern(
    r"(?i)authorization[\"']?[ \t]*:[ \t]*[\"']?basic[ \t]+(?P<value>[A-Za-z0-9+/]{8,}={0,2})"
)
_URL_CREDENTIALS = _LazyPattern(
    # A password may hold "#" (URLs want it escaped; people paste it as is).
    r"://(?P<user>[^\s:/@?#\[\]<>\"'`]+):(?P<value>[^\s/@?<>\"'`]+)@(?P<host>[A-Za-z0-9.\-_\[\]]+)"
)
_SCHEME_BEFORE = _LazyPattern(r"[A-Za-z][A-Za-z0-9+.\-]{0,20}\Z")

# `password = "..."`, `"api_key": "..."`, `DB_PASSWORD=...`, `token: ...`, `--password ...`
_KEYWORD = (
    r"(?P<kw>passwd|password|passphrase|pwd|secret|token"
    r"|api[_\-]?key|access[_\-]?key|private[_\-]?key)(?:[_\-]?key)?"
)
_VALUE = (
    r"(?:\"(?P<dq>[^\"\n]*)\"|'(?P<sq>[^'\n]*)'|`(?P<bq>[^`\n]*)`"
    # a bare value may hold "*" inside (Sunny*rV5b), not around it (**bold**, ***)
    r"|(?P<bare>[^\s\"'`,;<>()\[\]{}*=](?:[^\s\"'`,;<>()\[\]{}=]*[^\s\"'`,;<>()\[\]{}*=])?={0,2}))"
)
_ASSIGNMENT = _LazyPattern(
    r"(?i)"
    + _KEYWORD
    + r"[\"']?(?:\*\*|__)?[ \t]*(?P<sep>:=|=>|==?|:)[ \t]*(?:\*\*|__)?[ \t]*"
    + _VALUE
)
_FLAG = _LazyPattern(r"(?i)--[A-Za-z0-9\-]{0,30}?" + _KEYWORD + r"[ \t]+" + _VALUE)
_KEY_ENDINGS = tuple(
    sorted(
        {
            word + suffix
            for word in (
                *(b"passwd", b"password", b"passphrase", b"pwd", b"secret", b"token"),
                *(
                    prefix + sep + b"key"
                    for prefix in (b"api", b"access", b"private")
                    for sep in (b"", b"_", b"-")
                ),
            )
            for suffix in (b"", b"key", b"_key", b"-key")
        },
        key=len,
        reverse=True,
    )
)
_KEY_LAST = frozenset(ending[-1:] for ending in _KEY_ENDINGS)  # a cheap first test
_KEY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_BEFORE_SEPARATOR = frozenset(b" \t\"'*`")
_PASSWORD_WORDS = frozenset(("passwd", "password", "passphrase", "pwd"))

# Values that say "a secret goes here" rather than being one.
_PLACEHOLDER_WORDS = frozenset(
    re.findall(
        r"\S+",
        "password passwd passphrase pwd pass secret secrets token tokens key apikey api_key none "
        "null nil true false yes no empty string str bytes int required optional hidden masked "
        "unset undefined unknown env todo tbd fixme changeme default redacted omitted removed "
        "example sample dummy fake test placeholder value 1password xyzzy ",
    )
)
_NAMING_WORDS = ("password", "passwd", "secret", "token")
_PLACEHOLDER_PARTS = (
    "example",
    "placeholder",
    "your",
    "changeme",
    "change_me",
    "change-me",
    "redacted",
    "dummy",
    "xxxx",
    "****",
    "....",
    "<",
    "${",
    "{{",
    "%(",
    "$(",
    "&lt;",
    "&#x3c",
    "&#60",
)
_LETTER = _LazyPattern(r"[A-Za-z]")
_SPACE = _LazyPattern(r"\s")
_LABEL_NOISE = _LazyPattern(r"[\"'`*]")
_SLUG = _LazyPattern(r"_*[A-Za-z]+(?:[_\-.]+[A-Za-z]+)*_*")
_FILLER = _LazyPattern(r"[*xX.•#?_\-]+")
_REFERENCE = _LazyPattern(
    r"[$%@\-]"  # $VAR, %s, @var, --another-flag
    r"|[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|::?|->)[A-Za-z_][A-Za-z0-9_]*)+$"  # settings.KEY, s:var
    r"|_*[A-Za-z]+(?:[_\-.]+[A-Za-z]+)*_*$"  # words, names and slugs: prose, or code passing a variable
)
_PATH_OR_URL = _LazyPattern(
    r"(?:~|\.{1,2})?/|[A-Za-z]:\\"  # a path
    r"|[A-Za-z][A-Za-z0-9+.\-]*://"  # a URL (a password inside one is found on its own)
)


_DOTTED_NAME = _LazyPattern(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|::?|->)[A-Za-z_][A-Za-z0-9_]*)+")
_NAME_JOINER = _LazyPattern(r"\.|::?|->")
_NOT_A_NAME = _LazyPattern(r"[0-9][A-Za-z]|[0-9]{4,}$")  # Altg7673, x9Kz: not password2, sha256


def _is_reference(value: str) -> bool:
    """A variable, a setting or a word rather than a value: `$VAR`, `settings.API_KEY`."""
    if _DOTTED_NAME.fullmatch(value):
        # settings.API_KEY is a name; Cobalt.a1a16z62 is a password that holds a dot.
        parts = _PART_SPLIT.split(_NAME_JOINER.sub("_", value))
        return all(_part_is_benign(p) and not _NOT_A_NAME.search(p) for p in parts)
    return _REFERENCE.match(value) is not None


def _is_placeholder(value: str, user: str = "") -> bool:
    lowered = value.lower()
    if not value or lowered in _PLACEHOLDER_WORDS or lowered == user.lower():
        return True
    if _FILLER.fullmatch(value) or len(set(lowered)) <= 2:
        return True
    if value.isalpha() and any(word in lowered for word in _NAMING_WORDS):
        return True  # challengePassword, apiToken: the name of a secret, not one
    return any(part in lowered for part in _PLACEHOLDER_PARTS)


def _assigned_secret(keyword: str, value: str, literal: bool) -> bool:
    """Whether a value given to a password/token/... key is a real-looking credential.

    `literal` is true for a quoted string; a bare value may be a variable, a word or a number.
    """
    if _is_placeholder(value) or _PATH_OR_URL.match(value) or _SPACE.search(value):
        return False  # "<your key>", paths, URLs; "My API Key", prose in quotes
    if not literal and (_is_reference(value) or _LETTER.search(value) is None):
        return False  # variables, words, slugs; numbers, versions, dates
    if keyword in _PASSWORD_WORDS:
        return len(value) >= 4
    # Keys and tokens are random: a quoted "not-needed" or "sk-openai" is a stand-in, and a bare
    # Ed25519PrivateKey or utf8_token_v2 is a name.
    if len(value) < 8 or _SLUG.fullmatch(value):
        return False
    return literal or not all(map(_part_is_benign, _PART_SPLIT.split(value)))


def _assignment_kind(keyword: str) -> str:
    if keyword in _PASSWORD_WORDS:
        return "password assignment"
    if keyword == "secret":
        return "secret assignment"
    if keyword == "token":
        return "token assignment"
    if keyword.startswith("api"):
        return "API key assignment"
    return "secret key assignment"


# --- Generic high-entropy tokens ---------------------------------------------------------------

_TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/-"
_TOKEN_TABLE = bytes(ord("a") if byte in _TOKEN_CHARS else ord(" ") for byte in range(256))
_MIN_RUN = 20  # no provider token is shorter (an AWS access key id is 20)
_MIN_TOKEN = 24
_SEPARATOR = _LazyPattern(r"[/+_\-]+")  # where a provider token may start inside a run
_URL_LOOKBACK = 500  # how far back a token's URL may start
_MIN_RANDOM = 16  # random-looking characters left after dropping word-like and hex parts
_DIGIT = _LazyPattern(r"[0-9]")
_PART_SPLIT = _LazyPattern(r"[_\-/+]+")  # words in identifiers, slugs and paths
_HEX = _LazyPattern(r"[0-9a-fA-F]+")
_ULID = _LazyPattern(r"[0-9A-HJKMNP-TV-Z]{26}")
_RUN = _LazyPattern(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_LETTERS = _LazyPattern(r"[A-Za-z]{2,}")
# The base64 blob of an SSH public key starts by naming its type (ssh-rsa, ssh-ed25519, ...).
_SSH_PUBLIC_KEY = _LazyPattern(r"AAAA(?:[BC]3NzaC1|E2VjZHNh|GnNrLXNzaC1|InNrLWVjZHNh)")
_HASH_PREFIX = _LazyPattern(r"(?i)sha(?:1|224|256|384|512)-")
_HASH_LABEL = _LazyPattern(r"(?i)(?:sha(?:1|224|256|384|512)|md5|blake2[bs]?|integrity)[\-=:]\s*$")
# The letter pairs that make up 90% of the words in English prose and code; random letters hit
# them about a quarter of the time, words and identifiers almost always.
_COMMON_PAIRS = frozenset(
    re.findall(
        r"[a-z]{2}",
        "ab ac ad ag ai al am an ap ar as at au ba be bl bo bu ca ce ch ck cl co cr ct da dd de di "
        "do ea ec ed ee ef ej el em en ep eq er es et ev ex ey fa fi fo fr ge gi ha he hi ho ht hu "
        "ia ib ic id ie if ig il im in io ip ir is it iv js ke la ld le lf li ll lo ls lt lu ly ma "
        "me mi mm mo mp na nc nd ne ng ni no ns nt ob oc od of ol om on oo op or os ot ou ow pa pe "
        "pi pl po pp pr ps pt pu py qu ra rc rd re rg ri rm rn ro rr rs rt ru ry sa sc se sh si so "
        "sp ss st su ta te th ti to tp tr ts tt tu ty ub ue ui ul um un up ur us ut va ve wa wh wi "
        "xt yp ",
    )
)


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def _common_pair_share(value: str) -> float:
    pairs = common = 0
    for letters in _LETTERS.findall(value):
        letters = letters.lower()
        pairs += len(letters) - 1
        common += sum(letters[i : i + 2] in _COMMON_PAIRS for i in range(len(letters) - 1))
    return common / pairs if pairs else 1.0


def _part_is_benign(part: str) -> bool:
    """Pieces real text is made of: words, identifiers, numbers, hex hashes, ULIDs."""
    if len(part) <= 3 or part.isalpha() or part.isdigit():
        return True
    if _HEX.fullmatch(part) or _ULID.fullmatch(part.upper()):
        return True
    return _word_like(part)


def _random_tail(part: str) -> bool:
    """Not a word or an identifier (hf_AutoModelFor..., asiapacificsoutheast)."""
    return not _word_like(part) and (_has_digit(part) or _mixed_case(part) or len(part) >= 30)


def _word_like(part: str) -> bool:
    """Long runs of letters (getUser2Settings, not aB3xY9kL) that read like words."""
    return len(part) >= 2.8 * len(_RUN.findall(part)) and _common_pair_share(part) >= 0.5


def _is_sequence(value: str) -> bool:
    """An alphabet written out (ABC...Zabc...z0123456789) is not a secret."""
    steps = sum(ord(b) - ord(a) == 1 for a, b in itertools.pairwise(value))
    return steps * 2 >= len(value)


def _looks_random(token: str) -> bool:
    if _ULID.fullmatch(token.upper()) or _DIGIT.search(token) is None or token.isdigit():
        return False  # memkit's own record ids; words and identifiers without digits
    if _HEX.fullmatch(token.removeprefix("0x").replace("-", "")) or _HASH_PREFIX.match(token):
        return False  # commit SHAs, UUIDs, checksums, 0x numbers; sha512-... integrity hashes
    if _SSH_PUBLIC_KEY.match(token):
        return False  # public keys are meant to be shared
    residual = "".join(p for p in _PART_SPLIT.split(token) if not _part_is_benign(p))
    if len(residual) < _MIN_RANDOM or _is_sequence(residual):
        return False
    return _entropy(residual) >= min(3.8, 0.8 * math.log2(len(residual)))


def _decoded_text(token: str) -> str | None:
    """The text a base64 token encodes, when it encodes printable text rather than random bytes
    (random bytes are valid UTF-8 and printable with odds below one in ten million)."""
    if len(token) % 4 == 1:
        return None
    urlsafe = "-" in token or "_" in token
    if urlsafe and ("+" in token or "/" in token):
        return None
    try:
        data = base64.b64decode(
            token + "=" * (-len(token) % 4), altchars=b"-_" if urlsafe else None, validate=True
        )
        decoded = data.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if all(c.isprintable() or c in "\n\r\t" for c in decoded):
        return decoded
    return None


def _in_url(view: bytes, start: int) -> bool:
    """Whether the token at `start` sits in a URL or data: URI (ids in paths are not secrets)."""
    window = max(0, start - _URL_LOOKBACK)
    chunk_start = max(view.rfind(b" ", window, start), view.rfind(b"\n", window, start), window)
    chunk = view[chunk_start:start]
    return b"://" in chunk or b"data:" in chunk
