"""The record model: Markdown files with YAML front-matter, parsed, checked and written back."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from memkit.errors import InvalidRecord, UsageError

# Record type -> the vault folder that holds it (the layout contract).
TYPE_FOLDERS: dict[str, str] = {
    "short-term": "memory/short-term",
    "long-term": "memory/long-term",
    "entity": "memory/entities",
    "episodic": "memory/episodic",
    "persona": "learning/persona",
    "insight": "learning/insights",
    "thread": "learning/threads",
    "pattern": "learning/patterns",
    "decision": "learning/decisions",
    "feedback": "learning/feedback",
    "improvement": "learning/improvements",
    "proposal": "learning/proposals",
}
REJECTED_FOLDER = "learning/rejected"
RECORD_TYPES = tuple(TYPE_FOLDERS)
MEMORY_TYPES = ("short-term", "long-term", "entity", "episodic")
# Learning store folder name -> entry type.
STORE_TYPES: dict[str, str] = {
    "persona": "persona",
    "insights": "insight",
    "threads": "thread",
    "patterns": "pattern",
    "decisions": "decision",
    "feedback": "feedback",
    "improvements": "improvement",
}
LEARNING_TYPES = tuple(STORE_TYPES.values())
REQUIRED_FIELDS = ("id", "type", "created", "updated")
# Keys written first, in this order, when memkit creates a file.
LEADING_KEYS = ("id", "type", "title", "created", "updated", "tags", "importance", "source")

MAX_RECORD_BYTES = 4 * 1024 * 1024


def folder_for_type(record_type: str) -> str:
    try:
        return TYPE_FOLDERS[record_type]
    except KeyError:
        raise UsageError(
            f"unknown record type {record_type!r}; choose one of: {', '.join(RECORD_TYPES)}"
        ) from None


def type_for_folder(folder: str) -> str | None:
    """The record type a vault-relative folder holds (episodic day files sit in subfolders)."""
    for record_type, type_folder in TYPE_FOLDERS.items():
        if folder == type_folder or (
            record_type == "episodic" and folder.startswith(type_folder + "/")
        ):
            return record_type
    if folder == REJECTED_FOLDER:
        return "proposal"
    return None


# --- YAML: safe, strict about duplicates, timestamps kept as the strings a person wrote ---------
#
# PyYAML is imported only when the fast path below is not sure (it costs ~15 ms to import).

_front_matter_loader: Any = None


def _loader() -> Any:
    """The safe loader that keeps timestamps as strings and refuses duplicate keys."""
    global _front_matter_loader
    if _front_matter_loader is not None:
        return _front_matter_loader
    import yaml

    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class FrontMatterLoader(base):  # type: ignore[valid-type,misc]
        """Safe loader that keeps timestamps as strings and refuses duplicate keys."""

    FrontMatterLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping_no_duplicates(
        loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                continue  # unhashable keys are reported by the constructor below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r}; a key may appear only once",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    FrontMatterLoader.add_constructor("tag:yaml.org,2002:map", construct_mapping_no_duplicates)
    _front_matter_loader = FrontMatterLoader
    return FrontMatterLoader


def load_yaml_slow(text: str) -> Any:
    """`text` read by the YAML loader itself (no fast path)."""
    import yaml

    return yaml.load(text, Loader=_loader())


def load_yaml(text: str) -> Any:
    """YAML `text` as memkit reads it: the fast path when it applies, else the YAML loader."""
    try:
        return _fast_load(text)
    except _Fallback:
        return load_yaml_slow(text)


def load_yaml_fast(text: str) -> dict[Any, Any] | None:
    """The mapping in `text` when the fast path is sure of it (what the YAML loader would give);
    None when only the YAML loader can tell."""
    try:
        return _fast_load(text)
    except _Fallback:
        return None


# --- a fast path for the front-matter people (and memkit) usually write -------------------------
#
# Top-level `key: value` lines whose values are plain or quoted scalars, one-line flow
# collections, block lists of scalars and indented block mappings of those. The result is exactly
# what the YAML loader gives (YAML 1.1 as PyYAML resolves it, timestamps kept as strings);
# anything else (anchors, tags, block scalars, multi-line values, tabs, duplicate keys, ...)
# raises _Fallback and goes to the YAML loader, which also produces the error messages.


class _Fallback(Exception):
    """The fast path is not sure: let the YAML loader decide."""


# Characters the fast path leaves to the YAML loader: those outside YAML's printable set, the
# line breaks NEL, LS and PS, the BOM, and tabs and CR. (A negated class of the allowed ranges
# would say the same but costs 10 ms to compile.)
_FAST_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]"
)
_FAST_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.\-]*):(?: +|$)")
# The commonest line, `key: plain value`, in one match: a value with no `#`, no `: ` and no
# trailing `:`, starting with a character that cannot be a YAML indicator.
_FAST_SIMPLE_LINE = re.compile(
    r"([A-Za-z0-9_][A-Za-z0-9_.\-]*): +([A-Za-z0-9_(/.+~][^:#]*(?::(?! |$)[^:#]*)*)"
)
_FLOW_PLAIN_END = re.compile(r"[,\[\]{}]")
_DQ_SPECIAL = re.compile(r'["\\]')
# The implicit resolvers of PyYAML's SafeLoader (yaml/resolver.py), minus timestamps;
# tests/test_records.py checks these against the installed PyYAML.
_YAML_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_YAML_INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""",
    re.X,
)
_YAML_BOOL = {
    **dict.fromkeys(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_YAML_NULL = frozenset(("~", "null", "Null", "NULL"))
_NUMBER_START = frozenset("-+0123456789.")
# Characters that cannot start a plain scalar (YAML indicators), or that the fast path leaves
# to the YAML loader.
_PLAIN_BAD_START = frozenset("-?:,[]{}#&*!|>'\"%@`<=")
_DQ_ESCAPES = {
    "0": "\0",
    "a": "\x07",
    "b": "\x08",
    "t": "\t",
    "n": "\n",
    "v": "\x0b",
    "f": "\x0c",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _yaml_int(text: str) -> int:
    # yaml.constructor.SafeConstructor.construct_yaml_int
    value = text.replace("_", "")
    sign = -1 if value[0] == "-" else 1
    if value[0] in "+-":
        value = value[1:]
    if value == "0":
        return 0
    if value.startswith("0b"):
        return sign * int(value[2:], 2)
    if value.startswith("0x"):
        return sign * int(value[2:], 16)
    if value[0] == "0":
        return sign * int(value, 8)
    if ":" in value:
        number = 0
        base = 1
        for part in reversed(value.split(":")):
            number += int(part) * base
            base *= 60
        return sign * number
    return sign * int(value)


def _yaml_float(text: str) -> float:
    # yaml.constructor.SafeConstructor.construct_yaml_float
    value = text.replace("_", "").lower()
    sign = -1 if value[0] == "-" else 1
    if value[0] in "+-":
        value = value[1:]
    if value == ".inf":
        return sign * float("inf")
    if value == ".nan":
        return float("nan")
    if ":" in value:
        number = 0.0
        base = 1
        for part in reversed(value.split(":")):
            number += float(part) * base
            base *= 60
        return sign * number
    return sign * float(value)


def _resolve_plain(text: str) -> Any:
    """The value of a plain (unquoted) YAML scalar, as the front-matter loader resolves it."""
    if text in _YAML_BOOL:
        return _YAML_BOOL[text]
    if text in _YAML_NULL:
        return None
    if text[0] in _NUMBER_START:
        try:
            if _YAML_FLOAT.match(text):
                return _yaml_float(text)
            if _YAML_INT.match(text):
                return _yaml_int(text)
        except ValueError:
            raise _Fallback from None  # e.g. `0b_`: PyYAML raises ValueError itself
    return text


def _check_plain_start(text: str, flow: bool) -> None:
    first = text[0]
    # `-5`, `-foo` are plain scalars; `- x` is a list entry, `?`/`:` are left to YAML.
    if first in _PLAIN_BAD_START and (
        first != "-" or len(text) == 1 or text[1] == " " or (flow and text[1] in ",[]{}")
    ):
        raise _Fallback


def _double_quoted(text: str, start: int) -> tuple[str, int]:
    """The string of the double-quoted scalar at text[start] == '"', and the index after it."""
    pieces: list[str] = []
    position = start + 1
    while True:
        match = _DQ_SPECIAL.search(text, position)
        if match is None:
            raise _Fallback  # continues on the next line
        at = match.start()
        pieces.append(text[position:at])
        if text[at] == '"':
            return "".join(pieces), at + 1
        escape = text[at + 1 : at + 2]
        if escape in _DQ_ESCAPES:
            pieces.append(_DQ_ESCAPES[escape])
            position = at + 2
        elif escape in _HEX_LENGTHS:
            digits = text[at + 2 : at + 2 + _HEX_LENGTHS[escape]]
            if len(digits) != _HEX_LENGTHS[escape] or not _HEX_DIGITS.issuperset(digits):
                raise _Fallback
            code = int(digits, 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise _Fallback
            pieces.append(chr(code))
            position = at + 2 + len(digits)
        else:
            raise _Fallback  # \N, \_, \L, \P, a line continuation, or an invalid escape


def _single_quoted(text: str, start: int) -> tuple[str, int]:
    pieces: list[str] = []
    position = start + 1
    while True:
        at = text.find("'", position)
        if at < 0:
            raise _Fallback
        pieces.append(text[position:at])
        if text.startswith("'", at + 1):
            pieces.append("'")
            position = at + 2
        else:
            return "".join(pieces), at + 1


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position] == " ":
        position += 1
    return position


def _flow_node(text: str, position: int, depth: int) -> tuple[Any, int]:
    """A value inside a flow collection: a quoted or plain scalar, or a nested collection."""
    char = text[position : position + 1]
    if char == '"':
        return _double_quoted(text, position)
    if char == "'":
        return _single_quoted(text, position)
    if char == "[" or char == "{":
        if depth > 8:
            raise _Fallback
        return _flow_collection(text, position, depth + 1)
    match = _FLOW_PLAIN_END.search(text, position)
    end = len(text) if match is None else match.start()
    plain = text[position:end].rstrip(" ")
    if not plain or "#" in plain or ":" in plain or text[end : end + 1] in ("[", "{"):
        raise _Fallback
    _check_plain_start(plain, flow=True)
    return _resolve_plain(plain), end


def _flow_collection(text: str, position: int, depth: int) -> tuple[Any, int]:
    """The flow list `[...]` or mapping `{...}` at text[position], on one line."""
    closing = "]" if text[position] == "[" else "}"
    result: Any = [] if closing == "]" else {}
    position = _skip_spaces(text, position + 1)
    if text.startswith(closing, position):
        return result, position + 1
    while True:
        if closing == "]":
            item, position = _flow_node(text, position, depth)
            result.append(item)
        else:
            colon = text.find(":", position)
            if colon < 0 or not text.startswith(" ", colon + 1):
                raise _Fallback
            key_text = text[position:colon].rstrip(" ")
            if not key_text or any(c in key_text for c in "#,[]{}\"'"):
                raise _Fallback
            _check_plain_start(key_text, flow=True)
            key = _resolve_plain(key_text)
            if key in result:
                raise _Fallback  # a duplicate key: the YAML loader words the error
            value, position = _flow_node(text, _skip_spaces(text, colon + 1), depth)
            result[key] = value
        position = _skip_spaces(text, position)
        char = text[position : position + 1]
        if char == ",":
            position = _skip_spaces(text, position + 1)
        elif char == closing:
            return result, position + 1
        else:
            raise _Fallback


def _inline_value(text: str) -> Any:
    """The value written after `key: ` (or `- `) on the same line, trailing spaces removed."""
    first = text[0]
    if first == '"' or first == "'" or first == "[" or first == "{":
        if first == '"':
            value, end = _double_quoted(text, 0)
        elif first == "'":
            value, end = _single_quoted(text, 0)
        else:
            value, end = _flow_collection(text, 0, 0)
        if end < len(text):
            rest = text[end:]
            stripped = rest.lstrip(" ")
            if not stripped.startswith("#") or len(stripped) == len(rest):
                raise _Fallback
        return value
    comment = text.find(" #")
    if comment >= 0:
        text = text[:comment].rstrip(" ")
    if ": " in text or text.endswith(":"):
        raise _Fallback  # YAML reads a mapping here, or an error
    _check_plain_start(text, flow=False)
    return _resolve_plain(text)


def _block_node(lines: list[tuple[int, str]], index: int, indent: int) -> tuple[Any, int]:
    content = lines[index][1]
    if content == "-" or content.startswith("- "):
        return _block_list(lines, index, indent)
    return _block_mapping(lines, index, indent)


def _block_list(lines: list[tuple[int, str]], index: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while index < len(lines):
        line_indent, content = lines[index]
        if line_indent != indent or not content.startswith("- "):
            break  # the caller checks what follows
        item = content[2:].lstrip(" ")
        if not item or item[0] == "#":
            raise _Fallback  # an empty entry or a nested block
        items.append(_inline_value(item))
        index += 1
    return items, index


def _block_mapping(
    lines: list[tuple[int, str]], index: int, indent: int
) -> tuple[dict[Any, Any], int]:
    result: dict[Any, Any] = {}
    count = len(lines)
    simple_line = _FAST_SIMPLE_LINE.fullmatch
    while index < count:
        line_indent, content = lines[index]
        if line_indent < indent:
            break
        if line_indent > indent:
            raise _Fallback
        simple = simple_line(content)
        if simple is not None:
            key = _resolve_plain(simple.group(1))
            if key in result:
                raise _Fallback  # a duplicate key: the YAML loader words the error
            result[key] = _resolve_plain(simple.group(2))
            index += 1
            continue
        match = _FAST_KEY.match(content)
        if match is None:
            raise _Fallback
        key = _resolve_plain(match.group(1))
        if key in result:
            raise _Fallback  # a duplicate key: the YAML loader words the error
        rest = content[match.end() :]
        index += 1
        if rest and rest[0] != "#":
            result[key] = _inline_value(rest)
            continue
        if index < count:
            next_indent, next_content = lines[index]
            if next_indent > indent or (
                next_indent == indent and (next_content == "-" or next_content.startswith("- "))
            ):
                if indent >= 8:
                    raise _Fallback
                result[key], index = _block_node(lines, index, next_indent)
                continue
        result[key] = None
    return result, index


def _fast_load(text: str) -> dict[Any, Any]:
    """The front-matter mapping in `text`, or _Fallback when it is not the simple kind."""
    if _FAST_UNSAFE.search(text):
        raise _Fallback
    lines: list[tuple[int, str]] = []
    for line in text.split("\n"):
        content = line.lstrip(" ")
        if content and content[0] != "#":
            lines.append((len(line) - len(content), content.rstrip(" ")))
    if not lines or lines[0][0] != 0:
        raise _Fallback
    meta, index = _block_mapping(lines, 0, 0)
    if index != len(lines):
        raise _Fallback
    return meta


# --- the record -------------------------------------------------------------------------------


@dataclass
class Record:
    """One record: ordered front-matter `meta`, the Markdown `body`, and where it came from."""

    meta: dict[str, Any]
    body: str = ""
    path: str | None = None  # vault-relative POSIX path, None until written
    # How the file looked when read, so that a rewrite keeps a person's formatting.
    front_matter_text: str | None = None
    loaded_meta: dict[str, Any] | None = None
    newline: str = "\n"
    bom: bool = False
    line_offset: int = 1  # file line of the first front-matter line minus one
    fingerprint: tuple[int, int, str] | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return str(self.meta.get("id", ""))

    @property
    def type(self) -> str:
        return str(self.meta.get("type", ""))

    @property
    def title(self) -> str:
        title = self.meta.get("title")
        if isinstance(title, str) and title.strip():
            return title
        for line in self.body.splitlines():
            stripped = line.strip().lstrip("#").strip()
            if stripped:
                return stripped[:80]
        return self.id

    @property
    def tags(self) -> list[str]:
        tags = self.meta.get("tags") or []
        return [str(tag) for tag in tags] if isinstance(tags, list) else []

    @property
    def importance(self) -> float | None:
        value = self.meta.get("importance")
        return (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else None
        )

    def line_of(self, key: str) -> int:
        """1-based file line of a top-level front-matter key (the opening '---' if absent)."""
        if self.front_matter_text is not None:
            pattern = re.compile(rf"^['\"]?{re.escape(key)}['\"]?\s*:")
            for number, line in enumerate(self.front_matter_text.splitlines(), start=1):
                if pattern.match(line):
                    return self.line_offset + number
        return self.line_offset

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "path": self.path,
            "title": self.title,
            "created": self.meta.get("created"),
            "updated": self.meta.get("updated"),
            "tags": self.tags,
            "importance": self.importance,
        }
        for key, value in self.meta.items():
            if key not in data:
                data[key] = value
        data["body"] = self.body
        return data


def _load_front_matter_yaml(front_matter_text: str, path: str) -> Any:
    """The YAML loader's reading of front-matter; its errors become InvalidRecord with a line."""
    import yaml

    try:
        return yaml.load(front_matter_text, Loader=_loader())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = 2 + (mark.line if mark else 0)
        problem = error.problem or "invalid YAML"
        hint = ""
        if "mapping values are not allowed" in problem:
            hint = " (a value containing ': ' must be quoted)"
        raise InvalidRecord(path, line, f"invalid YAML in front-matter: {problem}{hint}") from None
    except yaml.YAMLError as error:
        raise InvalidRecord(path, 2, f"invalid YAML in front-matter: {error}") from None


_IMMUTABLE_TYPES = (str, int, float, bool, type(None), bytes)


def _copy_value(value: Any) -> Any:
    """A copy of a loaded YAML value deep enough that editing one never changes the other."""
    kind = type(value)
    if kind is dict:
        return {key: _copy_value(item) for key, item in value.items()}
    if kind is list:
        return [_copy_value(item) for item in value]
    if kind in _IMMUTABLE_TYPES:
        return value
    import copy

    return copy.deepcopy(value)  # sets, dates and whatever else a YAML tag produced


def _copy_meta(meta: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = _copy_value(meta)
    return copied


def parse_record(data: bytes, path: str) -> Record:
    """Parse a file's bytes into a Record, or raise InvalidRecord naming path and line.

    Only the structure is checked here (front-matter present, a mapping, required fields);
    `schema.problems` checks types and values.
    """
    if not data.strip():
        raise InvalidRecord(
            path, 1, "empty file: a record starts with '---', YAML front-matter, '---'"
        )
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidRecord(
            path,
            1,
            f"file is {len(data):,} bytes, over the {MAX_RECORD_BYTES:,}-byte limit for a record",
        )
    if b"\x00" in data:
        raise InvalidRecord(path, 1, "binary file (contains NUL bytes), not a Markdown record")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InvalidRecord(
            path,
            line,
            f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save the file as UTF-8",
        ) from None
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines[0].endswith("\r\n") else "\n"
    if lines[0].rstrip("\r\n").rstrip() != "---":
        raise InvalidRecord(
            path, 1, "no front-matter: a record starts with a '---' line, then YAML, then '---'"
        )
    closing = next(
        (i for i in range(1, len(lines)) if lines[i].rstrip("\r\n").rstrip() in ("---", "...")),
        None,
    )
    if closing is None:
        raise InvalidRecord(
            path, 1, "the '---' on line 1 opens front-matter that is never closed by another '---'"
        )
    front_matter_text = "".join(lines[1:closing]).replace("\r\n", "\n")
    body = "".join(lines[closing + 1 :])
    if newline == "\r\n":
        body = body.replace("\r\n", "\n")
    try:
        meta = _fast_load(front_matter_text)
    except _Fallback:
        meta = _load_front_matter_yaml(front_matter_text, path)
    if meta is None:
        raise InvalidRecord(
            path, 2, "front-matter is empty: it needs at least id, type, created, updated"
        )
    if not isinstance(meta, dict):
        raise InvalidRecord(
            path,
            2,
            "front-matter is not a mapping of keys to values (is the '---' on line 1 a "
            "Markdown horizontal rule?)",
        )
    for key in meta:
        if not isinstance(key, str):
            raise InvalidRecord(path, 2, f"front-matter key {key!r} is not a string")
    record = Record(
        meta=meta,
        body=body,
        path=path,
        front_matter_text=front_matter_text,
        loaded_meta=_copy_meta(meta),
        newline=newline,
        bom=bom,
    )
    for key in REQUIRED_FIELDS:
        if key not in meta or meta[key] in (None, ""):
            raise InvalidRecord(
                path, closing + 1, f"front-matter is missing required field {key!r}"
            )
    if meta["type"] not in TYPE_FOLDERS:
        raise InvalidRecord(
            path,
            record.line_of("type"),
            f"unknown type {meta['type']!r}; expected one of: {', '.join(RECORD_TYPES)}",
        )
    return record


# --- writing ----------------------------------------------------------------------------------

# Characters safe in a plain (unquoted) YAML scalar, in block and flow context alike.
_PLAIN_STRING = re.compile(r"^[A-Za-z0-9_][\w .'()/@+&?!-]*$", re.UNICODE)
_MAX_FLOW_WIDTH = 80


def _reads_back_as(text: str) -> bool:
    """Whether a plain-looking `text` is read back as that same string (not true, 12, None)."""
    try:
        return bool(_resolve_plain(text) == text)
    except _Fallback:
        return False


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if (
        _PLAIN_STRING.match(text)
        and not text.endswith(" ")
        and ": " not in text
        and " #" not in text
        and _reads_back_as(text)
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (list, dict))


def _flow(value: Any) -> str | None:
    """A one-line flow rendering of a short list/mapping of scalars, or None."""
    if isinstance(value, list) and all(_is_scalar(item) for item in value):
        text = "[" + ", ".join(_scalar(item) for item in value) + "]"
    elif isinstance(value, dict) and all(_is_scalar(item) for item in value.values()):
        text = "{" + ", ".join(f"{_scalar(k)}: {_scalar(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, dict) and all(
        _is_scalar(item) or (isinstance(item, list) and all(map(_is_scalar, item)))
        for item in value.values()
    ):
        parts = []
        for key, item in value.items():
            rendered = _flow(item) if isinstance(item, list) else _scalar(item)
            parts.append(f"{_scalar(key)}: {rendered}")
        text = "{" + ", ".join(parts) + "}"
    else:
        return None
    return text if len(text) <= _MAX_FLOW_WIDTH else None


def dump_key(key: str, value: Any, indent: int = 0) -> list[str]:
    """YAML lines for one key, the way memkit writes it (flow style when short)."""
    pad = " " * indent
    if _is_scalar(value):
        return [f"{pad}{_scalar(key)}: {_scalar(value)}"]
    flow = _flow(value)
    if flow is not None and (len(pad) + len(key) + len(flow) + 2) <= 100:
        return [f"{pad}{_scalar(key)}: {flow}"]
    lines = [f"{pad}{_scalar(key)}:"]
    if isinstance(value, dict):
        for sub_key, sub_value in value.items():
            lines += dump_key(str(sub_key), sub_value, indent + 2)
    else:
        for item in value:
            if _is_scalar(item):
                lines.append(f"{pad}  - {_scalar(item)}")
            else:
                nested = _flow(item)
                if nested is None:
                    nested = json.dumps(item, ensure_ascii=False, default=str)
                lines.append(f"{pad}  - {nested}")
    return lines


def dump_front_matter(meta: dict[str, Any]) -> str:
    ordered = [key for key in LEADING_KEYS if key in meta]
    ordered += [key for key in meta if key not in LEADING_KEYS]
    lines: list[str] = []
    for key in ordered:
        if meta[key] is None:
            continue
        lines += dump_key(key, meta[key])
    return "\n".join(lines) + "\n"


_TOP_LEVEL_KEY = re.compile(r"^(['\"]?)([^\s'\":#][^'\":]*?)\1\s*:(?:\s|$)")


def _inline_comment(line: str) -> str:
    """The trailing `# comment` of a one-line YAML value, if it is safe to spot."""
    if "'" in line or '"' in line:
        return ""
    match = re.search(r"\s+#.*$", line)
    return match.group(0) if match else ""


def edit_front_matter(text: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """Apply the changes from `old` to `new` to a person's front-matter text.

    Only the lines of keys whose values changed are rewritten; comments, blank lines, the
    order of keys and the formatting of untouched keys stay exactly as the person left them.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    # Find each top-level key's block: its line plus following indented / continuation lines.
    blocks: dict[str, tuple[int, int]] = {}
    starts = [
        (i, match.group(2).strip())
        for i, line in enumerate(lines)
        if (match := _TOP_LEVEL_KEY.match(line))
    ]
    for position, (start, key) in enumerate(starts):
        end = starts[position + 1][0] if position + 1 < len(starts) else len(lines)
        # Trailing blank lines and column-0 comments belong to the layout, not to this key.
        while end - 1 > start and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1
        blocks[key] = (start, end)
    replacements: dict[int, tuple[int, list[str]]] = {}
    for key, (start, end) in blocks.items():
        if key not in new:
            replacements[start] = (end, [])
        elif key in old and new[key] == old[key]:
            continue
        else:
            rendered = dump_key(key, new[key])
            comment = _inline_comment(lines[start]) if end - start == 1 else ""
            if comment and len(rendered) == 1:
                rendered[0] += comment
            replacements[start] = (end, rendered)
    output: list[str] = []
    index = 0
    while index < len(lines):
        if index in replacements:
            end, rendered = replacements[index]
            output += rendered
            index = end
        else:
            output.append(lines[index])
            index += 1
    for key, value in new.items():
        if key not in blocks and value is not None:
            output += dump_key(key, value)
    return "\n".join(output) + "\n"


def render_record(record: Record) -> bytes:
    """The file bytes for a record; a record read from disk keeps its formatting."""
    if record.front_matter_text is not None and record.loaded_meta is not None:
        front_matter = edit_front_matter(record.front_matter_text, record.loaded_meta, record.meta)
    else:
        front_matter = dump_front_matter(record.meta)
    body = record.body
    text = f"---\n{front_matter}---\n{body}"
    if record.newline != "\n":
        text = text.replace("\n", record.newline)
    if record.bom:
        text = "\ufeff" + text
    return text.encode("utf-8")
