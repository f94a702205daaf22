"""The record model: Markdown files with YAML front-matter, parsed, checked and written back."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from memkit.errors import InvalidRecord, UsageError
from memkit.yaml_reader import NotFlat, fast_load, front_matter_loader, resolve_plain

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
    # A person's own notes (and any folders memkit.yaml's `notes.folders` lists).
    "note": "notes",
}
REJECTED_FOLDER = "learning/rejected"
NOTES_FOLDER = TYPE_FOLDERS["note"]
RECORD_TYPES = tuple(TYPE_FOLDERS)
# What recall and context search by default: memory, and the notes a person wrote.
MEMORY_TYPES = ("short-term", "long-term", "entity", "episodic", "note")
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
            record_type in ("episodic", "note") and folder.startswith(type_folder + "/")
        ):
            return record_type
    if folder == REJECTED_FOLDER:
        return "proposal"
    return None


def as_list(value: Any, *, split_commas: bool = False) -> list[str]:
    """`tags`/`aliases` as a list: Obsidian writes one value as a plain string (`tags: rust`)
    and reads `tags: a, b` as two tags (an alias may hold a comma: `Smith, John`)."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    if split_commas and not isinstance(value, list):
        items = str(value).split(",")
    return [text for item in items if (text := str(item).strip())]


# Obsidian refuses tags with spaces and tags made only of digits (`#2026`); these are the
# characters it allows (letters and digits of any script, `_ - /`).
_OBSIDIAN_TAG = re.compile(r"^#?[\w/-]+\Z", re.UNICODE)


def tag_warnings(record: Record) -> list[tuple[int, str]]:
    """(line, message) for each tag Obsidian would not accept as a tag."""
    found: list[tuple[int, str]] = []
    for tag in as_list(record.meta.get("tags"), split_commas=True):
        if not _OBSIDIAN_TAG.match(tag):
            found.append(
                (
                    record.line_of("tags"),
                    f"tag {tag!r}: Obsidian does not accept spaces or "
                    "punctuation in a tag (use - or _)",
                )
            )
        elif tag.lstrip("#").isdigit():
            found.append(
                (
                    record.line_of("tags"),
                    f"tag {tag!r}: Obsidian needs a letter in a tag "
                    "(a tag of only digits is not a tag)",
                )
            )
    return found


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
        return as_list(self.meta.get("tags"), split_commas=True)

    @property
    def aliases(self) -> list[str]:
        return as_list(self.meta.get("aliases"))

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
        loaded = yaml.load(front_matter_text, Loader=front_matter_loader())
    except RecursionError:
        raise InvalidRecord(path, 2, "front-matter nests too deep to read") from None
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
    shape = _shape_problem(loaded)
    if shape:
        raise InvalidRecord(path, 2, f"front-matter {shape}")
    return loaded


# Front-matter is a handful of keys; these bounds only stop hostile files (an alias inside its
# own anchor, "billion laughs" aliases, thousands of nested lists) from hanging or crashing
# every command that reads the vault.
MAX_FRONT_MATTER_DEPTH = 32
MAX_FRONT_MATTER_NODES = 10_000


def _shape_problem(value: Any) -> str | None:
    """Why a loaded YAML value is no front-matter memkit can handle, or None."""
    nodes = 0
    # (value, depth, containers on the path to it): iterative, so no recursion limit applies.
    stack: list[tuple[Any, int, frozenset[int]]] = [(value, 0, frozenset())]
    while stack:
        item, depth, ancestors = stack.pop()
        nodes += 1
        if nodes > MAX_FRONT_MATTER_NODES:
            return f"holds more than {MAX_FRONT_MATTER_NODES:,} values (aliases expanding?)"
        if not isinstance(item, (dict, list)):
            continue
        if id(item) in ancestors:
            return "refers to itself (a YAML alias inside its own anchor)"
        if depth >= MAX_FRONT_MATTER_DEPTH:
            return f"nests deeper than {MAX_FRONT_MATTER_DEPTH} levels"
        inner = ancestors | {id(item)}
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1, inner) for child in children)
    return None


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
        meta = fast_load(front_matter_text)
    except NotFlat:
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
    if not isinstance(meta["type"], str):
        # `type: [long-term]` or a mapping: one bad file, never a TypeError for the whole vault.
        raise InvalidRecord(
            path,
            record.line_of("type"),
            f"type must be one word, not {meta['type']!r}; expected one of: "
            f"{', '.join(RECORD_TYPES)}",
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
# `\Z`, not `$`: `$` also matches before a final newline, and "A\n" must be quoted.
_PLAIN_STRING = re.compile(r"^[A-Za-z0-9_][\w .'()/@+&?!-]*\Z", re.UNICODE)
_MAX_FLOW_WIDTH = 80


def _reads_back_as(text: str) -> bool:
    """Whether a plain-looking `text` is read back as that same string (not true, 12, None)."""
    try:
        return bool(resolve_plain(text) == text)
    except NotFlat:
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
    return _UNSAFE_IN_QUOTES.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False)
    )


# Characters a YAML reader refuses (DEL, C1 controls, U+FFFE/FFFF) or reads as a line break
# inside quotes (NEL, U+2028, U+2029), which JSON leaves as they are: escaped as `\uXXXX`,
# which both read back as the character.
_UNSAFE_IN_QUOTES = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


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
