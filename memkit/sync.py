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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from memkit.documents import documents_for
from memkit.errors import InvalidRecord, LockTimeout
from memkit.index import SCHEMA_VERSION, Hit, IndexDoc, RankWeights, SearchIndex, SearchResult
from memkit.records import STORE_TYPES, TYPE_FOLDERS, parse_record
from memkit.vault import RECORD_ROOTS, Problem, Vault, is_record_path, is_temporary_name

MANIFEST_VERSION = 1
WATCHER_FILE = "watcher.json"
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

    def to_list(self) -> list[Any]:
        return [
            self.mtime_ns,
            self.size,
            self.sha256,
            self.record_id,
            self.type,
            self.problem,
            self.line,
        ]

    @classmethod
    def from_list(cls, row: list[Any]) -> FileState:
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
        with open(full, "rb") as handle:
            data = handle.read()
            stat = os.fstat(handle.fileno())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    state = FileState(stat.st_mtime_ns, stat.st_size, hashlib.sha256(data).hexdigest())
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


def _same_content(root: str, relpath: str, state: FileState) -> bool:
    """Whether the file still hashes as the manifest says (False when it is gone)."""
    try:
        with open(os.path.join(root, relpath), "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest() == state.sha256
    except OSError:
        return False


# Manifest entry of a path whose documents may be in the index after a killed sync: matches no
# file, so the next sync reads the file again or, when it is gone, deletes its documents.
def _unknown_state() -> FileState:
    return FileState(-1, -1, "")


class VaultIndex:
    """The vault's search index and manifest, kept in line with the files under `.memkit/`."""

    def __init__(self, vault: Vault, *, lock_timeout: float = 30.0) -> None:
        self.vault = vault
        self.lock_timeout = lock_timeout
        self._index: SearchIndex | None = None
        self._index_folder: tuple[int, int] | None = None
        self._manifest: dict[str, FileState] | None = None
        self._manifest_key: tuple[int, int, int] | None = None
        self._scanned_ns = 0

    # --- state files ---------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.vault.state_dir / "manifest.json"

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
        """The manifest (path -> FileState); cached while the file on disk is unchanged.

        Empty when there is none, it is damaged or it was written for another index schema:
        the next sync then rebuilds the index from the files.
        """
        pending = self._load_pending()
        if pending is None:
            return {}  # a damaged list of pending paths: only a rebuild is sure to be right
        files = self._load_manifest_file()
        for path in pending:
            files.setdefault(path, _unknown_state())
        return files

    def _load_manifest_file(self) -> dict[str, FileState]:
        try:
            stat = self.manifest_path.stat()
        except FileNotFoundError:
            self._scanned_ns = 0
            return {}
        # Inode too, not just mtime: another process replaces the file, and two writes may fall
        # within one tick of a coarse file system clock.
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._manifest is not None and self._manifest_key == key:
            return dict(self._manifest)
        try:
            data = json.loads(self.manifest_path.read_bytes())
            if (
                data.get("version") != MANIFEST_VERSION
                or data.get("index_schema") != SCHEMA_VERSION
            ):
                self._scanned_ns = 0
                return {}
            files = {path: FileState.from_list(row) for path, row in data["files"].items()}
            scanned_ns = int(data.get("scanned_ns", 0))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            # A damaged manifest is derived state: the next sync rebuilds from the files.
            self._scanned_ns = 0
            return {}
        self._manifest, self._manifest_key, self._scanned_ns = files, key, scanned_ns
        return dict(files)

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
        data = {
            "version": MANIFEST_VERSION,
            "index_schema": SCHEMA_VERSION,
            "scanned_ns": scanned_ns,
            "files": {path: state.to_list() for path, state in sorted(files.items())},
        }
        temp = self.manifest_path.with_suffix(".json.tmp")
        temp.write_text(json.dumps(data, separators=(",", ":")), "utf-8")
        os.replace(temp, self.manifest_path)
        stat = self.manifest_path.stat()
        self._manifest = dict(files)
        self._manifest_key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        self._scanned_ns = scanned_ns

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

    def stat_files(self) -> dict[str, tuple[int, int]]:
        """path -> (mtime_ns, size) for every file that may be a record (`is_record_path`)."""
        found: dict[str, tuple[int, int]] = {}
        root = str(self.vault.root)
        prefix = len(root) + 1

        # The same rule as vault.is_record_path, checked one name at a time as the walk goes
        # down (that function builds a PurePosixPath per file: 10x the cost of the stat).
        def walk(directory: str, depth: int) -> None:
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return
            for entry in entries:
                name = entry.name
                if is_temporary_name(name):
                    continue  # hidden folders, editors' scratch files
                try:
                    if entry.is_dir(follow_symlinks=False):
                        walk(entry.path, depth + 1)
                    elif depth and name.endswith(".md"):
                        stat = entry.stat()
                        relpath = entry.path[prefix:].replace(os.sep, "/")
                        found[relpath] = (stat.st_mtime_ns, stat.st_size)
                except OSError:
                    continue  # vanished while walking: the next sync sees it gone

        for top in RECORD_ROOTS:
            walk(os.path.join(root, top), 0)
        return found

    def _needs_reading(self, state: FileState | None, mtime: int, size: int) -> bool:
        if state is None or state.mtime_ns != mtime or state.size != size:
            return True
        return self._is_racy(state)

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

    def changes(
        self,
    ) -> tuple[dict[str, tuple[int, int]], dict[str, FileState], list[str], list[str]]:
        """(stats, manifest, paths to read, paths gone) comparing files with the manifest.

        Paths to read include racily clean files (same stat, maybe not the same content).
        """
        manifest = self.load_manifest()
        stats = self.stat_files()
        to_read = sorted(
            path
            for path, (mtime, size) in stats.items()
            if self._needs_reading(manifest.get(path), mtime, size)
        )
        gone = sorted(path for path in manifest if path not in stats)
        return stats, manifest, to_read, gone

    def freshness(
        self,
    ) -> tuple[dict[str, tuple[int, int]], dict[str, FileState], list[str], list[str]]:
        """(stats, manifest, changed, gone): like `changes`, but a racily clean file counts as
        changed only when its content differs. Reads; never writes."""
        stats, manifest, to_read, gone = self.changes()
        root = str(self.vault.root)
        changed = [
            path
            for path in to_read
            if (state := manifest.get(path)) is None
            or (state.mtime_ns, state.size) != stats[path]
            or not _same_content(root, path, state)
        ]
        return stats, manifest, changed, gone

    def targeted_changes(
        self, manifest: dict[str, FileState], paths: Sequence[str], directories: Sequence[str]
    ) -> tuple[dict[str, tuple[int, int]], list[str], list[str]]:
        """Like `changes` but only for the given paths and folders (what a watcher saw)."""
        candidates = set(paths)
        for directory in directories:
            prefix = directory.rstrip("/") + "/"
            candidates.update(p for p in manifest if p.startswith(prefix))
            for folder, _subdirs, files in os.walk(self.vault.root / directory):
                base = Path(folder).relative_to(self.vault.root).as_posix()
                candidates.update(f"{base}/{name}" for name in files)
        stats: dict[str, tuple[int, int]] = {}
        for relpath in candidates:
            if not is_record_path(relpath):
                continue
            try:
                stat = os.stat(self.vault.root / relpath)
            except (FileNotFoundError, NotADirectoryError):
                continue
            stats[relpath] = (stat.st_mtime_ns, stat.st_size)
        named = set(paths)
        # A path the watcher named changed for sure (an edit may keep mtime and size within
        # one clock tick): read it; the hash tells whether to reindex.
        to_read = sorted(
            path
            for path, (mtime, size) in stats.items()
            if path in named or self._needs_reading(manifest.get(path), mtime, size)
        )
        gone = sorted(path for path in candidates if path not in stats and path in manifest)
        return stats, to_read, gone

    def is_stale(self) -> bool:
        """Whether the index misses a change to the files (or must be rebuilt)."""
        if self.index.rebuilt:
            return True
        stats, manifest, changed, gone = self.freshness()
        return bool(changed or gone) or (not manifest and bool(stats))

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
    ) -> SyncReport:
        """Bring the index in line with the files.

        `full` rebuilds from scratch; `paths`/`directories` limit the look to what a watcher saw
        change (otherwise every file is stat-ed and compared with the manifest).
        """
        started = time.monotonic()
        with self.lock(lock_timeout):
            report = SyncReport()
            # One handle for the whole sync (reopened here if its folder was deleted).
            index = self.index
            manifest = self.load_manifest()
            on_disk = set(manifest)
            scanned_ns = self._scanned_ns
            if index.rebuilt or not manifest:
                full = True
            if not full and (paths is not None or directories):
                stats, to_read, gone = self.targeted_changes(manifest, paths or (), directories)
                total = len(manifest) - len(gone) + len([p for p in stats if p not in manifest])
            else:
                # Taken before the walk: a file changed after this moment is racy next time.
                scanned_ns = self._file_system_now()
                stats, manifest, to_read, gone = self.changes()
                on_disk = set(manifest)
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
                    self._save_pending(sorted(fresh | set(self._load_pending() or ())))
                parsed: list[Parsed] = []
                index.replace_all(self._stream_documents(to_read, progress, parsed))
            else:
                parsed = self._parse_many(to_read, manifest, progress)
            new_manifest = dict(manifest)
            for path in gone:
                new_manifest.pop(path, None)
            upserts: list[IndexDoc] = []
            reindexed: list[str] = []
            for item in parsed:
                previous = manifest.get(item.path)
                new_manifest[item.path] = item.state
                if item.docs is None:
                    continue  # touched or racy, same content: nothing to reindex
                upserts.extend(item.docs)
                reindexed.append(item.path)
                known = previous is not None and previous.sha256 != ""
                (report.changed if known else report.added).append(item.path)
            parsed_paths = {item.path for item in parsed}
            vanished = [p for p in to_read if p not in parsed_paths]  # deleted while we read
            for path in vanished:
                new_manifest.pop(path, None)
            report.deleted = sorted(set(gone) | {p for p in vanished if p in manifest})
            report.unchanged = total - len(report.added) - len(report.changed)
            # A deleted file whose content reappeared elsewhere is a move (approval, rename).
            gone_hashes = {
                manifest[p].sha256: p
                for p in report.deleted
                if p in manifest and manifest[p].sha256
            }
            for path in report.added:
                origin = gone_hashes.get(new_manifest[path].sha256)
                if origin is not None:
                    report.moved.append((origin, path))
            # Before the index learns of paths the manifest on disk does not list, note them:
            # if this process dies between the index commit and the manifest save, the next
            # sync still knows to look at them.
            # (Paths still pending from an earlier crash stay listed until the manifest is saved.)
            new_paths = {p for p in reindexed if p not in on_disk}
            if new_paths and not full:  # (a rebuild listed them before it began)
                self._save_pending(sorted(new_paths | set(self._load_pending() or ())))
            if full:
                pass  # the rebuild's documents went to the index above, while parsing
            elif upserts or report.deleted or reindexed:
                index.update(upserts, [*report.deleted, *reindexed])
            if full or parsed or report.deleted:
                # (Nothing read and nothing gone: the manifest on disk is right as it is.)
                self._save_manifest(new_manifest, scanned_ns)
                # The manifest now lists all the index holds: the pending list did its job.
                self.pending_path.unlink(missing_ok=True)
            index.rebuilt = False
        report.problems = self.problems(new_manifest)
        report.proposals_in_stores = sorted(
            path
            for path, state in new_manifest.items()
            # (The folder by string: a PurePosixPath per proposal cost 35 ms a sync at 100k.)
            if state.type == "proposal" and path.rpartition("/")[0] in STORE_FOLDERS
        )
        report.seconds = time.monotonic() - started
        return report

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
        """Search, syncing first when files changed; returns (result, stale)."""
        stale = False
        if sync:
            try:
                if self.is_stale():
                    self.sync(lock_timeout=2.0)
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
