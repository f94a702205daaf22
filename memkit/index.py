"""The Tantivy full-text index: derived, disposable search state kept beside the vault."""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import tantivy

from memkit.errors import IndexError_, LockTimeout

_T = TypeVar("_T")
_Clause = tuple[tantivy.Occur, tantivy.Query]

__all__ = [
    "DEFAULT_WEIGHTS",
    "SCHEMA_VERSION",
    "Hit",
    "IndexDoc",
    "RankWeights",
    "SearchIndex",
    "SearchResult",
]

# Bump whenever a field, a tokenizer or what goes into a field changes: an index built
# by another version is then wiped and rebuilt from the Markdown files (never an error).
SCHEMA_VERSION: int = 3

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_US_PER_DAY = 86_400_000_000

# Our own analyzer, registered on the index under this name, so that the index and the
# query builder run the very same chain (hand-built term and phrase queries are not
# analysed by tantivy). ascii_fold lets "cafe" find "café".
_ANALYZER = "memkit_en"
# Searched fields and their weights. `context` holds what surrounds a record (for a message:
# its speaker, its day in words and the turns right before and after it), `surround` the
# turns a little further away: answers often sit a few turns from the words of a question.
_TEXT_FIELDS = (("title", 2.0), ("text", 1.0), ("context", 0.7), ("surround", 0.35))
# A word counts once, in the field where it scores best, plus this share of its other fields'
# scores: a word found in a message and again in its neighbours is not twice the evidence.
_TIE_BREAKER = 0.3
# A query word that is a speaker's name ("what did Dana say about...") prefers that speaker's
# messages over ones that merely mention the name ("thanks, Dana!"): it also matches the
# speaker field, at this weight.
_SPEAKER_WEIGHT = 4.0
_SNIPPET_CHARS = 200
# Term queries read frequencies only: BM25 needs nothing more, and skipping the positions
# (the default) makes a word's postings cheaper to open and walk. Same scores.
_FREQ = "freq"
# Words dropped from queries (never from the index, so quoted phrases still match them): the
# English function words, question words included. "When did Dana go to the park?" asks
# about Dana and a park; "when" and "did" only say what kind of answer is wanted, and as
# people rarely write them in notes, BM25 would take them for rare, telling words. The list
# is NLTK's English one (with the pieces the tokenizer makes of "don't", all forms of "do",
# and the modal verbs), minus words that are often content: "won", "may" (a month).
_STOP_WORDS = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could d did do does doing don done down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it its
itself just ll m me might more most must my myself no nor not now o of off on once only or other
our ours ourselves out over own re s same shall she should so some such t than that the their
theirs them themselves then there these they this those through to too under until up ve very
was we were what when where which while who whom why will with would y you your yours yourself
yourselves aren couldn didn doesn hadn hasn haven isn mightn mustn needn shan shouldn wasn weren
wouldn
"""
QUERY_STOP_WORDS = frozenset(_STOP_WORDS.split())
_HEAP_BULK = 128_000_000
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
_FILTER = re.compile(r"(?<!\S)(type|tags?):(\S+)", re.IGNORECASE)
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"'})


@dataclass
class IndexDoc:
    """One searchable unit: a whole record file, or one message of an episodic day file."""

    key: str
    path: str
    record_id: str
    type: str
    title: str
    text: str
    context: str = ""
    tags: list[str] = field(default_factory=list)
    created: datetime | None = None
    updated: datetime | None = None
    importance: float = 0.5
    expires: datetime | None = None
    superseded: bool = False
    line: int = 1
    message_id: str = ""
    session: str = ""
    speaker: str = ""
    surround: str = ""  # wider context than `context`, searched at a lower weight


@dataclass
class Hit:
    """One ranked result; `line` is the file line where `snippet` starts."""

    key: str
    path: str
    record_id: str
    type: str
    title: str
    score: float
    bm25: float
    snippet: str
    highlights: list[tuple[int, int]]
    line: int
    message_id: str
    session: str
    speaker: str
    tags: list[str]
    importance: float
    created: datetime | None
    updated: datetime | None
    fuzzy: bool

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape of a hit (search, recall, MCP): vault-relative paths, UTC."""
        data: dict[str, Any] = {
            "id": self.record_id,
            "type": self.type,
            "path": self.path,
            "title": self.title,
            "score": round(self.score, 4),
            "snippet": self.snippet,
            "line": self.line,
            "tags": self.tags,
            "importance": self.importance,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "fuzzy": self.fuzzy,
        }
        if self.message_id:
            data["message_id"] = self.message_id
            data["session"] = self.session
            data["speaker"] = self.speaker
            data["date"] = self.created.date().isoformat() if self.created else None
        return data


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


@dataclass(frozen=True)
class RankWeights:
    bm25: float = 1.0
    importance: float = 0.3
    recency: float = 0.2
    recency_half_life_days: float = 30.0


DEFAULT_WEIGHTS = RankWeights()


@dataclass
class SearchResult:
    hits: list[Hit]
    total: int


@dataclass
class _ParsedQuery:
    words: list[str]  # analysed terms, stop words dropped when anything else is left
    phrases: list[list[tuple[int, str]]]  # analysed (position, term) lists
    fuzzy_terms: list[str]
    types: list[str]
    tags: list[str]

    @property
    def has_text(self) -> bool:
        return bool(self.words or self.phrases)


def _analyzer(stop_words: bool) -> tantivy.TextAnalyzer:
    builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
    builder = builder.filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase())
    if stop_words:
        builder = builder.filter(tantivy.Filter.custom_stopword(sorted(QUERY_STOP_WORDS)))
    builder = builder.filter(tantivy.Filter.ascii_fold()).filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    for name in ("key", "path", "record_id", "type", "message_id", "session", "speaker"):
        sb.add_text_field(name, stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("title", stored=True, tokenizer_name=_ANALYZER)
    sb.add_text_field("text", stored=True, tokenizer_name=_ANALYZER)
    sb.add_text_field("context", stored=False, tokenizer_name=_ANALYZER)
    sb.add_text_field("surround", stored=False, tokenizer_name=_ANALYZER)
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


def _to_us(value: datetime) -> int:
    # A naive datetime is taken as UTC, the vault's only time zone.
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // _ONE_US


def _from_us(value: Any) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=int(value))


def _tag_key(tag: str) -> str:
    return tag.strip().lstrip("#").casefold()


def _is_lock_busy(error: Exception) -> bool:
    return "LockBusy" in str(error)


class SearchIndex:
    """A Tantivy index in `directory`; one writer at a time across threads and processes."""

    def __init__(self, directory: Path, *, lock_timeout: float = 30.0) -> None:
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self._needs_rebuild = False
        self._schema = _schema()
        self._field_analyzer = _analyzer(stop_words=False)
        self._query_analyzer = _analyzer(stop_words=True)
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
        self._index: tantivy.Index | None = self._open()

    @property
    def rebuilt(self) -> bool:
        """Whether the caller must add every document again (new, wiped or unfinished index).

        Re-checked on disk while set: another process (a watcher) may have finished the rebuild
        since this handle opened, and then a second full rebuild would only waste time.
        """
        if self._needs_rebuild and (self._path / _READY_MARKER).exists():
            self._needs_rebuild = False
        return self._needs_rebuild

    @rebuilt.setter
    def rebuilt(self, value: bool) -> None:
        self._needs_rebuild = value

    # ----------------------------------------------------------------- opening
    def _open(self) -> tantivy.Index:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise IndexError_(f"cannot create the search index folder {self.directory}: {e}") from e
        if not self._path.is_dir():
            # First run, or an index of another schema version: start afresh.
            self._remove_stale_entries()
            self.rebuilt = True
        try:
            index = self._create_or_open()
        except (ValueError, OSError):
            # Unreadable (damaged files, a schema changed without a version bump): the
            # index is derived from the Markdown files, so wipe it and ask for a rebuild.
            shutil.rmtree(self._path, ignore_errors=True)
            self.rebuilt = True
            try:
                index = self._create_or_open()
            except (ValueError, OSError) as e:
                raise IndexError_(
                    f"cannot create the search index in {self._path}: {e}. "
                    "Check that the folder is writable and the disk is not full."
                ) from e
        # An index that never finished a replace_all (first run killed half-way) is
        # incomplete even though it opens: the caller must add everything again.
        if not (self._path / _READY_MARKER).exists():
            self.rebuilt = True
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
        with self._writer(_HEAP_BULK, 2) as writer:
            self._call(writer.delete_all_documents)
            count = self._add_all(writer, docs)
        # Written after the commit: a run killed before this point leaves `rebuilt` set.
        try:
            (self._path / _READY_MARKER).touch()
        except OSError as e:
            raise IndexError_(f"cannot write to the search index folder {self._path}: {e}") from e
        return count

    def update(self, upserts: Iterable[IndexDoc], delete_paths: Iterable[str]) -> None:
        """Drop every document of the given paths and of the upserts' paths, add the upserts."""
        docs = list(upserts)
        paths = set(delete_paths) | {doc.path for doc in docs}
        if not paths:
            return
        with self._writer(_HEAP_SMALL, 1) as writer:
            for path in sorted(_clean(p) for p in paths):
                # Deletes only reach documents added before them, so the adds below survive.
                self._call(writer.delete_documents_by_term, "path", path)
            self._add_all(writer, docs)

    def _add_all(self, writer: tantivy.IndexWriter, docs: Iterable[IndexDoc]) -> int:
        seen: set[str] = set()
        for doc in docs:
            key = _clean(doc.key)
            if key in seen:
                self._call(writer.delete_documents_by_term, "key", key)
            seen.add(key)
            self._call(writer.add_document, self._document(doc))
        return len(seen)

    def _document(self, doc: IndexDoc) -> tantivy.Document:
        d = tantivy.Document()
        for name in ("key", "path", "record_id", "message_id", "session", "speaker"):
            value = _clean(getattr(doc, name))
            if value:
                d.add_text(name, value)
        d.add_text("type", _clean(doc.type).lower())
        d.add_text("title", _clean(doc.title))
        d.add_text("text", _clean(doc.text))
        if doc.surround:
            d.add_text("surround", _clean(doc.surround))
        if doc.speaker:
            d.add_text("speaker_words", _clean(doc.speaker))
        tags = [_clean(tag) for tag in doc.tags]
        # Tags are searchable words too, at the low weight of the context field.
        context = " ".join([_clean(doc.context), *tags]).strip()
        if context:
            d.add_text("context", context)
        for tag in tags:
            d.add_text("tags", tag)
            d.add_text("tag_keys", _tag_key(tag))
        created = None if doc.created is None else _to_us(doc.created)
        updated = None if doc.updated is None else _to_us(doc.updated)
        if created is not None:
            d.add_integer("created_us", created)
        if updated is not None:
            d.add_integer("updated_us", updated)
        when = updated if updated is not None else created
        if when is not None:
            d.add_integer("when_us", when)
        if doc.expires is not None:
            d.add_integer("expires_us", _to_us(doc.expires))
        d.add_boolean("superseded", doc.superseded)
        # NaN would poison every comparison in ranking.
        importance = 0.5 if math.isnan(doc.importance) else float(doc.importance)
        d.add_float("importance", importance)
        d.add_integer("line", doc.line)
        return d

    @contextmanager
    def _writer(self, heap: int, threads: int) -> Iterator[tantivy.IndexWriter]:
        """Yield a writer; commit when the block succeeds, roll back when it raises."""
        index = self._live()
        # One deadline for both waits: another thread here, then another process.
        deadline = time.monotonic() + self.lock_timeout
        if not self._write_lock.acquire(timeout=max(self.lock_timeout, 0.0)):
            raise self._lock_timeout("another thread of this process")
        try:
            writer = self._acquire_writer(index, heap, threads, deadline)
            try:
                yield writer
                self._call(writer.commit)
            except BaseException:
                # Never commit half a batch: the index keeps its last good state.
                with suppress(ValueError):
                    writer.rollback()
                raise
            finally:
                # Releases the lock file; a writer still referenced would keep it. A failed
                # background merge loses nothing: the segments stay as they were.
                with suppress(ValueError):
                    writer.wait_merging_threads()
            self._reload()
        finally:
            self._write_lock.release()

    def _acquire_writer(
        self, index: tantivy.Index, heap: int, threads: int, deadline: float
    ) -> tantivy.IndexWriter:
        delay = 0.02
        while True:
            try:
                with self._index_lock:
                    return index.writer(heap_size=heap, num_threads=threads)
            except ValueError as e:
                if not _is_lock_busy(e):
                    raise IndexError_(f"cannot write the search index in {self._path}: {e}") from e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._lock_timeout("another process")
            # Jitter keeps two waiting processes from retrying in lock-step.
            time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))
            delay = min(delay * 2, 0.5)

    def _lock_timeout(self, holder: str) -> LockTimeout:
        return LockTimeout(
            f"{holder} has been writing the search index in {self._path} for more than "
            f"{self.lock_timeout:g} s. Wait for it to finish (or stop it) and try again."
        )

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except ValueError as e:
            raise IndexError_(f"cannot write the search index in {self._path}: {e}") from e

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

    def _damaged(self, error: Exception) -> IndexError_:
        return IndexError_(
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
        now: datetime | None = None,
        weights: RankWeights = DEFAULT_WEIGHTS,
    ) -> SearchResult:
        """Rank documents for free text; never raises on what a person or an agent types.

        Quoted text is a phrase that must match; other words are optional and rank by how
        many match. `type:X` and `tag:X` in the text act like `types`/`tags`. Several types
        match any of them; several tags must all be present. With no searchable words left
        (an empty query, only filters, only punctuation) the filtered documents come back
        ranked by importance and recency alone. When the exact words match nothing, a fuzzy
        pass (one typo per word, the last word as a prefix) runs and marks its hits.
        """
        now_us = _to_us(now if now is not None else datetime.now(timezone.utc))
        parsed = self._parse(_clean(query))
        type_sets = [[_clean(t).lower() for t in _as_list(types)]] if types else []
        if parsed.types:
            type_sets.append(parsed.types)
        tag_keys = sorted({_tag_key(_clean(t)) for t in [*_as_list(tags), *parsed.tags]} - {""})
        since_us = _to_us(since) if since is not None else None
        until_us = _to_us(until) if until is not None else None
        if since_us is not None and until_us is not None and since_us > until_us:
            return SearchResult(hits=[], total=0)
        filters = self._filters(type_sets, tag_keys, since_us, until_us, include_hidden, now_us)
        searcher = self._searcher()
        limit = max(k * 5, 50)
        try:
            if not parsed.has_text:
                return self._browse(searcher, filters, k, limit, now_us, weights)
            text_query = self._text_query(parsed, searcher)
            result = self._ranked(searcher, text_query, filters, k, limit, now_us, weights)
            if result.total == 0 and parsed.fuzzy_terms:
                fuzzy_query = self._fuzzy_query(parsed.fuzzy_terms)
                result = self._ranked(
                    searcher, fuzzy_query, filters, k, limit, now_us, weights, parsed.fuzzy_terms
                )
            return result
        except ValueError as e:
            raise self._damaged(e) from e

    def _parse(self, query: str) -> _ParsedQuery:
        text = query.translate(_SMART_QUOTES)
        phrase_texts = re.findall(r'"([^"]*)"', text)
        # Balanced quotes became phrases; a stray quote is just removed.
        rest = re.sub(r'"[^"]*"', " ", text).replace('"', " ")
        types: list[str] = []
        tags: list[str] = []

        def take_filter(match: re.Match[str]) -> str:
            value = match.group(2).rstrip(",;.!?)")
            if not value:
                return match.group(0)
            (types if match.group(1).lower() == "type" else tags).append(value.lower())
            return " "

        rest = _FILTER.sub(take_filter, rest)
        words = _unique(self._query_analyzer.analyze(rest)) or _unique(
            self._field_analyzer.analyze(rest)
        )
        phrases: list[list[tuple[int, str]]] = []
        for phrase_text in phrase_texts:
            tokens = self._field_analyzer.pre_tokenize(phrase_text).tokens
            if tokens:
                first = tokens[0].position
                phrases.append([(t.position - first, t.text) for t in tokens])
        fuzzy = _unique(self._query_analyzer.analyze(" ".join([*phrase_texts, rest])))
        return _ParsedQuery(
            words=words,
            phrases=phrases,
            fuzzy_terms=[t for t in fuzzy if len(t) >= 3],
            types=types,
            tags=tags,
        )

    def _text_query(self, parsed: _ParsedQuery, searcher: tantivy.Searcher) -> tantivy.Query:
        q = tantivy.Query
        clauses: list[_Clause] = []
        for phrase in parsed.phrases:
            # Positions keep the gap of a dropped over-long word, as in the indexed text.
            words: list[str | tuple[int, str]] = [*phrase]
            per_field = [
                q.boost_query(
                    q.phrase_query(self._schema, name, words)
                    if len(phrase) > 1
                    else q.term_query(self._schema, name, phrase[0][1], _FREQ),
                    boost,
                )
                for name, boost in _TEXT_FIELDS
            ]
            clauses.append((tantivy.Occur.Must, q.boolean_query(_should(per_field))))
        topic: list[tantivy.Query] = []  # words that say what the query is about
        names: list[tantivy.Query] = []  # words that name someone who speaks in messages
        for word in parsed.words:
            per_field = [
                q.boost_query(q.term_query(self._schema, name, word, _FREQ), boost)
                for name, boost in _TEXT_FIELDS
            ]
            found = q.disjunction_max_query(per_field, _TIE_BREAKER)
            clauses.append((tantivy.Occur.Should, found))
            if searcher.doc_freq("speaker_words", word) > 0:
                names.append(found)
                spoken = q.term_query(self._schema, "speaker_words", word, _FREQ)
                clauses.append((tantivy.Occur.Should, q.boost_query(spoken, _SPEAKER_WEIGHT)))
            else:
                topic.append(found)
        if names and topic and not parsed.phrases:
            # A speaker's name ranks messages but does not find them: "Dana garden" lists the
            # messages about a garden, Dana's first, not every message Dana wrote. Other
            # records (an entity note about Dana) still match by the name alone.
            message = q.term_query(self._schema, "type", "episodic")
            elsewhere = [
                q.boolean_query([(tantivy.Occur.Must, n), (tantivy.Occur.MustNot, message)])
                for n in names
            ]
            wanted = q.boolean_query(_should([*topic, *elsewhere]))
            clauses.append((tantivy.Occur.Must, q.const_score_query(wanted, 0.0)))
        return q.boolean_query(clauses)

    def _fuzzy_query(self, terms: list[str]) -> tantivy.Query:
        q = tantivy.Query
        clauses = []
        for i, term in enumerate(terms):
            # Prefix on the last word: it is often the one still being typed.
            prefix = i == len(terms) - 1
            for name, boost in _TEXT_FIELDS:
                fuzzy = q.fuzzy_term_query(self._schema, name, term, 1, True, prefix)
                clauses.append(q.boost_query(fuzzy, boost))
        return q.boolean_query(_should(clauses))

    def _filters(
        self,
        type_sets: list[list[str]],
        tag_keys: list[str],
        since_us: int | None,
        until_us: int | None,
        include_hidden: bool,
        now_us: int,
    ) -> list[_Clause]:
        q = tantivy.Query
        must, must_not = tantivy.Occur.Must, tantivy.Occur.MustNot
        clauses: list[_Clause] = []
        for type_set in type_sets:
            clauses.append((must, q.term_set_query(self._schema, "type", type_set)))
        for tag in tag_keys:
            clauses.append((must, q.term_query(self._schema, "tag_keys", tag)))
        if since_us is not None or until_us is not None:
            span = q.range_query(
                self._schema, "when_us", tantivy.FieldType.Integer, since_us, until_us
            )
            clauses.append((must, span))
        if not include_hidden:
            expired = q.range_query(
                self._schema, "expires_us", tantivy.FieldType.Integer, None, now_us, True, False
            )
            clauses.append((must_not, expired))
            clauses.append((must_not, q.term_query(self._schema, "superseded", True)))
        return clauses

    def _ranked(
        self,
        searcher: tantivy.Searcher,
        text_query: tantivy.Query,
        filters: list[_Clause],
        k: int,
        limit: int,
        now_us: int,
        weights: RankWeights,
        fuzzy_terms: Sequence[str] = (),
    ) -> SearchResult:
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, text_query), *filters])
        found = searcher.search(query, limit=limit, count=True)
        scored = [(float(score), address) for score, address in found.hits]
        top_bm25 = max((s for s, _ in scored), default=0.0)
        top = self._blend(searcher, scored, top_bm25, now_us, weights)[: max(k, 0)]
        docs = [searcher.doc(address) for _, _, address in top]
        if fuzzy_terms:
            highlight_query = self._fuzzy_highlight_query(docs, fuzzy_terms)
        else:
            highlight_query = text_query
        snippets = _snippet_generator(searcher, highlight_query, self._schema)
        fuzzy = bool(fuzzy_terms)
        hits = [self._hit(d, s, b, snippets, fuzzy) for d, (s, b, _) in zip(docs, top, strict=True)]
        return SearchResult(hits=hits, total=_count(found))

    def _fuzzy_highlight_query(
        self, docs: list[tantivy.Document], terms: Sequence[str]
    ) -> tantivy.Query:
        # Fuzzy queries give the snippet generator no terms to mark, so find the words
        # of the shown texts that the fuzzy terms matched and highlight those exactly.
        last = len(terms) - 1
        matched: set[str] = set()
        for doc in docs:
            for token in set(self._field_analyzer.analyze(str(doc.get_first("text") or ""))):
                if any(_near(t, token, prefix=i == last) for i, t in enumerate(terms)):
                    matched.add(token)
        clauses = [tantivy.Query.term_query(self._schema, "text", t) for t in sorted(matched)]
        return tantivy.Query.boolean_query(_should(clauses))

    def _browse(
        self,
        searcher: tantivy.Searcher,
        filters: list[_Clause],
        k: int,
        limit: int,
        now_us: int,
        weights: RankWeights,
    ) -> SearchResult:
        # No words to score: the most recent and the most important candidates, blended
        # with bm25 = 0. The union can in theory miss a doc that is second-best on both
        # counts, which is fine for "show me what is there".
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, tantivy.Query.all_query()), *filters]
        )
        candidates: dict[tuple[int, int], tantivy.DocAddress] = {}
        total = 0
        for order_field in ("when_us", "importance"):
            found = searcher.search(query, limit=limit, count=True, order_by_field=order_field)
            total = _count(found)
            for _, address in found.hits:
                candidates[(address.segment_ord, address.doc)] = address
        scored = [(0.0, address) for address in candidates.values()]
        blended = self._blend(searcher, scored, 0.0, now_us, weights)
        hits = [self._hit(searcher.doc(a), s, b, None, False) for s, b, a in blended[: max(k, 0)]]
        return SearchResult(hits=hits, total=total)

    def _blend(
        self,
        searcher: tantivy.Searcher,
        scored: list[tuple[float, tantivy.DocAddress]],
        top_bm25: float,
        now_us: int,
        weights: RankWeights,
    ) -> list[tuple[float, float, tantivy.DocAddress]]:
        if not scored:
            return []
        addresses = [address for _, address in scored]
        importances = searcher.fast_field_values("importance", addresses)
        whens = searcher.fast_field_values("when_us", addresses)
        keys: list[tuple[float, int, int]] = []
        out: list[tuple[float, float, tantivy.DocAddress]] = []
        for (bm25, address), importance, when in zip(scored, importances, whens, strict=True):
            norm = bm25 / top_bm25 if top_bm25 > 0 else 0.0
            imp = 0.5 if importance is None else min(max(float(importance), 0.0), 1.0)
            recency = 0.0
            if when is not None and weights.recency_half_life_days > 0:
                age_days = max(now_us - int(when), 0) / _US_PER_DAY
                recency = 2.0 ** (-age_days / weights.recency_half_life_days)
            score = weights.bm25 * norm + weights.importance * imp + weights.recency * recency
            keys.append((-score, address.segment_ord, address.doc))
            out.append((score, bm25, address))
        # Ties fall back to index order, which is stable between identical searches.
        order = sorted(range(len(out)), key=keys.__getitem__)
        return [out[i] for i in order]

    def _hit(
        self,
        doc: tantivy.Document,
        score: float,
        bm25: float,
        snippets: tantivy.SnippetGenerator | None,
        fuzzy: bool,
    ) -> Hit:
        def text_of(name: str) -> str:
            value = doc.get_first(name)
            return "" if value is None else str(value)

        body = text_of("text")
        snippet, highlights, offset = _snippet(snippets, doc, body)
        line_value = doc.get_first("line")
        line = (1 if line_value is None else int(line_value)) + body.count("\n", 0, offset)
        importance = doc.get_first("importance")
        return Hit(
            key=text_of("key"),
            path=text_of("path"),
            record_id=text_of("record_id"),
            type=text_of("type"),
            title=text_of("title"),
            score=score,
            bm25=bm25,
            snippet=snippet,
            highlights=highlights,
            line=line,
            message_id=text_of("message_id"),
            session=text_of("session"),
            speaker=text_of("speaker"),
            tags=[str(t) for t in doc.get_all("tags")],
            importance=0.5 if importance is None else float(importance),
            created=_from_us(doc.get_first("created_us")),
            updated=_from_us(doc.get_first("updated_us")),
            fuzzy=fuzzy,
        )

    # ----------------------------------------------------------------- lifetime
    def _live(self) -> tantivy.Index:
        if self._index is None:
            raise IndexError_(f"the search index in {self._path} was closed; open it again")
        return self._index

    def close(self) -> None:
        """Drop the index handle; waits for a write in progress on another thread."""
        with self._write_lock:
            self._index = None
            self._cached_searcher = None

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clean(text: str) -> str:
    # Lone surrogates (a JSON "\ud800", a file name read with surrogateescape) cannot
    # cross into Rust as UTF-8; replace them rather than fail.
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _as_list(values: Sequence[str]) -> list[str]:
    # A lone string is one value, not a sequence of letters.
    return [values] if isinstance(values, str) else list(values)


def _count(found: tantivy.SearchResult) -> int:
    # tantivy's stub omits `count`, which search(count=True) fills in.
    return int(found.count)  # type: ignore[attr-defined]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _should(queries: list[tantivy.Query]) -> list[_Clause]:
    return [(tantivy.Occur.Should, query) for query in queries]


def _near(term: str, token: str, *, prefix: bool) -> bool:
    """Whether `token` is within one edit (a swap counts as one) of `term`, as tantivy's
    fuzzy_term_query(distance=1, transposition_cost_one=True) decides; with `prefix`,
    whether some prefix of `token` is."""
    if not prefix:
        return _within_one(term, token)
    return any(_within_one(term, token[:n]) for n in range(len(term) - 1, len(term) + 2))


def _within_one(a: str, b: str) -> bool:
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i]
        return a[i + 1 :] == b[i + 1 :] or (swapped and a[i + 2 :] == b[i + 2 :])
    return a[i:] == b[i + 1 :]


def _snippet_generator(
    searcher: tantivy.Searcher, query: tantivy.Query, schema: tantivy.Schema
) -> tantivy.SnippetGenerator:
    generator = tantivy.SnippetGenerator.create(searcher, query, schema, "text")
    generator.set_max_num_chars(_SNIPPET_CHARS)
    return generator


def _snippet(
    generator: tantivy.SnippetGenerator | None, doc: tantivy.Document, body: str
) -> tuple[str, list[tuple[int, int]], int]:
    """Return (snippet, str-offset highlights, str offset of the snippet in `body`)."""
    if generator is not None:
        found = generator.snippet_from_doc(doc)
        fragment = str(found.fragment())
        if fragment and found.highlighted():
            encoded = fragment.encode("utf-8")

            def char_at(byte_offset: int) -> int:
                # Tantivy reports UTF-8 byte offsets; Python slices by code point.
                return len(encoded[:byte_offset].decode("utf-8", errors="ignore"))

            highlights = [(char_at(r.start), char_at(r.end)) for r in found.highlighted()]
            return fragment, highlights, _fragment_offset(found, body, fragment)
    start = len(body) - len(body.lstrip())
    head = body[start : start + _SNIPPET_CHARS]
    if len(body) - start > _SNIPPET_CHARS and " " in head[_SNIPPET_CHARS // 2 :]:
        head = head[: head.rindex(" ")]  # end on a word boundary
    return head.rstrip(), [], start


def _fragment_offset(found: tantivy.Snippet, body: str, fragment: str) -> int:
    # The fragment range is in bytes of the *trimmed* text; check it, else search.
    lead = len(body) - len(body.lstrip())
    start_byte = int(found.fragment_range().start)
    guess = lead + len(body[lead:].encode("utf-8")[:start_byte].decode("utf-8", errors="ignore"))
    if body.startswith(fragment, guess):
        return guess
    position = body.find(fragment)
    return max(position, 0)
