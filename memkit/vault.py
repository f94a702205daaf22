"""The vault on disk: finding it, its layout, and the only code that writes record files."""

from __future__ import annotations

import contextlib
import os
import stat as stat_module
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from memkit import ids, locking, schema
from memkit.errors import (
    ConflictError,
    InvalidRecord,
    LockTimeout,
    MemkitError,
    PathOutsideVault,
    RecordNotFound,
    UsageError,
    VaultError,
    VaultNotFound,
    storage_error,
)
from memkit.files import CONFLICT_COPY as CONFLICT_COPY
from memkit.files import RECORD_ROOTS as RECORD_ROOTS
from memkit.files import FileStat as FileStat
from memkit.files import NotRegularFile as NotRegularFile
from memkit.files import PendingWrites as PendingWrites
from memkit.files import TouchedPaths as TouchedPaths
from memkit.files import (
    VaultFiles,
    _fsync_folder,
    _read_regular,
    _reported,
    _same_file,
    _sync_file_system,
    written_record,
)
from memkit.files import conflict_copy_of as conflict_copy_of
from memkit.files import fingerprint_bytes as fingerprint_bytes
from memkit.files import is_record_path as is_record_path
from memkit.files import is_temporary_name as is_temporary_name
from memkit.files import read_regular as read_regular
from memkit.files import walk_record_files as walk_record_files
from memkit.records import (
    NOTES_FOLDER,
    REJECTED_FOLDER,
    TYPE_FOLDERS,
    Record,
    folder_for_type,
    parse_record,
    render_record,
    type_for_folder,
)
from memkit.secret_guard import check_new_values
from memkit.settings import DEFAULT_SETTINGS_TEXT, SETTINGS_FILE, Settings, load_settings
from memkit.timeutil import now_iso

STATE_DIR = ".memkit"
GITIGNORE_TEXT = "# memkit's derived state (search index, manifest, locks): rebuilt by `memkit reindex`\n.memkit/\n"


def find_vault_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding memkit.yaml."""
    current = start.resolve()
    for folder in (current, *current.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder
    raise VaultNotFound(start)


@dataclass
class Problem:
    """One thing wrong with one file, as `path:line: message`."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "message": self.message}


@dataclass
class ScanResult:
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class Vault(VaultFiles):
    """A memkit vault rooted at a folder holding memkit.yaml."""

    def __init__(self, root: Path, settings: Settings | None = None) -> None:
        root = Path(root)
        if not (root / SETTINGS_FILE).is_file():
            raise VaultNotFound(root)
        self.root = root.resolve()
        self.settings = settings if settings is not None else load_settings(self.root)
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_file: Any = None
        # Vault-relative paths this object created, changed, moved or deleted: what an
        # autocommit commits (and nothing else).
        self.touched: TouchedPaths = TouchedPaths()
        # The writes of a `batch()` waiting for its durability barrier (None outside one).
        self._pending: PendingWrites | None = None

    def __repr__(self) -> str:
        return f"Vault({str(self.root)!r})"

    # --- creating and finding ------------------------------------------------------------

    @classmethod
    def init(cls, path: Path) -> Vault:
        """Create the vault layout at `path` (idempotent: existing files are left alone)."""
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise VaultError(f"{root}: exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        for folder in (*TYPE_FOLDERS.values(), REJECTED_FOLDER):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / STATE_DIR).mkdir(exist_ok=True)
        settings_file = root / SETTINGS_FILE
        if not settings_file.exists():
            settings_file.write_text(DEFAULT_SETTINGS_TEXT, "utf-8")
        gitignore = root / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text(GITIGNORE_TEXT, "utf-8")
        elif ".memkit/" not in gitignore.read_text("utf-8", errors="replace").split():
            with gitignore.open("a", encoding="utf-8") as handle:
                handle.write("\n" + GITIGNORE_TEXT)
        return cls(root)

    @property
    def state_dir(self) -> Path:
        path = self.root / STATE_DIR
        path.mkdir(exist_ok=True)
        return path

    def relpath(self, path: Path | str) -> str:
        """The vault-relative POSIX path of a file inside the vault (symlinks resolved)."""
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
        try:
            return resolved.relative_to(self.root).as_posix()
        except ValueError:
            raise PathOutsideVault(path, self.root) from None

    # --- locking ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def write_lock(self, timeout: float = 30.0) -> Iterator[None]:
        """One memkit writer at a time across processes; re-entrant within a process. Waiters
        wait in the kernel and are woken at every hand-over (`locking.acquire`)."""
        with self._thread_lock:
            if self._lock_depth == 0:
                lock_path = self.state_dir / "locks" / "write.lock"
                try:
                    held = locking.acquire(lock_path, timeout)
                except OSError as error:
                    error.filename = error.filename or str(lock_path)
                    raise storage_error(error, "lock the vault") from None
                if held is None:
                    raise LockTimeout(
                        f"another memkit process kept the vault {self.root} locked for "
                        f"{timeout:g} s; try again when it has finished"
                    )
                self._lock_file = held
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    self._lock_file.release()
                    self._lock_file = None

    # --- reading ---------------------------------------------------------------------------

    @property
    def notes_folders(self) -> tuple[str, ...]:
        """`notes/` and the folders memkit.yaml's `notes.folders` lists (vault-relative)."""
        return (NOTES_FOLDER, *self.settings.notes.folders)

    def record_paths(self, types: Iterable[str] | None = None) -> Iterator[str]:
        """Vault-relative paths of every file that may be a record, in sorted order (special
        files too: reading one raises InvalidRecord, so it becomes a per-file problem)."""
        self.flush()  # a batch's waiting writes are on disk before anyone walks
        wanted = set(types) if types else None
        folders = sorted({folder_for_type(t) for t in wanted}) if wanted else list(RECORD_ROOTS)
        if wanted and "proposal" in wanted:
            folders.append(REJECTED_FOLDER)
        # A person's notes may sit at the top of a notes folder: walked as such.
        notes = [f for f in self.notes_folders if wanted is None or "note" in wanted]
        folders = [f for f in folders if f not in notes]
        yield from sorted(walk_record_files(self.root, folders, notes))

    def read_record(self, relpath: str) -> Record:
        """Parse one file; raises InvalidRecord (path:line) when it is not a valid record."""
        self.flush(relpath)
        full = self.safe_path(relpath)
        try:
            data, stat = read_regular(self.root, str(full))
        except (FileNotFoundError, NotADirectoryError):
            raise RecordNotFound(relpath) from None
        except NotRegularFile as error:
            raise InvalidRecord(relpath, 1, str(error)) from None
        record = parse_record(data, relpath)
        record.fingerprint = fingerprint_bytes(data, stat)
        return record

    def scan(self, types: Iterable[str] | None = None) -> ScanResult:
        """Every record of the given types; files that do not parse become problems."""
        wanted = set(types) if types else None
        result = ScanResult()
        for relpath in self.record_paths(wanted):
            try:
                record = self.read_record(relpath)
            except InvalidRecord as error:
                result.problems.append(Problem(error.path, error.line, error.reason))
                continue
            except (RecordNotFound, PathOutsideVault):
                continue  # vanished while we walked, or a symlink leading out: not ours
            if wanted is None or record.type in wanted:
                result.records.append(record)
        return result

    def _find_by_id(self, record_id: str) -> str | None:
        self.flush()
        # Fast path: memkit's file names end with the id's last characters.
        suffix = ids.id_suffix(record_id)
        for root in RECORD_ROOTS:
            for candidate in sorted((self.root / root).rglob(f"*-{suffix}.md")):
                relpath = self.relpath_fast(candidate)
                with contextlib.suppress(InvalidRecord, RecordNotFound, PathOutsideVault):
                    if self.read_record(relpath).id == record_id:
                        return relpath
        # Slow path: a person renamed the file, or it is an entity/episodic file.
        for relpath in self.record_paths():
            try:
                # Never `open` a path the walk found: it may be a FIFO (which would hang).
                data, _stat = read_regular(self.root, str(self.safe_path(relpath)))
            except (OSError, NotRegularFile, PathOutsideVault, InvalidRecord):
                continue
            if record_id.encode() not in data[:4096]:
                continue
            with contextlib.suppress(InvalidRecord, RecordNotFound, PathOutsideVault):
                if self.read_record(relpath).id == record_id:
                    return relpath
        return None

    def resolve(self, ref: str, cwd: Path | None = None) -> str:
        """The vault-relative path of a record given by id, vault-relative path or file path."""
        ref = ref.strip()
        if not ref:
            raise UsageError("give a record id or a path")
        looks_like_path = "/" in ref or "\\" in ref or ref.endswith(".md")
        if looks_like_path:
            as_path = Path(ref)
            if as_path.is_absolute():
                return self.relpath(as_path)
            if cwd is not None and (cwd / as_path).exists():
                return self.relpath(cwd / as_path)
            full = self.safe_path(ref)
            if full.exists():
                return self.relpath(full)
            raise RecordNotFound(ref)
        found = self._find_by_id(ref)
        if found is None:
            raise RecordNotFound(ref)
        return found

    def get(self, ref: str, cwd: Path | None = None) -> Record:
        return self.read_record(self.resolve(ref, cwd))

    # --- writing ---------------------------------------------------------------------------
    # How a write never loses a person's save: the take-aside machinery in memkit/files.py.

    def _validate_for_write(self, record: Record, *, allow_secrets: bool = False) -> None:
        if not allow_secrets:
            # Every string that reaches the file passes the secret guard, whoever the caller;
            # a rewrite (read from disk, so fingerprinted) is checked for what it adds.
            before = None
            if record.fingerprint is not None and record.path is not None:
                with contextlib.suppress(MemkitError, OSError):
                    before = self.read_record(record.path)
            check_new_values(
                record.meta,
                record.body,
                file_name=PurePosixPath(record.path or "").name if before is None else "",
                old_meta=None if before is None else before.meta,
                old_body=None if before is None else before.body,
            )
        found = schema.problems(record)
        if found:
            line, message = found[0]
            raise InvalidRecord(record.path or record.type, line, f"refused to write: {message}")

    def create(
        self,
        record_type: str,
        body: str,
        *,
        title: str | None = None,
        tags: Iterable[str] = (),
        importance: float | None = None,
        source: Any = None,
        extra: dict[str, Any] | None = None,
        relpath: str | None = None,
        allow_secrets: bool = False,
        record_id: str | None = None,
        created: str | None = None,
    ) -> Record:
        """Write a new record file and return it. Never overwrites an existing file."""
        folder = folder_for_type(record_type)
        if "\x00" in body:
            raise UsageError("the text contains NUL bytes; a record is Markdown text")
        stamp = created or now_iso()
        meta: dict[str, Any] = {
            "id": record_id or ids.new_id(),
            "type": record_type,
            "title": title or None,
            "created": stamp,
            "updated": stamp,
            "tags": sorted(dict.fromkeys(tags)) or None,
            "importance": importance,
            "source": source,
        }
        for key, value in (extra or {}).items():
            meta[key] = value
        meta = {key: value for key, value in meta.items() if value is not None}
        if not body.endswith("\n"):
            body += "\n"
        record = Record(meta=meta, body=body)
        if relpath is None:
            relpath = f"{folder}/{ids.file_stem(title or body, meta['id'])}.md"
        record.path = relpath
        self._validate_for_write(record, allow_secrets=allow_secrets)
        full = self.safe_path(relpath)
        data = render_record(record)
        with self.write_lock(), _reported("write", relpath):
            pending = self._pending
            if pending is not None:
                # In a batch: the bytes now, the name once they are durable (see `batch`).
                if relpath in pending.creates or os.path.lexists(full):
                    raise VaultError(f"{relpath}: a file with this name already exists")
                temp, stat = self._new_temp(full, data, durable=False)
                pending.creates[relpath] = (full, temp)
            else:
                try:
                    stat = self._write_bytes(full, data, exclusive=True)
                except FileExistsError:
                    raise VaultError(f"{relpath}: a file with this name already exists") from None
                self.touched.add(relpath)
        return written_record(data, relpath, stat)

    def _check_unchanged(self, record: Record) -> Path:
        """The record's file, if it still holds what was read (a cheap early refusal; the
        decisive check is made on the file taken aside, see `_take_aside`)."""
        return self._unchanged_stat(record)[0]

    def _unchanged_stat(self, record: Record) -> tuple[Path, os.stat_result]:
        assert record.path is not None
        full = self.safe_path(record.path)
        if record.fingerprint is None:
            raise ConflictError(record.path, "the record was not read from disk")
        try:
            data, stat = _read_regular(full)
        except FileNotFoundError:
            raise ConflictError(record.path, "it was deleted") from None
        if fingerprint_bytes(data, stat)[1:] != record.fingerprint[1:]:
            raise ConflictError(record.path)
        return full, stat

    def update(self, record: Record, *, touch: bool = True, allow_secrets: bool = False) -> Record:
        """Rewrite a record read earlier, refusing if its file changed since it was read."""
        if record.path is None:
            raise UsageError("this record was never written; use create()")
        if touch:
            record.meta["updated"] = now_iso()
        self._validate_for_write(record, allow_secrets=allow_secrets)
        relpath = record.path
        data = render_record(record)
        # In a batch an update is made durable at once, as outside one (it replaces a person's
        # file); the batch's waiting writes go first, so that they keep their order.
        self.flush()
        with self.write_lock(), _reported("write", relpath):
            full, checked = self._unchanged_stat(record)
            temp, stat = self._new_temp(full, data, stat_module.S_IMODE(checked.st_mode))
            try:
                # From the rename until the link the name is missing (a reader sees "no such
                # file" for those microseconds). memkit's version is never visible before the
                # old file is known to be the one checked: a person must never base a save on a
                # version that is then undone. The inode, size and mtime just checked say so
                # without reading the file again inside the gap; the content is compared after.
                aside = self._rename_aside(record, full)
                before = os.stat(aside)
                if _same_file(before, checked):
                    try:
                        os.link(temp, full)
                    except FileExistsError:
                        # A save created the name in the gap: theirs stays, ours is not
                        # written, and the version before it is kept beside it.
                        copy = self._keep_aside(aside, relpath)
                        raise ConflictError(relpath, kept=copy) from None
                    except BaseException:
                        self._put_back(aside, full, relpath)
                        raise
                else:
                    # A save landed between the check and the rename: it goes back untouched.
                    raise ConflictError(relpath, kept=self._put_back(aside, full, relpath))
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            _fsync_folder(full.parent)
            self.touched.add(relpath)
            kept = self._release_aside(aside, before, relpath, record.fingerprint)
            if kept is not None:
                raise ConflictError(relpath, "an append to the old file", kept=kept, written=True)
        return written_record(data, relpath, stat)

    def replace_files(self, changes: Iterable[tuple[str, bytes, bytes]]) -> list[ConflictError]:
        """Atomically replace files that are not records yet (`memkit adopt`): each of
        (relpath, expected bytes, new bytes) is refused, and its ConflictError returned, when
        the file no longer holds the expected bytes (a person saved it meanwhile).

        As durable as `_write_bytes` (every file's data is on disk before its rename, and the
        renames are synced), but the temp files are written first and synced together with one
        `syncfs` (Linux), instead of an fsync, i.e. a journal commit, per file and folder
        (1,000 notes: ~0.1 s instead of ~4-8 s on ext4). A file keeps its permissions."""
        refused: list[ConflictError] = []
        pending: list[tuple[str, Path, bytes, str]] = []
        self.flush()
        with self.write_lock():
            try:
                for relpath, expected, data in changes:
                    full = self.safe_path(relpath)
                    fd, temp = tempfile.mkstemp(
                        prefix=f".{full.name}.", suffix=".tmp", dir=full.parent
                    )
                    pending.append((relpath, full, expected, temp))
                    with os.fdopen(fd, "wb") as handle:
                        with contextlib.suppress(OSError):
                            os.fchmod(handle.fileno(), full.stat().st_mode & 0o7777)
                        handle.write(data)
                _sync_file_system(self.root, [temp for *_rest, temp in pending])
                folders: set[Path] = set()
                for relpath, full, expected, temp in pending:
                    # The same take-aside dance as `update`: the file is renamed to a private
                    # name, then compared, so a save landing at any moment is never replaced.
                    error = self._swap_in(relpath, full, expected, Path(temp))
                    if error is not None:
                        refused.append(error)
                        continue
                    self.touched.add(relpath)
                    folders.add(full.parent)
            finally:
                for _relpath, _full, _expected, temp in pending:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp)
            if folders:
                _sync_file_system(self.root, [str(folder) for folder in folders])
        return refused

    def move(self, record: Record, new_relpath: str) -> Record:
        """Move a record's file (keeping its id), refusing to overwrite or to lose an edit."""
        if record.path is None:
            raise UsageError("this record was never written")
        relpath = record.path
        target = self.safe_path(new_relpath)
        self.flush()
        with self.write_lock(), _reported("move", relpath):
            source = self._check_unchanged(record)
            target.parent.mkdir(parents=True, exist_ok=True)
            aside, _ = self._take_aside(record, source)
            try:
                # The same inode under the new name: an append landing now is moved with it.
                os.link(aside, target)
            except BaseException as error:
                kept = self._put_back(aside, source, relpath)
                if isinstance(error, FileExistsError):
                    raise VaultError(
                        f"{new_relpath}: a file with this name already exists"
                        + (f"; {relpath} changed meanwhile and is kept in {kept}" if kept else "")
                    ) from None
                raise
            os.unlink(aside)
            _fsync_folder(source.parent)
            _fsync_folder(target.parent)
            self.touched.update((relpath, new_relpath))
        record.path = new_relpath
        return self.read_record(new_relpath)

    def delete(self, ref: str | Record, cwd: Path | None = None) -> Record:
        """Delete a record's file (git keeps its history) and return what was deleted."""
        record = ref if isinstance(ref, Record) else self.get(ref, cwd)
        assert record.path is not None
        relpath = record.path
        self.flush(relpath)
        with self.write_lock(), _reported("delete", relpath):
            full = self._check_unchanged(record)
            if self._pending is not None:
                # In a batch: checked now (a changed file is refused here, as outside one),
                # deleted once the batch's new files are durable, checked again then.
                self._pending.deletes[relpath] = (record, full)
                return record
            aside, before = self._take_aside(record, full)
            kept = self._release_aside(aside, before, relpath)
            _fsync_folder(full.parent)
            self.touched.add(relpath)
            if kept is not None:
                raise ConflictError(
                    relpath, "an append while it was deleted", kept=kept, written=True
                )
        return record

    # --- conflict copies (git) ---------------------------------------------------------------

    def conflict_copies(self) -> list[str]:
        """Vault-relative paths of every conflict copy left by a merge, sorted."""
        found: list[str] = []
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in files:
                if CONFLICT_COPY.match(name):
                    found.append(self.relpath_fast(Path(directory) / name))
        return sorted(found)

    def write_conflict_copy(self, relpath: str, data: bytes, tag: str) -> str:
        """Keep another version of `relpath` next to it as `<name>.conflict-<tag>`; returns the
        copy's path. An identical copy already there is reused; a different one gets `-2`, `-3`..."""
        self.flush()
        with self.write_lock(), _reported("write", relpath):
            for attempt in range(1, 100):
                copy = f"{relpath}.conflict-{tag}" + (f"-{attempt}" if attempt > 1 else "")
                full = self.safe_path(copy)
                try:
                    self._write_bytes(full, data, exclusive=True)
                except FileExistsError:
                    if full.read_bytes() == data:
                        return copy
                    continue
                self.touched.add(copy)
                return copy
        raise VaultError(f"{relpath}: too many conflict copies; resolve the ones already there")

    def conflict_problems(self, copies: Iterable[str]) -> list[Problem]:
        """A problem per conflict copy, saying what happened and what to do."""
        return [
            Problem(
                copy,
                1,
                f"conflict copy of {conflict_copy_of(copy)}: the file was changed twice at once "
                "(on two machines, or by a person while memkit wrote it) and both versions were "
                "kept; this is the other one. Copy what you want to keep into "
                f"{conflict_copy_of(copy)}, then delete this file (and commit)",
            )
            for copy in copies
        ]

    # --- checking --------------------------------------------------------------------------

    def check(self, paths: Iterable[str] | None = None, cwd: Path | None = None) -> ScanResult:
        """Validate files (all records when no paths): parse, schema, folder, unique ids."""
        result = ScanResult()
        if paths:
            relpaths: list[str] = []
            for given in paths:
                relpaths.extend(self._expand(given, cwd))
        else:
            relpaths = list(self.record_paths())
        # Conflict copies are problems until a person resolves them; a given path or folder
        # checks only the copies it names or holds (a pre-commit hook passes what is staged).
        copies = self.conflict_copies()
        if paths:
            wanted = [self.relpath((cwd or Path.cwd()) / given) for given in paths]
            copies = [
                c for c in copies if any(w in (c, ".") or c.startswith(w + "/") for w in wanted)
            ]
            relpaths = [r for r in relpaths if conflict_copy_of(r) is None]
        result.problems.extend(self.conflict_problems(copies))
        seen_ids: dict[str, str] = {}
        for relpath in relpaths:
            try:
                record = self.read_record(relpath)
            except InvalidRecord as error:
                result.problems.append(Problem(error.path, error.line, error.reason))
                continue
            except RecordNotFound:
                result.problems.append(Problem(relpath, 1, "no such file"))
                continue
            except PathOutsideVault:
                # A symlink leading out: named, never read, and the check goes on.
                result.problems.append(
                    Problem(
                        relpath, 1, "is a symlink leading out of the vault; memkit never reads it"
                    )
                )
                continue
            for line, message in schema.problems(record):
                result.problems.append(Problem(relpath, line, message))
            result.problems.extend(self._placement_problems(record))
            if record.id in seen_ids:
                result.problems.append(
                    Problem(
                        relpath,
                        record.line_of("id"),
                        f"id {record.id} is also used by {seen_ids[record.id]}",
                    )
                )
            else:
                seen_ids[record.id] = relpath
            result.records.append(record)
        return result

    def _expand(self, given: str, cwd: Path | None) -> list[str]:
        path = Path(given)
        if not path.is_absolute():
            path = (cwd or Path.cwd()) / path
        relpath = self.relpath(path)
        if path.is_dir():
            prefix = "" if relpath == "." else relpath + "/"
            return [p for p in self.record_paths() if p.startswith(prefix)]
        return [relpath]

    def _placement_problems(self, record: Record) -> list[Problem]:
        assert record.path is not None
        folder = str(PurePosixPath(record.path).parent)
        expected_type = type_for_folder(folder)
        if expected_type is None and any(
            record.path.startswith(f + "/") for f in self.settings.notes.folders
        ):
            expected_type = "note"
        if expected_type is None:
            return [Problem(record.path, 1, "not in a record folder of the vault layout")]
        if record.type == expected_type:
            return []
        if record.type == "proposal" and folder in TYPE_FOLDERS.values():
            return [
                Problem(
                    record.path,
                    record.line_of("type"),
                    "a proposal moved into a store folder: run `memkit sync` to finalise the approval",
                )
            ]
        return [
            Problem(
                record.path,
                record.line_of("type"),
                f"type {record.type!r} does not belong in {folder}/ "
                f"(it belongs in {TYPE_FOLDERS.get(record.type, '?')}/)",
            )
        ]
