"""Records as people and agents name them (id, path, title, entity name or alias), and listing them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from stat import S_ISREG

from memkit.errors import (
    AmbiguousRef,
    InvalidRecord,
    NoRecordNamed,
    PathOutsideVault,
    RecordNotFound,
    UsageError,
)
from memkit.ids import ULID_PATTERN
from memkit.records import RECORD_TYPES, REJECTED_FOLDER, Record, folder_for_type
from memkit.timeutil import parse_time, parse_when
from memkit.vault import (
    RECORD_ROOTS,
    NotRegularFile,
    Problem,
    Vault,
    is_temporary_name,
    read_regular,
)

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
            data, _stat = read_regular(vault.root, str(vault.safe_path(relpath)))
        except (OSError, PathOutsideVault, NotRegularFile):
            # Vanished while we walked, a symlink leading out, a FIFO (never opened: it would
            # hang): not a record to name; `memkit check` reports the special ones.
            continue
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


_NEVER = datetime.min.replace(tzinfo=timezone.utc)
_FUTURE = datetime.max.replace(tzinfo=timezone.utc)


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
    problems: list[Problem] = field(default_factory=list)  # files looked at that are not records


# `updated: VALUE  # comment` at the top level of the front-matter (quotes stripped after).
_UPDATED_LINE = re.compile(rb"^updated:[ \t]*(.*?)[ \t]*(?:#.*)?$", re.MULTILINE)
_FRONT_MATTER_END = re.compile(rb"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)


def _stamp_of(data: bytes) -> str | None:
    """The `updated` value written in a file's front-matter, read without parsing the file
    (None when it is not simply there: the file is then parsed to find out)."""
    head = data[4:] if data.startswith(b"\xef\xbb\xbf") else data
    if not head.startswith(b"---"):
        return None
    end = _FRONT_MATTER_END.search(head, 3)
    front = head[3 : end.start()] if end else head
    found = _UPDATED_LINE.search(front)
    if found is None:
        return None
    return found.group(1).strip().strip(b"\"'").decode("utf-8", errors="replace")


class StampCache:
    """Each file's `updated` by path, kept while the file's stat is unchanged, so a long-lived
    caller (the MCP server) lists a large vault without reading every file each time."""

    def __init__(self) -> None:
        self._stamps: dict[str, tuple[int, int, int, int, datetime | None]] = {}

    def stamp(self, entry: os.DirEntry[str], relpath: str) -> tuple[bool, datetime | None]:
        """(is a regular file, its `updated` or None when it cannot be read without parsing)."""
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            return False, None
        if not S_ISREG(stat.st_mode):
            return False, None  # a symlink (maybe leading out of the vault) is read the slow way
        # ctime and inode too, as git does: a rewrite within one mtime tick still changes them.
        key = (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)
        known = self._stamps.get(relpath)
        if known is not None and known[:4] == key:
            return True, known[4]
        try:
            with open(entry.path, "rb") as handle:
                text = _stamp_of(handle.read(16384))
        except OSError:
            return False, None
        stamp = parse_time(text) if text is not None else None
        self._stamps[relpath] = (*key, stamp)
        return True, stamp


def _record_files(vault: Vault, types: Iterable[str]) -> Iterator[tuple[os.DirEntry[str], str]]:
    """(entry, vault path) of every file that may be a record of `types` (all when empty): the
    folders and names `Vault.record_paths` takes, walked with scandir (no Path per file)."""
    wanted = set(types)
    folders = sorted({folder_for_type(t) for t in wanted}) if wanted else list(RECORD_ROOTS)
    if "proposal" in wanted:
        folders.append(REJECTED_FOLDER)
    notes = vault.notes_folders
    if not wanted or "note" in wanted:
        folders += [folder for folder in notes if folder not in folders]
    # A person's note may sit at the top of its notes folder; records sit a folder deeper.
    note_prefixes = tuple(folder + "/" for folder in notes)

    def walk(directory: str, relative: str) -> Iterator[tuple[os.DirEntry[str], str]]:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return  # gone, or not a folder
        for entry in entries:
            name = entry.name
            if is_temporary_name(name):
                continue
            relpath = relative + name
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from walk(entry.path, relpath + "/")
                elif name.endswith(".md") and (
                    relpath.count("/") >= 2 or relpath.startswith(note_prefixes)
                ):
                    yield entry, relpath
            except OSError:
                continue  # vanished while we walked

    for folder in folders:
        yield from walk(os.path.join(vault.root, folder), folder + "/")


def _updated(record: Record) -> datetime | None:
    return parse_time(record.meta.get("updated")) or parse_time(record.meta.get("created"))


def _has_tags(record: Record, tags: Iterable[str]) -> bool:
    have = {t.casefold() for t in record.tags}
    return all(t.casefold() in have for t in tags)


def _in_window(when: datetime | None, request: ListRequest) -> bool:
    if request.since is not None and (when is None or when < request.since):
        return False
    return not (request.until is not None and (when is None or when > request.until))


def list_records(
    vault: Vault, request: ListRequest = ListRequest(), stamps: StampCache | None = None
) -> Listing:
    """Records matching `request`, most recently updated first (ties: path, descending).

    Each file's `updated` is read from its front-matter text first (`stamps` keeps it across
    calls); files are then parsed newest first until `limit` records match, so listing the
    recent few parses a few. A file whose `updated` cannot be read that way is parsed.
    """
    stamps = stamps or StampCache()
    candidates: list[tuple[datetime, str]] = []
    for entry, relpath in _record_files(vault, request.types):
        regular, when = stamps.stamp(entry, relpath)
        if regular and when is not None and not _in_window(when, request):
            continue  # the parse would say the same: its `updated` is outside the window
        # Unknown stamps sort first: they are parsed, and placed by what the parse says.
        candidates.append((when or _FUTURE, relpath))
    candidates.sort(reverse=True)
    chosen: list[tuple[datetime, str, Record]] = []
    problems: list[Problem] = []
    for when, relpath in candidates:
        full = request.limit is not None and len(chosen) >= request.limit
        if full and when != _FUTURE and (when, relpath) < (chosen[-1][0], chosen[-1][1]):
            break  # every file left is older than the last one kept
        try:
            record = vault.read_record(relpath)
        except InvalidRecord as error:
            problems.append(Problem(relpath, error.line, error.reason))
            continue
        except (RecordNotFound, PathOutsideVault):
            continue  # vanished while we walked, or a symlink leading out: not ours
        if request.types and record.type not in request.types:
            continue
        if request.tags and not _has_tags(record, request.tags):
            continue
        actual = _updated(record)
        if not _in_window(actual, request):
            continue
        chosen.append((actual or _NEVER, relpath, record))
        chosen.sort(key=lambda item: (item[0], item[1]), reverse=True)
        if request.limit is not None:
            del chosen[request.limit :]
    return Listing(records=[record for _, _, record in chosen], problems=problems)
