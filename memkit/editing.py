"""Editing a record in place: append to or replace its body, set front-matter fields, retitle it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memkit.browse import find_record
from memkit.errors import ConflictError, UsageError
from memkit.records import Record
from memkit.secret_guard import check_text
from memkit.timeutil import parse_time
from memkit.vault import Vault
from memkit.yaml_reader import load_yaml_fast

# Kept by memkit: an id and a type are the record's identity and place, `created` its history,
# `updated` is stamped by every write (and is what `expected_updated` compares).
MANAGED_KEYS = ("id", "type", "created", "updated")


@dataclass(frozen=True)
class RecordEdit:
    """One edit of a record: what changes, and the `updated` stamp of the copy it was made on."""

    append: str | None = None  # text added after the body, as its own paragraph
    body: str | None = None  # the new body, replacing the old
    fields: Mapping[str, Any] = field(default_factory=dict)  # front-matter; None removes a key
    title: str | None = None
    # The `updated` value of the copy the editor read: when the file's differs, someone edited
    # it since, and the edit is refused instead of overwriting theirs.
    expected_updated: str | None = None
    # The SHA-256 of the file the editor read, when it knows it: catches a person's edit that
    # left `updated` alone (an editor does not stamp it), which `expected_updated` cannot see.
    expected_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.append is not None and self.body is not None:
            raise UsageError("give either text to append or a new body, not both")
        if self.append is None and self.body is None and not self.fields and self.title is None:
            raise UsageError(
                "nothing to change: give text to append, a body, fields to set or a title"
            )
        for key in self.fields:
            if not isinstance(key, str) or not key.strip():
                raise UsageError(f"a front-matter field needs a name, got {key!r}")
            if key in MANAGED_KEYS:
                raise UsageError(
                    f"{key!r} is kept by memkit and cannot be set "
                    f"(memkit keeps {', '.join(MANAGED_KEYS)} itself)"
                )
        if "title" in self.fields and self.title is not None:
            raise UsageError("give the title once: as the title or as the field 'title'")
        if self.title is not None and not self.title.strip():
            raise UsageError("a title cannot be empty")
        for text in (self.append, self.body):
            if text is not None and "\x00" in text:
                raise UsageError("the text contains NUL bytes; a record is Markdown text")


def parse_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` as a front-matter field, VALUE read as YAML would read it in the file:
    `0.8` a number, `[a, b]` a list, `"yes"` a string; an empty VALUE removes the field."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"a field to set must look like KEY=VALUE, got {text!r}")
    value = value.strip()
    if not value:
        return key, None
    # Only the flat YAML the fast path is sure of; anything else is kept as the text given.
    loaded = load_yaml_fast(f"value: {value}\n")
    return key, loaded["value"] if loaded is not None and "value" in loaded else value


def _same_time(written: Any, expected: str) -> bool:
    if str(written) == expected.strip():
        return True
    a, b = parse_time(written), parse_time(expected)
    return a is not None and a == b


def _appended(body: str, text: str) -> str:
    text = text.strip("\n")
    if not body.strip():
        return text + "\n"
    return body.rstrip("\n") + "\n\n" + text + "\n"


def _checked_text(edit: RecordEdit) -> str:
    """Everything new an edit writes, for the secret guard (the body is also checked on write)."""
    parts = [edit.title or "", edit.append or "", edit.body or ""]
    parts += [
        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        for value in edit.fields.values()
    ]
    return "\n".join(parts)


def update_record(
    vault: Vault,
    ref: str,
    edit: RecordEdit,
    *,
    cwd: Path | None = None,
    allow_secrets: bool = False,
) -> Record:
    """Apply `edit` to the record `ref` names (id, path, title, entity name) and return it as
    written. The write is the vault's safe one: schema-checked, atomic, refused (ConflictError)
    when the file changed since it was read or since the copy `expected_updated` describes."""
    check_text(_checked_text(edit), allow_secrets=allow_secrets)
    record = find_record(vault, ref, cwd)
    assert record.path is not None
    if edit.expected_updated is not None:
        written = record.meta.get("updated")
        if not _same_time(written, edit.expected_updated):
            raise ConflictError(
                record.path,
                f"it was updated at {written}, after the copy you edited "
                f"(updated {edit.expected_updated})",
            )
    if (
        edit.expected_sha256 is not None
        and record.fingerprint is not None
        and record.fingerprint[2] != edit.expected_sha256
    ):
        raise ConflictError(record.path, "it was edited since the copy you edited was read")
    for key, value in edit.fields.items():
        if value is None:
            record.meta.pop(key, None)
        else:
            record.meta[key] = value
    if edit.title is not None:
        record.meta["title"] = edit.title.strip()
    if edit.body is not None:
        record.body = edit.body if edit.body.endswith("\n") else edit.body + "\n"
    if edit.append is not None:
        record.body = _appended(record.body, edit.append)
    return vault.update(record, allow_secrets=allow_secrets)
