"""Records as people and agents name them (id, path, title, entity name or alias), and listing them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from memkit.errors import (
    AmbiguousRef,
    InvalidRecord,
    NoRecordNamed,
    PathOutsideVault,
    RecordNotFound,
    UsageError,
)
from memkit.ids import ULID_PATTERN
from memkit.records import RECORD_TYPES, Record
from memkit.timeutil import parse_time, parse_when
from memkit.vault import Problem, Vault

_WORD = re.compile(r"\w+", re.UNICODE)


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith(".md")


def names_of(record: Record) -> list[str]:
    """What a record may be called: its title, and for an entity its name and aliases."""
    names = [record.title]
    if record.type == "entity":
        names.append(str(record.meta.get("name") or ""))
        aliases = record.meta.get("aliases") or []
        # Obsidian writes a single alias as a plain string.
        names += [str(a) for a in aliases] if isinstance(aliases, list) else [str(aliases)]
    return [name.strip() for name in names if name and name.strip()]


def _may_name(data: bytes, words: list[str]) -> bool:
    """Cheap filter before parsing: every word of the name appears somewhere in the file.

    A title, name or alias is written in the file itself (quoting changes its punctuation, not
    its words), so a file missing one of the words cannot be called that.
    """
    text = data.decode("utf-8", errors="replace").casefold()
    return all(word in text for word in words)


def records_named(vault: Vault, name: str) -> list[Record]:
    """Every record whose title, or entity name or alias, is `name` (case-insensitive)."""
    wanted = " ".join(name.split()).casefold()
    words = _WORD.findall(wanted)
    found: list[Record] = []
    for relpath in vault.record_paths():
        try:
            full = vault.safe_path(relpath)
            data = full.read_bytes()
        except (OSError, PathOutsideVault):
            continue  # vanished while we walked, or a symlink leading out: not ours
        if not _may_name(data, words):
            continue
        try:
            record = vault.read_record(relpath)
        except (InvalidRecord, RecordNotFound, PathOutsideVault):
            continue  # `memkit check` reports files that are not records
        if any(" ".join(n.split()).casefold() == wanted for n in names_of(record)):
            found.append(record)
    return found


def find_record(vault: Vault, ref: str, cwd: Path | None = None) -> Record:
    """The record `ref` names: an id, a vault path (or a file path), a title, or an entity's
    name or alias, case-insensitive. A title several records share raises AmbiguousRef."""
    text = ref.strip()
    if not text:
        raise UsageError("give a record id, path, title or entity name")
    # An id or a path is exact and cheap; a title is looked for only when neither matches.
    if ULID_PATTERN.match(text.upper()) or _looks_like_path(text):
        try:
            return vault.get(text.upper() if ULID_PATTERN.match(text.upper()) else text, cwd)
        except RecordNotFound:
            pass  # "CI/CD notes" looks like a path but may be a title
    matches = records_named(vault, text)
    if not matches:
        raise NoRecordNamed(text)
    if len(matches) > 1:
        raise AmbiguousRef(text, [(r.id, str(r.path), r.title) for r in matches])
    return matches[0]


def resolve_ref(vault: Vault, ref: str, cwd: Path | None = None) -> str:
    """The vault-relative path of the record `ref` names (see `find_record`)."""
    path = find_record(vault, ref, cwd).path
    assert path is not None
    return path


def parse_moment(value: str | None, name: str) -> datetime | None:
    """A WHEN as people and agents type it (2026-11-01, 2026-11-01T09:00Z, today, 7d), or None."""
    if value is None or not value.strip():
        return None
    moment = parse_when(value)
    if moment is None:
        raise UsageError(
            f"{name}: {value!r} is not a date (try 2026-11-01, 2026-11-01T09:00Z, today, 7d)"
        )
    return moment


# --- listing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListRequest:
    """Which records `list_records` returns: filters (all must hold), then the newest `limit`."""

    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # a record must carry every one of them
    since: datetime | None = None  # `updated` on or after
    until: datetime | None = None  # `updated` on or before
    limit: int | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in RECORD_TYPES]
        if unknown:
            raise UsageError(f"unknown type {unknown[0]!r}; choose from {', '.join(RECORD_TYPES)}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"limit must be at least 1, got {self.limit}")


@dataclass
class Listing:
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # files skipped: not valid records
    total: int = 0  # how many matched before the limit


_NEVER = datetime.min.replace(tzinfo=timezone.utc)


def _updated(record: Record) -> datetime | None:
    return parse_time(record.meta.get("updated")) or parse_time(record.meta.get("created"))


def _has_tags(record: Record, tags: Iterable[str]) -> bool:
    have = {t.casefold() for t in record.tags}
    return all(t.casefold() in have for t in tags)


def list_records(vault: Vault, request: ListRequest = ListRequest()) -> Listing:
    """Records matching `request`, newest `updated` first (ties: newest id first)."""
    scanned = vault.scan(request.types or None)
    chosen: list[tuple[datetime | None, Record]] = []
    for record in scanned.records:
        if request.tags and not _has_tags(record, request.tags):
            continue
        when = _updated(record)
        if request.since is not None and (when is None or when < request.since):
            continue
        if request.until is not None and (when is None or when > request.until):
            continue
        chosen.append((when, record))
    # Records without a readable time go last rather than vanish.
    chosen.sort(key=lambda pair: (pair[0] or _NEVER, pair[1].id), reverse=True)
    records = [record for _, record in chosen]
    limited = records[: request.limit] if request.limit is not None else records
    return Listing(records=limited, problems=scanned.problems, total=len(records))
