"""Find credentials in text before it is written to the vault; refuse or redact them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from memkit.errors import SecretRefused

__all__ = ["SecretFinding", "check_text", "find_secrets", "redact_secrets"]


@dataclass(frozen=True)
class SecretFinding:
    """One credential found in a text: what it looks like, where, and a redacted excerpt."""

    kind: str
    line: int
    excerpt: str


class _Hit(NamedTuple):
    start: int  # span of the secret itself: what redaction replaces
    end: int
    rank: int  # lower wins when two hits overlap: specific formats beat generic guesses
    kind: str
    excerpt: str


# Ranks, most specific first.
_RANK_PEM = 0
_RANK_PROVIDER = 1
_RANK_CONTEXT = 2  # bearer tokens, credentials in URLs, AWS secret assignments
_RANK_ASSIGNMENT = 3
_RANK_ENTROPY = 4

_SHOWN_MAX = 5


def _mask(secret: str) -> str:
    """The first few characters (a quarter at most) and the length: enough to recognise it."""
    shown = min(_SHOWN_MAX, len(secret) // 4)
    return f"{secret[:shown]}…({len(secret)} chars)"


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _has_letter_and_digit(value: str) -> bool:
    return _has_digit(value) and any(c.isalpha() for c in value)


def _mixed_case_alnum(value: str) -> bool:
    """Random base62 text: digits, upper and lower case letters all present."""
    return _has_digit(value) and any(c.isupper() for c in value) and any(c.islower() for c in value)


def _mixed_case(value: str) -> bool:
    return any(c.isupper() for c in value) and any(c.islower() for c in value)


def _always(value: str) -> bool:
    return True


# --- Provider formats: a fixed prefix, then random characters -----------------------------------

_B = r"(?<![A-Za-z0-9_\-])"  # a token starts at a word boundary (so "desk-..." is not "sk-")


class _Provider(NamedTuple):
    kind: str
    triggers: tuple[str, ...]  # cheap substring test before the regex runs
    pattern: re.Pattern[str]
    valid: Callable[[str], bool]  # the whole match must look random enough


_PROVIDERS: tuple[_Provider, ...] = (
    _Provider(
        "Anthropic API key",
        ("sk-ant-",),
        re.compile(_B + r"sk-ant-[A-Za-z0-9_\-]{20,}"),
        _has_letter_and_digit,
    ),
    _Provider(
        "OpenAI API key",
        ("sk-",),
        re.compile(_B + r"sk-(?!ant-)(?:(?:proj|svcacct|admin|None)-)?[A-Za-z0-9_\-]{20,}"),
        _mixed_case_alnum,
    ),
    _Provider(
        "AWS access key id",
        ("AKIA", "ASIA"),
        re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16,}(?![A-Za-z0-9])"),
        _always,
    ),
    _Provider(
        "GitHub token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
        _has_letter_and_digit,
    ),
    _Provider(
        "GitLab token",
        ("glpat-",),
        re.compile(_B + r"glpat-[A-Za-z0-9_\-]{20,}"),
        _has_letter_and_digit,
    ),
    _Provider(
        "Slack token",
        ("xox",),
        re.compile(_B + r"xox[abprs]-[A-Za-z0-9\-]{10,}"),
        _has_digit,
    ),
    _Provider(
        "Slack webhook URL",
        ("hooks.slack.com",),
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/\-]{20,}"),
        _always,
    ),
    _Provider(
        "Google API key",
        ("AIza",),
        re.compile(r"(?<![A-Za-z0-9_\-])AIza[A-Za-z0-9_\-]{35}(?![A-Za-z0-9_\-])"),
        _always,
    ),
    _Provider(
        "Stripe secret key",
        ("_live_",),
        re.compile(_B + r"(?:sk|rk)_live_[A-Za-z0-9]{16,}"),
        _always,
    ),
    _Provider(
        "Hugging Face token",
        ("hf_",),
        re.compile(_B + r"hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9_])"),
        _mixed_case,
    ),
    _Provider(
        "npm token",
        ("npm_",),
        re.compile(_B + r"npm_[A-Za-z0-9]{36,}"),
        _has_letter_and_digit,
    ),
    _Provider(
        "PyPI token",
        ("pypi-",),
        re.compile(_B + r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
        _always,
    ),
    _Provider(
        "JSON web token",
        ("eyJ",),
        re.compile(_B + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
        _always,
    ),
)

_PEM = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?)-----"
    # Up to the matching END line; a key pasted without one runs to its first blank line.
    r"(?:.*?-----END (?P=label)-----|[^\n]*(?:\n[ \t]*[A-Za-z0-9+/=:,\-][^\n]*)*)",
    re.DOTALL,
)

# --- Credentials known by their context ---------------------------------------------------------

_AWS_SECRET = re.compile(
    r"(?i)aws_?secret_?(?:access_?)?key[\"']?[ \t]*(?::=|=>|=|:)[ \t]*[\"']?"
    r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
)

_BEARER = re.compile(r"(?i)(?<![A-Za-z0-9])bearer[ \t]+(?P<value>[A-Za-z0-9\-._~+/]{16,}=*)")
_BASIC = re.compile(
    r"(?i)authorization[\"']?[ \t]*:[ \t]*[\"']?basic[ \t]+(?P<value>[A-Za-z0-9+/]{8,}={0,2})"
)
_URL_CREDENTIALS = re.compile(
    r"(?i)(?P<scheme>[a-z][a-z0-9+.\-]{1,20})://(?P<user>[^\s:/@?#\[\]<>\"'`]+)"
    r":(?P<value>[^\s/@?#<>\"'`]+)@(?P<host>[A-Za-z0-9.\-_\[\]]+)"
)

# `password = ...`, `"api_key": "..."`, `DB_PASSWORD=...`, `--token ...`
_KEYWORD = (
    r"(?P<kw>passwd|password|passphrase|pwd|secret|api[_\-]?key|apikey"
    r"|access[_\-]?key|private[_\-]?key|token)"
)
_VALUE = (
    r"(?:\"(?P<dq>[^\"\n]*)\"|'(?P<sq>[^'\n]*)'|`(?P<bq>[^`\n]*)`"
    r"|(?P<bare>[^\s\"'`,;&<>)\]}*]+))"
)
_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z0-9_.\-]{0,40}?" + _KEYWORD + r"(?:[_\-]?key)?)"
    r"[\"']?(?:\*\*|__)?[ \t]*(?P<sep>:=|=>|==?|:)[ \t]*(?:\*\*|__)?[ \t]*" + _VALUE
)
_FLAG = re.compile(
    r"(?i)(?<![A-Za-z0-9_\-])(?P<key>--[A-Za-z0-9\-]{0,30}?"
    r"(?P<kw>password|passwd|passphrase|token|secret|api-?key))[ \t]+(?P<sep>)" + _VALUE
)
_ASSIGNMENT_TRIGGERS = ("pass", "pwd", "secret", "key", "token")

_KIND_BY_KEYWORD = {
    "passwd": "password assignment",
    "password": "password assignment",
    "passphrase": "password assignment",
    "pwd": "password assignment",
    "secret": "secret assignment",
    "token": "token assignment",
}

# Values that say "a secret goes here" rather than being one.
_PLACEHOLDER_WORDS = frozenset(
    """
    password passwd passphrase pwd pass secret secrets token tokens key apikey api_key none null
    nil true false yes no empty string str bytes int required optional hidden masked unset
    undefined unknown env todo tbd fixme changeme change_me change-me default redacted omitted
    removed example sample dummy fake test placeholder value your_password your_token
    1password
    """.split()
)
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
)
_FILLER = re.compile(r"[*xX.•#?_\-]+")
_REFERENCE = re.compile(
    r"[$%@{(\[]"  # $VAR, %(name)s, @var, {{ x }}, (expr), [REDACTED:...]
    r"|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(.*)?$"  # settings.API_KEY, os.getenv(
    r"|[A-Za-z_]+$"  # a bare word or variable name: prose, or code that passes a variable
    r"|(?:~|\.{1,2})?/"  # a path
    r"|[A-Za-z]:\\"
    r"|[a-z][a-z0-9+.\-]*://"  # a URL (credentials inside one are found separately)
    r"|[A-Za-z_][A-Za-z0-9_]*\("  # a call: getpass(), read_secret("x")
)


def _is_placeholder(value: str, user: str = "") -> bool:
    lowered = value.lower()
    if not value or lowered in _PLACEHOLDER_WORDS or lowered == user.lower():
        return True
    if _FILLER.fullmatch(value) or len(set(lowered)) <= 2:
        return True
    return any(part in lowered for part in _PLACEHOLDER_PARTS)


def _assignment_value_is_secret(keyword: str, value: str, quoted: bool) -> bool:
    """Whether the value assigned to a password/token/... key is a real-looking credential."""
    if _is_placeholder(value):
        return False
    if not quoted and _REFERENCE.match(value):
        return False
    is_password = keyword in ("passwd", "password", "passphrase", "pwd")
    if is_password:
        if len(value) < 4 or (value.isdigit() and len(value) < 6):
            return False
        return quoted or not value.isalpha()
    if len(value) < 8 or (value.isdigit() and len(value) < 16):
        return False
    return quoted or _has_digit(value) or not value.replace("-", "").replace("_", "").isalpha()


def _assignment_kind(keyword: str) -> str:
    lowered = keyword.lower()
    if lowered in _KIND_BY_KEYWORD:
        return _KIND_BY_KEYWORD[lowered]
    if lowered.startswith("api"):
        return "API key assignment"
    return "secret key assignment"


def _assignment_hits(pattern: re.Pattern[str], text: str) -> Iterator[_Hit]:
    for m in pattern.finditer(text):
        for group in ("dq", "sq", "bq", "bare"):
            value = m.group(group)
            if value is not None:
                break
        else:  # pragma: no cover - the value pattern always sets one group
            continue
        keyword = m.group("kw").lower().replace("-", "_")
        keyword = "api_key" if keyword in ("apikey", "api_key") else keyword
        stripped = value.strip()
        if not _assignment_value_is_secret(keyword, stripped, group != "bare"):
            continue
        start = m.start(group) + value.index(stripped)
        sep = m.group("sep") or " "
        excerpt = f"{m.group('key')}{sep}{_mask(stripped)}"
        yield _Hit(start, start + len(stripped), _RANK_ASSIGNMENT, _assignment_kind(keyword), excerpt)


# --- Generic high-entropy tokens -----------------------------------------------------------------

_CANDIDATE = re.compile(r"(?<![A-Za-z0-9_+/\-])[A-Za-z0-9_+/\-]{24,}")
_PART_SPLIT = re.compile(r"[_+/\-]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_RUN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_HASH_LABEL = re.compile(r"(?i)(?:sha(?:1|224|256|384|512)|md5|blake2[bs]?|integrity)[\-=:]\s*$")
_BENIGN_SPANS = re.compile(
    r"(?i)[a-z][a-z0-9+.\-]{1,20}://[^\s<>\"'`)\]]+"  # URLs: ids in their paths are not secrets
    r"|data:[a-z]+/[a-z0-9.+\-]+;base64,[A-Za-z0-9+/=]+"  # inline images
)
_MIN_TOKEN = 24
_MIN_RANDOM = 20  # random-looking characters needed after dropping word-like and hex parts


def _entropy(value: str) -> float:
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def _part_is_benign(part: str) -> bool:
    """Parts of a token that real text is made of: words, identifiers, numbers, hashes, ids."""
    if len(part) < 8 or part.isalpha() or part.isdigit():
        return True
    if _HEX.fullmatch(part) or _ULID.fullmatch(part):
        return True
    # Word-like: long runs (getUser2Settings) rather than a jumble (aB3xY9kL).
    return len(part) >= 3.2 * len(_RUN.findall(part))


def _looks_random(token: str) -> bool:
    if not _has_letter_and_digit(token):
        return False
    if _HEX.fullmatch(token.replace("-", "")):
        return False  # commit SHAs, UUIDs, checksums
    random_parts = [p for p in _PART_SPLIT.split(token) if not _part_is_benign(p)]
    residual = "".join(random_parts)
    if len(residual) < _MIN_RANDOM:
        return False
    # Random text over 36+ symbols uses most of them; threshold tuned on real identifiers.
    return _entropy(residual) >= min(4.0, 0.82 * math.log2(len(residual)))


def _entropy_hits(text: str) -> Iterator[_Hit]:
    benign = [m.span() for m in _BENIGN_SPANS.finditer(text)] if ":" in text else []
    for m in _CANDIDATE.finditer(text):
        start, end = m.span()
        token = m.group()
        if benign and any(s <= start < e for s, e in benign):
            continue
        if not _looks_random(token):
            continue
        if _HASH_LABEL.search(text, max(0, start - 12), start):
            continue
        yield _Hit(start, end, _RANK_ENTROPY, "high-entropy token", _mask(token))


# --- Putting it together ------------------------------------------------------------------------


def _all_hits(text: str) -> list[_Hit]:
    hits: list[_Hit] = []
    if "PRIVATE KEY" in text:
        for m in _PEM.finditer(text):
            excerpt = f"-----BEGIN {m.group('label')}-----…({m.end() - m.start()} chars)"
            hits.append(_Hit(m.start(), m.end(), _RANK_PEM, "private key block", excerpt))
    for provider in _PROVIDERS:
        if any(trigger in text for trigger in provider.triggers):
            for m in provider.pattern.finditer(text):
                if provider.valid(m.group()):
                    hits.append(
                        _Hit(m.start(), m.end(), _RANK_PROVIDER, provider.kind, _mask(m.group()))
                    )
    lowered = text.lower()
    if "aws" in lowered:
        for m in _AWS_SECRET.finditer(text):
            start, end = m.span("value")
            hits.append(
                _Hit(start, end, _RANK_CONTEXT, "AWS secret access key", _mask(m.group("value")))
            )
    if "bearer" in lowered:
        for m in _BEARER.finditer(text):
            value = m.group("value")
            if _is_placeholder(value) or not (_has_digit(value) or _mixed_case(value[1:])):
                continue
            start, end = m.span("value")
            hits.append(_Hit(start, end, _RANK_CONTEXT, "bearer token", f"Bearer {_mask(value)}"))
    if "basic" in lowered:
        for m in _BASIC.finditer(text):
            start, end = m.span("value")
            excerpt = f"Basic {_mask(m.group('value'))}"
            hits.append(_Hit(start, end, _RANK_CONTEXT, "basic auth header", excerpt))
    if "://" in text:
        for m in _URL_CREDENTIALS.finditer(text):
            value = m.group("value")
            if _is_placeholder(value, m.group("user")) or value.startswith("$"):
                continue
            start, end = m.span("value")
            excerpt = f"{m.group('scheme')}://{m.group('user')}:{_mask(value)}@{m.group('host')}"
            hits.append(_Hit(start, end, _RANK_CONTEXT, "password in URL", excerpt))
    if any(trigger in lowered for trigger in _ASSIGNMENT_TRIGGERS):
        hits.extend(_assignment_hits(_ASSIGNMENT, text))
        if "--" in text:
            hits.extend(_assignment_hits(_FLAG, text))
    hits.extend(_entropy_hits(text))
    return _resolve_overlaps(hits)


def _resolve_overlaps(hits: list[_Hit]) -> list[_Hit]:
    """Keep the most specific hit where several cover the same characters; sort by position."""
    kept: list[_Hit] = []
    for hit in sorted(hits, key=lambda h: (h.rank, h.start, -h.end)):
        if all(hit.end <= other.start or hit.start >= other.end for other in kept):
            kept.append(hit)
    return sorted(kept, key=lambda h: h.start)


def find_secrets(text: str) -> list[SecretFinding]:
    """Every credential-looking string in `text`, in order, with 1-based line numbers."""
    return [
        SecretFinding(hit.kind, text.count("\n", 0, hit.start) + 1, hit.excerpt)
        for hit in _all_hits(text)
    ]


def check_text(text: str, *, allow_secrets: bool = False) -> None:
    """Raise SecretRefused if `text` holds a credential, unless the caller allows secrets."""
    if allow_secrets:
        return
    findings = find_secrets(text)
    if findings:
        raise SecretRefused([f"{f.kind} on line {f.line}: {f.excerpt}" for f in findings])


def redact_secrets(text: str) -> str:
    """`text` with each credential replaced by "[REDACTED:<kind>]"; everything else kept."""
    pieces: list[str] = []
    position = 0
    for hit in _all_hits(text):
        pieces.append(text[position : hit.start])
        pieces.append(f"[REDACTED:{hit.kind}]")
        position = hit.end
    pieces.append(text[position:])
    return "".join(pieces)
