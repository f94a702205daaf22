"""Keeping the search index true to the vault's files: manifest, incremental sync, full rebuild."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from memkit import locking
from memkit.documents import documents_for
from memkit.errors import InvalidRecord, LockTimeout
from memkit.index import SCHEMA_VERSION, Hit, IndexDoc, RankWeights, SearchIndex, SearchResult
from memkit.records import STORE_TYPES, TYPE_FOLDERS, parse_record
from memkit.vault import (
    RECORD_ROOTS,
    FileStat,
    NotRegularFile,
    Problem,
    Vault,
    is_record_path,
    read_regular,
    walk_record_files,
)

# The manifest: one SQLite file (WAL) under `.memkit/`, a row per file. A sync saves what it
# changed in one transaction after its index commit, so a `kill -9` leaves either the old rows or
# the new ones. Its `user_version` is MANIFEST_VERSION: another version (or the JSON manifest,
# journal and pending list of earlier releases) means a rebuild from the files, never an error.
MANIFEST_FILE = "manifest.db"
MANIFEST_VERSION = 5  # 4: SQLite, with ctime and inode; 5: rows and tombstones carry a save number
OLD_MANIFEST_FILES = ("manifest.json", "manifest.journal", "pending.json")
WATCHER_FILE = "watcher.json"
# The manifest's columns after the path, in this order (a Row holds them in the same order).
COLUMNS = ("mtime_ns", "size", "sha256", "record_id", "type", "problem", "line", "ctime_ns", "ino")
# One file's manifest entry, as kept in memory: the columns above, in that order.
Row = tuple[int, int, str, str, str, str, int, int, int]
# Every save has a number (`seq` in meta); each row it writes, and each path it deletes (a
# tombstone in `gone`), carries it. A process holding the rows of save N reads just what saves
# after N changed (a watcher's one-file sync: one row), not 100k rows; a rebuild starts a new
# `generation`, and tombstones are pruned past TOMBSTONES (then older readers load it all).
_CREATE = """
CREATE TABLE files (
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, record_id TEXT NOT NULL, type TEXT NOT NULL, problem TEXT NOT NULL,
    line INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, ino INTEGER NOT NULL, seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX files_seq ON files (seq);
CREATE TABLE gone (path TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX gone_seq ON gone (seq);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_SELECT = "SELECT path, " + ", ".join(COLUMNS) + " FROM files"
_UPSERT = "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_META = "INSERT OR REPLACE INTO meta VALUES (?, ?)"
_UPSERT_GONE = "INSERT OR REPLACE INTO gone VALUES (?, ?)"
TOMBSTONES = 20_000
# How many syncs saved changes (each after its one index commit): for `status` and tests.
_COUNT_SAVE = (
    "INSERT INTO meta VALUES ('saves', '1') "
    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
)
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


def ask_watcher(state_dir: Path, timeout: float | None = None) -> WatcherAnswer | None:
    """Ask the vault's running watcher what changed that its index does not hold yet (it first
    makes sure it has seen every file event up to now: see memkit/watcher.py). None when no
    healthy watcher answers in time (absent, starting, overflowed, polling, slow): walk then."""
    if timeout is None:
        timeout = WATCHER_ANSWER_SECONDS  # read at call time: a loaded test machine raises it
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


class VaultIndex:
    """The vault's search index and manifest, kept in line with the files under `.memkit/`."""

    def __init__(self, vault: Vault, *, lock_timeout: float = 30.0) -> None:
        self.vault = vault
        self.lock_timeout = lock_timeout
        self._index: SearchIndex | None = None
        self._index_folder: tuple[int, int] | None = None
        # The manifest as last read or written: never changed in place, only replaced, so a
        # caller may hold on to it. Valid while the database's `data_version` is `_version`.
        self._rows: dict[str, Row] | None = None
        self._version = -1
        self._scanned_ns = 0
        # The save (generation, number) `_rows` reflects: later saves are read as changes.
        self._generation = ""
        self._seq = 0
        # The open manifest database, and the (device, inode) of the file it opened.
        self._db: sqlite3.Connection | None = None
        self._db_identity: tuple[int, int] | None = None
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
        return self.vault.state_dir / MANIFEST_FILE

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
        self._close_db()

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db, self._db_identity = None, None
        self._forget_manifest()

    def load_manifest(self) -> dict[str, FileState]:
        """The manifest (path -> FileState), paths pending from a killed sync included.

        Empty when there is none, it is damaged or it was written for another index schema:
        the next sync then rebuilds the index from the files.
        """
        return {path: FileState.from_row(row) for path, row in self._current_rows().items()}

    def _current_rows(self) -> dict[str, Row]:
        """The manifest as rows, with the paths pending from a killed sync as UNKNOWN_ROW.
        Do not change it: it may be the cached one."""
        return self._manifest_rows()

    def _forget_manifest(self) -> None:
        self._rows, self._version, self._scanned_ns = None, -1, 0
        self._generation, self._seq = "", 0

    def _connect(self) -> sqlite3.Connection:
        """The manifest database, opened again when its file was deleted or replaced (a
        `rm -rf .memkit`, say). A damaged file is removed (derived state: a rebuild follows)."""
        path = self.manifest_path
        try:
            stat = os.stat(path)
            identity: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            identity = None
        if self._db is not None and identity == self._db_identity:
            return self._db
        self._close_db()
        for name in OLD_MANIFEST_FILES:  # an earlier release's manifest: rebuilt, never read
            with contextlib.suppress(OSError):
                (self.vault.state_dir / name).unlink()
        for attempt in range(2):
            try:
                db = sqlite3.connect(
                    path, timeout=self.lock_timeout, isolation_level=None, check_same_thread=False
                )
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")  # WAL: a kill -9 loses nothing
                    db.execute("PRAGMA user_version").fetchone()
                except sqlite3.Error:
                    db.close()
                    raise
                break
            except sqlite3.DatabaseError:
                if attempt:
                    raise
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{path}{suffix}")
        stat = os.stat(path)
        self._db, self._db_identity = db, (stat.st_dev, stat.st_ino)
        return db

    @staticmethod
    def _schema_ok(db: sqlite3.Connection) -> bool:
        """Whether the manifest was written by this version for this index schema."""
        if db.execute("PRAGMA user_version").fetchone()[0] != MANIFEST_VERSION:
            return False
        tables = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('files', 'gone', 'meta')"
        )
        if tables.fetchone()[0] != 3:
            return False
        row = db.execute("SELECT value FROM meta WHERE key = 'index_schema'").fetchone()
        return row is not None and str(row[0]) == str(SCHEMA_VERSION)

    def _manifest_rows(self) -> dict[str, Row]:
        """The manifest on disk, paths pending from a killed sync included (as UNKNOWN_ROW);
        cached while no other process changed it. Do not change the dict returned."""
        try:
            db = self._connect()
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if self._rows is not None and version == self._version:
                return self._rows
            db.execute("BEGIN")  # one snapshot for meta and rows
            try:
                generation, seq = "", 0
                if not self._schema_ok(db):
                    rows: dict[str, Row] = {}
                    scanned_ns = 0
                else:
                    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                    scanned_ns = int(meta.get("scanned_ns", 0))
                    generation, seq = str(meta.get("generation", "")), int(meta.get("seq", 0))
                    pruned = int(meta.get("pruned", 0))
                    if (
                        self._rows is not None
                        and generation == self._generation
                        and pruned <= self._seq <= seq
                    ):
                        # Just what later saves changed (a copy: the old dict stays as it was).
                        rows = dict(self._rows)
                        for row in db.execute(_SELECT + " WHERE seq > ?", (self._seq,)):
                            rows[row[0]] = row[1:]
                        for (path,) in db.execute(
                            "SELECT path FROM gone WHERE seq > ?", (self._seq,)
                        ):
                            rows.pop(path, None)
                    else:
                        rows = {row[0]: row[1:] for row in db.execute(_SELECT)}
            finally:
                db.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError):
            # Unreadable (a read-only `.memkit`, a damaged file): the next sync rebuilds.
            self._close_db()
            return {}
        self._rows, self._version, self._scanned_ns = rows, version, scanned_ns
        self._generation, self._seq = generation, seq
        return rows

    def _next_save(self, db: sqlite3.Connection) -> int:
        """Start a save: its number, recorded in meta (inside the write transaction)."""
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        seq = int(meta.get("seq", 0)) + 1
        db.execute(_SET_META, ("seq", str(seq)))
        self._generation = str(meta.get("generation", ""))
        return seq

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the manifest (under the index lock). A manifest of another
        version is replaced by an empty one first (the sync writing is then a rebuild)."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            if not self._schema_ok(db):
                for table in ("files", "gone", "meta"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in _CREATE.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {MANIFEST_VERSION}")
                db.execute("INSERT INTO meta VALUES ('index_schema', ?)", (str(SCHEMA_VERSION),))
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._forget_manifest()
            raise

    def saves(self) -> int:
        """How many syncs have saved changes to this manifest (each after one index commit)."""
        try:
            row = self._connect().execute("SELECT value FROM meta WHERE key = 'saves'").fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0]) if row else 0

    def _load_pending(self) -> list[str]:
        """Paths pending from a killed sync: in the manifest itself now (as UNKNOWN_ROW)."""
        return []

    def _save_pending(self, paths: Sequence[str]) -> None:
        """Before the index learns of paths the manifest does not list, list them (as
        UNKNOWN_ROW): if this process dies between the index commit and the manifest save,
        the next sync still looks at them (and drops their documents when the files are gone)."""
        with self._writing() as db:
            seq = self._next_save(db)
            db.executemany(
                "INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((path, *UNKNOWN_ROW, seq) for path in paths),
            )
            db.executemany("DELETE FROM gone WHERE path = ?", ((path,) for path in paths))
        # This process's cache leaves them out (the save after the commit writes their rows);
        # should that save never come (an error in between), the next read takes them in.
        self._version = -1

    def _save_manifest(self, files: dict[str, FileState], scanned_ns: int) -> None:
        """Write the whole manifest."""
        self._write_base({path: state.to_row() for path, state in files.items()}, scanned_ns)

    def _write_base(self, rows: dict[str, Row], scanned_ns: int) -> None:
        """Replace the whole manifest, in one transaction. Under the lock."""
        generation = os.urandom(8).hex()
        with self._writing() as db:
            seq = self._next_save(db)
            db.execute("DELETE FROM files")
            db.execute("DELETE FROM gone")
            db.executemany(_UPSERT, ((path, *row, seq) for path, row in rows.items()))
            db.executemany(
                _SET_META,
                [
                    ("scanned_ns", str(scanned_ns)),
                    ("generation", generation),
                    ("pruned", str(seq)),
                ],
            )
            db.execute(_COUNT_SAVE)
        self._rows, self._scanned_ns = rows, scanned_ns
        self._generation, self._seq = generation, seq

    def _save_changes(
        self,
        rows: dict[str, Row],
        changed: dict[str, Row],
        deleted: Sequence[str],
        scanned_ns: int,
    ) -> None:
        """Save `rows`, the manifest read at the start of this sync (under the lock) with
        `changed` and `deleted`: just those rows, in one transaction."""
        if (
            not changed
            and not deleted
            and scanned_ns == self._scanned_ns
            and self._rows is not None
        ):
            self._rows = rows
            return  # the manifest on disk says it all already
        with self._writing() as db:
            seq = self._next_save(db)
            db.executemany(_UPSERT, ((path, *row, seq) for path, row in changed.items()))
            db.executemany("DELETE FROM gone WHERE path = ?", ((path,) for path in changed))
            db.executemany("DELETE FROM files WHERE path = ?", ((path,) for path in deleted))
            db.executemany(_UPSERT_GONE, ((path, seq) for path in deleted))
            db.execute(_SET_META, ("scanned_ns", str(scanned_ns)))
            if db.execute("SELECT count(*) FROM gone").fetchone()[0] > TOMBSTONES:
                db.execute("DELETE FROM gone")
                db.execute(_SET_META, ("pruned", str(seq)))
            db.execute(_COUNT_SAVE)
        self._rows, self._scanned_ns, self._seq = rows, scanned_ns, seq

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """One index writer (sync, watcher) at a time across processes."""
        wait = self.lock_timeout if timeout is None else timeout
        with locking.held(
            self.vault.state_dir / "locks" / "index.lock",
            wait,
            f"another memkit process is updating the index of {self.vault.root} "
            f"(waited {wait:.0f} s); try again in a moment",
        ):
            yield

    # --- looking at the files --------------------------------------------------------------

    def stat_files(self) -> dict[str, FileStat]:
        """path -> (mtime_ns, size, ctime_ns, inode) of every entry that may be a record file
        (`is_record_path`), from the vault's one walk (lstat: special files included, as
        per-file problems; nothing followed, nothing opened)."""
        return walk_record_files(self.vault.root, RECORD_ROOTS, self.vault.notes_folders)

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
            if not is_record_path(relpath, self.vault.notes_folders):
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
        answer = ask_watcher(self.vault.state_dir)
        if answer is not None:  # a healthy watcher names what may differ: no walk
            self.last_check = "watcher"
            changed, gone = self.freshness_of(answer.paths, answer.directories)
            return bool(changed or gone)
        self.last_check = "walk"
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
        if not full and paths is not None and not paths and not directories:
            # Nothing to look at (a watcher vouched for every file): the report from the
            # manifest's own queries, without loading its rows into this process.
            quick = self._nothing_to_sync(lock_timeout)
            if quick is not None:
                quick.seconds = time.monotonic() - started
                return quick
        with self.lock(lock_timeout):
            report = SyncReport()
            # One handle for the whole sync (reopened here if its folder was deleted).
            index = self.index
            # Read under the lock: the manifest on disk (`on_disk`), and with the paths a
            # killed sync left pending (`manifest`; both the cached dicts: never changed here).
            # (Paths pending from a killed sync are in it, as UNKNOWN_ROW.)
            on_disk = manifest = self._manifest_rows()
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
                    self._save_pending(sorted(fresh))
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
                self._save_pending(sorted(new_paths))
            if full:
                pass  # the rebuild's documents went to the index above, while parsing
            elif upserts or report.deleted or reindexed:
                # The searchable moment: the commit (and the reader's reload) comes first,
                # the manifest after it.
                index.update(upserts, [*report.deleted, *reindexed])
            if full:
                self._write_base(new_manifest, scanned_ns)
            elif parsed or report.deleted:
                # (Nothing read and nothing gone: the manifest on disk is right as it is.)
                # What differs from the manifest on disk: the files read or gone (paths pending
                # from a killed sync are rows of their own, replaced or deleted here when seen).
                looked_at = parsed_paths.union(gone, vanished)
                changed_rows = {
                    path: row
                    for path in sorted(looked_at)
                    if (row := new_manifest.get(path)) is not None and on_disk.get(path) != row
                }
                deleted_rows = sorted(
                    path for path in looked_at if path not in new_manifest and path in on_disk
                )
                self._save_changes(new_manifest, changed_rows, deleted_rows, scanned_ns)
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

    def _nothing_to_sync(self, lock_timeout: float | None) -> SyncReport | None:
        """The report of a sync asked to look at nothing, or None when the manifest's rows are
        in this process already (the plain path is as quick) or a rebuild is due."""
        if self._rows is not None:
            return None
        with self.lock(lock_timeout):
            if self.index.rebuilt:
                return None
            try:
                db = self._connect()
                db.execute("BEGIN")
                try:
                    if not self._schema_ok(db):
                        return None
                    total = db.execute("SELECT count(*) FROM files").fetchone()[0]
                    problems = db.execute(
                        "SELECT path, line, problem FROM files WHERE problem != '' ORDER BY path"
                    ).fetchall()
                    proposals = db.execute(
                        "SELECT path FROM files WHERE type = 'proposal' ORDER BY path"
                    ).fetchall()
                finally:
                    db.execute("COMMIT")
            except sqlite3.Error:
                return None
        report = SyncReport(unchanged=int(total))
        report.problems = [Problem(str(p), int(line), str(m)) for p, line, m in problems]
        report.proposals_in_stores = [
            str(path) for (path,) in proposals if str(path).rpartition("/")[0] in STORE_FOLDERS
        ]
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
