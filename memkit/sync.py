"""Keeping the search index true to the vault's files: manifest, incremental sync, full rebuild."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from memkit.documents import documents_for
from memkit.errors import InvalidRecord, LockTimeout
from memkit.index import SCHEMA_VERSION, Hit, IndexDoc, RankWeights, SearchIndex, SearchResult
from memkit.records import STORE_TYPES, TYPE_FOLDERS, parse_record
from memkit.vault import (
    FileStat,
    NotRegularFile,
    Problem,
    Vault,
    is_record_path,
    read_regular,
    walk_record_files,
)

MANIFEST_VERSION = 3  # 3: ctime and inode columns; older manifests are rebuilt from the files
WATCHER_FILE = "watcher.json"
# Changes since the manifest was last written whole: one JSON line per sync, appended (and
# fsync'd) after the index commit, so a sync that touched one file writes one line instead of
# the whole manifest. Its first line names the manifest it extends (by the token written into
# it); a journal of another manifest is ignored. Folded into the manifest by a rebuild, or by
# the save that makes it longer than JOURNAL_SHARE of the manifest (at least JOURNAL_MIN_BYTES).
JOURNAL_FILE = "manifest.journal"
JOURNAL_MIN_BYTES = 256 * 1024
JOURNAL_SHARE = 16
# The manifest on disk holds one array per column, in this order (`files` holds the paths):
# a tenth of the objects a mapping of path -> list has, and ~2.5x quicker to load.
COLUMNS = ("mtime_ns", "size", "sha256", "record_id", "type", "problem", "line", "ctime_ns", "ino")
# One file's manifest entry, as kept in memory: the columns above, in that order.
Row = tuple[int, int, str, str, str, str, int, int, int]
# Paths a sync is about to add to the index, written before the index commit and removed
# after the manifest is saved: a sync killed in between leaves documents the manifest does not
# know, and this list lets the next sync find (and drop) them if their files are gone.
PENDING_FILE = "pending.json"
# A file whose mtime is at or after the moment a sync began looking at the files may have been
# changed again within one tick of the file system's clock without its mtime or size changing
# ("racily clean", as git calls it): the next sync compares its content, not just its stat.
# That moment is read from the file system's own clock by touching this file, so it has the
# same granularity (and, on a network share, the same clock) as the files' mtimes.
CLOCK_FILE = "scan.stamp"
# A heartbeat older than this means the watcher is gone (killed without cleaning up).
WATCHER_STALE_SECONDS = 30.0
# Below this many files to parse, a process pool costs more than it saves.
PARALLEL_THRESHOLD = 2000
STORE_FOLDERS = {TYPE_FOLDERS[t] for t in STORE_TYPES.values()}

Progress = Callable[[int, int], None]


@dataclass
class FileState:
    """What the manifest remembers of one file."""

    mtime_ns: int
    size: int
    sha256: str
    record_id: str = ""
    type: str = ""
    problem: str = ""  # "line: message" when the file is not a valid record
    line: int = 0
    ctime_ns: int = 0
    ino: int = 0

    def to_row(self) -> Row:
        """The manifest's form: the fields in declaration order (what `from_row` reads back)."""
        return (
            self.mtime_ns,
            self.size,
            self.sha256,
            self.record_id,
            self.type,
            self.problem,
            self.line,
            self.ctime_ns,
            self.ino,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> FileState:
        return cls(*row)


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    proposals_in_stores: list[str] = field(default_factory=list)
    rebuilt: bool = False
    seconds: float = 0.0
    checked_by: str = ""  # who said what changed: "watcher", "walk" ("" when not recorded)

    @property
    def touched(self) -> int:
        return len(self.added) + len(self.changed) + len(self.deleted)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "moved": [{"from": a, "to": b} for a, b in self.moved],
            "unchanged": self.unchanged,
            "rebuilt": self.rebuilt,
            "problems": [p.to_json() for p in self.problems],
            "proposals_in_stores": self.proposals_in_stores,
            "seconds": round(self.seconds, 3),
            "checked_by": self.checked_by,
        }


@dataclass
class Parsed:
    path: str
    state: FileState
    docs: list[IndexDoc] | None  # None: same content as `known`, not parsed again


def _parse_file(root: str, relpath: str, known: FileState | None = None) -> Parsed | None:
    """Read and parse one file into its manifest state and index documents (None if gone).

    When the content hashes the same as `known` (a touched or racily clean file), the parse is
    skipped and the known record id, type and problem are kept.
    """
    full = os.path.join(root, relpath)
    try:
        data, stat = read_regular(Path(root), full)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except NotRegularFile as error:
        # A FIFO, socket, device, symlink or unreadable file: a per-file problem, never opened
        # (a FIFO would hang the read) and never indexed (a symlink may lead out of the vault).
        try:
            info = os.lstat(full)
        except OSError:
            return None
        # Its own "hash": never equal to another file's, so never taken for a move.
        state = FileState(
            info.st_mtime_ns,
            info.st_size,
            f"!{relpath}",
            "",
            "",
            str(error),
            1,
            info.st_ctime_ns,
            info.st_ino,
        )
        return Parsed(relpath, state, [])
    state = FileState(
        stat.st_mtime_ns,
        stat.st_size,
        hashlib.sha256(data).hexdigest(),
        ctime_ns=stat.st_ctime_ns,
        ino=stat.st_ino,
    )
    if known is not None and known.sha256 == state.sha256:
        state.record_id, state.type = known.record_id, known.type
        state.problem, state.line = known.problem, known.line
        return Parsed(relpath, state, None)
    try:
        record = parse_record(data, relpath)
    except InvalidRecord as error:
        state.problem, state.line = error.reason, error.line
        return Parsed(relpath, state, [])
    state.record_id, state.type = record.id, record.type
    return Parsed(relpath, state, documents_for(record))


def _parse_batch(root: str, items: list[tuple[str, FileState | None]]) -> list[Parsed]:
    return [p for p in (_parse_file(root, r, k) for r, k in items) if p is not None]


def _worker_processes_are_safe() -> bool:
    """Whether a process pool may start here. Its workers import the main module again: a
    person's script without an `if __name__ == "__main__":` guard would run once more in each
    worker. Safe without a main file (a REPL, `python -c`), under `python -m` (runpy's
    `__main__` modules are not run again) and under the `memkit` command itself."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__file__", None) is None:
        return True
    spec = getattr(main, "__spec__", None)
    if spec is not None and str(spec.name).endswith("__main__"):
        return True
    return getattr(getattr(main, "main", None), "__module__", None) == "memkit.cli"


def _same_content(root: str, relpath: str, sha256: str) -> bool:
    """Whether the file still hashes as the manifest says (False when it is gone)."""
    try:
        data, _stat = read_regular(Path(root), os.path.join(root, relpath))
    except NotRegularFile:
        return sha256 == f"!{relpath}"
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == sha256


# Manifest entry of a path whose documents may be in the index after a killed sync: matches no
# file, so the next sync reads the file again or, when it is gone, deletes its documents.
UNKNOWN_ROW: Row = (-1, -1, "", "", "", "", 0, -1, -1)


def _unknown_state() -> FileState:
    return FileState.from_row(UNKNOWN_ROW)


def _in_store(path: str, row: Row) -> bool:
    """Whether this is a proposal in a store folder (a person approved it by moving it)."""
    # (The folder by string: a PurePosixPath per proposal cost 35 ms a sync at 100k.)
    return row[4] == "proposal" and path.rpartition("/")[0] in STORE_FOLDERS


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class WatcherAnswer:
    """What a healthy watcher vouches for: every file not named here is in the index as it is
    on disk; these paths (and folders) changed and its sync has not committed them yet."""

    paths: list[str]
    directories: list[str]


# How long a process waits for the watcher's answer before it walks the vault itself.
WATCHER_ANSWER_SECONDS = 0.5


def watcher_address(state_dir: Path) -> str:
    """Where the watcher of the vault with this state folder listens: a Unix socket in it, or
    (when that path is too long for a socket) an abstract Linux socket named after it, written
    with a leading "@"."""
    path = str(state_dir / "watch.sock")
    if len(os.fsencode(path)) < 100:
        return path
    return "@memkit-watch-" + hashlib.sha256(os.fsencode(path)).hexdigest()[:24]


def socket_address(address: str) -> str | bytes:
    """The address to bind or connect to for one from `watcher_address`."""
    return b"\0" + address[1:].encode() if address.startswith("@") else address


def ask_watcher(state_dir: Path, timeout: float = WATCHER_ANSWER_SECONDS) -> WatcherAnswer | None:
    """Ask the vault's running watcher what changed that its index does not hold yet (it first
    makes sure it has seen every file event up to now: see memkit/watcher.py). None when no
    healthy watcher answers in time (absent, starting, overflowed, polling, slow): walk then."""
    try:
        info = json.loads((state_dir / WATCHER_FILE).read_bytes())
        address = str(info["socket"])
        if time.time() - float(info.get("heartbeat", 0)) > WATCHER_STALE_SECONDS:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(socket_address(address))
            client.sendall(b'{"ask": "changes"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        if reply.get("ok") is not True:
            return None
        return WatcherAnswer(
            [str(p) for p in reply["paths"]], [str(d) for d in reply["directories"]]
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class _DamagedManifest(Exception):
    """The manifest or its journal cannot be read: the next sync rebuilds."""


class VaultIndex:
    """The vault's search index and manifest, kept in line with the files under `.memkit/`."""

    def __init__(self, vault: Vault, *, lock_timeout: float = 30.0) -> None:
        self.vault = vault
        self.lock_timeout = lock_timeout
        self._index: SearchIndex | None = None
        self._index_folder: tuple[int, int] | None = None
        # The manifest as last read or written (base + journal): never changed in place, only
        # replaced, so a caller may hold on to it.
        self._rows: dict[str, Row] | None = None
        self._base_key: tuple[int, int, int] | None = None  # (inode, mtime, size) it came from
        self._base_token = ""  # "" when the base cannot take a journal (none, or an old format)
        self._base_size = 0
        # (inode, bytes read) of the journal applied to `_rows`; None: no journal of this base.
        self._journal_at: tuple[int, int] | None = None
        self._scanned_ns = 0
        # The rows `_marked` last answered for, and its answer.
        self._marks: tuple[dict[str, Row], set[str], set[str]] | None = None
        # Inside `operation()`: whether its one freshness check was made (None: outside one).
        self._checked: bool | None = None
        # Which way the last freshness check answered ("watcher", "walk", "rebuilt", "").
        self.last_check = ""
        # Inside `batch()`: this process's writes wait to be indexed in one commit at its end.
        self._batches = 0

    # --- state files ---------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.vault.state_dir / "manifest.json"

    @property
    def journal_path(self) -> Path:
        return self.vault.state_dir / JOURNAL_FILE

    @property
    def index(self) -> SearchIndex:
        """The search index, opened on first use and again when its folder was deleted or
        replaced under this process (then it asks for a rebuild: `rebuilt` is set)."""
        if self._index is not None and self._index_missing():
            self.close()
        if self._index is None:
            index = SearchIndex(self.vault.state_dir / "index", lock_timeout=self.lock_timeout)
            self._index_folder = self._folder_identity(index)
            self._index = index
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    @property
    def pending_path(self) -> Path:
        return self.vault.state_dir / PENDING_FILE

    def load_manifest(self) -> dict[str, FileState]:
        """The manifest (path -> FileState), paths pending from a killed sync included.

        Empty when there is none, it is damaged or it was written for another index schema:
        the next sync then rebuilds the index from the files.
        """
        return {path: FileState.from_row(row) for path, row in self._current_rows().items()}

    def _current_rows(self) -> dict[str, Row]:
        """The manifest as rows, with the paths pending from a killed sync as UNKNOWN_ROW.
        Do not change it: it may be the cached one."""
        pending = self._load_pending()
        if pending is None:
            return {}  # a damaged list of pending paths: only a rebuild is sure to be right
        return self._with_pending(self._manifest_rows(), pending)

    @staticmethod
    def _with_pending(rows: dict[str, Row], pending: Sequence[str]) -> dict[str, Row]:
        if not pending:
            return rows
        rows = dict(rows)
        for path in pending:
            rows.setdefault(path, UNKNOWN_ROW)
        return rows

    def _forget_manifest(self) -> None:
        self._rows, self._base_key, self._journal_at = None, None, None
        self._base_token, self._base_size, self._scanned_ns = "", 0, 0

    def _manifest_rows(self) -> dict[str, Row]:
        """The manifest on disk (base + journal), without pending paths; cached while the files
        are unchanged, and only the journal's new lines read when just it grew. Do not change
        the dict returned."""
        for _attempt in range(3):
            try:
                stat = os.stat(self.manifest_path)
            except FileNotFoundError:
                self._forget_manifest()
                return {}
            # Inode too, not just mtime: another process replaces the file, and two writes may
            # fall within one tick of a coarse file system clock.
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            try:
                if self._rows is None or key != self._base_key:
                    self._forget_manifest()
                    self._read_base(key)
                self._read_journal()
            except _DamagedManifest:
                # Derived state: the next sync rebuilds from the files.
                self._forget_manifest()
                return {}
            # Read without the index lock (is_stale, status): if another process folded the
            # journal into a new manifest meanwhile, what was read may mix the two; read again.
            try:
                again = os.stat(self.manifest_path)
            except FileNotFoundError:
                continue
            if (again.st_ino, again.st_mtime_ns, again.st_size) == key:
                break
        return self._rows if self._rows is not None else {}

    def _read_base(self, key: tuple[int, int, int]) -> None:
        try:
            data = json.loads(self.manifest_path.read_bytes())
            version = data.get("version")
            if data.get("index_schema") != SCHEMA_VERSION or version != MANIFEST_VERSION:
                # An older format (no ctime and inode): rebuilt from the files, never an error.
                raise _DamagedManifest
            scanned_ns = int(data.get("scanned_ns", 0))
            paths = data["files"]
            columns = [data[name] for name in COLUMNS]
            if not isinstance(paths, list) or any(
                not isinstance(column, list) or len(column) != len(paths) for column in columns
            ):
                raise _DamagedManifest
            # Cheap type checks (a few ms at 100k): sums of numbers, joins of strings.
            for column in (columns[0], columns[1], columns[6], columns[7], columns[8]):
                sum(column)
            for column in (paths, *columns[2:6]):
                "".join(column)
            rows: dict[str, Row] = dict(zip(paths, zip(*columns, strict=True), strict=True))
            token = str(data["token"])
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, OSError):
            raise _DamagedManifest from None
        self._rows, self._base_key, self._base_token = rows, key, token
        self._base_size, self._scanned_ns, self._journal_at = key[2], scanned_ns, None

    def _read_journal(self) -> None:
        """Apply the journal's lines not applied yet to the cached rows (a copy of them)."""
        if not self._base_token:
            return  # an old-format base has no journal (its first save writes a new base)
        try:
            handle = open(self.journal_path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            self._journal_at = None
            return
        with handle:
            stat = os.fstat(handle.fileno())
            at = self._journal_at
            start = at[1] if at is not None and at[0] == stat.st_ino else 0
            if start == stat.st_size:
                return  # nothing new
            if start > stat.st_size:
                start = 0  # cut short by a sync that found a torn line: read it all again
                # (lines are only appended: what was read before is still there)
            handle.seek(start)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        lines = data[:end].splitlines()
        assert self._rows is not None
        rows = dict(self._rows)
        scanned_ns = self._scanned_ns
        try:
            if start == 0:
                if not lines:
                    return
                header = json.loads(lines.pop(0))
                if header.get("base") != self._base_token:
                    # The journal of an earlier manifest (a kill between writing a manifest
                    # and removing its journal): all it says is in the manifest already.
                    self._journal_at = None
                    return
            for line in lines:
                entry = json.loads(line)
                for path, row in entry.get("set", {}).items():
                    if len(row) != len(COLUMNS):
                        raise _DamagedManifest
                    rows[str(path)] = tuple(row)
                for path in entry.get("del", ()):
                    rows.pop(path, None)
                if "scanned_ns" in entry:
                    scanned_ns = int(entry["scanned_ns"])
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise _DamagedManifest from None
        self._rows, self._scanned_ns = rows, scanned_ns
        self._journal_at = (stat.st_ino, start + end)

    def _load_pending(self) -> list[str] | None:
        try:
            data = json.loads(self.pending_path.read_bytes())
            return [str(path) for path in data["paths"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None

    def _save_pending(self, paths: Sequence[str]) -> None:
        temp = self.pending_path.with_suffix(".json.tmp")
        temp.write_text(json.dumps({"paths": sorted(paths)}), "utf-8")
        os.replace(temp, self.pending_path)

    def _save_manifest(self, files: dict[str, FileState], scanned_ns: int) -> None:
        """Write the whole manifest (and drop the journal)."""
        self._write_base({path: state.to_row() for path, state in files.items()}, scanned_ns)

    def _write_base(self, rows: dict[str, Row], scanned_ns: int) -> None:
        """Write the whole manifest, then remove the journal it takes in. Under the lock."""
        token = os.urandom(8).hex()
        paths = list(rows)
        columns = list(zip(*rows.values(), strict=True)) or [()] * len(COLUMNS)
        data: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "index_schema": SCHEMA_VERSION,
            "scanned_ns": scanned_ns,
            "token": token,
            "files": paths,
        }
        data.update(zip(COLUMNS, columns, strict=True))
        temp = self.manifest_path.with_suffix(".json.tmp")
        with open(temp, "wb") as handle:
            handle.write(json.dumps(data, separators=(",", ":")).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.manifest_path)
        # Killed here, the journal left names another manifest's token: it is ignored.
        self.journal_path.unlink(missing_ok=True)
        stat = self.manifest_path.stat()
        self._rows, self._base_key = rows, (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        self._base_token, self._base_size = token, stat.st_size
        self._journal_at, self._scanned_ns = None, scanned_ns

    def _save_changes(
        self,
        rows: dict[str, Row],
        changed: dict[str, Row],
        deleted: Sequence[str],
        scanned_ns: int,
    ) -> None:
        """Save `rows`, the manifest read at the start of this sync (under the lock) with
        `changed` and `deleted`: one line appended to the journal, or the whole manifest when
        the journal has grown too long (or the manifest on disk cannot take one)."""
        entry: dict[str, Any] = {}
        if scanned_ns != self._scanned_ns:
            entry["scanned_ns"] = scanned_ns
        if changed:
            entry["set"] = changed
        if deleted:
            entry["del"] = list(deleted)
        if not entry and self._rows is not None and self._base_token:
            self._rows = rows
            return  # the manifest on disk says it all already
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        at = self._journal_at
        journal = at[1] if at is not None else 0
        if not self._base_token or journal + len(line) > max(
            JOURNAL_MIN_BYTES, self._base_size // JOURNAL_SHARE
        ):
            self._write_base(rows, scanned_ns)
            return
        if at is None:
            # A new journal, whole or not at all: header and line in a file renamed into place.
            data = json.dumps({"base": self._base_token}).encode() + b"\n" + line
            temp = self.journal_path.with_suffix(".tmp")
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.journal_path)
            inode, size = os.stat(self.journal_path).st_ino, len(data)
        else:
            try:
                fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:  # removed under us (a `rm -rf .memkit`, say)
                self._write_base(rows, scanned_ns)
                return
            try:
                stat = os.fstat(fd)
                if stat.st_ino == at[0]:
                    if stat.st_size != at[1]:
                        os.ftruncate(fd, at[1])  # a torn line left by a killed sync
                    _write_all(fd, line)
                    os.fsync(fd)
            finally:
                os.close(fd)
            if stat.st_ino != at[0]:  # replaced under us: write it all
                self._write_base(rows, scanned_ns)
                return
            inode, size = at[0], at[1] + len(line)
        self._rows, self._journal_at, self._scanned_ns = rows, (inode, size), scanned_ns

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """One index writer (sync, watcher) at a time across processes."""
        lock_dir = self.vault.state_dir / "locks"
        lock_dir.mkdir(exist_ok=True)
        wait = self.lock_timeout if timeout is None else timeout
        with (lock_dir / "index.lock").open("a+") as handle:
            deadline = time.monotonic() + wait
            delay = 0.005
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"another memkit process is updating the index of {self.vault.root} "
                            f"(waited {wait:.0f} s); try again in a moment"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- looking at the files --------------------------------------------------------------

    def stat_files(self) -> dict[str, FileStat]:
        """path -> (mtime_ns, size, ctime_ns, inode) of every entry that may be a record file
        (`is_record_path`), from the vault's one walk (lstat: special files included, as
        per-file problems; nothing followed, nothing opened)."""
        return walk_record_files(self.vault.root)

    def _is_racy(self, state: FileState) -> bool:
        return state.mtime_ns >= self._scanned_ns

    def _file_system_now(self) -> int:
        """The mtime the file system gives a file changed at this moment."""
        stamp = self.vault.state_dir / CLOCK_FILE
        try:
            stamp.touch()
            return stamp.stat().st_mtime_ns
        except OSError:
            # Cannot write the stamp: a margin wide enough for coarse (FAT: 2 s) clocks.
            return time.time_ns() - 3_000_000_000

    def _compare(
        self, rows: Mapping[str, Row], stats: Mapping[str, FileStat]
    ) -> tuple[list[str], list[str]]:
        """(paths to read, paths gone), both sorted, comparing the files' stats with `rows`.
        Paths to read include racily clean files (same stat, maybe not the same content)."""
        scanned_ns = self._scanned_ns
        get = rows.get
        to_read = [
            path
            for path, (mtime, size, ctime, ino) in stats.items()
            if (row := get(path)) is None
            or row[0] != mtime
            or row[1] != size
            or row[7] != ctime
            or row[8] != ino
            or mtime >= scanned_ns
        ]
        to_read.sort()
        gone = sorted(rows.keys() - stats.keys()) if len(rows) + len(to_read) > len(stats) else []
        return to_read, gone

    def changes(
        self,
    ) -> tuple[dict[str, FileStat], dict[str, FileState], list[str], list[str]]:
        """(stats, manifest, paths to read, paths gone) comparing files with the manifest.

        Paths to read include racily clean files (same stat, maybe not the same content).
        """
        rows = self._current_rows()
        stats = self.stat_files()
        to_read, gone = self._compare(rows, stats)
        manifest = {path: FileState.from_row(row) for path, row in rows.items()}
        return stats, manifest, to_read, gone

    def freshness(
        self,
    ) -> tuple[dict[str, FileStat], dict[str, FileState], list[str], list[str]]:
        """(stats, manifest, changed, gone): like `changes`, but a racily clean file counts as
        changed only when its content differs. Reads; never writes."""
        stats, manifest, to_read, gone = self.changes()
        root = str(self.vault.root)
        changed = [
            path
            for path in to_read
            if (state := manifest.get(path)) is None
            or (state.mtime_ns, state.size, state.ctime_ns, state.ino) != stats[path]
            or not _same_content(root, path, state.sha256)
        ]
        return stats, manifest, changed, gone

    def targeted_changes(
        self, manifest: Mapping[str, Row], paths: Sequence[str], directories: Sequence[str]
    ) -> tuple[dict[str, FileStat], list[str], list[str]]:
        """Like `changes` but only for the given paths and folders (what a watcher saw)."""
        candidates = set(paths)
        for directory in directories:
            prefix = directory.rstrip("/") + "/"
            candidates.update(p for p in manifest if p.startswith(prefix))
            for folder, _subdirs, files in os.walk(self.vault.root / directory):
                base = Path(folder).relative_to(self.vault.root).as_posix()
                candidates.update(f"{base}/{name}" for name in files)
        stats: dict[str, FileStat] = {}
        root = str(self.vault.root)
        for relpath in candidates:
            if not is_record_path(relpath):
                continue
            try:
                stat = os.lstat(os.path.join(root, relpath))
            except (FileNotFoundError, NotADirectoryError):
                continue
            stats[relpath] = (stat.st_mtime_ns, stat.st_size, stat.st_ctime_ns, stat.st_ino)
        named = set(paths)
        scanned_ns = self._scanned_ns
        # A path the watcher named changed for sure (an edit may keep mtime and size within
        # one clock tick): read it; the hash tells whether to reindex.
        to_read = sorted(
            path
            for path, (mtime, size, ctime, ino) in stats.items()
            if path in named
            or (row := manifest.get(path)) is None
            or (row[0], row[1], row[7], row[8]) != (mtime, size, ctime, ino)
            or mtime >= scanned_ns
        )
        gone = sorted(path for path in candidates if path not in stats and path in manifest)
        return stats, to_read, gone

    def freshness_of(
        self, paths: Sequence[str], directories: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """(changed, gone) among just these paths and folders (what a watcher named): like
        `freshness`, without a walk. Reads; never writes."""
        rows = self._current_rows()
        stats, _to_read, gone = self.targeted_changes(rows, paths, directories)
        root, scanned_ns = str(self.vault.root), self._scanned_ns
        changed = sorted(
            path
            for path, stat in stats.items()
            if (row := rows.get(path)) is None
            or (row[0], row[1], row[7], row[8]) != stat
            or (stat[0] >= scanned_ns and not _same_content(root, path, row[2]))
        )
        return changed, gone

    def is_stale(self) -> bool:
        """Whether the index misses a change to the files (or must be rebuilt).

        The same answer as `freshness` gives (any file added, gone or with another stat; a
        racily clean one whose content changed), but it stops at the first difference and reads
        no file unless all stats agree."""
        if self.index.rebuilt:
            return True
        return self._differs(self.stat_files())

    def _differs(self, stats: Mapping[str, FileStat]) -> bool:
        """Whether the walk's `stats` differ from the manifest (see `is_stale`)."""
        rows = self._current_rows()
        if not rows:
            return bool(stats)
        if len(rows) != len(stats):
            return True  # a file added or gone
        scanned_ns = self._scanned_ns
        get = rows.get
        racy: list[tuple[str, str]] = []
        for path, (mtime, size, ctime, ino) in stats.items():
            row = get(path)
            if row is None or row[0] != mtime or row[1] != size or row[7] != ctime or row[8] != ino:
                return True
            if mtime >= scanned_ns:
                racy.append((path, row[2]))
        root = str(self.vault.root)
        return any(not _same_content(root, path, sha256) for path, sha256 in racy)

    # --- one freshness check per operation ------------------------------------------------

    def index_writes(self, *, lock_timeout: float | None = None) -> SyncReport | None:
        """Write-through: index exactly the paths this process's Vault wrote since this index
        last took them (creates, updates, moves, deletes), without a walk. None: nothing new."""
        touched = self.vault.touched
        log = getattr(touched, "log", None)
        if log is None or touched.indexed >= len(log) or self._batches:
            return None  # nothing new, or inside a batch: indexed once at its end
        end = len(log)
        report = self.sync(paths=sorted(set(log[touched.indexed : end])), lock_timeout=lock_timeout)
        touched.indexed = max(touched.indexed, end)
        return report

    def ensure_fresh(self, *, lock_timeout: float | None = None) -> str:
        """Bring the index in line with the files, looking once, the cheapest way there is:
        this process's own writes are indexed by path; then a healthy `memkit watch` says what
        changed since it last synced (no walk), or else one stat walk, whose result the sync
        that follows reuses. Returns which answered: "watcher" or "walk" ("rebuilt" when the
        index had to be rebuilt). Raises LockTimeout when another process holds the index."""
        self.index_writes(lock_timeout=lock_timeout)
        if self.index.rebuilt:
            self.sync(lock_timeout=lock_timeout)
            self.last_check = "rebuilt"
            return self.last_check
        answer = ask_watcher(self.vault.state_dir)
        if answer is not None:
            if answer.paths or answer.directories:
                self.sync(
                    paths=answer.paths, directories=answer.directories, lock_timeout=lock_timeout
                )
            self.last_check = "watcher"
            return self.last_check
        # Taken before the walk: a file changed after this moment is racy next time.
        scanned_ns = self._file_system_now()
        stats = self.stat_files()
        if self._differs(stats):
            self.sync(walked=(scanned_ns, stats), lock_timeout=lock_timeout)
        self.last_check = "walk"
        return self.last_check

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """One freshness check for everything inside (a recall, a context, an Agent turn):
        the first search checks; later ones take only this process's own writes (indexed by
        path). Nested operations share the outer one's check."""
        if self._checked is not None:
            yield
            return
        self._checked = False
        try:
            yield
        finally:
            self._checked = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """An operation (one freshness check) whose own writes are indexed once, in one commit
        at its end, not before each search inside it: searches there see the index as it was
        before the batch, so a batch dedupes its own items itself (see Memory's promotions)."""
        self._batches += 1
        try:
            with self.operation():
                yield
        finally:
            self._batches -= 1
        if not self._batches:
            # Another process holding the index for long: the writes stand, and the next
            # freshness check (or the watcher) indexes them.
            with contextlib.suppress(LockTimeout):
                self.index_writes()

    @staticmethod
    def _folder_identity(index: SearchIndex) -> tuple[int, int] | None:
        # SearchIndex keeps one folder per schema version (see memkit/index.py).
        try:
            stat = os.stat(index.directory / f"v{SCHEMA_VERSION}")
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _index_missing(self) -> bool:
        """Whether the index folder this process opened was deleted or replaced since (say,
        `rm -rf .memkit`, then another process made a new one): writes to it would be lost."""
        if self._index is None:
            return False
        return self._folder_identity(self._index) != self._index_folder

    # --- syncing -----------------------------------------------------------------------------

    def _parse_many(
        self, relpaths: Sequence[str], known: dict[str, FileState], progress: Progress | None
    ) -> list[Parsed]:
        return list(self._parse_iter(relpaths, known, progress))

    def _parse_iter(
        self, relpaths: Sequence[str], known: dict[str, FileState], progress: Progress | None
    ) -> Iterator[Parsed]:
        """Parsed files in the order of `relpaths` (gone ones left out), as they are ready."""
        root = str(self.vault.root)
        total = len(relpaths)
        if (
            total < PARALLEL_THRESHOLD
            or (os.cpu_count() or 1) < 2
            or not _worker_processes_are_safe()
        ):
            for done, relpath in enumerate(relpaths, start=1):
                parsed = _parse_file(root, relpath, known.get(relpath))
                if parsed is not None:
                    yield parsed
                if progress and done % 200 == 0:
                    progress(done, total)
            return
        # Imported here: only a big sync needs them, and they cost every command ~15 ms.
        from collections import deque
        from concurrent.futures import Future, ProcessPoolExecutor
        from multiprocessing import get_context

        # Parsing YAML is the slow part of a rebuild: spread it over the cores.
        workers = min(os.cpu_count() or 2, 4)
        # Batches of at most 1000 files, at most two per worker submitted ahead: results of
        # a batch wait in memory until the consumer (a rebuild: the index writer) takes them.
        chunk = max(200, min(1000, total // (workers * 8)))
        starts = iter(range(0, total, chunk))
        ahead: deque[Future[list[Parsed]]] = deque()
        done = 0
        with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
            while True:
                while len(ahead) < 2 * workers and (start := next(starts, None)) is not None:
                    items = [(r, known.get(r)) for r in relpaths[start : start + chunk]]
                    ahead.append(pool.submit(_parse_batch, root, items))
                if not ahead:
                    return
                batch = ahead.popleft().result()
                done += chunk
                if progress:
                    progress(min(done, total), total)
                yield from batch

    def _stream_documents(
        self, relpaths: Sequence[str], progress: Progress | None, parsed: list[Parsed]
    ) -> Iterator[IndexDoc]:
        """The index documents of `relpaths`, parsed afresh, file by file. Each file's manifest
        state goes to `parsed`, without its documents (so that they can be freed once indexed)."""
        for item in self._parse_iter(relpaths, {}, progress):
            docs, item.docs = item.docs or [], []
            parsed.append(item)
            yield from docs

    def sync(
        self,
        *,
        full: bool = False,
        paths: Sequence[str] | None = None,
        directories: Sequence[str] = (),
        progress: Progress | None = None,
        lock_timeout: float | None = None,
        walked: tuple[int, Mapping[str, FileStat]] | None = None,
    ) -> SyncReport:
        """Bring the index in line with the files.

        `full` rebuilds from scratch; `paths`/`directories` limit the look to what a watcher saw
        change (otherwise every file is stat-ed and compared with the manifest). `walked` is a
        walk already made for this operation, (file system time taken before it, its stats):
        reused instead of walking again.
        """
        started = time.monotonic()
        with self.lock(lock_timeout):
            report = SyncReport()
            # One handle for the whole sync (reopened here if its folder was deleted).
            index = self.index
            # Read under the lock: the manifest on disk (`on_disk`), and with the paths a
            # killed sync left pending (`manifest`; both the cached dicts: never changed here).
            pending = self._load_pending()
            on_disk = self._manifest_rows() if pending is not None else {}
            manifest = self._with_pending(on_disk, pending or ())
            scanned_ns = self._scanned_ns
            if index.rebuilt or not manifest:
                full = True
            stats: Mapping[str, FileStat]
            if not full and (paths is not None or directories):
                stats, to_read, gone = self.targeted_changes(manifest, paths or (), directories)
                total = len(manifest) - len(gone) + len([p for p in stats if p not in manifest])
            else:
                if walked is not None:
                    scanned_ns, stats = walked
                else:
                    # Taken before the walk: a file changed after this moment is racy next time.
                    scanned_ns = self._file_system_now()
                    stats = self.stat_files()
                to_read, gone = self._compare(manifest, stats)
                total = len(stats)
            if full:
                report.rebuilt = True
                to_read, gone, manifest = sorted(stats), [], {}
            if full:
                # A rebuild streams: documents go to the index writer while the workers parse
                # (parsing overlaps indexing, and the documents of all files are never in
                # memory at once). Any path may be new to the index: list them first (see the
                # pending list below).
                fresh = {p for p in to_read if p not in on_disk}
                if fresh:
                    self._save_pending(sorted(fresh | set(pending or ())))
                parsed: list[Parsed] = []
                index.replace_all(self._stream_documents(to_read, progress, parsed))
            else:
                known = {
                    path: FileState.from_row(row)
                    for path in to_read
                    if (row := manifest.get(path)) is not None and row[2]
                }
                parsed = self._parse_many(to_read, known, progress)
            # Only what changed is looked at (and copied): the manifest may hold 100k files.
            new_manifest = dict(manifest) if to_read or gone else manifest
            for path in gone:
                new_manifest.pop(path, None)
            upserts: list[IndexDoc] = []
            reindexed: list[str] = []
            for item in parsed:
                previous = manifest.get(item.path)
                new_manifest[item.path] = item.state.to_row()
                if item.docs is None:
                    continue  # touched or racy, same content: nothing to reindex
                upserts.extend(item.docs)
                reindexed.append(item.path)
                known_before = previous is not None and previous[2] != ""
                (report.changed if known_before else report.added).append(item.path)
            parsed_paths = {item.path for item in parsed}
            vanished = [p for p in to_read if p not in parsed_paths]  # deleted while we read
            for path in vanished:
                new_manifest.pop(path, None)
            report.deleted = sorted(set(gone) | {p for p in vanished if p in manifest})
            report.unchanged = total - len(report.added) - len(report.changed)
            # A deleted file whose content reappeared elsewhere is a move (approval, rename).
            gone_hashes = {
                manifest[p][2]: p for p in report.deleted if p in manifest and manifest[p][2]
            }
            for path in report.added:
                origin = gone_hashes.get(new_manifest[path][2])
                if origin is not None:
                    report.moved.append((origin, path))
            # Before the index learns of paths the manifest on disk does not list, note them:
            # if this process dies between the index commit and the manifest save, the next
            # sync still knows to look at them.
            # (Paths still pending from an earlier crash stay listed until the manifest is saved.)
            new_paths = {p for p in reindexed if p not in manifest}
            if new_paths and not full:  # (a rebuild listed them before it began)
                self._save_pending(sorted(new_paths | set(self._load_pending() or ())))
            if full:
                pass  # the rebuild's documents went to the index above, while parsing
            elif upserts or report.deleted or reindexed:
                # The searchable moment: the commit (and the reader's reload) comes first,
                # the manifest after it.
                index.update(upserts, [*report.deleted, *reindexed])
            try:
                if full:
                    self._write_base(new_manifest, scanned_ns)
                    self.pending_path.unlink(missing_ok=True)
                elif parsed or report.deleted:
                    # (Nothing read and nothing gone: the manifest on disk is right as it is.)
                    # What differs from the manifest on disk: the files read or gone, and paths
                    # still pending from a killed sync (saved as UNKNOWN_ROW until they are seen).
                    looked_at = parsed_paths.union(gone, vanished, pending or ())
                    changed_rows = {
                        path: row
                        for path in sorted(looked_at)
                        if (row := new_manifest.get(path)) is not None and on_disk.get(path) != row
                    }
                    deleted_rows = sorted(
                        path for path in looked_at if path not in new_manifest and path in on_disk
                    )
                    self._save_changes(new_manifest, changed_rows, deleted_rows, scanned_ns)
                    # The manifest now lists all the index holds: the pending list did its job.
                    self.pending_path.unlink(missing_ok=True)
            except FileNotFoundError:
                if not self._index_missing():
                    raise
                # `.memkit` was deleted under this sync (its commit went to a folder that is
                # gone): nothing to save; the next sync rebuilds.
                self._forget_manifest()
            index.rebuilt = False
        problems, proposals = self._marked(
            new_manifest, manifest, parsed_paths.union(gone, vanished)
        )
        report.problems = sorted(
            (Problem(path, new_manifest[path][6], new_manifest[path][5]) for path in problems),
            key=lambda problem: problem.path,
        )
        report.proposals_in_stores = sorted(proposals)
        report.seconds = time.monotonic() - started
        return report

    def _marked(
        self, rows: dict[str, Row], previous: dict[str, Row], looked_at: set[str]
    ) -> tuple[set[str], set[str]]:
        """(paths of files that are not valid records, proposals in a store folder) in `rows`,
        which is `previous` changed at `looked_at`. Worked out from the last answer when that
        was for `previous` (a scan of 100k rows costs a watcher's sync ~25 ms)."""
        marks = self._marks
        if marks is not None and marks[0] is previous:
            problems, proposals = set(marks[1]), set(marks[2])
            for path in looked_at:
                problems.discard(path)
                proposals.discard(path)
                row = rows.get(path)
                if row is not None:
                    if row[5]:
                        problems.add(path)
                    if _in_store(path, row):
                        proposals.add(path)
        else:
            problems = {path for path, row in rows.items() if row[5]}
            proposals = {path for path, row in rows.items() if _in_store(path, row)}
        self._marks = (rows, problems, proposals)
        return problems, proposals

    def problems(self, manifest: dict[str, FileState] | None = None) -> list[Problem]:
        """Files that are not valid records, as path:line: why (from the manifest)."""
        files = manifest if manifest is not None else self.load_manifest()
        return sorted(
            (
                Problem(path, state.line, state.problem)
                for path, state in files.items()
                if state.problem
            ),
            key=lambda problem: problem.path,
        )

    # --- searching ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        types: Sequence[str] = (),
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        include_hidden: bool = False,
        sync: bool = True,
        now: datetime | None = None,
    ) -> tuple[SearchResult, bool]:
        """Search, syncing first when files changed (one check per `operation()`); returns
        (result, stale)."""
        stale = False
        if sync:
            try:
                if self._checked:
                    if not self._batches:  # checked already: our own writes only
                        self.index_writes(lock_timeout=2.0)
                else:
                    self.ensure_fresh(lock_timeout=2.0)
                    if self._checked is not None:
                        self._checked = True
            except LockTimeout:
                stale = True  # someone else is writing the index right now; say so
        settings = self.vault.settings.search
        weights = RankWeights(
            bm25=settings.weights.bm25,
            importance=settings.weights.importance,
            recency=settings.weights.recency,
            recency_half_life_days=settings.recency_half_life_days,
        )
        # An index waiting for its rebuild (deleted, another schema) is not to be trusted.
        index = self.index
        stale = stale or index.rebuilt
        result = index.search(
            query,
            k=k,
            types=types,
            tags=tags,
            since=since,
            until=until,
            include_hidden=include_hidden,
            now=now,
            weights=weights,
        )
        return result, stale

    # --- watcher presence ---------------------------------------------------------------------

    def watcher_info(self) -> dict[str, Any] | None:
        """The running watcher's pid and heartbeat, or None when none is alive."""
        try:
            info: dict[str, Any] = json.loads((self.vault.state_dir / WATCHER_FILE).read_text())
            os.kill(int(info["pid"]), 0)
        except PermissionError:
            pass  # alive, but another user's process
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        try:
            if time.time() - float(info.get("heartbeat", 0)) > WATCHER_STALE_SECONDS:
                return None
        except (TypeError, ValueError):
            return None
        return info

    # --- looking inside ------------------------------------------------------------------------

    def indexed_documents(self) -> dict[str, Hit]:
        """Every document in the index, by key (expired and superseded ones too). Never syncs.

        For checks and tests: compare what the index holds with what the files say.
        """
        index = self.index
        count = index.doc_count()
        # A search with no words browses the filtered documents: with k above the document
        # count it returns them all.
        result = index.search("", k=count + 1, include_hidden=True)
        return {hit.key: hit for hit in result.hits}
