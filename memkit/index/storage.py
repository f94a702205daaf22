"""The index on disk: the Tantivy schema, opening and recovering it, the writer, its lock, commits."""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import tantivy

from memkit.errors import LockTimeout, SearchIndexError
from memkit.index.model import IndexDoc

_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="IndexStorage")

# Bump whenever a field, a tokenizer or what goes into a field changes: an index built
# by another version is then wiped and rebuilt from the Markdown files (never an error).
SCHEMA_VERSION: int = 4

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)

# Our own analyzer, registered on the index under this name, so that the index and the
# query builder run the very same chain (hand-built term and phrase queries are not
# analysed by tantivy). ascii_fold lets "cafe" find "café".
_ANALYZER = "memkit_en"
# A rebuild's writer: one indexing thread with a 64 MB arena. On two cores the parse workers
# and the thread that builds documents are busy too, so a second indexing thread only competes
# with them; at 100k records this makes 4 segments (what 2 threads x 64 MB made: no merge at
# the end) for half the memory of 128 MB.
_HEAP_BULK = 64_000_000
_HEAP_SMALL = 32_000_000
_READY_MARKER = "memkit-ready"
# Names tantivy writes into an index folder: the only things we delete outside our own
# versioned folder, so a mistaken `directory` (say, the vault root) never loses a note.
_TANTIVY_FILE = re.compile(
    r"^(meta\.json|\.managed\.json|\.tantivy-(meta|writer)\.lock"
    r"|[0-9a-f]{32}(\.[0-9]+)?\.(idx|term|store|pos|fast|fieldnorm|del))$"
)
_VERSION_DIR = re.compile(r"^v[0-9]+$")
_SURROGATE = re.compile("[\ud800-\udfff]")


def build_analyzer(stop_words: Collection[str] = ()) -> tantivy.TextAnalyzer:
    """memkit's word chain (what the index stores, what queries look up), less `stop_words`."""
    builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
    builder = builder.filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase())
    if stop_words:
        builder = builder.filter(tantivy.Filter.custom_stopword(sorted(stop_words)))
    builder = builder.filter(tantivy.Filter.ascii_fold()).filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    for name in ("key", "path", "record_id", "type", "message_id", "session", "speaker"):
        sb.add_text_field(name, stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("title", stored=True, tokenizer_name=_ANALYZER)
    sb.add_text_field("text", stored=True, tokenizer_name=_ANALYZER)
    # What surrounds a record (for a message: its neighbouring turns) is most of the indexed
    # words; it is scored (frequencies) but never matched as a phrase, so it keeps no positions
    # (what makes a rebuild slower and its writer's memory larger).
    sb.add_text_field("context", stored=False, tokenizer_name=_ANALYZER, index_option="freq")
    sb.add_text_field("surround", stored=False, tokenizer_name=_ANALYZER, index_option="freq")
    # The speaker's name as words, so that a query word can be recognised as a speaker.
    sb.add_text_field("speaker_words", stored=False, tokenizer_name=_ANALYZER)
    # Tags shown as written, filtered case-insensitively: two fields.
    sb.add_text_field("tags", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("tag_keys", stored=False, tokenizer_name="raw", index_option="basic")
    # Times are integer microseconds since the epoch (UTC): fast_field_values can read
    # integers for ranking without fetching stored documents; it cannot read dates.
    sb.add_integer_field("when_us", indexed=True, fast=True)  # updated, else created
    # Not a fast field: the "not expired" filter of every search is then a range over the
    # few expiry terms of the term dictionary, not a scan of a column over all documents.
    sb.add_integer_field("expires_us", indexed=True)
    sb.add_integer_field("created_us", stored=True)
    sb.add_integer_field("updated_us", stored=True)
    sb.add_boolean_field("superseded", indexed=True)
    sb.add_float_field("importance", stored=True, fast=True)
    sb.add_integer_field("line", stored=True)
    return sb.build()


def to_us(value: datetime) -> int:
    # A naive datetime is taken as UTC, the vault's only time zone.
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // _ONE_US


def from_us(value: Any) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=int(value))


def tag_key(tag: str) -> str:
    return tag.strip().lstrip("#").casefold()


# An IndexDoc as the index takes it: text cleaned, times in microseconds, the type lowercased,
# tags joined to the context. A plain tuple: a rebuild's parse workers make these, and a tuple
# crosses the process boundary (pickled) several times cheaper than a dataclass, and leaves the
# one process that feeds Tantivy only the `add_*` calls to make.
PreparedDoc = tuple[
    str,  # key
    str,  # path
    str,  # record_id
    str,  # message_id
    str,  # session
    str,  # speaker
    str,  # type
    str,  # title
    str,  # text
    str,  # surround
    str,  # context, with the tags
    tuple[str, ...],  # tags
    tuple[str, ...],  # tag keys
    int | None,  # created_us
    int | None,  # updated_us
    int | None,  # expires_us
    bool,  # superseded
    float,  # importance
    int,  # line
]


def prepare_document(doc: IndexDoc) -> PreparedDoc:
    """What `build_document` needs of `doc`: the work that can run in any process."""
    texts = (
        doc.key,
        doc.path,
        doc.record_id,
        doc.message_id,
        doc.session,
        doc.speaker,
        doc.type,
        doc.title,
        doc.text,
        doc.surround,
        doc.context,
        *doc.tags,
    )
    # Almost always all ASCII, which needs no cleaning: one check instead of one per text.
    if not "".join(texts).isascii():
        texts = tuple(clean_text(text) for text in texts)
    key, path, record_id, message_id, session, speaker, kind, title, text, surround = texts[:10]
    tags = texts[11:]
    # Tags are searchable words too, at the low weight of the context field.
    context = " ".join(texts[10:]).strip()
    # NaN would poison every comparison in ranking.
    importance = 0.5 if math.isnan(doc.importance) else float(doc.importance)
    return (
        key,
        path,
        record_id,
        message_id,
        session,
        speaker,
        kind.lower(),
        title,
        text,
        surround,
        context,
        tags,
        tuple(tag_key(tag) for tag in tags),
        None if doc.created is None else to_us(doc.created),
        None if doc.updated is None else to_us(doc.updated),
        None if doc.expires is None else to_us(doc.expires),
        bool(doc.superseded),
        importance,
        doc.line,
    )


def build_document(doc: PreparedDoc) -> tantivy.Document:
    """The Tantivy document of a prepared IndexDoc."""
    (
        key,
        path,
        record_id,
        message_id,
        session,
        speaker,
        record_type,
        title,
        text,
        surround,
        context,
        tags,
        tag_keys,
        created,
        updated,
        expires,
        superseded,
        importance,
        line,
    ) = doc
    d = tantivy.Document()
    # (An empty raw value is left out, as a missing one.)
    if key:
        d.add_text("key", key)
    if path:
        d.add_text("path", path)
    if record_id:
        d.add_text("record_id", record_id)
    if message_id:
        d.add_text("message_id", message_id)
    if session:
        d.add_text("session", session)
    if speaker:
        d.add_text("speaker", speaker)
    d.add_text("type", record_type)
    d.add_text("title", title)
    d.add_text("text", text)
    if surround:
        d.add_text("surround", surround)
    if speaker:
        d.add_text("speaker_words", speaker)
    if context:
        d.add_text("context", context)
    for tag in tags:
        d.add_text("tags", tag)
    for tag in tag_keys:
        d.add_text("tag_keys", tag)
    if created is not None:
        d.add_integer("created_us", created)
    if updated is not None:
        d.add_integer("updated_us", updated)
    when = updated if updated is not None else created
    if when is not None:
        d.add_integer("when_us", when)
    if expires is not None:
        d.add_integer("expires_us", expires)
    d.add_boolean("superseded", superseded)
    d.add_float("importance", importance)
    d.add_integer("line", line)
    return d


def _finish_merges(writer: tantivy.IndexWriter) -> None:
    """Wait for the writer's merges, then drop it: that releases tantivy's lock file (a writer
    still referenced would keep it). A failed merge loses nothing: the segments stay as they
    were."""
    with suppress(ValueError):
        writer.wait_merging_threads()


def _is_lock_busy(error: Exception) -> bool:
    return "LockBusy" in str(error)


class IndexStorage:
    """A Tantivy index in `directory`; one writer at a time across threads and processes.

    Searching is added by `memkit.index.query.SearchIndex`, the class callers use."""

    def __init__(self, directory: Path, *, lock_timeout: float = 30.0) -> None:
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self._schema = _schema()
        self._field_analyzer = build_analyzer()
        self._write_lock = threading.Lock()
        # pyo3 objects refuse overlapping mutable borrows from threads: keep the short
        # Index calls (writer, reload, searcher) one at a time.
        self._index_lock = threading.Lock()
        # A folder per schema version: a new version never deletes files under a process
        # that is still using the current one, and two processes creating it agree.
        self._path = self.directory / f"v{SCHEMA_VERSION}"
        self._meta_path = self._path / "meta.json"
        # meta.json as of the last reload, and a searcher taken after it (see _searcher).
        self._reloaded: tuple[int, int, int, int] | None = None
        self._cached_searcher: tantivy.Searcher | None = None
        # Commits made through this handle (what a sync costs, for tests and benchmarks).
        self.commits = 0
        self._index: tantivy.Index | None = self._open()

    @property
    def needs_rebuild(self) -> bool:
        """Whether the caller must add every document again (new, wiped, unfinished or broken).

        Read on disk each time: the ready marker, which only a finished `replace_all` writes. So
        a rebuild another process (a watcher) finished since this handle opened is seen, and a
        broken index flagged by any process is rebuilt by the next one that looks.
        """
        return not (self._path / _READY_MARKER).exists()

    @needs_rebuild.setter
    def needs_rebuild(self, value: bool) -> None:
        # True: forget the marker, for every process. False changes nothing: only a finished
        # replace_all makes an index complete (sync.py sets it after its own rebuild).
        if value:
            self._forget_ready()

    def _forget_ready(self) -> None:
        with suppress(OSError):
            (self._path / _READY_MARKER).unlink(missing_ok=True)

    # ----------------------------------------------------------------- opening
    def _open(self) -> tantivy.Index:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SearchIndexError(
                f"cannot create the search index folder {self.directory}: {e}"
            ) from e
        if not self._path.is_dir():
            # First run, or an index of another schema version: start afresh (without a
            # ready marker, so `needs_rebuild` asks for every document).
            self._remove_stale_entries()
        try:
            index = self._create_or_open()
        except (ValueError, OSError):
            # Unreadable (damaged files, a schema changed without a version bump): the
            # index is derived from the Markdown files, so wipe it and ask for a rebuild.
            shutil.rmtree(self._path, ignore_errors=True)
            try:
                index = self._create_or_open()
            except (ValueError, OSError) as e:
                raise SearchIndexError(
                    f"cannot create the search index in {self._path}: {e}. "
                    "Check that the folder is writable and the disk is not full."
                ) from e
        # An index that never finished a replace_all (first run killed half-way) opens but is
        # incomplete: it has no ready marker, so `needs_rebuild` asks for everything again.
        return index

    def _create_or_open(self) -> tantivy.Index:
        self._path.mkdir(parents=True, exist_ok=True)
        index = tantivy.Index(self._schema, path=str(self._path), reuse=True)
        index.register_tokenizer(_ANALYZER, self._field_analyzer)
        # Manual reload: we reload after our own commits (read-your-writes) and before a
        # search when meta.json changed (another process's commits), instead of a 500 ms
        # polling thread.
        index.config_reader(reload_policy="manual")
        index.reload()
        return index

    def _remove_stale_entries(self) -> None:
        for entry in self.directory.iterdir():
            if entry.is_dir() and _VERSION_DIR.match(entry.name):
                # Only a folder that holds an index: a person's own "v2" folder stays.
                if (entry / "meta.json").exists():
                    shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_file() and _TANTIVY_FILE.match(entry.name):
                entry.unlink(missing_ok=True)

    # ----------------------------------------------------------------- writing
    def replace_all(self, docs: Iterable[IndexDoc]) -> int:
        """Delete everything, add `docs` (a later duplicate key wins); one commit."""
        return self.replace_all_prepared(map(prepare_document, docs))

    def replace_all_prepared(
        self,
        docs: Iterable[PreparedDoc],
        alongside_commit: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> int:
        """`replace_all` for documents already through `prepare_document` (say, in the
        processes that parsed the files, so that this one only hands them to Tantivy).

        `alongside_commit()` is entered once every document is added, while Tantivy commits on
        another thread (its commit lets go of the GIL), and left when the commit is done, with
        the commit's error if it failed: a rebuild writes its manifest there, and saves it only
        once the index holds what it says."""
        with self._writer(_HEAP_BULK, 1, alongside_commit=alongside_commit) as writer:
            self._call(writer.delete_all_documents)
            count = self._add_all(writer, docs)
        # Written after the commit: a run killed before this point leaves `needs_rebuild` set.
        try:
            (self._path / _READY_MARKER).touch()
        except OSError as e:
            raise SearchIndexError(
                f"cannot write to the search index folder {self._path}: {e}"
            ) from e
        return count

    def update(
        self,
        upserts: Iterable[IndexDoc],
        delete_paths: Iterable[str],
        *,
        keep_paths: Collection[str] = (),
        delete_keys: Iterable[str] = (),
    ) -> None:
        """Drop every document of the given paths and of the upserts' paths, add the upserts.

        The upserts of `keep_paths` replace documents one key at a time instead: those paths'
        other documents stay (a day file that gained a message: its other messages' documents
        are as they were), and `delete_keys` go."""
        docs = list(upserts)
        paths = (set(delete_paths) | {doc.path for doc in docs}) - set(keep_paths)
        keys = set(delete_keys) | {doc.key for doc in docs if doc.path in keep_paths}
        if not paths and not keys:
            return
        try:
            with self._writer(_HEAP_SMALL, 1, merges_in_background=True) as writer:
                # Deletes only reach documents added before them, so the adds below survive.
                for path in sorted(clean_text(p) for p in paths):
                    self._call(writer.delete_documents_by_term, "path", path)
                for key in sorted(clean_text(k) for k in keys):
                    self._call(writer.delete_documents_by_term, "key", key)
                self._add_all(writer, map(prepare_document, docs))
        except SearchIndexError as e:
            if "FileAlreadyExists" not in str(e):
                raise
            # A leftover of a killed commit that the garbage collection before the commit
            # did not know (say, its .managed.json was lost too): the index cannot take this
            # commit, so it asks for a rebuild (the next sync or search does it, from the
            # files) instead of failing every command until someone runs `memkit reindex`.
            self._forget_ready()

    def _add_all(self, writer: tantivy.IndexWriter, docs: Iterable[PreparedDoc]) -> int:
        seen: set[str] = set()
        add, delete = writer.add_document, writer.delete_documents_by_term
        # (`_call`'s work inlined: a rebuild adds 200k documents.)
        for doc in docs:
            key = doc[0]
            document = build_document(doc)
            try:
                if key in seen:
                    delete("key", key)
                add(document)
            except ValueError as e:
                raise SearchIndexError(f"cannot write the search index in {self._path}: {e}") from e
            seen.add(key)
        return len(seen)

    @contextmanager
    def _writer(
        self,
        heap: int,
        threads: int,
        *,
        merges_in_background: bool = False,
        alongside_commit: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> Iterator[tantivy.IndexWriter]:
        """Yield a writer; commit when the block succeeds, roll back when it raises.

        With `merges_in_background`, return as soon as the commit is searchable: the segment
        merges the commit started finish on a thread that then lets the next writer in."""
        index = self._live()
        # One deadline for both waits: another thread here, then another process.
        deadline = time.monotonic() + self.lock_timeout
        if not self._write_lock.acquire(timeout=max(self.lock_timeout, 0.0)):
            raise self._lock_timeout("another thread of this process")
        handed_over = False
        try:
            writer = self._acquire_writer(index, heap, threads, deadline)
            try:
                # A commit killed half-way (kill -9 of sync, power loss) leaves files that no
                # meta.json lists, among them `<segment>.<opstamp>.del`. Opstamps restart from
                # the last commit's, so a later commit that reaches the same opstamp and deletes
                # from the same segment wants that name again, and tantivy fails with
                # FileAlreadyExists, every time, until a reindex. Tantivy collects such files
                # only after a successful commit: collect them first (cheap: it lists the
                # folder's managed files; we hold the writer, so no commit is in progress).
                self._call(writer.garbage_collect_files)
                yield writer
                if alongside_commit is None:
                    self._call(writer.commit)
                else:
                    self._commit_alongside(writer, alongside_commit)
                self.commits += 1
            except BaseException:
                # Never commit half a batch: the index keeps its last good state.
                with suppress(ValueError):
                    writer.rollback()
                _finish_merges(writer)
                raise
            # Searchable now: the commit wrote meta.json. Reload before waiting for the merges
            # the commit may have started (they change no document), so that read-your-writes
            # does not wait for them.
            try:
                self._reload()
            except BaseException:
                _finish_merges(writer)
                raise
            if merges_in_background:
                # The writer (and so tantivy's lock) lives until its merges end, and this
                # process's next writer waits for them on _write_lock; a process that exits
                # meanwhile leaves the merge's files, collected by the next writer.
                waiter = threading.Thread(
                    target=self._merge_then_release,
                    args=(writer,),
                    name="memkit-index-merges",
                    daemon=True,
                )
                waiter.start()
                handed_over = True
            else:
                _finish_merges(writer)
        finally:
            if not handed_over:
                self._write_lock.release()

    def _commit_alongside(
        self, writer: tantivy.IndexWriter, work: Callable[[], AbstractContextManager[object]]
    ) -> None:
        failure: list[BaseException] = []

        def commit() -> None:
            try:
                writer.commit()
            except BaseException as e:  # (raised below, in the caller's thread)
                failure.append(e)

        committing = threading.Thread(target=commit, name="memkit-index-commit")
        committing.start()
        try:
            with work():
                committing.join()
                if failure:
                    error = failure[0]
                    if isinstance(error, ValueError):
                        raise SearchIndexError(
                            f"cannot write the search index in {self._path}: {error}"
                        ) from error
                    raise error
        finally:
            # (When `work` failed: the writer is not touched again before the commit ends.)
            committing.join()

    def _merge_then_release(self, writer: tantivy.IndexWriter) -> None:
        try:
            _finish_merges(writer)
        finally:
            self._write_lock.release()

    def _acquire_writer(
        self, index: tantivy.Index, heap: int, threads: int, deadline: float
    ) -> tantivy.IndexWriter:
        # Another process's writer usually frees tantivy's lock within tens of ms (its commit's
        # merges end): short waits, capped low, so a turn does not sleep 0.3 s past the moment
        # the lock came free (a try costs ~0.5 ms).
        delay = 0.005
        while True:
            try:
                with self._index_lock:
                    return index.writer(heap_size=heap, num_threads=threads)
            except ValueError as e:
                if not _is_lock_busy(e):
                    raise SearchIndexError(
                        f"cannot write the search index in {self._path}: {e}"
                    ) from e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._lock_timeout("another process")
            # Jitter keeps two waiting processes from retrying in lock-step.
            time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))
            delay = min(delay * 2, 0.05)

    def _lock_timeout(self, holder: str) -> LockTimeout:
        return LockTimeout(
            f"{holder} has been writing the search index in {self._path} for more than "
            f"{self.lock_timeout:g} s. Wait for it to finish (or stop it) and try again."
        )

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except ValueError as e:
            raise SearchIndexError(f"cannot write the search index in {self._path}: {e}") from e

    def _reload(self) -> None:
        index = self._live()
        # Stat before reloading: a commit landing in between changes meta.json again, so
        # the next search reloads once more instead of missing it.
        stamp = self._meta_stamp()
        try:
            with self._index_lock:
                index.reload()
                self._reloaded = stamp
                self._cached_searcher = None
        except ValueError as e:
            raise self._damaged(e) from e

    def _meta_stamp(self) -> tuple[int, int, int, int] | None:
        """What identifies the current commit: tantivy rewrites meta.json (a new file
        renamed into place) on every commit, merge and delete, and a reload reads nothing
        else. None when it cannot be read: then always reload."""
        try:
            st = os.stat(self._meta_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)

    def _damaged(self, error: Exception) -> SearchIndexError:
        return SearchIndexError(
            f"the search index in {self._path} cannot be read ({error}). It is derived from "
            "the Markdown files: delete that folder and memkit rebuilds it."
        )

    # ----------------------------------------------------------------- reading
    def doc_count(self) -> int:
        """Number of documents (whole files plus single messages) in the index."""
        return int(self._searcher().num_docs)

    def _searcher(self) -> tantivy.Searcher:
        # A reload picks up other processes' commits, but costs ~150-200 us even when
        # nothing changed: skip it (and keep the searcher) while meta.json is the same file.
        stamp = self._meta_stamp()
        with self._index_lock:
            self._live()
            cached = self._cached_searcher
            if cached is not None and stamp is not None and stamp == self._reloaded:
                return cached
        self._reload()
        with self._index_lock:
            searcher = self._live().searcher()
            if stamp is not None and stamp == self._reloaded:
                self._cached_searcher = searcher
            return searcher

    # ----------------------------------------------------------------- lifetime
    def _live(self) -> tantivy.Index:
        if self._index is None:
            raise SearchIndexError(f"the search index in {self._path} was closed; open it again")
        return self._index

    def close(self) -> None:
        """Drop the index handle; waits for a write in progress (and its merges) on another thread."""
        with self._write_lock:
            self._index = None
            self._cached_searcher = None

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clean_text(text: str) -> str:
    # Lone surrogates (a JSON "\ud800", a file name read with surrogateescape) cannot
    # cross into Rust as UTF-8; replace them rather than fail.
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
