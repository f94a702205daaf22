"""The manifest under `.memkit/`: one SQLite file, a row per file, and comparing the files with it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from memkit.file_state import COLUMNS as COLUMNS
from memkit.file_state import DIGEST_BITS, row_stat, same_content
from memkit.file_state import UNKNOWN_ROW as UNKNOWN_ROW
from memkit.file_state import FileState as FileState
from memkit.file_state import Row as Row
from memkit.file_state import misplaced as misplaced
from memkit.file_state import stat_digest as stat_digest
from memkit.file_state import state_of_record as state_of_record
from memkit.files import (
    RECORD_ROOTS,
    FileStat,
    is_record_path,
    walk_record_files,
)
from memkit.index import SCHEMA_VERSION
from memkit.records import TYPE_FOLDERS
from memkit.vault import Vault

# The manifest: one SQLite file (WAL) under `.memkit/`, a row per file. A sync saves what it
# changed in one transaction after its index commit, so a `kill -9` leaves either the old rows or
# the new ones. Its `user_version` is MANIFEST_VERSION: another version (or the JSON manifest,
# journal and pending list of earlier releases) means a rebuild from the files, never an error.
MANIFEST_FILE = "manifest.db"
MANIFEST_VERSION = 5  # 4: SQLite, with ctime and inode; 5: rows and tombstones carry a save number
OLD_MANIFEST_FILES = ("manifest.json", "manifest.journal", "pending.json")
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
# Small indexes over the few rows a sync that found nothing to do still reports (files with a
# problem, proposals outside the proposals folder), so that a watcher-vouched sync does not scan
# 100k rows (~35 ms). Created when missing, so manifests written before them gain them too.
_REPORT_INDEXES = (
    "CREATE INDEX IF NOT EXISTS files_problem ON files (path) WHERE problem != ''",
    "CREATE INDEX IF NOT EXISTS files_moved_proposal ON files (path)"
    f" WHERE type = 'proposal' AND path NOT LIKE '{TYPE_FOLDERS['proposal']}/%'",
)
# The reports' queries: their WHERE clauses are the indexes' own, so SQLite uses them.
SELECT_PROBLEMS = "SELECT path, line, problem FROM files WHERE problem != '' ORDER BY path"
SELECT_MOVED_PROPOSALS = (
    "SELECT path FROM files"
    f" WHERE type = 'proposal' AND path NOT LIKE '{TYPE_FOLDERS['proposal']}/%' ORDER BY path"
)
# The number of rows, as the last save left it (absent in manifests written before it was kept).
SELECT_FILE_COUNT = "SELECT value FROM meta WHERE key = 'files'"
_SELECT = "SELECT path, " + ", ".join(COLUMNS) + " FROM files"
_UPSERT = "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_META = "INSERT OR REPLACE INTO meta VALUES (?, ?)"
_UPSERT_GONE = "INSERT OR REPLACE INTO gone VALUES (?, ?)"
# One row's stat columns, in a Row's positions 0, 1, 7, 8 (for `_row_stat`).
_SELECT_ONE_STAT = "SELECT mtime_ns, size, 0, 0, 0, 0, 0, ctime_ns, ino FROM files WHERE path = ?"
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
# What a report names from the manifest alone: (number of rows, (path, line, problem) of the
# files with a problem, (path,) of the proposals outside the proposals folder).
Marks = tuple[int, list[tuple[str, int, str]], list[tuple[str]]]


class Manifest:
    """The manifest of a vault's index (path -> what the index holds of that file), cached per
    process, and the files compared with it: the part of `VaultIndex` that reads no index."""

    def __init__(self, vault: Vault, *, lock_timeout: float = 30.0) -> None:
        self.vault = vault
        self.lock_timeout = lock_timeout
        # The manifest as last read or written: never changed in place, only replaced, so a
        # caller may hold on to it. Valid while the database's `data_version` is `_version`.
        self._rows: dict[str, Row] | None = None
        self._version = -1
        self._scanned_ns = 0
        # The save (generation, number) `_rows` reflects: later saves are read as changes.
        self._generation = ""
        self._seq = 0
        # The last read that took in just what later saves changed: (the rows before, the rows
        # after, the paths that differ), so that what is worked out from rows can be updated.
        self.last_reload: tuple[dict[str, Row], dict[str, Row], set[str]] | None = None
        # The open manifest database, and the (device, inode) of the file it opened.
        self._db: sqlite3.Connection | None = None
        # One connection, used by several threads in a long-lived process (the watcher's sync,
        # its answers to other processes, a server's tools): one transaction at a time on it,
        # or a second BEGIN fails with "cannot start a transaction within a transaction".
        self._db_lock = threading.RLock()
        self._db_identity: tuple[int, int] | None = None

    # --- state files ---------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.vault.state_dir / MANIFEST_FILE

    def _close_db(self) -> None:
        with self._db_lock:
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
        with self._db_lock:
            return self._manifest_rows_locked()

    def _manifest_rows_locked(self) -> dict[str, Row]:
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
                        before = self._rows
                        rows = dict(before)
                        differ = set()
                        for row in db.execute(_SELECT + " WHERE seq > ?", (self._seq,)):
                            rows[row[0]] = row[1:]
                            differ.add(row[0])
                        for (path,) in db.execute(
                            "SELECT path FROM gone WHERE seq > ?", (self._seq,)
                        ):
                            rows.pop(path, None)
                            differ.add(path)
                        self.last_reload = (before, rows, differ)
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

    def _manifest_paths(self) -> set[str]:
        """The paths the manifest on disk lists (pending ones included), without loading its
        rows: all an asked-for rebuild needs of it (100k rows cost ~0.4 s and ~50 MB)."""
        with self._db_lock:
            try:
                db = self._connect()
                db.execute("BEGIN")
                try:
                    if not self._schema_ok(db):
                        return set()
                    return {path for (path,) in db.execute("SELECT path FROM files")}
                finally:
                    db.execute("COMMIT")
            except (sqlite3.Error, OSError, ValueError):
                self._close_db()
                return set()

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
        with self._db_lock:
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
                    db.execute(
                        "INSERT INTO meta VALUES ('index_schema', ?)", (str(SCHEMA_VERSION),)
                    )
                for statement in _REPORT_INDEXES:
                    db.execute(statement)
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
            with self._db_lock:
                db = self._connect()
                row = db.execute("SELECT value FROM meta WHERE key = 'saves'").fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0]) if row else 0

    @staticmethod
    def _shift_digest(
        db: sqlite3.Connection, before: Sequence[str], after: Mapping[str, Row]
    ) -> None:
        """Inside a save: the manifest's stat digest without the rows of `before` (those that
        exist) and with the rows `after`. (A manifest without one keeps none: the walk's
        comparison then reads the stat columns.)"""
        kept = db.execute("SELECT value FROM meta WHERE key = 'stat_digest'").fetchone()
        if kept is None:
            return  # (`_complete_digest` adds one after the save's writes)
        old = [
            (path, row_stat(row))
            for path in before
            if (row := db.execute(_SELECT_ONE_STAT, (path,)).fetchone()) is not None
        ]
        digest = int(kept[0]) - stat_digest(old)
        digest += stat_digest((path, row_stat(row)) for path, row in after.items())
        db.execute(_SET_META, ("stat_digest", str(digest & DIGEST_BITS)))

    @staticmethod
    def _complete_digest(db: sqlite3.Connection) -> None:
        """Inside a save, after its writes: a manifest written before the digest was kept (or
        by a killed sync's pending list) gains one, from its rows (once: ~100 ms at 100k)."""
        if db.execute("SELECT 1 FROM meta WHERE key = 'stat_digest'").fetchone() is None:
            rows = db.execute(
                "SELECT path, mtime_ns, size, 0, 0, 0, 0, 0, ctime_ns, ino FROM files"
            )
            digest = stat_digest((row[0], row_stat(row[1:])) for row in rows)
            db.execute(_SET_META, ("stat_digest", str(digest)))

    def _save_pending(self, paths: Sequence[str]) -> None:
        """Before the index learns of paths the manifest does not list, list them (as
        UNKNOWN_ROW): if this process dies between the index commit and the manifest save,
        the next sync still looks at them (and drops their documents when the files are gone)."""
        with self._writing() as db:
            seq = self._next_save(db)
            # (A path listed already keeps its row: only the new ones count, and enter the digest.)
            insert = "INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            new = [p for p in paths if db.execute(insert, (p, *UNKNOWN_ROW, seq)).rowcount]
            self._shift_digest(db, [], dict.fromkeys(new, UNKNOWN_ROW))
            if new:  # (the count of rows, kept for reports that read no rows)
                db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'files'",
                    (len(new),),
                )
            db.executemany("DELETE FROM gone WHERE path = ?", ((path,) for path in paths))
        # This process's cache leaves them out (the save after the commit writes their rows);
        # should that save never come (an error in between), the next read takes them in.
        self._version = -1

    def _write_base(self, rows: dict[str, Row], scanned_ns: int) -> None:
        """Replace the whole manifest, in one transaction. Under the lock."""
        with self._base_written(rows, scanned_ns):
            pass

    @contextlib.contextmanager
    def _base_written(self, rows: dict[str, Row], scanned_ns: int) -> Iterator[None]:
        """`_write_base` whose transaction commits when the block ends (and rolls back when it
        raises): a rebuild writes the rows while the index commits, and saves them after it."""
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
                    ("files", str(len(rows))),
                    ("stat_digest", str(stat_digest((p, row_stat(r)) for p, r in rows.items()))),
                ],
            )
            db.execute(_COUNT_SAVE)
            yield
        self._rows, self._scanned_ns = rows, scanned_ns
        self._generation, self._seq = generation, seq

    def _save_changes(
        self,
        rows: dict[str, Row],
        changed: dict[str, Row],
        deleted: Sequence[str],
        scanned_ns: int,
        *,
        complete: bool = True,
    ) -> None:
        """Save `rows`, the manifest read at the start of this sync (under the lock) with
        `changed` and `deleted`: just those rows, in one transaction. Not `complete`: `rows`
        are only those the sync looked at (see `_rows_of`), not kept as this process's."""
        if complete and (
            not changed
            and not deleted
            and scanned_ns == self._scanned_ns
            and self._rows is not None
        ):
            self._rows = rows
            return  # the manifest on disk says it all already
        with self._writing() as db:
            seq = self._next_save(db)
            self._shift_digest(db, [*changed, *deleted], changed)
            db.executemany(_UPSERT, ((path, *row, seq) for path, row in changed.items()))
            db.executemany("DELETE FROM gone WHERE path = ?", ((path,) for path in changed))
            db.executemany("DELETE FROM files WHERE path = ?", ((path,) for path in deleted))
            db.executemany(_UPSERT_GONE, ((path, seq) for path in deleted))
            db.execute(_SET_META, ("scanned_ns", str(scanned_ns)))
            if complete:
                db.execute(_SET_META, ("files", str(len(rows))))
            else:
                db.execute("INSERT OR REPLACE INTO meta SELECT 'files', count(*) FROM files")
            self._complete_digest(db)
            if db.execute("SELECT count(*) FROM gone").fetchone()[0] > TOMBSTONES:
                db.execute("DELETE FROM gone")
                db.execute(_SET_META, ("pruned", str(seq)))
            db.execute(_COUNT_SAVE)
        if complete:
            self._rows, self._scanned_ns, self._seq = rows, scanned_ns, seq

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
            or not same_content(root, path, state.sha256)
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
            or (stat[0] >= scanned_ns and not same_content(root, path, row[2]))
        )
        return changed, gone

    def _rows_of(
        self, paths: Sequence[str], directories: Sequence[str]
    ) -> tuple[dict[str, Row], int, int] | None:
        """(the rows of `paths` and of the files under `directories`, scanned_ns, number of
        rows) from the manifest on disk: what a sync of a few paths needs, in a process that has
        not read the 100k rows (a command indexing its own writes). None: cannot say."""
        try:
            with self._db_lock:
                db = self._connect()
                db.execute("BEGIN")  # one snapshot
                try:
                    if not self._schema_ok(db):
                        return None
                    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                    rows: dict[str, Row] = {}
                    for path in paths:
                        for row in db.execute(_SELECT + " WHERE path = ?", (path,)):
                            rows[row[0]] = row[1:]
                    for directory in directories:
                        prefix = directory.rstrip("/") + "/"
                        # ("0" follows "/": the range is every path under the folder.)
                        query = _SELECT + " WHERE path >= ? AND path < ?"
                        for row in db.execute(query, (prefix, prefix[:-1] + "0")):
                            rows[row[0]] = row[1:]
                finally:
                    db.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError):
            return None
        if "files" not in meta:
            return None
        return rows, int(meta.get("scanned_ns", 0)), int(meta["files"])

    def _marked_on_disk(self) -> Marks | None:
        """(number of rows, (path, line, problem) of the files with a problem, (path,) of the
        proposals outside the proposals folder) from the manifest on disk, reading no other
        row (small indexes); None when it cannot say."""
        try:
            with self._db_lock:  # one transaction at a time on the shared connection
                db = self._connect()
                db.execute("BEGIN")
                try:
                    if not self._schema_ok(db):
                        return None
                    kept = db.execute(SELECT_FILE_COUNT).fetchone()
                    total = (
                        kept[0]
                        if kept is not None
                        else db.execute("SELECT count(*) FROM files").fetchone()[0]
                    )
                    problems = db.execute(SELECT_PROBLEMS).fetchall()
                    proposals = db.execute(SELECT_MOVED_PROPOSALS).fetchall()
                finally:
                    db.execute("COMMIT")
        except sqlite3.Error:
            return None
        return int(total), problems, proposals

    def _digest_on_disk(self) -> tuple[int, int, int] | None:
        """(scanned_ns, number of rows, stat digest) as the last save left them, or None."""
        try:
            with self._db_lock:
                db = self._connect()
                db.execute("BEGIN")  # one snapshot of meta
                try:
                    if not self._schema_ok(db):
                        return None
                    meta = dict(
                        db.execute(
                            "SELECT key, value FROM meta"
                            " WHERE key IN ('scanned_ns', 'files', 'stat_digest')"
                        ).fetchall()
                    )
                finally:
                    db.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError):
            return None
        if len(meta) < 3:
            return None
        return int(meta["scanned_ns"]), int(meta["files"]), int(meta["stat_digest"])

    def _any_content_differs(self, racy_paths: Sequence[str]) -> bool:
        """Whether any of these files (same stat as the manifest, but changed in the same
        clock tick as its last scan) holds other content than the manifest's hash says."""
        if not racy_paths:
            return False
        root = str(self.vault.root)
        hashes = self._hashes_on_disk(racy_paths)
        return any(not same_content(root, path, hashes.get(path, "")) for path in racy_paths)

    def _hashes_on_disk(self, paths: Sequence[str]) -> dict[str, str]:
        """path -> content hash, from the manifest on disk, for a few paths."""
        try:
            with self._db_lock:
                db = self._connect()
                return {
                    path: str(row[0])
                    for path in paths
                    if (
                        row := db.execute(
                            "SELECT sha256 FROM files WHERE path = ?", (path,)
                        ).fetchone()
                    )
                }
        except (sqlite3.Error, OSError, ValueError):
            return {}

    def _differs(self, stats: Mapping[str, FileStat]) -> bool:
        """Whether the walk's `stats` differ from the manifest (see `is_stale`)."""
        if self._rows is None:
            # A process that has not read the manifest yet (a command): when nothing differs,
            # it never needs the rows: the walk is compared with the digest of their stats.
            kept = self._digest_on_disk()
            if kept is not None:
                scanned_ns, count, digest = kept
                if count != len(stats) or stat_digest(stats.items()) != digest:
                    return True
                racy_paths = [path for path, stat in stats.items() if stat[0] >= scanned_ns]
                return self._any_content_differs(racy_paths)
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
        return any(not same_content(root, path, sha256) for path, sha256 in racy)
