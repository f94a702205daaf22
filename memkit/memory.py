"""Memory semantics: short-term buffer, long-term facts, supersession, expiry, recall, context."""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from memkit.errors import (
    InvalidRecord,
    LockTimeout,
    MemkitError,
    PathOutsideVault,
    RecordNotFound,
    UsageError,
)
from memkit.files import FileStat, walk_record_files
from memkit.index import Hit
from memkit.records import MEMORY_TYPES, RECORD_TYPES, TYPE_FOLDERS, Record
from memkit.secret_guard import check_fields
from memkit.sync import VaultIndex
from memkit.timeutil import format_time, now_iso, parse_time, utcnow
from memkit.vault import NotRegularFile, Vault, read_regular

_DAY_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.part-\d+)?\.md$")
REMEMBER_TYPES = tuple(t for t in RECORD_TYPES if t not in ("proposal", "episodic"))
_WORD = re.compile(r"\w+", re.UNICODE)
CHARS_PER_TOKEN = 4  # a rough, model-independent estimate for prompt budgets


def normalise(text: str) -> str:
    """The form two facts share when they say the same thing: lowercase words only."""
    return " ".join(_WORD.findall(text.lower()))


def similarity(first: str, second: str) -> float:
    """Share of distinct words in common (Jaccard), 0..1."""
    return _overlap(_words(first), _words(second))


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


# How many of a text's rarest words look for its near-duplicates (more for a long text): with
# the 0.8 default threshold a duplicate of a 30-word text holds at least 6 of 12 (usually all).
_DUPLICATE_QUERY_WORDS = 12


@dataclass(frozen=True)
class _Said:
    """What a long-term fact says, as duplicates are compared: its normalised text and words."""

    normal: str
    words: frozenset[str]

    @classmethod
    def of(cls, record: Record) -> _Said:
        return cls(normalise(record.body), _words(record.body))

    def repeats(self, other: _Said, threshold: float) -> bool:
        return self.normal == other.normal or _overlap(self.words, other.words) >= threshold


@dataclass
class _Batch:
    """What a batch of promotions knows that the index does not hold yet: the facts it wrote
    (compared in memory, each tokenised once), and the facts it read while looking for
    duplicates (by path, with the stat they were read at: one parse per file per batch)."""

    facts: list[tuple[str, _Said]] = field(default_factory=list)  # (path, what it says)
    # path -> (its inode, size, mtime, ctime when read; every word in the file)
    seen: dict[str, tuple[tuple[int, int, int, int], frozenset[str]]] = field(default_factory=dict)
    # A word of a fact's prefix -> the facts (indexes in `facts`) whose prefix holds it.
    by_prefix: dict[str, list[int]] = field(default_factory=dict)
    # Each word's place in the one order prefixes are taken in (rarest first: how many index
    # documents held it when the batch first met it, so the order never changes in a batch).
    ranks: dict[str, tuple[int, str]] = field(default_factory=dict)

    def rank(self, words: Iterable[str], rarity: dict[str, int]) -> None:
        """Give the words not ranked yet their place (`rarity`: documents holding each; a word
        it lacks, a stop word, goes last)."""
        for word in words:
            if word not in self.ranks:
                self.ranks[word] = (rarity.get(word, _COMMON), word)

    def prefix(self, words: frozenset[str], threshold: float) -> list[str]:
        return _prefix(words, threshold, self.ranks.__getitem__)

    def add(self, path: str, said: _Said, threshold: float) -> None:
        for word in self.prefix(said.words, threshold):
            self.by_prefix.setdefault(word, []).append(len(self.facts))
        self.facts.append((path, said))

    def candidates(self, said: _Said, threshold: float) -> list[tuple[str, _Said]]:
        """The facts that may repeat `said`: those sharing a word of its prefix (prefix
        filtering, as similarity joins do: two texts with Jaccard >= t share a word of their
        prefixes, taken in one order, rarest first), so a batch of n facts is not n^2
        comparisons. Every word of `said` must be ranked."""
        if not said.words or threshold <= 0:
            return self.facts  # no words (compared by their empty text), or anything goes
        found = {i for w in self.prefix(said.words, threshold) for i in self.by_prefix.get(w, ())}
        return [self.facts[i] for i in sorted(found)]


_COMMON = 1 << 62  # the rank of a word the index does not count (a stop word): last


def _prefix_size(count: int, threshold: float) -> int:
    """|X| - ceil(t|X|) + 1: if Jaccard(A, B) >= t then |A & B| >= ceil(t * max(|A|, |B|)),
    and the first that many words of A and of B, taken in one order, share a word."""
    return max(count - math.ceil(threshold * count - 1e-9) + 1, 1)


def _prefix(words: frozenset[str], threshold: float, key: Callable[[str], Any]) -> list[str]:
    return sorted(words, key=key)[: _prefix_size(len(words), threshold)]


def _stat_key(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN)


def _merge_sources(old: Any, new: Any) -> Any:
    if not old:
        return new
    if not new or old == new:
        return old
    olds = old if isinstance(old, list) else [old]
    return [*olds, *(s for s in (new if isinstance(new, list) else [new]) if s not in olds)]


@dataclass
class ExpireReport:
    expired: list[str] = field(default_factory=list)  # short-term items removed
    promoted: list[tuple[str, str]] = field(default_factory=list)  # (short-term id, long-term id)
    episodic_removed: list[str] = field(default_factory=list)  # day files past retention

    def to_json(self) -> dict[str, Any]:
        return {
            "expired": self.expired,
            "promoted": [{"from": a, "to": b} for a, b in self.promoted],
            "episodic_removed": self.episodic_removed,
        }


@dataclass
class RecallHit:
    """One recalled memory; episodic hits are single messages with their neighbours."""

    hit: Hit
    before: list[tuple[str, str, str]] = field(default_factory=list)  # (message_id, speaker, text)
    after: list[tuple[str, str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = self.hit.to_json()
        if self.hit.message_id:
            data["before"] = [{"message_id": m, "speaker": s, "text": t} for m, s, t in self.before]
            data["after"] = [{"message_id": m, "speaker": s, "text": t} for m, s, t in self.after]
        return data


class Memory:
    """What an agent remembers, kept in a vault. No language model needed."""

    def __init__(self, vault: Vault, index: VaultIndex | None = None) -> None:
        self.vault = vault
        self._index = index
        # Inside a batch of promotions: the facts written, which the index does not hold until
        # the batch ends (one commit), so `find_duplicate` also compares with these.
        self._batch: _Batch | None = None
        # The short-term items as last read: path -> (its stat then, (created, id)), so that
        # the capacity check after each remember parses only files new or changed since.
        self._buffer_order: dict[str, tuple[FileStat, tuple[str, str]]] = {}

    @property
    def index(self) -> VaultIndex:
        if self._index is None:
            self._index = VaultIndex(vault=self.vault)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    # --- writing ------------------------------------------------------------------------------

    def remember(
        self,
        text: str,
        *,
        type: str = "long-term",
        title: str | None = None,
        tags: Iterable[str] = (),
        importance: float | None = None,
        source: Any = None,
        supersedes: str | None = None,
        subject: str | None = None,
        allow_secrets: bool = False,
    ) -> Record:
        """Write one memory record and return it (an existing fact when this one repeats it).

        Long-term facts are deduplicated: the same text, or a near-duplicate found through the
        index, updates the existing record instead. `supersedes` (an id) or a `subject` shared
        with a live fact marks the older fact superseded by this one.
        """
        if type not in REMEMBER_TYPES:
            raise UsageError(
                f"cannot remember a record of type {type!r}; choose one of: "
                f"{', '.join(REMEMBER_TYPES)}"
            )
        text = text.strip()
        if not text:
            raise UsageError("nothing to remember: the text is empty")
        if importance is not None and not 0 <= importance <= 1:
            raise UsageError(f"importance must be between 0 and 1, not {importance}")
        tags = list(tags)
        # The vault refuses a credential in anything it writes; refusing here too answers before
        # the duplicate search, which costs an index query.
        fields = {"text": text, "title": title, "tags": tags, "subject": subject, "source": source}
        check_fields(fields, allow_secrets=allow_secrets)
        if type == "long-term":
            record = self._remember_fact(
                text,
                title=title,
                tags=tags,
                importance=importance,
                source=source,
                supersedes=supersedes,
                subject=subject,
                allow_secrets=allow_secrets,
            )
            return self._indexed(record)
        extra: dict[str, Any] = {}
        if type == "short-term":
            ttl = timedelta(hours=self.vault.settings.memory.short_term.ttl_hours)
            extra["expires"] = format_time(utcnow() + ttl)
        if type == "entity":
            extra["name"] = title or text.splitlines()[0][:80]
        record = self.vault.create(
            type,
            text,
            title=title,
            tags=tags,
            importance=importance,
            source=source,
            extra=extra,
            allow_secrets=allow_secrets,
        )
        if type == "short-term":
            self._enforce_capacity()
        return self._indexed(record)

    def _remember_fact(
        self,
        text: str,
        *,
        title: str | None,
        tags: list[str],
        importance: float | None,
        source: Any,
        supersedes: str | None,
        subject: str | None,
        allow_secrets: bool,
    ) -> Record:
        with self.vault.write_lock():
            existing = None if supersedes else self.find_duplicate(text)
            if existing is not None:
                return self._merge_into(
                    existing,
                    tags=tags,
                    importance=importance,
                    source=source,
                    allow_secrets=allow_secrets,
                )
            older = None
            if supersedes:
                older = self.vault.get(supersedes)
                if older.type != "long-term":
                    raise UsageError(f"{supersedes} is a {older.type} record, not a long-term fact")
            elif subject:
                older = self._live_fact_about(subject)
            extra: dict[str, Any] = {}
            if subject:
                extra["subject"] = subject
            if older is not None:
                extra["supersedes"] = older.id
                extra["valid_from"] = now_iso()
            record = self.vault.create(
                "long-term",
                text,
                title=title,
                tags=tags,
                importance=0.5 if importance is None else importance,
                source=source,
                extra=extra,
                allow_secrets=allow_secrets,
            )
            if older is not None:
                older.meta["superseded_by"] = record.id
                older.meta["valid_to"] = record.meta["created"]
                self.vault.update(older)  # the vault checks only what changes: two fields
            return record

    def _merge_into(
        self,
        existing: Record,
        *,
        tags: list[str],
        importance: float | None,
        source: Any,
        allow_secrets: bool,
    ) -> Record:
        meta = existing.meta
        if importance is not None:
            meta["importance"] = max(float(meta.get("importance") or 0), importance)
        if tags:
            meta["tags"] = sorted(set(existing.tags) | set(tags))
        if source:
            meta["source"] = _merge_sources(meta.get("source"), source)
        # The vault checks what the merge adds (new tags, sources), not the text it had.
        return self.vault.update(existing, allow_secrets=allow_secrets)

    def find_duplicate(self, text: str) -> Record | None:
        """A live long-term fact saying the same thing (same words, or nearly)."""
        said = _Said(normalise(text), _words(text))
        threshold = self.vault.settings.memory.long_term.duplicate_similarity
        batch = self._batch
        rarity = self.index.search_index.word_rarity(text)
        if batch is not None:
            batch.rank(said.words, rarity)
        for path, fact in batch.candidates(said, threshold) if batch is not None else ():
            # Written in this batch, so not in the index yet: compared in memory (read only
            # when it matches, to merge into what is on disk now).
            if fact.repeats(said, threshold):
                with contextlib.suppress(MemkitError, OSError):
                    return self.vault.read_record(path)  # merged into as it is on disk now
        # Searched by its rarest words: a near-duplicate holds most of them, and the common
        # words' long posting lists cost most of a search by every word (issue 12). As many as
        # a prefix (see `_prefix_size`) at least, so that every near-duplicate holds one of them.
        count = max(_DUPLICATE_QUERY_WORDS, _prefix_size(len(said.words), threshold))
        query = self.index.search_index.rarest_words(text, count, rarity)
        result, _stale = self.index.search(query, k=8, types=["long-term"])
        seen: set[str] = set()
        for path in (hit.path for hit in result.hits):
            if path in seen or ".." in path.split("/"):
                continue
            seen.add(path)
            if not self._may_repeat(path, said, threshold, batch):
                continue
            try:
                record = self.vault.read_record(path)
            except (MemkitError, OSError):
                continue  # a file that vanished or broke is simply not a match
            if not record.meta.get("superseded_by") and _Said.of(record).repeats(said, threshold):
                return record
        return None

    def _may_repeat(self, path: str, said: _Said, threshold: float, batch: _Batch | None) -> bool:
        """Whether the file at `path` may say the same as `said`, from its words alone, front-
        matter included: Jaccard(A, body) <= |A & file| / |A|, so a file below the threshold by
        that bound is no duplicate, and is never parsed. In a batch a file's words are kept
        (by its inode, size, mtime and ctime) for the next item's search."""
        if not said.words:
            return True
        full = self.vault.root / path
        words = None
        if batch is not None:
            with contextlib.suppress(OSError):
                info = os.lstat(full)
                known = batch.seen.get(path)
                if known is not None and known[0] == _stat_key(info):
                    words = known[1]
        if words is None:
            try:
                data, info = read_regular(self.vault.root, str(full))
            except (OSError, NotRegularFile):
                return False  # gone, or not a file memkit reads: not a match
            words = _words(data.decode("utf-8", "replace"))
            if batch is not None:
                batch.seen[path] = (_stat_key(info), words)
        return len(said.words & words) >= threshold * len(said.words)

    def _live_fact_about(self, subject: str) -> Record | None:
        wanted = normalise(subject)
        candidates = [
            r
            for r in self.vault.scan(["long-term"]).records
            if normalise(str(r.meta.get("subject", ""))) == wanted
            and not r.meta.get("superseded_by")
        ]
        return max(candidates, key=lambda r: str(r.meta.get("created")), default=None)

    def forget(self, ref: str) -> Record:
        """Delete a record's file; git keeps its history. Nothing else ever deletes a fact."""
        return self._indexed(self.vault.delete(ref))

    def _indexed(self, record: Record) -> Record:
        """Write-through: index what this call wrote, by path, at once (never by a walk)."""
        if self._batch is None:
            # Another process holding the index for long: the write stands, and the next
            # freshness check (or the watcher) indexes it.
            with contextlib.suppress(LockTimeout):
                self.index.index_writes()
        return record

    # --- the short-term buffer and retention --------------------------------------------------

    def _promote_or_drop(self, record: Record, report: ExpireReport, dry_run: bool = False) -> None:
        threshold = self.vault.settings.memory.short_term.promote_threshold
        if dry_run:  # say what would happen; the long-term id is not known before it is written
            if (record.importance or 0) >= threshold:
                report.promoted.append((record.id, ""))
            report.expired.append(record.id)
            return
        if (record.importance or 0) >= threshold:
            promoted = self.remember(
                record.body,
                type="long-term",
                title=record.meta.get("title"),
                tags=record.tags,
                importance=record.importance,
                source={"promoted_from": record.id},
                allow_secrets=True,  # it was already accepted once (or allowed) when written
            )
            report.promoted.append((record.id, promoted.id))
            if self._batch is not None and promoted.type == "long-term":
                threshold = self.vault.settings.memory.long_term.duplicate_similarity
                fact = _Said.of(promoted)  # a fact merged into may hold words not ranked yet
                missing = [w for w in fact.words if w not in self._batch.ranks]
                if missing:
                    rarity = self.index.search_index.word_rarity(" ".join(missing))
                    self._batch.rank(missing, rarity)
                self._batch.add(str(promoted.path), fact, threshold)
        # In the vault's batch: deleted only once the promoted fact is durable.
        self.vault.delete(record)
        report.expired.append(record.id)

    def _promote_or_drop_all(
        self, records: list[Record], report: ExpireReport, dry_run: bool = False
    ) -> None:
        """Promote or drop many items against one fresh index: one freshness check, one index
        commit at the end, the batch's own new facts compared in memory, and one durability
        barrier for all the files (`Vault.batch`: the promoted facts durable, then the items
        deleted)."""
        if not records:
            return
        if dry_run:
            for record in records:
                self._promote_or_drop(record, report, dry_run)
            return
        outer = self._batch is not None
        if not outer:
            self._batch = _Batch()
        try:
            # The vault's batch ends (its files in place) before the index's (one commit).
            with self.index.batch(), self.vault.batch():
                for record in records:
                    self._promote_or_drop(record, report)
        finally:
            if not outer:
                self._batch = None

    def _short_term_oldest_first(self) -> list[str]:
        """The paths of the short-term items, oldest first (created, then id). Files whose
        stat is as last seen are not read again: after each remember, one file is new."""
        folder = TYPE_FOLDERS["short-term"]
        self.vault.flush()  # (inside a batch of writes: the waiting items at their names first)
        order: dict[str, tuple[FileStat, tuple[str, str]]] = {}
        for path, stat in walk_record_files(self.vault.root, [folder]).items():
            seen = self._buffer_order.get(path)
            if seen is not None and seen[0] == stat:
                order[path] = seen
                continue
            try:
                record = self.vault.read_record(path)
            except (InvalidRecord, RecordNotFound, PathOutsideVault):
                continue  # not an item (check names it), or gone while we looked
            if record.type == "short-term":
                order[path] = (stat, (str(record.meta.get("created")), record.id))
        self._buffer_order = order
        return sorted(order, key=lambda path: order[path][1])

    def _enforce_capacity(self, dry_run: bool = False) -> ExpireReport:
        return self._over_capacity(dry_run, kept=False)[0]

    def _over_capacity(
        self, dry_run: bool, *, kept: bool = True
    ) -> tuple[ExpireReport, list[Record]]:
        """Promote or drop the oldest items past capacity; returns what it did and (with
        `kept`) the items kept, which expire looks at next under the same lock, without a
        second scan. Items are parsed only when new or changed since this Memory last looked,
        or when needed (the ones that go, and with `kept` the others)."""
        report = ExpireReport()
        capacity = self.vault.settings.memory.short_term.capacity
        with self.vault.write_lock():
            paths = self._short_term_oldest_first()
            over = max(0, len(paths) - capacity)
            records: dict[str, Record] = {}
            for path in paths if kept else paths[:over]:
                with contextlib.suppress(InvalidRecord, RecordNotFound, PathOutsideVault):
                    records[path] = self.vault.read_record(path)
            going = [records[path] for path in paths[:over] if path in records]
            self._promote_or_drop_all(going, report, dry_run)
        return report, [records[path] for path in paths[over:] if path in records]

    def expire(self, now: datetime | None = None, *, dry_run: bool = False) -> ExpireReport:
        """Remove expired short-term items (promoting important ones) and old day files;
        `dry_run` reports what would go and changes nothing."""
        now = now or utcnow()
        if dry_run:
            return self._expire(now, dry_run)
        # Every removal and promotion indexed in one commit at the end, and made durable
        # together before that (the vault's batch ends first).
        with self.index.batch(), self.vault.batch():
            return self._expire(now, dry_run)

    def _expire(self, now: datetime, dry_run: bool) -> ExpireReport:
        with self.vault.write_lock():  # held by the caller's batch too: nothing moves between
            report, kept = self._over_capacity(dry_run)
            expired = []
            for record in kept:
                expires = parse_time(record.meta.get("expires"))
                if expires is not None and expires <= now:
                    expired.append(record)
            self._promote_or_drop_all(expired, report, dry_run)
            retention = self.vault.settings.memory.episodic.retention_days
            if retention > 0:
                cutoff = (now - timedelta(days=retention)).date().isoformat()
                for record in self._days_before(cutoff):
                    if not dry_run:
                        self.vault.delete(record)
                    report.episodic_removed.append(str(record.path))
        return report

    def _days_before(self, cutoff: str) -> Iterator[Record]:
        """Episodic day files whose `date` is before `cutoff`. A file named as memkit names
        day files (`YYYY-MM-DD.md`, `YYYY-MM-DD.part-N.md`) on or after the cutoff is not
        read: at worst a file a person renamed to a later day is kept longer, never dropped."""
        for relpath in self.vault.record_paths(["episodic"]):
            named = _DAY_NAME.match(PurePosixPath(relpath).name)
            if named and named.group(1) >= cutoff:
                continue
            try:
                record = self.vault.read_record(relpath)
            except (MemkitError, OSError):
                continue  # a file that vanished or broke is not a day to drop
            if record.type == "episodic" and str(record.meta.get("date", "9999")) < cutoff:
                yield record

    # --- recall and context --------------------------------------------------------------------

    def recall(
        self,
        query: str,
        *,
        k: int = 10,
        types: Sequence[str] = (),
        include_hidden: bool = False,
        neighbours: int = 1,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[RecallHit]:
        """Memory relevant to a query, ranked by relevance blended with importance and recency."""
        wanted = list(types) or list(MEMORY_TYPES)
        unknown = [t for t in wanted if t not in RECORD_TYPES]
        if unknown:
            raise UsageError(f"unknown type {unknown[0]!r}; choose from {', '.join(RECORD_TYPES)}")
        with self.index.operation():  # one freshness check for the whole recall
            result, _stale = self.index.search(
                query, k=k, types=wanted, include_hidden=include_hidden, since=since, until=until
            )
        hits = [RecallHit(hit) for hit in result.hits]
        if neighbours:
            self._add_neighbours(hits, neighbours)
        return hits

    def _add_neighbours(self, hits: list[RecallHit], count: int) -> None:
        from memkit.episodic import parse_day

        days: dict[str, list[Any]] = {}
        for item in hits:
            if not item.hit.message_id:
                continue
            if item.hit.path not in days:
                try:
                    days[item.hit.path] = parse_day(self.vault.read_record(item.hit.path).body)
                except (MemkitError, OSError):
                    days[item.hit.path] = []  # the hit is still shown, without its neighbours
            for interaction in days[item.hit.path]:
                ids = [m.message_id for m in interaction.messages]
                if item.hit.message_id in ids:
                    at = ids.index(item.hit.message_id)
                    item.before = [
                        (m.message_id, m.speaker, m.text)
                        for m in interaction.messages[max(0, at - count) : at]
                    ]
                    item.after = [
                        (m.message_id, m.speaker, m.text)
                        for m in interaction.messages[at + 1 : at + 1 + count]
                    ]
                    break
