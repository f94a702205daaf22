"""Keeping the search index true to the vault's files: incremental sync, rebuild, freshness, search."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from memkit import locking
from memkit.documents import documents_for
from memkit.errors import InvalidRecord, LockTimeout
from memkit.files import FileStat, NotRegularFile, fingerprint_bytes, read_regular
from memkit.index import (
    SCHEMA_VERSION,
    Hit,
    IndexDoc,
    PreparedDoc,
    RankWeights,
    SearchIndex,
    SearchRequest,
    SearchResult,
    as_request,
    prepare_document,
)
from memkit.kept_documents import KeptDocuments
from memkit.manifest import MANIFEST_FILE as MANIFEST_FILE
from memkit.manifest import MANIFEST_VERSION as MANIFEST_VERSION
from memkit.manifest import UNKNOWN_ROW as UNKNOWN_ROW
from memkit.manifest import (
    FileState,
    Manifest,
    Marks,
    Row,
    misplaced,
    state_of_record,
)
from memkit.parallel import in_batches
from memkit.records import STORE_TYPES, TYPE_FOLDERS, Record, parse_record
from memkit.sync_report import SyncReport as SyncReport
from memkit.vault import Problem, Vault
from memkit.watch_protocol import WATCHER_FILE as WATCHER_FILE
from memkit.watch_protocol import WatcherAnswer as WatcherAnswer
from memkit.watch_protocol import ask_watcher as ask_watcher
from memkit.watch_protocol import socket_address as socket_address
from memkit.watch_protocol import watcher_address as watcher_address
from memkit.watch_protocol import watcher_info

# Below this many files to parse, a process pool costs more than it saves.
PARALLEL_THRESHOLD = 2000
STORE_FOLDERS = {TYPE_FOLDERS[t] for t in STORE_TYPES.values()}

Progress = Callable[[int, int], None]


@dataclass(slots=True)  # (a rebuild holds one per file)
class Parsed:
    path: str
    state: FileState
    docs: list[IndexDoc] | None  # None: same content as `known`, not parsed again
    record: Record | None = None  # kept when its type is not its folder's (see `hold`)


def _parse_file(
    root: str, relpath: str, known: FileState | None = None, record: Record | None = None
) -> Parsed | None:
    """Read and parse one file into its manifest state and index documents (None if gone).

    When the content hashes the same as `known` (a touched or racily clean file), the parse is
    skipped and the known record id, type and problem are kept.
    """
    if record is not None and (given := state_of_record(root, relpath, record)) is not None:
        return Parsed(relpath, given, documents_for(record))  # as the caller read it
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
    if misplaced(relpath, record.type):
        record.fingerprint = fingerprint_bytes(data, stat)
        return Parsed(relpath, state, documents_for(record), record)
    return Parsed(relpath, state, documents_for(record))


def _parse_batch(root: str, items: list[tuple[str, FileState | None]]) -> list[Parsed]:
    return [p for p in (_parse_file(root, r, k) for r, k in items) if p is not None]


# A file read for a rebuild: its path, its manifest row and its documents ready for the index.
Rebuilt = tuple[str, Row, list[PreparedDoc]]


def _rebuild_batch(root: str, relpaths: list[str]) -> list[Rebuilt]:
    """A rebuild's share of the work that can run in a worker process: read, parse, prepare
    each file's documents. Plain tuples: they cross back to the parent several times cheaper
    than dataclasses, and the parent (feeding Tantivy, the slowest part) does less."""
    batch: list[Rebuilt] = []
    for relpath in relpaths:
        parsed = _parse_file(root, relpath)
        if parsed is not None:
            docs = [prepare_document(doc) for doc in parsed.docs or ()]
            batch.append((parsed.path, parsed.state.to_row(), docs))
    return batch


def _report_marks(report: SyncReport, marked: Marks) -> None:
    """`report`'s problems and proposals in store folders from `Manifest._marked_on_disk`."""
    report.problems = [Problem(str(p), int(line), str(m)) for p, line, m in marked[1]]
    report.proposals_in_stores = [
        str(p) for (p,) in marked[2] if str(p).rpartition("/")[0] in STORE_FOLDERS
    ]


def _in_store(path: str, row: Row) -> bool:
    """Whether this is a proposal in a store folder (a person approved it by moving it)."""
    # (The folder by string: a PurePosixPath per proposal cost 35 ms a sync at 100k.)
    return row[4] == "proposal" and path.rpartition("/")[0] in STORE_FOLDERS


class VaultIndex(Manifest):
    """The vault's search index and manifest, kept in line with the files under `.memkit/`."""

    def __init__(self, vault: Vault, *, lock_timeout: float = 30.0) -> None:
        super().__init__(vault, lock_timeout=lock_timeout)
        self._index: SearchIndex | None = None
        self._index_folder: tuple[int, int] | None = None
        # The rows `_marked` last answered for, and its answer.
        self._marks: tuple[dict[str, Row], set[str], set[str]] | None = None
        # The documents of the day files this process indexed last: a change replaces only
        # the documents that differ.
        self._documents = KeptDocuments()
        # Inside `operation()`: whether its one freshness check was made (None: outside one).
        self._checked: bool | None = None
        # Which way the last freshness check answered ("watcher", "walk", "rebuilt", "").
        self.last_check = ""
        # Inside `batch()`: this process's writes wait to be indexed in one commit at its end.
        self._batches = 0

    @property
    def search_index(self) -> SearchIndex:
        """The search index, opened on first use and again when its folder was deleted or
        replaced under this process (then it asks for a rebuild: `needs_rebuild` is set)."""
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

    def is_stale(self) -> bool:
        """Whether the index misses a change to the files (or must be rebuilt).

        The same answer as `freshness` gives (any file added, gone or with another stat; a
        racily clean one whose content changed), but it stops at the first difference and reads
        no file unless all stats agree."""
        if self.search_index.needs_rebuild:
            return True
        answer = ask_watcher(self.vault.state_dir)
        if answer is not None:  # a healthy watcher names what may differ: no walk
            self.last_check = "watcher"
            changed, gone = self.freshness_of(answer.paths, answer.directories)
            return bool(changed or gone)
        self.last_check = "walk"
        return self._differs(self.stat_files())

    # --- one freshness check per operation ------------------------------------------------

    def index_writes(
        self, *, lock_timeout: float | None = None, records: Mapping[str, Record] | None = None
    ) -> SyncReport | None:
        """Write-through: index exactly the paths this process's Vault wrote since this index
        last took them (creates, updates, moves, deletes), without a walk. None: nothing new.
        `records`: files as the writer read them back (not parsed again)."""
        touched = self.vault.touched
        log = getattr(touched, "log", None)
        if log is None or touched.indexed >= len(log) or self._batches:
            return None  # nothing new, or inside a batch: indexed once at its end
        end = len(log)
        paths = sorted(set(log[touched.indexed : end]))
        report = self.sync(paths=paths, lock_timeout=lock_timeout, records=records)
        touched.indexed = max(touched.indexed, end)
        return report

    def ensure_fresh(self, *, lock_timeout: float | None = None) -> str:
        """Bring the index in line with the files, looking once, the cheapest way there is:
        this process's own writes are indexed by path; then a healthy `memkit watch` says what
        changed since it last synced (no walk), or else one stat walk, whose result the sync
        that follows reuses. Returns which answered: "watcher" or "walk" ("rebuilt" when the
        index had to be rebuilt). Raises LockTimeout when another process holds the index."""
        self.index_writes(lock_timeout=lock_timeout)
        if self.search_index.needs_rebuild:
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
        items = [(relpath, known.get(relpath)) for relpath in relpaths]
        for batch in in_batches(_parse_batch, root, items, PARALLEL_THRESHOLD, progress):
            yield from batch

    def _stream_documents(
        self, relpaths: Sequence[str], progress: Progress | None, parsed: list[Parsed]
    ) -> Iterator[PreparedDoc]:
        """The documents of `relpaths`, parsed afresh, file by file, ready for the index. Each
        file's manifest state goes to `parsed` (the documents are freed once indexed)."""
        root = str(self.vault.root)
        for batch in in_batches(_rebuild_batch, root, list(relpaths), PARALLEL_THRESHOLD, progress):
            for path, row, docs in batch:
                parsed.append(Parsed(path, FileState(*row), []))
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
        records: Mapping[str, Record] | None = None,
        hold: bool = False,
    ) -> SyncReport:
        """Bring the index in line with the files.

        `full` rebuilds from scratch; `paths`/`directories` limit the look to what a watcher saw
        change (otherwise every file is stat-ed and compared with the manifest). `walked` is a
        walk already made for this operation, (file system time taken before it, its stats):
        reused instead of walking again. `records`: files the caller read, indexed from these.
        `hold`: changed files whose type is not their folder's (and the files they moved from)
        stay out of the sync, returned in `held`, for the caller to rewrite and then index with
        `records` (one commit; learning finalises approvals so). Not in a rebuild.
        """
        started = time.monotonic()
        if not full and paths is None and not directories and self._rows is None:
            # A command's walk: compared with the manifest's stat columns first, so that a
            # vault where nothing changed is reported without loading every row.
            if walked is None:
                walked = (self._file_system_now(), self.stat_files())
            if not self._differs(walked[1]):
                quick = self._nothing_to_sync(lock_timeout)
                if quick is not None:
                    quick.unchanged = len(walked[1])
                    quick.seconds = time.monotonic() - started
                    return quick
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
            index = self.search_index
            # Read under the lock: the manifest on disk (`on_disk`), and with the paths a
            # killed sync left pending (`manifest`; both the cached dicts: never changed here).
            # (Paths pending from a killed sync are in it, as UNKNOWN_ROW.)
            # (A rebuild asked for reads just the manifest's paths, below.)
            # A process that has not read the rows (a command indexing its own writes) reads
            # just those of the paths it looks at (`partial`), not 100k of them.
            looks_at_few = paths is not None or bool(directories)
            some = None
            if not full and looks_at_few and self._rows is None:
                some = self._rows_of(paths or (), directories)
            partial = some is not None and some[2] > 0
            on_disk: dict[str, Row]
            if full:
                on_disk = manifest = {}
            elif some is not None and partial:
                on_disk, self._scanned_ns, file_count = some
                manifest = on_disk
            else:
                on_disk = manifest = self._manifest_rows()
                file_count = len(manifest)
            scanned_ns = self._scanned_ns
            if index.needs_rebuild or not (manifest or partial):
                full, partial = True, False
            stats: Mapping[str, FileStat]
            if not full and looks_at_few:
                stats, to_read, gone = self.targeted_changes(manifest, paths or (), directories)
                total = file_count - len(gone) + len([p for p in stats if p not in manifest])
            else:
                if walked is not None:
                    scanned_ns, stats = walked
                else:
                    # Taken before the walk: a file changed after this moment is racy next time.
                    scanned_ns = self._file_system_now()
                    stats = self.stat_files()
                # (A rebuild reads every file: nothing to compare.)
                to_read, gone = ([], []) if full else self._compare(manifest, stats)
                total = len(stats)
            if full:
                report.rebuilt = True
                to_read, gone, manifest = sorted(stats), [], {}
            if full:
                # A rebuild streams: documents go to the index writer while the workers parse
                # (parsing overlaps indexing, and the documents of all files are never in
                # memory at once). Any path may be new to the index: list them first (see the
                # pending list below).
                listed = on_disk.keys() if on_disk else self._manifest_paths()
                fresh = {p for p in to_read if p not in listed}
                if fresh:
                    self._save_pending(sorted(fresh))
                # The manifest read and the walk are replaced whole: let them go (at 100k files
                # they hold ~70 MB that a rebuild's peak memory would carry to its end).
                del fresh, listed
                on_disk, stats = {}, {}
                self._forget_manifest()
                parsed: list[Parsed] = []
                self._documents.clear()
                # The manifest is written while the index commits, saved once it has (its rows:
                # what the loop below gives a rebuild, every file read, nothing gone).
                index.replace_all_prepared(
                    self._stream_documents(to_read, progress, parsed),
                    lambda: self._base_written(
                        {item.path: item.state.to_row() for item in parsed}, scanned_ns
                    ),
                )
            else:
                known = {
                    path: FileState.from_row(row)
                    for path in to_read
                    if (row := manifest.get(path)) is not None and row[2]
                }
                if records:  # files the caller read (or wrote and read back): from its records
                    root = str(self.vault.root)
                    found = (_parse_file(root, p, known.get(p), records.get(p)) for p in to_read)
                    parsed = [item for item in found if item is not None]
                else:
                    parsed = self._parse_many(to_read, known, progress)
                if hold:
                    report.held = {item.path: r for item in parsed if (r := item.record)}
            if report.held:
                origins = {manifest[p][2]: p for p in gone if p in manifest and manifest[p][2]}
                report.moved = [
                    (origins[i.state.sha256], i.path)
                    for i in parsed
                    if i.path in report.held and i.state.sha256 in origins
                ]
                parsed = [item for item in parsed if item.path not in report.held]
                to_read = [p for p in to_read if p not in report.held]
                gone = [p for p in gone if p not in {origin for origin, _ in report.moved}]
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
                upserts, keep, stale_keys = self._documents.changes(upserts, manifest)
                index.update(
                    upserts,
                    [*report.deleted, *reindexed],
                    keep_paths=keep,
                    delete_keys=stale_keys,
                )
                self._documents.remember(
                    ((item.path, item.state.sha256, item.docs) for item in parsed), report.deleted
                )
            if full:
                pass  # the manifest was written with the index's commit, above
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
                self._save_changes(
                    new_manifest, changed_rows, deleted_rows, scanned_ns, complete=not partial
                )
            index.needs_rebuild = False
        marked = self._marked_on_disk() if partial else None
        if marked is not None:  # (from the manifest's small indexes, as saved just now)
            _report_marks(report, marked)
        else:
            if partial:
                new_manifest = manifest = self._manifest_rows()
            problems, proposals = self._marked(
                new_manifest, manifest, parsed_paths.union(gone, vanished)
            )
            report.problems = sorted(
                (Problem(p, new_manifest[p][6], new_manifest[p][5]) for p in problems),
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
            if self.search_index.needs_rebuild:
                return None
            marked = self._marked_on_disk()
            if marked is None:
                return None
        report = SyncReport(unchanged=marked[0])
        _report_marks(report, marked)
        return report

    def _marked(
        self, rows: dict[str, Row], previous: dict[str, Row], looked_at: set[str]
    ) -> tuple[set[str], set[str]]:
        """(paths of files that are not valid records, proposals in a store folder) in `rows`,
        which is `previous` changed at `looked_at`. Worked out from the last answer when that
        was for `previous` (a scan of 100k rows costs a watcher's sync ~25 ms)."""
        marks = self._marks
        reload = self.last_reload
        if (
            marks is not None
            and reload is not None
            and reload[0] is marks[0]
            and reload[1] is previous
        ):
            # Another process saved since: `previous` is the rows marked last time plus what
            # its saves changed (a watcher syncing this process's own writes, say).
            marks, looked_at = (previous, marks[1], marks[2]), looked_at | reload[2]
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
        query: str | SearchRequest,
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
        (result, stale). Takes a `SearchRequest` (then only `sync` besides), or the same fields
        as keywords; a request without weights ranks with the vault's settings."""
        request = as_request(
            query,
            k=k,
            types=types,
            tags=tags,
            since=since,
            until=until,
            include_hidden=include_hidden,
            now=now,
        )
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
        if request.weights is None:
            settings = self.vault.settings.search
            weights = RankWeights(
                bm25=settings.weights.bm25,
                importance=settings.weights.importance,
                recency=settings.weights.recency,
                recency_half_life_days=settings.recency_half_life_days,
            )
            request = dataclasses.replace(request, weights=weights)
        # An index waiting for its rebuild (deleted, another schema) is not to be trusted.
        index = self.search_index
        stale = stale or index.needs_rebuild
        return index.search(request), stale

    # --- watcher presence ---------------------------------------------------------------------

    def watcher_info(self) -> dict[str, Any] | None:
        """The running watcher's pid and heartbeat, or None when none is alive."""
        return watcher_info(self.vault.state_dir)

    # --- looking inside ------------------------------------------------------------------------

    def indexed_documents(self) -> dict[str, Hit]:
        """Every document in the index, by key (expired and superseded ones too). Never syncs.

        For checks and tests: compare what the index holds with what the files say.
        """
        index = self.search_index
        count = index.doc_count()
        # A search with no words browses the filtered documents: with k above the document
        # count it returns them all.
        result = index.search("", k=count + 1, include_hidden=True)
        return {hit.key: hit for hit in result.hits}
