"""Find credentials in text before it is written to the vault; refuse or redact them."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from memkit.errors import SecretRefused
from memkit.secret_patterns import (
    _ASSIGNMENT,
    _AWS_SECRET,
    _BASIC,
    _BEARER,
    _BEFORE_SEPARATOR,
    _BLOCK_HEADER,
    _BLOCK_MAX,
    _DOTTED,
    _FLAG,
    _HASH_LABEL,
    _JWT,
    _KEY_CHARS,
    _KEY_ENDINGS,
    _KEY_LAST,
    _LABEL_NOISE,
    _MIN_RUN,
    _MIN_TOKEN,
    _PEM_BODY,
    _PROVIDERS_BY_START,
    _SCHEME_BEFORE,
    _SEPARATOR,
    _SLACK_WEBHOOK,
    _TELEGRAM,
    _TOKEN_TABLE,
    _UNTERMINATED_BODY,
    _URL_CREDENTIALS,
    _assigned_secret,
    _assignment_kind,
    _decoded_text,
    _has_digit,
    _has_letter_and_digit,
    _in_url,
    _is_placeholder,
    _looks_random,
    _mixed_case,
)

__all__ = [
    "SecretFinding",
    "check_fields",
    "check_new_values",
    "check_text",
    "find_secrets",
    "redact_secrets",
]


@dataclass(frozen=True)
class SecretFinding:
    """One credential found in a text: what it looks like, where, and a redacted excerpt."""

    kind: str  # human words: "OpenAI API key", "password assignment", "high-entropy token", ...
    line: int  # 1-based line of the text where the secret starts
    excerpt: str  # safe to print: never more than a few leading characters of the secret


class _Hit(NamedTuple):
    start: int  # the span of the secret itself, which redaction replaces
    end: int
    rank: int  # where hits overlap the lowest rank wins: specific formats beat generic guesses
    kind: str
    excerpt: str


_RANK_PEM = 0
_RANK_PROVIDER = 1
_RANK_CONTEXT = 2  # bearer and basic auth headers, passwords in URLs, AWS secret keys
_RANK_ASSIGNMENT = 3
_RANK_ENTROPY = 4

# How the scan stays fast: regexes only run where a cheap substring search found their literal
# start (`bytes.find` on an ASCII view of the text, one byte per character so positions agree).


def _ascii_view(text: str) -> bytes:
    return text.encode("ascii", "replace")


def _positions(haystack: bytes, needle: bytes) -> Iterator[int]:
    position = haystack.find(needle)
    while position >= 0:
        yield position
        position = haystack.find(needle, position + 1)


def _mask(secret: str) -> str:
    """A few leading characters (a sixth at most) and the length: enough to recognise it."""
    shown = min(5, len(secret) // 6)
    return f"{secret[:shown]}…({len(secret)} chars)"


# --- Armored blocks (PEM): private keys, and public ones to leave alone ------------------------


def _armored_blocks(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, label) of each -----BEGIN ...----- block; a private key may lack its END."""
    position = 0
    next_end = text.find("-----END ")
    while (m := _BLOCK_HEADER.search(text, position)) is not None:
        label = m["label"]
        if 0 <= next_end < m.end():
            next_end = text.find("-----END ", m.end())
        end = -1
        if 0 <= next_end < m.end() + _BLOCK_MAX:
            marker = f"-----END {label}-----"
            end = text.find(marker, next_end, m.end() + _BLOCK_MAX)
            end = end + len(marker) if end >= 0 else -1
        if end < 0 and "PRIVATE KEY" in label:
            body = _UNTERMINATED_BODY.match(text, m.end())
            end = m.end() if body is None else body.end()
        if end < 0:
            position = m.end()
            continue
        yield m.start(), end, label
        position = end


# --- Credentials known by what stands before them ----------------------------------------------


def _assignment_matches(
    text: str, view: bytes, lowered: bytes
) -> Iterator[tuple[re.Match[str], int]]:
    """Assignments to password/token/... keys, found from their ":" or "=" back to the key."""
    for separator in (b":", b"="):
        for position in _positions(view, separator):
            if position > 0 and view[position - 1] in b":=":
                continue  # the second character of ":=", "==" or "=>"
            key_end = position
            while key_end > 0 and position - key_end < 8 and view[key_end - 1] in _BEFORE_SEPARATOR:
                key_end -= 1
            if lowered.endswith(b"__", 0, key_end):
                key_end -= 2  # __Password__: markdown bold
            if lowered[key_end - 1 : key_end] not in _KEY_LAST or not lowered.endswith(
                _KEY_ENDINGS, 0, key_end
            ):
                continue
            if lowered.endswith(b"pwd", 0, key_end) and view[key_end - 4 : key_end - 3].isalpha():
                continue  # spwd, cwd-like names: only PWD, db_pwd, ... are passwords
            key_start = key_end
            while key_start > 0 and key_end - key_start < 60 and view[key_start - 1] in _KEY_CHARS:
                key_start -= 1
            key = lowered[key_start:key_end]
            ending = next(e for e in _KEY_ENDINGS if key.endswith(e))
            m = _ASSIGNMENT.match(text, key_start + len(key) - len(ending))
            if m is not None:
                yield m, key_start
            aws = key.find(b"aws")
            if aws >= 0:
                m = _AWS_SECRET.match(text, key_start + aws)
                if m is not None:
                    yield m, key_start
    for position in _positions(view, b"--"):
        if position == 0 or view[position - 1] not in _KEY_CHARS:
            m = _FLAG.match(text, position)
            if m is not None:
                yield m, position


def _assignment_hits(text: str, view: bytes, lowered: bytes) -> Iterator[_Hit]:
    for m, key_start in _assignment_matches(text, view, lowered):
        if m.re.pattern == _AWS_SECRET.pattern:
            start, end = m.span("value")
            yield _Hit(start, end, _RANK_CONTEXT, "AWS secret access key", _mask(m["value"]))
            continue
        group = next(g for g in ("dq", "sq", "bq", "bare") if m.group(g) is not None)
        value = m.group(group).strip()
        if group == "bare":
            if key_start > 0 and text[key_start - 1] in "?&":
                value = value.split("&", 1)[0]  # a URL query: ?user=bob&password=...&next=1
            value = value.rstrip(".:=")  # the end of a sentence, base64 padding
            if text.startswith("(", m.end(group)):
                continue  # a call: token = b64encode(userpass)
        keyword = m.group("kw").lower().replace("-", "_")
        keyword = "api_key" if keyword.startswith("api") else keyword
        if not _assigned_secret(keyword, value, literal=group in ("dq", "sq")):
            continue
        start = m.start(group) + m.group(group).find(value)
        label = _LABEL_NOISE.sub("", text[key_start:start])  # "password": " -> password:
        kind = _assignment_kind(keyword)
        yield _Hit(start, start + len(value), _RANK_ASSIGNMENT, kind, label + _mask(value))


def _context_hits(text: str, view: bytes, lowered: bytes) -> Iterator[_Hit]:
    for position in _positions(lowered, b"bearer"):
        m = _BEARER.match(text, position)
        if m is None or (position > 0 and text[position - 1].isalnum()):
            continue
        value = m["value"].rstrip(".")  # a full stop ends the sentence, not the token
        if _is_placeholder(value) or not (_has_digit(value) or _mixed_case(value[1:])):
            continue
        start = m.start("value")
        yield _Hit(
            start, start + len(value), _RANK_CONTEXT, "bearer token", f"Bearer {_mask(value)}"
        )
    for position in _positions(lowered, b"authorization"):
        m = _BASIC.match(text, position)
        if m is not None and not _is_placeholder(m["value"]):
            start, end = m.span("value")
            yield _Hit(start, end, _RANK_CONTEXT, "basic auth header", f"Basic {_mask(m['value'])}")
    for position in _positions(view, b"://"):
        if text.startswith("hooks.slack.com/", position + 3):
            hook = _SLACK_WEBHOOK.match(text, position - 5)
            if hook is not None:
                hook_hit = _Hit(*hook.span(), _RANK_PROVIDER, "Slack webhook URL", _mask(hook[0]))
                yield hook_hit
        m = _URL_CREDENTIALS.match(text, position)
        if m is None:
            continue
        scheme = _SCHEME_BEFORE.search(text, max(0, position - 21), position)
        if scheme is None:
            continue
        value = m["value"]
        if (
            _is_placeholder(value, m["user"])
            or len(value) < 4
            or value[0] in "$%{"
            or value.isdigit()
        ):
            continue  # placeholders, "user:pass", "abc:xyz"; host:port pairs are all digits
        start, end = m.span("value")
        excerpt = f"{scheme.group()}://{m['user']}:{_mask(value)}@{m['host']}"
        yield _Hit(start, end, _RANK_CONTEXT, "password in URL", excerpt)


# --- Provider tokens and generic high-entropy tokens -------------------------------------------


def _token_hits(text: str, view: bytes) -> Iterator[_Hit]:
    """Provider tokens and high-entropy tokens, looked for in runs of token characters."""
    runs = view.translate(_TOKEN_TABLE)
    needle = b"a" * _MIN_RUN
    start = runs.find(needle)
    while start >= 0:
        end = runs.find(b" ", start)
        end = len(runs) if end < 0 else end
        # A provider token starts the run, or follows a "/", "+", "-" or "_" inside it: URL
        # paths, `deploy-AKIA...`, `MY_ghp_...`.
        at = start
        while at < end:
            for provider in _PROVIDERS_BY_START.get(text[at : at + 2], ()):
                m = provider.pattern.match(text, at)
                if m is not None and provider.valid(m.group()):
                    yield _Hit(m.start(), m.end(), _RANK_PROVIDER, provider.kind, _mask(m.group()))
            separator = _SEPARATOR.search(text, at, end)
            at = end if separator is None else separator.end()
        if end - start >= _MIN_TOKEN:
            token = text[start:end]
            if (
                _looks_random(token)
                and not _in_url(view, start)
                and not _HASH_LABEL.search(text, max(0, start - 12), start)
            ):
                decoded = _decoded_text(token)
                if decoded is None:
                    yield _Hit(start, end, _RANK_ENTROPY, "high-entropy token", _mask(token))
                elif _all_hits(decoded):
                    # base64 of ordinary text is not a secret; base64 of a credential is one.
                    kind = "base64-encoded credential"
                    yield _Hit(start, end, _RANK_ENTROPY, kind, _mask(token))
        start = runs.find(needle, end)


# --- Putting it together -----------------------------------------------------------------------


def _all_hits(text: str) -> list[_Hit]:
    view = _ascii_view(text)
    lowered = view.lower()
    hits: list[_Hit] = []
    public: list[tuple[int, int]] = []  # certificates and public keys are meant to be shared
    if "-----BEGIN " in text:
        for start, end, label in _armored_blocks(text):
            if "PRIVATE KEY" not in label:
                public.append((start, end))
            elif _PEM_BODY.search(text, start + len(label) + 16, end) is not None:
                excerpt = f"-----BEGIN {label}-----…({end - start} chars)"
                hits.append(_Hit(start, end, _RANK_PEM, "private key block", excerpt))
            # else: the header alone, as code or docs mention it
    for position in _positions(view, b"eyJ"):
        jwt = _JWT.match(text, position)
        if jwt is not None:
            hits.append(_Hit(*jwt.span(), _RANK_PROVIDER, "JSON web token", _mask(jwt.group())))
    for needle, kind, pattern in _DOTTED:
        for position in _positions(view, needle):
            m = pattern.match(text, position)
            if m is not None and _has_letter_and_digit(m.group()):
                hits.append(_Hit(*m.span(), _RANK_PROVIDER, kind, _mask(m.group())))
    for position in _positions(view, b":AA"):
        start = position
        while start > 0 and position - start < 10 and text[start - 1].isdigit():
            start -= 1
        m = _TELEGRAM.match(text, start)
        if m is not None:
            hits.append(_Hit(*m.span(), _RANK_PROVIDER, "Telegram bot token", _mask(m.group())))
    token_hits = list(_token_hits(text, view))
    if public:
        public_starts = [start for start, _ in public]

        def is_public(hit: _Hit) -> bool:
            index = bisect.bisect_right(public_starts, hit.start) - 1
            return index >= 0 and hit.start < public[index][1]

        token_hits = [h for h in token_hits if h.rank != _RANK_ENTROPY or not is_public(h)]
    hits.extend(token_hits)
    hits.extend(_context_hits(text, view, lowered))
    hits.extend(_assignment_hits(text, view, lowered))
    return _resolve_overlaps(hits)


def _resolve_overlaps(hits: list[_Hit]) -> list[_Hit]:
    """Keep the most specific hit where several cover the same characters; sort by position."""
    kept: list[_Hit] = []  # sorted by start, never overlapping
    starts: list[int] = []
    for hit in sorted(hits, key=lambda h: (h.rank, h.start, -h.end)):
        index = bisect.bisect_right(starts, hit.start)
        if index > 0 and kept[index - 1].end > hit.start:
            continue  # the kept hit before this one reaches into it
        if index < len(kept) and kept[index].start < hit.end:
            continue  # this one reaches into the kept hit after it
        kept.insert(index, hit)
        starts.insert(index, hit.start)
    return kept


def find_secrets(text: str) -> list[SecretFinding]:
    """Every credential-looking string in `text`, in order, with 1-based line numbers."""
    findings: list[SecretFinding] = []
    line, counted = 1, 0
    for hit in _all_hits(text):
        line += text.count("\n", counted, hit.start)
        counted = hit.start
        findings.append(SecretFinding(hit.kind, line, hit.excerpt))
    return findings


def check_text(text: str, *, allow_secrets: bool = False) -> None:
    """Raise SecretRefused if `text` holds a credential, unless the caller allows secrets."""
    if allow_secrets:
        return
    findings = find_secrets(text)
    if findings:
        raise SecretRefused([f"{f.kind} on line {f.line}: {f.excerpt}" for f in findings])


def _leaves(value: Any, label: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every string that `value` would put into a file: mapping keys and values
    (a scalar with its key, `password: hunter2`, so an assignment is seen as one), list items."""
    if isinstance(value, str):
        yield label, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            # A message names the key, unless the key is itself the secret (or too long).
            name = str(key) if len(str(key)) <= 40 and not find_secrets(str(key)) else "a key"
            where = f"{label}.{name}" if label else name
            if isinstance(item, (Mapping, list, tuple, set, frozenset)):
                yield where, str(key)
                yield from _leaves(item, where)
            elif item is not None:
                yield where, f"{key}: {item}"
            else:
                yield where, str(key)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _leaves(item, label)
    # numbers, booleans, dates and None hold no credential


def _field_findings(fields: Mapping[str, Any], skip: set[str] | frozenset[str]) -> list[str]:
    found: list[str] = []
    for where, text in _leaves(fields, ""):
        if text not in skip:
            found.extend(f"{f.kind} in {where}: {f.excerpt}" for f in find_secrets(text))
    return found


def check_fields(
    fields: Mapping[str, Any], *, where: str = "", allow_secrets: bool = False
) -> None:
    """Raise SecretRefused when any key or value of `fields` (nested mappings and lists too)
    holds a credential; `where` (such as `chat.jsonl:3`) starts the message.

    For values checked before anything is written, such as an imported message's id, session
    and speaker: `check_fields({"id": ..., "session": ...}, where=f"{path}:{line}")`.
    """
    if allow_secrets:
        return
    found = _field_findings(fields, frozenset())
    if found:
        raise SecretRefused(found, where=where)


def _new_line_runs(body: str, old_body: str) -> Iterator[tuple[int, str]]:
    """(first line, text) of each run of lines in `body` that `old_body` did not hold."""
    unused = Counter(old_body.split("\n"))
    run: list[str] = []
    first = 0
    for number, line in enumerate(body.split("\n"), start=1):
        if unused[line] > 0:
            unused[line] -= 1
            if run:
                yield first, "\n".join(run)
                run = []
            continue
        if not run:
            first = number
        run.append(line)
    if run:
        yield first, "\n".join(run)


def check_new_values(
    meta: Mapping[str, Any],
    body: str,
    *,
    file_name: str = "",
    old_meta: Mapping[str, Any] | None = None,
    old_body: str | None = None,
) -> None:
    """Raise SecretRefused when what a write adds to a record file holds a credential.

    Every front-matter key and value (recursively), the body and the file name are checked;
    given the version on disk (`old_meta`, `old_body`), only what the write adds: a new tag is
    checked, a body the file already held is not checked again.
    """
    skip = {text for _, text in _leaves(old_meta, "")} if old_meta is not None else set()
    found = _field_findings(meta, skip)
    runs = [(1, body)] if old_body is None else _new_line_runs(body, old_body)
    for first, text in runs:
        for finding in find_secrets(text):
            line = first + finding.line - 1
            found.append(f"{finding.kind} on line {line} of the text: {finding.excerpt}")
    if not found:  # a file name is made from the title or text: report it on its own only
        found.extend(f"{f.kind} in the file name: {f.excerpt}" for f in find_secrets(file_name))
    if found:
        raise SecretRefused(found)


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
