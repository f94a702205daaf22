"""YAML for front-matter and memkit.yaml: a fast path for the flat shape people and memkit write,
PyYAML (imported lazily) for everything else, both with the same YAML 1.1 results."""

from __future__ import annotations

import re
from typing import Any

# --- YAML: safe, strict about duplicates, timestamps kept as the strings a person wrote ---------
#
# PyYAML is imported only when the fast path below is not sure (it costs ~15 ms to import).

_front_matter_loader: Any = None


def front_matter_loader() -> Any:
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

    return yaml.load(text, Loader=front_matter_loader())


def load_yaml(text: str) -> Any:
    """YAML `text` as memkit reads it: the fast path when it applies, else the YAML loader."""
    try:
        return fast_load(text)
    except NotFlat:
        return load_yaml_slow(text)


def load_yaml_fast(text: str) -> dict[Any, Any] | None:
    """The mapping in `text` when the fast path is sure of it (what the YAML loader would give);
    None when only the YAML loader can tell."""
    try:
        return fast_load(text)
    except NotFlat:
        return None


# --- a fast path for the front-matter people (and memkit) usually write -------------------------
#
# Top-level `key: value` lines whose values are plain or quoted scalars, one-line flow
# collections, block lists of scalars and indented block mappings of those. The result is exactly
# what the YAML loader gives (YAML 1.1 as PyYAML resolves it, timestamps kept as strings);
# anything else (anchors, tags, block scalars, multi-line values, tabs, duplicate keys, ...)
# raises NotFlat and goes to the YAML loader, which also produces the error messages.


class NotFlat(Exception):
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


def resolve_plain(text: str) -> Any:
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
            raise NotFlat from None  # e.g. `0b_`: PyYAML raises ValueError itself
    return text


def _check_plain_start(text: str, flow: bool) -> None:
    first = text[0]
    # `-5`, `-foo` are plain scalars; `- x` is a list entry, `?`/`:` are left to YAML.
    if first in _PLAIN_BAD_START and (
        first != "-" or len(text) == 1 or text[1] == " " or (flow and text[1] in ",[]{}")
    ):
        raise NotFlat


def _double_quoted(text: str, start: int) -> tuple[str, int]:
    """The string of the double-quoted scalar at text[start] == '"', and the index after it."""
    pieces: list[str] = []
    position = start + 1
    while True:
        match = _DQ_SPECIAL.search(text, position)
        if match is None:
            raise NotFlat  # continues on the next line
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
                raise NotFlat
            code = int(digits, 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise NotFlat
            pieces.append(chr(code))
            position = at + 2 + len(digits)
        else:
            raise NotFlat  # \N, \_, \L, \P, a line continuation, or an invalid escape


def _single_quoted(text: str, start: int) -> tuple[str, int]:
    pieces: list[str] = []
    position = start + 1
    while True:
        at = text.find("'", position)
        if at < 0:
            raise NotFlat
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
            raise NotFlat
        return _flow_collection(text, position, depth + 1)
    match = _FLOW_PLAIN_END.search(text, position)
    end = len(text) if match is None else match.start()
    plain = text[position:end].rstrip(" ")
    if not plain or "#" in plain or ":" in plain or text[end : end + 1] in ("[", "{"):
        raise NotFlat
    _check_plain_start(plain, flow=True)
    return resolve_plain(plain), end


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
                raise NotFlat
            key_text = text[position:colon].rstrip(" ")
            if not key_text or any(c in key_text for c in "#,[]{}\"'"):
                raise NotFlat
            _check_plain_start(key_text, flow=True)
            key = resolve_plain(key_text)
            if key in result:
                raise NotFlat  # a duplicate key: the YAML loader words the error
            value, position = _flow_node(text, _skip_spaces(text, colon + 1), depth)
            result[key] = value
        position = _skip_spaces(text, position)
        char = text[position : position + 1]
        if char == ",":
            position = _skip_spaces(text, position + 1)
        elif char == closing:
            return result, position + 1
        else:
            raise NotFlat


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
                raise NotFlat
        return value
    comment = text.find(" #")
    if comment >= 0:
        text = text[:comment].rstrip(" ")
    if ": " in text or text.endswith(":"):
        raise NotFlat  # YAML reads a mapping here, or an error
    _check_plain_start(text, flow=False)
    return resolve_plain(text)


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
            raise NotFlat  # an empty entry or a nested block
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
            raise NotFlat
        simple = simple_line(content)
        if simple is not None:
            key = resolve_plain(simple.group(1))
            if key in result:
                raise NotFlat  # a duplicate key: the YAML loader words the error
            result[key] = resolve_plain(simple.group(2))
            index += 1
            continue
        match = _FAST_KEY.match(content)
        if match is None:
            raise NotFlat
        key = resolve_plain(match.group(1))
        if key in result:
            raise NotFlat  # a duplicate key: the YAML loader words the error
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
                    raise NotFlat
                result[key], index = _block_node(lines, index, next_indent)
                continue
        result[key] = None
    return result, index


def fast_load(text: str) -> dict[Any, Any]:
    """The front-matter mapping in `text`, or NotFlat when it is not the simple kind."""
    if _FAST_UNSAFE.search(text):
        raise NotFlat
    lines: list[tuple[int, str]] = []
    for line in text.split("\n"):
        content = line.lstrip(" ")
        if content and content[0] != "#":
            lines.append((len(line) - len(content), content.rstrip(" ")))
    if not lines or lines[0][0] != 0:
        raise NotFlat
    meta, index = _block_mapping(lines, 0, 0)
    if index != len(lines):
        raise NotFlat
    return meta
