"""Batches of writes (`Vault.batch`, expire's promotions): one durability barrier per batch, in
the right order, every guarantee of a single write kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memkit.files as files_module
from memkit import Memory, Vault
from memkit.errors import ConflictError, SecretRefused, VaultError
from memkit.sync import VaultIndex
from memkit.timeutil import utcnow

from .conftest import Runner, examples
from .test_watcher import start_watching


def _vital(memory: Memory, count: int) -> list[str]:
    return [
        memory.remember(
            f"vital item {n}: the {word} server restarts at {n} o'clock",
            type="short-term",
            importance=0.9,
        ).id
        for n, word in zip(
            range(count), ("alpha", "bravo", "charlie", "delta", "echo"), strict=False
        )
    ]


class Journal:
    """What reached the file system, in order: the vault's syncs (the real ones run) and the
    links, renames and unlinks of record files (the real calls run too)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events: list[tuple[str, Any]] = []

    def rel(self, path: Any) -> str:
        return Path(os.fsdecode(path)).relative_to(self.root).as_posix()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_sync = files_module._sync_file_system
        real_link, real_rename, real_unlink, real_fsync = os.link, os.rename, os.unlink, os.fsync

        def sync(root: Path, paths: list[str]) -> None:
            self.events.append(("sync", [self.rel(p) for p in paths]))
            real_sync(root, paths)

        def link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            real_link(src, dst, *args, **kwargs)
            self.events.append(("link", (self.rel(src), self.rel(dst))))

        def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            real_rename(src, dst, *args, **kwargs)
            self.events.append(("rename", (self.rel(src), self.rel(dst))))

        def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
            real_unlink(path, *args, **kwargs)
            if str(path).startswith(str(self.root / "memory")):
                self.events.append(("unlink", self.rel(path)))

        def fsync(fd: int) -> None:
            self.events.append(("fsync", fd))
            real_fsync(fd)

        monkeypatch.setattr(files_module, "_sync_file_system", sync)
        monkeypatch.setattr(os, "link", link)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "unlink", unlink)
        monkeypatch.setattr(os, "fsync", fsync)

    def index(self, kind: str, test: Any) -> list[int]:
        return [i for i, (k, value) in enumerate(self.events) if k == kind and test(value)]


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    made = Memory(Vault.init(tmp_path / "v"))
    yield made
    made.close()


def test_expire_makes_promotions_durable_before_it_deletes_the_items(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = memory.vault
    items = _vital(memory, 5)
    journal = Journal(vault.root)
    journal.install(monkeypatch)
    report = memory.expire(now=utcnow() + timedelta(days=30))
    assert sorted(old for old, _new in report.promoted) == sorted(items)
    facts = vault.scan(["long-term"]).records
    assert len(facts) == 5 and not vault.scan(["short-term"]).records
    events = journal.events
    # No fsync per file or folder: the batch's syncs stand for them.
    assert not journal.index("fsync", lambda _fd: True)
    syncs = journal.index("sync", lambda _paths: True)
    for fact in facts:
        (linked,) = journal.index("link", lambda pair, p=fact.path: pair[1] == p)
        temp = events[linked][1][0]
        # (1) the new file's bytes were synced before its name pointed at them ...
        assert any(s < linked and temp in events[s][1] for s in syncs)
    last_link = max(journal.index("link", lambda pair: pair[1].startswith("memory/long-term/")))
    names_synced = min(s for s in syncs if s > last_link)
    assert "memory/long-term" in events[names_synced][1]
    # (2) ... and the new names before any item was taken aside and deleted ...
    taken = journal.index("rename", lambda pair: pair[0].startswith("memory/short-term/"))
    assert len(taken) == 5 and min(taken) > names_synced
    deleted = journal.index(
        "unlink", lambda p: p.startswith("memory/short-term/.") and "aside" in p
    )
    assert len(deleted) == 5
    # (3) ... and the deletions before expire returned.
    assert any(s > max(deleted) and "memory/short-term" in events[s][1] for s in syncs)
    # Three syncs for the whole batch, whatever its size.
    assert len(syncs) == 3


def test_a_batch_puts_new_files_in_place_at_its_end(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    keep = vault.create("short-term", "to be dropped")
    with vault.batch():
        made = vault.create("long-term", "written in a batch", importance=0.8)
        assert made.path is not None
        full = vault.root / made.path
        # Its bytes are beside the name, not yet at it; the original is still there.
        assert not full.exists()
        assert [p.name for p in full.parent.iterdir() if p.name.endswith(".tmp")]
        assert vault.delete(keep) is keep
        assert (vault.root / str(keep.path)).exists()
    assert full.read_bytes() == files_module.read_regular(vault.root, str(full))[0]
    assert not (vault.root / str(keep.path)).exists()
    assert not [p for p in full.parent.iterdir() if p.name.endswith(".tmp")]
    # What `create` returned is what is on disk (fingerprint and all): it can be updated.
    assert vault.read_record(made.path).fingerprint == made.fingerprint
    made.meta["importance"] = 0.9
    assert vault.update(made).importance == 0.9
    assert sorted(vault.touched) == sorted({str(keep.path), made.path})


def test_reading_a_waiting_file_puts_the_batch_in_place_first(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    with vault.batch():
        made = vault.create("long-term", "read back inside the batch")
        assert made.path is not None
        again = vault.read_record(made.path)
        assert again.body == made.body and (vault.root / made.path).exists()
        # An update inside a batch is durable at once, as outside one.
        again.meta["importance"] = 0.2
        vault.update(again)
        other = vault.create("long-term", "a second fact")
        assert [r.path for r in vault.scan(["long-term"]).records] == sorted(
            [made.path, str(other.path)]
        )


def test_a_person_editing_an_item_during_the_batch_keeps_their_edit(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    first = vault.create("short-term", "first item")
    second = vault.create("short-term", "second item")
    with pytest.raises(ConflictError, match=str(first.path)), vault.batch():
        vault.delete(first)
        vault.delete(second)
        # A person saves the first one after memkit checked it, before the batch ends.
        (vault.root / str(first.path)).write_text(
            (vault.root / str(first.path)).read_text() + "\nmy own note\n"
        )
    assert "my own note" in (vault.root / str(first.path)).read_text()
    assert not (vault.root / str(second.path)).exists()  # the rest of the batch was done


def test_a_name_taken_before_the_batch_ends_is_refused_and_nothing_is_deleted(
    tmp_path: Path,
) -> None:
    vault = Vault.init(tmp_path / "v")
    item = vault.create("short-term", "an item")
    with pytest.raises(VaultError, match="already exists"), vault.batch():
        made = vault.create("long-term", "the item, promoted")
        vault.delete(item)
        (vault.root / str(made.path)).write_text("a person's own file\n")
    assert (vault.root / str(made.path)).read_text() == "a person's own file\n"
    assert (vault.root / str(item.path)).exists()  # kept: its promotion is not in place
    assert not [p for p in (vault.root / "memory/long-term").iterdir() if p.name.endswith(".tmp")]


def test_what_a_batch_did_before_an_error_is_put_in_place(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    with pytest.raises(SecretRefused), vault.batch():
        made = vault.create("long-term", "a fact before the refusal")
        vault.create("long-term", "the key is sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6")
    assert (vault.root / str(made.path)).exists()
    assert [r.body.strip() for r in vault.scan(["long-term"]).records] == [
        "a fact before the refusal"
    ]


def test_batch_dedupes_against_its_own_facts_and_many_similar_ones(memory: Memory) -> None:
    vault = memory.vault
    # Many facts sharing the common words of the one to promote: the near-duplicate is still
    # found (searched by the rarest words).
    for n in range(40):
        memory.remember(f"the deploy server restarts every night near w{n}a and w{n}b")
    target = memory.remember("the ledger deploy server restarts after the zorblat migration")
    memory.remember(
        "the ledger deploy server restarts after the zorblat migration finished",
        type="short-term",
        importance=0.9,
    )
    memory.remember("quintessa backups run hourly", type="short-term", importance=0.9)
    memory.remember("quintessa backups run hourly!", type="short-term", importance=0.9)
    report = memory.expire(now=utcnow() + timedelta(days=30))
    promoted = dict(report.promoted)
    assert len(promoted) == 3
    assert target.id in promoted.values()
    backups = [r for r in vault.scan(["long-term"]).records if "quintessa" in r.body]
    assert len(backups) == 1 and len(backups[0].meta["source"]) == 2
    assert len(vault.scan(["long-term"]).records) == 42


@pytest.mark.slow
def test_cli_expire_with_a_watcher_running(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    memory = Memory(vault)
    ids = _vital(memory, 5)
    memory.close()
    watching = start_watching(vault)
    try:
        result = Runner(vault.root).run("expire", "--json")
        # Nothing expired yet (their day has not come): now make them due by hand.
        assert result.exit_code == 0
        for record in vault.scan(["short-term"]).records:
            record.meta["expires"] = "2000-01-01T00:00:00Z"
            vault.update(record, touch=False)
        result = Runner(vault.root).run("expire", "--json")
        assert result.exit_code == 0, result.output
        assert '"promoted"' in result.output
        for item in ids:
            assert item in result.output
        assert not watching.errors
    finally:
        watching.watcher.stop()
        watching.index.close()
    facts = {r.path for r in vault.scan(["long-term"]).records}
    assert len(facts) == 5 and not vault.scan(["short-term"]).records
    other = VaultIndex(vault)
    try:
        other.ensure_fresh()
        hits = other.search("server restarts", k=20, sync=False)[0].hits
        assert {h.path for h in hits if h.type == "long-term"} == facts
        assert not [h for h in hits if h.type == "short-term"]
    finally:
        other.close()


def test_rarest_words_leave_out_common_and_stop_words_in_their_order(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v")
    memory = Memory(vault)
    try:
        for n in range(6):
            memory.remember(f"the deploy server note number w{n}x")
        memory.index.ensure_fresh()
        search = memory.index.search_index
        text = "The deploy server restarts after the Zorblat migration"
        assert search.rarest_words(text, 3) == "restarts zorblat migration"
        assert search.rarest_words(text, 20) == "deploy server restarts zorblat migration"
        assert search.rarest_words("the and of", 3) == "the and of"  # nothing but stop words
    finally:
        memory.close()


@given(
    texts=st.lists(
        st.lists(st.sampled_from("abcdefghijklmnop"), min_size=0, max_size=12), max_size=12
    ),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0]),
)
@settings(max_examples=examples(1000))
def test_a_batch_finds_every_fact_that_repeats_a_text(
    texts: list[list[str]], threshold: float
) -> None:
    from memkit.memory import _Batch, _Said, _words, normalise

    batch = _Batch()
    said = [_Said(normalise(" ".join(t)), _words(" ".join(t))) for t in texts]
    rarity = {word: ord(word) % 4 for word in "abcdefghijklmno"}  # "p" counts as a stop word
    for n, fact in enumerate(said):
        batch.rank(fact.words, rarity)
        found = {path for path, _ in batch.candidates(fact, threshold)}
        repeats = {f"f{m}" for m in range(n) if said[m].repeats(fact, threshold)}
        assert repeats <= found
        batch.add(f"f{n}", fact, threshold)


def test_a_long_near_duplicate_is_found_without_the_rarest_words(memory: Memory) -> None:
    # 58 words, then the same 58 and 12 words found nowhere else (Jaccard 58/70 = 0.83): the
    # 12 rarest words alone would miss the fact; a query of a prefix's length cannot.
    shared = [f"zq{chr(97 + n % 26)}{chr(97 + n // 26)}x" for n in range(58)]
    only_new = [f"vy{chr(97 + n)}wk" for n in range(12)]
    fact = memory.remember(" ".join(shared))
    again = memory.remember(" ".join(shared[:29] + only_new + shared[29:]))
    assert again.id == fact.id
    assert len(memory.vault.scan(["long-term"]).records) == 1


def test_retention_reads_only_day_files_not_named_as_recent_days(memory: Memory) -> None:
    from memkit.conversations import ConversationMessage, Episodes

    vault = memory.vault
    episodes = Episodes(vault)
    old, recent = utcnow() - timedelta(days=200), utcnow() - timedelta(days=1)
    episodes.record([ConversationMessage("long ago", "Dana", "m-old", "s-old", old)])
    episodes.record([ConversationMessage("also long ago", "Dana", "m-old2", "s-old", old)])
    episodes.record([ConversationMessage("yesterday", "Dana", "m-new", "s-new", recent)])
    old_path = episodes.day_path(old.date().isoformat())
    # A person renamed the old day file: its name says nothing, so it is read, and dropped.
    renamed = str(Path(old_path).with_name("our trip.md"))
    os.rename(vault.root / old_path, vault.root / renamed)
    report = memory.expire()
    assert report.episodic_removed == [renamed]
    assert [r.meta["date"] for r in vault.scan(["episodic"]).records] == [recent.date().isoformat()]
