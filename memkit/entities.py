"""Entity memory: one file per person, place or thing, found by name or alias, merged on upsert."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from memkit import ids
from memkit.errors import ConflictError, UsageError
from memkit.records import Record
from memkit.secret_guard import check_text
from memkit.timeutil import utcnow
from memkit.vault import Vault

ENTITY_FOLDER = "memory/entities"
RELATIONS = "## Relations"
OBSERVATIONS = "## Observations"
HISTORY = "## History"


def parse_value(text: str) -> Any:
    """`--set age=41` gives 41, `--set remote=true` gives True, anything else stays text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text.strip()):
        return float(text)
    return text.strip()


def split_pair(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise UsageError(f"{what} must look like KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _section_add(body: str, heading: str, line: str) -> str:
    """Append a bullet line at the end of a `## Heading` section, creating it if needed."""
    lines = body.rstrip("\n").split("\n") if body.strip() else []
    try:
        start = next(i for i, existing in enumerate(lines) if existing.strip() == heading)
    except StopIteration:
        if lines:
            lines.append("")
        lines += [heading, "", line]
        return "\n".join(lines) + "\n"
    end = start + 1
    while end < len(lines) and not lines[end].startswith("## "):
        end += 1
    insert_at = end
    while insert_at > start + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1
    lines.insert(insert_at, line)
    return "\n".join(lines) + "\n"


def _has_relation(body: str, relation: str, other: str) -> bool:
    pattern = re.compile(
        rf"^-\s*{re.escape(relation)}\s*:\s*\[\[{re.escape(other)}\]\]\s*$",
        re.IGNORECASE | re.MULTILINE,
    )
    return pattern.search(body) is not None


def _add_relations_and_note(
    body: str, relations: list[tuple[str, str]], note: str | None, today: str, changes: list[str]
) -> str:
    """The body with new `[[relations]]` (never duplicated) and a dated note appended."""
    for relation, other in relations:
        if not _has_relation(body, relation, other):
            body = _section_add(body, RELATIONS, f"- {relation}: [[{other}]]")
            changes.append(f"{relation}: [[{other}]]")
    if note:
        body = _section_add(body, OBSERVATIONS, f"- {today}: {note.strip()}")
        changes.append("noted")
    return body


@dataclass
class EntityChange:
    record: Record
    created: bool = False
    changes: list[str] = field(default_factory=list)


class Entities:
    """People, places, organisations, projects, things: `memory/entities/<Name>.md`."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def all(self) -> list[Record]:
        return self.vault.scan(["entity"]).records

    def find(self, name: str) -> Record | None:
        """The entity whose name or any alias matches, case-insensitively."""
        wanted = name.strip().casefold()
        for record in self.all():
            names = [record.meta.get("name", ""), *record.aliases]
            if any(str(n).strip().casefold() == wanted for n in names):
                return record
        return None

    def upsert(
        self,
        name: str,
        *,
        kind: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        aliases: Iterable[str] = (),
        relations: Iterable[tuple[str, str]] = (),
        note: str | None = None,
        allow_secrets: bool = False,
    ) -> EntityChange:
        """Create or update an entity: attributes merged (old values kept in the body's history),
        relations as `[[Other]]` links never duplicated, notes appended with today's date."""
        name = name.strip()
        if not name:
            raise UsageError("an entity needs a name")
        attributes = dict(attributes or {})
        check_text(
            " ".join([note or "", *map(str, attributes.values())]), allow_secrets=allow_secrets
        )
        today = utcnow().date().isoformat()
        for _attempt in range(3):
            with self.vault.write_lock():
                record = self.find(name)
                try:
                    if record is None:
                        return self._create(
                            name,
                            kind,
                            attributes,
                            list(aliases),
                            list(relations),
                            note,
                            today,
                            allow_secrets,
                        )
                    return self._merge(
                        record,
                        kind,
                        attributes,
                        list(aliases),
                        list(relations),
                        note,
                        today,
                        allow_secrets,
                    )
                except ConflictError:
                    continue  # a person saved the file meanwhile: merge into their version
        raise ConflictError(f"{ENTITY_FOLDER}/{ids.entity_stem(name)}.md", "it kept changing")

    def _relpath_for(self, name: str) -> str:
        """`memory/entities/<Name>.md`: Obsidian resolves `[[Name]]` by file name. A name
        another file already has, as a case-insensitive file system compares names, gets
        ` 2`, ` 3`... (the link then needs the suffix; the id stays the identity)."""
        return f"{ENTITY_FOLDER}/{self.free_stem(ids.entity_stem(name))}.md"

    def free_stem(self, stem: str, exclude: str | None = None) -> str:
        """`stem`, or `stem 2`, `stem 3`... whichever no other entity file uses."""
        folder = self.vault.safe_path(ENTITY_FOLDER)
        try:
            taken = {
                ids.name_key(entry.name)
                for entry in os.scandir(folder)
                if f"{ENTITY_FOLDER}/{entry.name}" != exclude
            }
        except FileNotFoundError:
            taken = set()
        candidate, number = stem, 2
        while ids.name_key(f"{candidate}.md") in taken:
            candidate = f"{stem} {number}"
            number += 1
        return candidate

    def _create(
        self,
        name: str,
        kind: str | None,
        attributes: dict[str, Any],
        aliases: list[str],
        relations: list[tuple[str, str]],
        note: str | None,
        today: str,
        allow_secrets: bool,
    ) -> EntityChange:
        changes = [f"created {name}"]
        body = _add_relations_and_note(f"# {name}\n", relations, note, today, changes)
        extra: dict[str, Any] = {"name": name, "kind": kind or "thing"}
        if aliases:
            extra["aliases"] = list(dict.fromkeys(aliases))
        if attributes:
            extra["attributes"] = attributes
        record = self.vault.create(
            "entity",
            body,
            title=name,
            extra=extra,
            relpath=self._relpath_for(name),
            allow_secrets=allow_secrets,
        )
        return EntityChange(record, created=True, changes=changes)

    def _merge(
        self,
        record: Record,
        kind: str | None,
        attributes: dict[str, Any],
        aliases: list[str],
        relations: list[tuple[str, str]],
        note: str | None,
        today: str,
        allow_secrets: bool,
    ) -> EntityChange:
        meta, body = record.meta, record.body
        changes: list[str] = []
        if kind and meta.get("kind") != kind:
            changes.append(f"kind: {meta.get('kind')} -> {kind}")
            meta["kind"] = kind
        current = dict(meta.get("attributes") or {})
        for key, value in attributes.items():
            if key in current and current[key] == value:
                continue
            if key in current:
                body = _section_add(
                    body, HISTORY, f"- {today}: {key} changed from {current[key]!r} to {value!r}"
                )
            changes.append(f"{key} = {value!r}")
            current[key] = value
        if current != (meta.get("attributes") or {}):
            meta["attributes"] = current
        known = record.aliases
        folded = {a.casefold() for a in known} | {str(meta.get("name", "")).casefold()}
        new_aliases = [a for a in dict.fromkeys(aliases) if a.casefold() not in folded]
        if new_aliases:
            meta["aliases"] = known + new_aliases
            changes.append("aliases: " + ", ".join(new_aliases))
        body = _add_relations_and_note(body, relations, note, today, changes)
        if not changes:
            return EntityChange(record, changes=[])
        record.body = body
        # The new parts were checked above; the rest is what the file already held.
        return EntityChange(self.vault.update(record, allow_secrets=True), changes=changes)
