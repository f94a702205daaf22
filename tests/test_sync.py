"""`memkit sync` / `reindex` and VaultIndex: the index kept true to the files, whatever happens."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memkit.manifest
import memkit.sync as sync_module
from memkit import Vault
from memkit.index import RankWeights, SearchRequest
from memkit.manifest import FileState
from memkit.sync import VaultIndex
from memkit.vault import is_record_path, is_temporary_name

from .conftest import REPO, Runner, examples
from .llm_server import ScriptedLLMServer

LONG_TERM = "memory/long-term"
INSIGHTS = "learning/insights"

# --- helpers shared with test_watcher.py and test_search_cli.py ------------------------------


def record_text(title: str, body: str, *, type_: str = "long-term", record_id: str = "") -> str:
    record_id = record_id or "01TEST" + str(abs(hash(title)) % 10**20).zfill(20)
    return (
        f"---\nid: {record_id}\ntype: {type_}\ntitle: {json.dumps(title)}\n"
        "created: 2026-01-01T00:00:00Z\nupdated: 2026-01-01T00:00:00Z\n"
        f"---\n{body}\n"
    )


def write_record(
    vault: Vault, relpath: str, title: str, body: str = "", *, type_: str = "long-term"
) -> Path:
    """Write a record file the way a person's editor would: plainly, no memkit involved."""
    path = vault.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record_text(title, body or title, type_=type_), "utf-8")
    return path


def indexed(vault_index: VaultIndex) -> dict[str, tuple[str, str]]:
    """What the index holds: document key -> (title, snippet), read without syncing."""
    return {key: (hit.title, hit.snippet) for key, hit in vault_index.indexed_documents().items()}


def titles(vault_index: VaultIndex) -> dict[str, str]:
    return {key: title for key, (title, _snippet) in indexed(vault_index).items()}


def rebuilt_from_scratch(vault: Vault, scratch: Path) -> dict[str, tuple[str, str]]:
    """The index a full rebuild gives for the vault's files (in a copy, so `vault` is untouched)."""
    shutil.copytree(vault.root, scratch, ignore=shutil.ignore_patterns(".memkit", ".git"))
    fresh = VaultIndex(Vault(scratch))
    try:
        fresh.sync(full=True)
        return indexed(fresh)
    finally:
        fresh.close()


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    """Poll until `condition()` is true; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(0.02)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("MEMKIT_VAULT", None)
    return env


def memkit_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "memkit", "--vault", str(root), *args]


@pytest.fixture
def vault_index(vault: Vault) -> Iterator[VaultIndex]:
    index = VaultIndex(vault)
    yield index
    index.close()


# --- incremental sync ------------------------------------------------------------------------


def test_sync_reports_added_changed_deleted_moved_and_unchanged(
    vault: Vault, vault_index: VaultIndex
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    write_record(vault, f"{INSIGHTS}/c.md", "Charlie", "cherries", type_="insight")
    first = vault_index.sync()
    assert first.rebuilt  # no manifest yet: a first sync builds everything
    assert first.added == [f"{INSIGHTS}/c.md", f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md"]

    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apricots now")
    (vault.root / LONG_TERM / "b.md").unlink()
    write_record(vault, f"{LONG_TERM}/d.md", "Delta", "dates")
    (vault.root / INSIGHTS / "c.md").rename(vault.root / LONG_TERM / "c-moved.md")
    report = vault_index.sync()

    assert not report.rebuilt
    assert report.changed == [f"{LONG_TERM}/a.md"]
    assert report.added == [f"{LONG_TERM}/c-moved.md", f"{LONG_TERM}/d.md"]
    assert report.deleted == [f"{INSIGHTS}/c.md", f"{LONG_TERM}/b.md"]
    assert report.moved == [(f"{INSIGHTS}/c.md", f"{LONG_TERM}/c-moved.md")]
    assert report.unchanged == 0
    assert indexed(vault_index) == {
        f"{LONG_TERM}/a.md": ("Alpha", "apricots now"),
        f"{LONG_TERM}/c-moved.md": ("Charlie", "cherries"),
        f"{LONG_TERM}/d.md": ("Delta", "dates"),
    }
    again = vault_index.sync()
    assert (again.added, again.changed, again.deleted, again.unchanged) == ([], [], [], 3)


def test_a_sync_told_nothing_changed_reports_from_the_manifest_alone(vault: Vault) -> None:
    # What a watcher-vouched sync in a new process says (no rows read): the same as a walk's.
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    write_record(vault, f"{INSIGHTS}/p.md", "Moved proposal", "kept", type_="proposal")
    write_record(vault, "learning/proposals/q.md", "Waiting proposal", "waits", type_="proposal")
    (vault.root / LONG_TERM / "bad.md").write_text("---\ntitle: [unclosed\n---\n", "utf-8")
    first = VaultIndex(vault)
    walked = first.sync()
    first.close()

    def told_nothing() -> sync_module.SyncReport:
        fresh = VaultIndex(vault)
        try:
            return fresh.sync(paths=[])
        finally:
            fresh.close()

    quick = told_nothing()
    assert quick.unchanged == walked.unchanged + len(walked.added) == 4
    assert [p.path for p in quick.problems] == [p.path for p in walked.problems]
    assert quick.problems[0].path == f"{LONG_TERM}/bad.md" and quick.problems[0].line > 0
    assert quick.proposals_in_stores == walked.proposals_in_stores == [f"{INSIGHTS}/p.md"]
    # A manifest saved before the count and the report indexes were kept: the same answers,
    # and the next save adds them.
    db = sqlite3.connect(vault.state_dir / "manifest.db")
    with db:
        db.execute("DELETE FROM meta WHERE key = 'files'")
        db.execute("DROP INDEX files_problem")
        db.execute("DROP INDEX files_moved_proposal")
    db.close()
    again = told_nothing()
    assert (again.unchanged, again.problems, again.proposals_in_stores) == (
        quick.unchanged,
        quick.problems,
        quick.proposals_in_stores,
    )
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    index = VaultIndex(vault)
    index.sync()
    index.close()
    db = sqlite3.connect(vault.state_dir / "manifest.db")
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    kept = db.execute("SELECT value FROM meta WHERE key = 'files'").fetchone()
    db.close()
    assert {"files_problem", "files_moved_proposal"} <= indexes and kept == ("5",)
    assert told_nothing().unchanged == 5


def stored_digest(vault: Vault) -> tuple[int, int]:
    """(the stat digest the manifest keeps, the digest of the rows it holds, worked out now)."""
    db = sqlite3.connect(vault.state_dir / "manifest.db")
    try:
        kept = db.execute("SELECT value FROM meta WHERE key = 'stat_digest'").fetchone()
        rows = db.execute("SELECT path, mtime_ns, size, ctime_ns, ino FROM files").fetchall()
    finally:
        db.close()
    actual = memkit.manifest.stat_digest(
        (path, (m, size, c, ino)) for path, m, size, c, ino in rows
    )
    return (int(kept[0]) if kept else -1), actual


def test_the_stat_digest_follows_every_save_and_a_new_process_sees_each_change(
    vault: Vault,
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")

    def new_process_sees_change() -> bool:
        fresh = VaultIndex(vault)
        try:
            return fresh.is_stale()
        finally:
            fresh.close()

    index = VaultIndex(vault)
    try:
        index.sync()
        kept, actual = stored_digest(vault)
        assert kept == actual and not new_process_sees_change()

        def swap() -> None:  # one file gone, one new: the count stays
            (vault.root / LONG_TERM / "b.md").unlink()
            write_record(vault, f"{LONG_TERM}/c.md", "Charlie", "cherries")

        edits: list[Callable[[], object]] = [
            # same size, new mtime
            lambda: write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apricot"),
            swap,
            # renamed: same inode and stat, another path
            lambda: (vault.root / LONG_TERM / "c.md").rename(vault.root / LONG_TERM / "d.md"),
        ]
        for edit in edits:
            edit()
            assert new_process_sees_change()
            index.sync()
            kept, actual = stored_digest(vault)
            assert kept == actual and not new_process_sees_change()
        # A manifest without a digest (written before it was kept) gains one at its next save.
        db = sqlite3.connect(vault.state_dir / "manifest.db")
        with db:
            db.execute("DELETE FROM meta WHERE key = 'stat_digest'")
        db.close()
        assert not new_process_sees_change()  # (from the rows, as before)
        write_record(vault, f"{LONG_TERM}/e.md", "Echo", "eggs")
        index.sync()
        kept, actual = stored_digest(vault)
        assert kept == actual
    finally:
        index.close()
    # A rebuild writes it afresh.
    rebuilt = VaultIndex(vault)
    rebuilt.sync(full=True)
    rebuilt.close()
    kept, actual = stored_digest(vault)
    assert kept == actual and not new_process_sees_change()


def _search_keys(vault_index: VaultIndex, words: list[str]) -> dict[str, list[str]]:
    return {
        word: sorted(hit.key for hit in vault_index.search(word, sync=False, k=50)[0].hits)
        for word in words
    }


def test_a_changed_day_file_replaces_only_the_documents_that_changed(
    vault: Vault, tmp_path: Path
) -> None:
    # A process keeps the documents of the day files it indexed last, and replaces only the
    # documents that differ when the file changes again: the index must stay exactly what a
    # rebuild gives, whoever else indexed the file in between.
    from memkit.conversations import ConversationMessage, Episodes

    moment = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    words = [
        f"{w}word"
        for w in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    ]
    original = f"message 3 says {words[3]}"
    edited = "message three was rewritten by hand"

    def say(n: int) -> ConversationMessage:
        text = f"message {n} says {words[n % len(words)]}"
        return ConversationMessage(text, "Dana", f"m{n}", "s1", moment.replace(minute=n))

    index = VaultIndex(vault)
    other = VaultIndex(vault)
    probe = [*words, "rewritten", "Dana", "message"]
    copies = iter(range(100))

    def same_as_a_rebuild() -> None:
        copy = tmp_path / f"copy{next(copies)}"
        assert indexed(index) == rebuilt_from_scratch(vault, copy)
        scratch = VaultIndex(Vault(copy))
        try:
            assert _search_keys(index, probe) == _search_keys(scratch, probe)
        finally:
            scratch.close()

    def rewrite(old: str, new: str) -> None:
        text = day.read_text("utf-8")
        assert old in text
        day.write_text(text.replace(old, new), "utf-8")

    try:
        index.sync()  # (a manifest first: the day file's first sync is not a rebuild)
        Episodes(vault).record([say(n) for n in range(8)], session="s1")
        index.index_writes()
        Episodes(vault).record([say(8), say(9)], session="s1")  # appended
        index.index_writes()
        same_as_a_rebuild()
        day = next((vault.root / "memory" / "episodic").rglob("*.md"))
        # Edited in place: the message and its neighbours' context change.
        rewrite(original, edited)
        index.sync()
        same_as_a_rebuild()
        assert len(_search_keys(index, ["rewritten"])["rewritten"]) >= 3  # and its neighbours
        # Reverted, and indexed by another process: this process's documents of the file are
        # no longer what the index holds. Then edited again to what this process last saw.
        rewrite(edited, original)
        other.sync()
        rewrite(original, edited)
        index.sync()
        same_as_a_rebuild()
    finally:
        index.close()
        other.close()


def test_a_process_syncing_a_few_paths_reads_only_their_rows_and_reports_the_same(
    vault: Vault, tmp_path: Path
) -> None:
    # A command indexing its own writes (no rows read yet) reads the rows of those paths only;
    # its report, the index and the manifest must be what a process holding every row gives.
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    write_record(vault, f"{INSIGHTS}/p.md", "Moved proposal", "kept", type_="proposal")
    (vault.root / LONG_TERM / "bad.md").write_text("---\ntitle: [unclosed\n---\n", "utf-8")
    first = VaultIndex(vault)
    first.sync()
    first.close()

    def synced(**where: Any) -> sync_module.SyncReport:
        fresh = VaultIndex(vault)  # a new process: no rows in memory
        try:
            return fresh.sync(**where)
        finally:
            fresh.close()

    def rows_on_disk() -> tuple[int, int]:
        db = sqlite3.connect(vault.state_dir / "manifest.db")
        try:
            kept = db.execute("SELECT value FROM meta WHERE key = 'files'").fetchone()[0]
            return int(kept), db.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            db.close()

    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apricots now")
    write_record(vault, f"{LONG_TERM}/c.md", "Charlie", "cherries")
    report = synced(paths=[f"{LONG_TERM}/a.md", f"{LONG_TERM}/c.md"])
    assert (report.added, report.changed, report.deleted) == (
        [f"{LONG_TERM}/c.md"],
        [f"{LONG_TERM}/a.md"],
        [],
    )
    assert report.unchanged == 3
    assert [p.path for p in report.problems] == [f"{LONG_TERM}/bad.md"]
    assert report.problems[0].line > 0
    assert report.proposals_in_stores == [f"{INSIGHTS}/p.md"]
    assert rows_on_disk() == (5, 5)
    (vault.root / LONG_TERM / "b.md").unlink()
    write_record(vault, f"{LONG_TERM}/d.md", "Delta", "dates")
    report = synced(paths=[], directories=[LONG_TERM])
    assert (report.added, report.deleted) == ([f"{LONG_TERM}/d.md"], [f"{LONG_TERM}/b.md"])
    assert rows_on_disk() == (5, 5)
    # Nothing was missed: a walk finds nothing to do, and the index is a rebuild's.
    again = synced()
    assert again.files_changed == 0 and again.unchanged == 5
    index = VaultIndex(vault)
    try:
        assert indexed(index) == rebuilt_from_scratch(vault, tmp_path / "copy")
    finally:
        index.close()


def test_the_manifest_holds_mtime_size_and_content_hash(
    vault: Vault, vault_index: VaultIndex
) -> None:
    import hashlib

    path = write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    vault_index.sync()
    state = vault_index.load_manifest()[f"{LONG_TERM}/a.md"]
    stat = path.stat()
    assert (state.mtime_ns, state.size) == (stat.st_mtime_ns, stat.st_size)
    assert state.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert state.type == "long-term" and state.record_id.startswith("01TEST")
    with sqlite3.connect(vault_index.manifest_path) as db:
        rows = db.execute("SELECT path, sha256, ctime_ns, ino FROM files").fetchall()
    assert rows == [(f"{LONG_TERM}/a.md", state.sha256, stat.st_ctime_ns, stat.st_ino)]


def test_a_touched_file_is_not_reindexed(vault: Vault, vault_index: VaultIndex) -> None:
    path = write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    vault_index.sync()
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))
    report = vault_index.sync()
    assert (report.added, report.changed, report.deleted) == ([], [], [])
    assert vault_index.load_manifest()[f"{LONG_TERM}/a.md"].mtime_ns == later


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(
    vault: Vault, vault_index: VaultIndex
) -> None:
    # On a file system with a coarse clock, a save in the same clock tick as the sync that
    # read the file keeps its mtime; with the same length it keeps the size too. Simulate a
    # very coarse clock with os.utime: every stamp of this test falls in one future tick.
    path = write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    tick = time.time_ns() + 60_000_000_000
    os.utime(path, ns=(tick, tick))
    vault_index.sync()
    stat = path.stat()
    path.write_text(record_text("Alpha", "grapes"), "utf-8")
    os.utime(path, ns=(tick, tick))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert vault_index.is_stale()
    report = vault_index.sync()
    assert report.changed == [f"{LONG_TERM}/a.md"]
    assert indexed(vault_index)[f"{LONG_TERM}/a.md"] == ("Alpha", "grapes")
    assert not vault_index.is_stale()


def test_one_sync_is_one_commit(vault: Vault, vault_index: VaultIndex) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha")
    write_record(vault, f"{LONG_TERM}/z.md", "Zulu")
    vault_index.sync()
    meta = next((vault.state_dir / "index").glob("v*/meta.json"))

    def segments() -> set[str]:
        return {segment["segment_id"] for segment in json.loads(meta.read_text())["segments"]}

    before = segments()
    for name in "bcdef":
        write_record(vault, f"{LONG_TERM}/{name}.md", name.upper() + " record")
    (vault.root / LONG_TERM / "a.md").unlink()
    report = vault_index.sync()
    assert len(report.added) == 5 and report.deleted == [f"{LONG_TERM}/a.md"]
    # An incremental sync writes with one indexing thread: each commit makes one new segment
    # (segments whose documents were all deleted disappear; merges only start at 8 segments).
    assert len(segments() - before) == 1


def test_a_sync_of_named_paths_and_folders_looks_only_there(
    vault: Vault, vault_index: VaultIndex
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha")
    write_record(vault, f"{LONG_TERM}/proj/b.md", "Bravo")
    vault_index.sync()
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "changed")
    write_record(vault, f"{LONG_TERM}/other.md", "Other")
    (vault.root / LONG_TERM / "proj").rename(vault.root / LONG_TERM / "proj2")
    report = vault_index.sync(
        paths=[f"{LONG_TERM}/a.md"], directories=[f"{LONG_TERM}/proj", f"{LONG_TERM}/proj2"]
    )
    assert report.changed == [f"{LONG_TERM}/a.md"]
    assert report.moved == [(f"{LONG_TERM}/proj/b.md", f"{LONG_TERM}/proj2/b.md")]
    assert f"{LONG_TERM}/other.md" not in titles(vault_index)  # not named: left for later
    assert vault_index.sync().added == [f"{LONG_TERM}/other.md"]


def test_the_walk_picks_exactly_the_record_paths(vault: Vault, vault_index: VaultIndex) -> None:
    names = [
        f"{LONG_TERM}/a.md",
        f"{LONG_TERM}/deep/er/b.md",
        "memory/too-shallow.md",
        f"{LONG_TERM}/.hidden.md",
        f"{LONG_TERM}/.git/c.md",
        f"{LONG_TERM}/x.md~",
        f"{LONG_TERM}/x.md.tmp",
        f"{LONG_TERM}/x.md___jb_tmp___",
        f"{LONG_TERM}/4913",
        f"{LONG_TERM}/#x.md#",
        f"{LONG_TERM}/notes.bak/d.md",
        f"{LONG_TERM}/~old/e.md",
        f"{LONG_TERM}/f.txt",
        "other/g/h.md",
        f"{INSIGHTS}/i.md",
    ]
    for name in names:
        write_record(vault, name, name)
    everything = {
        path.relative_to(vault.root).as_posix()
        for path in vault.root.rglob("*")
        if path.is_file() and ".memkit" not in path.parts
    }
    assert set(vault_index.stat_files()) == {p for p in everything if is_record_path(p)}
    assert set(vault_index.stat_files()) == {
        f"{LONG_TERM}/a.md",
        f"{LONG_TERM}/deep/er/b.md",
        f"{INSIGHTS}/i.md",
    }


def test_the_walks_shortcut_for_md_names_is_is_temporary_name() -> None:
    # stat_files checks names ending in .md without calling is_temporary_name; same answer.
    names = [
        "a.md",
        ".a.md",
        "#a.md",
        "~a.md",
        "a~.md",
        "x___jb_tmp___.md",
        "x___jb_old___.md",
        "4913.md",
        "a.tmp.md",
        "a.bak.md",
        "a.swp.md",
        "a#.md",
        "a.md.md",
        ".md",
        "a .md",
    ]
    for name in names:
        shortcut = name.startswith((".", "#", "~")) or "___jb_" in name
        assert shortcut == is_temporary_name(name), name


def test_the_walk_lists_file_symlinks_without_following_them_and_skips_folder_symlinks(
    vault: Vault, vault_index: VaultIndex, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "target.md").write_text(record_text("T", "target"))
    (outside / "deep" / "x.md").write_text(record_text("X", "x"))
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha")
    (vault.root / LONG_TERM / "link.md").symlink_to(outside / "target.md")
    (vault.root / LONG_TERM / "dangling.md").symlink_to(outside / "missing.md")
    (vault.root / LONG_TERM / "folder").symlink_to(outside / "deep")
    stats = vault_index.stat_files()
    assert set(stats) == {f"{LONG_TERM}/a.md", f"{LONG_TERM}/link.md", f"{LONG_TERM}/dangling.md"}
    link = (vault.root / LONG_TERM / "link.md").lstat()  # the link's own stat, not its target's
    assert stats[f"{LONG_TERM}/link.md"] == (
        link.st_mtime_ns,
        link.st_size,
        link.st_ctime_ns,
        link.st_ino,
    )


# --- the manifest (SQLite) ----------------------------------------------------------------------


def test_a_sync_saves_just_what_it_changed_and_other_processes_read_it(
    vault: Vault, vault_index: VaultIndex
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    vault_index.sync()  # a rebuild writes the whole manifest
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apricots")
    vault_index.sync(paths=[f"{LONG_TERM}/a.md"])
    (vault.root / LONG_TERM / "b.md").unlink()
    write_record(vault, f"{LONG_TERM}/c.md", "Charlie", "cherries")
    vault_index.sync()
    expected = {f"{LONG_TERM}/a.md", f"{LONG_TERM}/c.md"}
    other = VaultIndex(vault)
    try:
        assert set(other.load_manifest()) == expected
        assert other.load_manifest() == vault_index.load_manifest()
        assert not other.is_stale()
        assert not other.sync().files_changed
    finally:
        other.close()
    assert vault_index.load_manifest()[f"{LONG_TERM}/a.md"] == FileState(
        *manifest_on_disk(vault)[f"{LONG_TERM}/a.md"]  # type: ignore[arg-type]
    )
    # One file, in WAL mode: no JSON manifest, journal or pending list any more.
    assert {p.name for p in vault.state_dir.iterdir()} >= {"manifest.db"}
    assert not {"manifest.json", "manifest.journal", "pending.json"} & {
        p.name for p in vault.state_dir.iterdir()
    }
    with sqlite3.connect(vault_index.manifest_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_process_sees_what_another_saved(vault: Vault, vault_index: VaultIndex) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha")
    vault_index.sync()
    other = VaultIndex(vault)
    try:
        assert not other.is_stale()  # reads (and caches) the manifest
        write_record(vault, f"{LONG_TERM}/b.md", "Bravo")
        vault_index.sync(paths=[f"{LONG_TERM}/b.md"])
        assert not other.is_stale()  # the other process's save is seen
        assert set(other.load_manifest()) == {f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md"}
        write_record(vault, f"{LONG_TERM}/c.md", "Charlie")
        assert other.sync().added == [f"{LONG_TERM}/c.md"]
        assert not vault_index.sync().files_changed  # and back the other way
    finally:
        other.close()


def test_a_damaged_manifest_means_a_rebuild(run: Runner, vault: Vault) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    assert run.run("sync").exit_code == 0
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    assert run.run("sync").exit_code == 0
    for suffix in ("-wal", "-shm"):
        (vault.state_dir / f"manifest.db{suffix}").unlink(missing_ok=True)
    (vault.state_dir / "manifest.db").write_bytes(b"not a database at all" * 100)
    report = json.loads(run.run("sync", "--json").stdout)
    assert report["rebuilt"] is True
    assert sorted(report["added"]) == [f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md"]
    assert json.loads(run.run("search", "bananas", "--json").stdout)["hits"]


def test_a_manifest_of_an_older_format_means_a_rebuild_never_an_error(
    run: Runner, vault: Vault
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo")
    assert run.run("sync").exit_code == 0
    # An earlier release's state: a JSON manifest, its journal and pending list, no database.
    for suffix in ("", "-wal", "-shm"):
        (vault.state_dir / f"manifest.db{suffix}").unlink(missing_ok=True)
    old = {"version": 2, "index_schema": 2, "scanned_ns": 0, "token": "t", "files": []}
    (vault.state_dir / "manifest.json").write_text(json.dumps(old))
    (vault.state_dir / "manifest.journal").write_text('{"base": "t"}\n')
    (vault.state_dir / "pending.json").write_text('{"paths": []}')
    result = run.run("sync", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rebuilt"] and not report["problems"]
    names = {p.name for p in vault.state_dir.iterdir()}
    assert "manifest.db" in names
    assert not names & {"manifest.json", "manifest.journal", "pending.json"}
    assert set(manifest_on_disk(vault)) == {f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md"}
    # A manifest of another version (its user_version) is rebuilt too.
    with sqlite3.connect(vault.state_dir / "manifest.db") as db:
        db.execute("PRAGMA user_version = 3")
    db.close()
    assert json.loads(run.run("sync", "--json").stdout)["rebuilt"] is True


def test_is_stale_agrees_with_freshness(vault: Vault, vault_index: VaultIndex) -> None:
    a = write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    vault_index.sync()

    def agree() -> bool:
        _stats, _manifest, changed, gone = vault_index.freshness()
        assert vault_index.is_stale() == bool(changed or gone)
        return bool(changed or gone)

    assert not agree()
    later = a.stat().st_mtime_ns + 5_000_000_000
    os.utime(a, ns=(later, later))
    assert agree()  # touched: another stat
    vault_index.sync()
    assert not agree()
    (vault.root / LONG_TERM / "b.md").unlink()
    assert agree()
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    vault_index.sync()
    write_record(vault, f"{LONG_TERM}/c.md", "Charlie")
    (vault.root / LONG_TERM / "b.md").unlink()  # same count, other paths
    assert agree()


# --- the CLI: sync, reindex --------------------------------------------------------------------


def test_cli_sync_and_reindex(run: Runner, vault: Vault) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    result = run.run("sync", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == [f"{LONG_TERM}/a.md"]

    (vault.root / LONG_TERM / "a.md").rename(vault.root / LONG_TERM / "b.md")
    result = run.run("sync")
    assert result.exit_code == 0
    assert "1 added, 0 changed, 1 deleted" in result.stdout
    assert f"moved: {LONG_TERM}/a.md -> {LONG_TERM}/b.md" in result.stdout

    result = run.run("reindex", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["rebuilt"] is True and data["added"] == [f"{LONG_TERM}/b.md"]
    assert set(data) >= {
        "added",
        "changed",
        "deleted",
        "moved",
        "unchanged",
        "problems",
        "proposals_in_stores",
        "seconds",
    }


def manifest_on_disk(vault: Vault) -> dict[str, tuple[object, ...]]:
    """The manifest as saved (paths pending from a killed sync included, as UNKNOWN_ROW)."""
    index = VaultIndex(vault)
    try:
        return dict(index._manifest_rows())
    finally:
        index.close()


def pending_in_manifest(vault: Vault) -> set[str]:
    """Paths a killed sync left pending: rows saved before its index commit, not after it."""
    return {path for path, row in manifest_on_disk(vault).items() if row == sync_module.UNKNOWN_ROW}


def damage_other_schema(vault: Vault) -> None:
    with sqlite3.connect(vault.state_dir / "manifest.db") as db:
        db.execute("UPDATE meta SET value = '999' WHERE key = 'index_schema'")
    db.close()


def damage_manifest_bytes(vault: Vault) -> None:
    for suffix in ("-wal", "-shm"):
        (vault.state_dir / f"manifest.db{suffix}").unlink(missing_ok=True)
    (vault.state_dir / "manifest.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)


def damage_manifest_shape(vault: Vault) -> None:
    with sqlite3.connect(vault.state_dir / "manifest.db") as db:
        db.execute("DROP TABLE files")
    db.close()


def delete_state_folder(vault: Vault) -> None:
    shutil.rmtree(vault.root / ".memkit")


def delete_index_folder(vault: Vault) -> None:
    shutil.rmtree(vault.root / ".memkit" / "index")


def damage_index_files(vault: Vault) -> None:
    for meta in (vault.root / ".memkit" / "index").glob("v*/meta.json"):
        meta.write_text("not json at all")


@pytest.mark.parametrize(
    "damage",
    [
        damage_other_schema,
        damage_manifest_bytes,
        damage_manifest_shape,
        delete_state_folder,
        delete_index_folder,
        damage_index_files,
    ],
)
def test_damaged_or_foreign_state_means_a_rebuild_not_an_error(
    run: Runner, vault: Vault, damage: Callable[[Vault], None]
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
    assert run.run("sync").exit_code == 0
    damage(vault)
    result = run.run("sync", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rebuilt"] is True
    assert sorted(report["added"]) == [f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md"]
    found = json.loads(run.run("search", "--json", "bananas").stdout)
    assert [hit["path"] for hit in found["hits"]] == [f"{LONG_TERM}/b.md"]
    assert found["stale"] is False


def test_a_running_process_notices_its_index_folder_was_deleted(
    vault: Vault, vault_index: VaultIndex
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha")
    vault_index.sync()
    shutil.rmtree(vault.root / ".memkit")
    assert vault_index.is_stale()
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo")
    report = vault_index.sync()
    assert report.rebuilt
    assert set(titles(vault_index)) == {f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md"}
    # And another process (a fresh VaultIndex) sees the same, rebuilt index.
    other = VaultIndex(vault)
    try:
        assert not other.is_stale()
        assert titles(other) == titles(vault_index)
    finally:
        other.close()


# --- malformed files ----------------------------------------------------------------------------


MALFORMED: dict[str, tuple[bytes, int, str]] = {
    "bad-yaml.md": (b"---\nid: 01X\ntitle: Re: meeting\n---\nbody\n", 3, "invalid YAML"),
    "latin1.md": (b"---\nid: 01X\n---\ncaf\xe9\n", 4, "not UTF-8"),
    "empty.md": (b"", 1, "empty file"),
    "binary.md": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1, "binary file"),
    "no-front-matter.md": (b"# Just a heading\n", 1, "no front-matter"),
}


def write_malformed(vault: Vault, folder: str = LONG_TERM) -> None:
    for name, (data, _line, _why) in MALFORMED.items():
        (vault.root / folder / name).write_bytes(data)


def test_malformed_files_are_reported_with_path_and_line_and_never_stop_a_sync(
    run: Runner, vault: Vault
) -> None:
    write_record(vault, f"{LONG_TERM}/good.md", "Good", "fine")
    write_malformed(vault)
    result = run.run("sync", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    problems = {p["path"]: p for p in report["problems"]}
    assert set(problems) == {f"{LONG_TERM}/{name}" for name in MALFORMED}
    for name, (_data, line, why) in MALFORMED.items():
        problem = problems[f"{LONG_TERM}/{name}"]
        assert problem["line"] == line and why in problem["message"], problem
        assert f"{LONG_TERM}/{name}:{line}: " in result.stderr
    found = json.loads(run.run("search", "--json", "fine").stdout)
    assert [hit["path"] for hit in found["hits"]] == [f"{LONG_TERM}/good.md"]


# --- approval by move ------------------------------------------------------------------------------


def test_an_approval_by_move_is_one_move_listed_as_a_proposal_in_a_store(
    sample_vault: Vault,
) -> None:
    proposals = sample_vault.root / "learning" / "proposals"
    source = next(proposals.glob("ledger-s-incidents-come-from*.md"))
    index = VaultIndex(sample_vault)
    try:
        index.sync()
        target = sample_vault.root / INSIGHTS / source.name
        source.rename(target)
        report = index.sync()
    finally:
        index.close()
    moved_to = f"{INSIGHTS}/{source.name}"
    assert report.moved == [(f"learning/proposals/{source.name}", moved_to)]
    assert report.proposals_in_stores == [moved_to]


def test_cli_sync_finalises_or_reports_a_proposal_moved_into_a_store(
    run_sample: Runner, sample_vault: Vault
) -> None:
    assert run_sample.run("sync").exit_code == 0
    source = next((sample_vault.root / "learning/proposals").glob("wants-the-concept*.md"))
    source.rename(sample_vault.root / "learning/persona" / source.name)
    result = run_sample.run("sync", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["moved"] == [
        {"from": f"learning/proposals/{source.name}", "to": f"learning/persona/{source.name}"}
    ]
    # Finalised (learning turns it into a persona entry), so it is no longer a proposal.
    assert report["proposals_in_stores"] == []
    status = json.loads(run_sample.run("status", "--json").stdout)
    assert status["index"]["fresh"] is True


# --- processes: killed mid-sync, two at once ---------------------------------------------------------


def write_many(vault: Vault, count: int, *, start: int = 0, word: str = "alpha") -> dict[str, str]:
    written = {}
    for i in range(start, start + count):
        relpath = f"{LONG_TERM}/bulk/n{i:05d}.md"
        title = f"Note {i}"
        (vault.root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (vault.root / relpath).write_text(
            record_text(
                title, f"{word} {i} " + "lorem ipsum dolor " * 8, record_id=f"01BULK{i:020d}"
            )
        )
        written[relpath] = title
    return written


@pytest.mark.slow
def test_a_sync_killed_mid_way_is_made_whole_by_the_next_one(vault: Vault, tmp_path: Path) -> None:
    write_many(vault, 2500)
    rng = random.Random(7)
    for delay in (0.4, 0.8, 1.2):
        child = subprocess.Popen(
            memkit_command(vault.root, "sync"),
            env=child_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            # The whole group: the sync's parsing workers die with it, as with a power cut.
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        # Files keep changing between the crash and the next sync.
        bulk = sorted((vault.root / LONG_TERM / "bulk").glob("*.md"))
        for path in rng.sample(bulk, 20):
            path.unlink()
        for path in rng.sample([p for p in bulk if p.exists()], 20):
            path.write_text(record_text(path.stem, f"rewritten after crash {delay}"))
        write_many(vault, 10, start=int(delay * 10_000))
    index = VaultIndex(vault)
    try:
        index.sync()
        incremental = indexed(index)
        assert not index.is_stale()
    finally:
        index.close()
    assert incremental == rebuilt_from_scratch(vault, tmp_path / "scratch")
    assert len(incremental) == len(list((vault.root / LONG_TERM / "bulk").glob("*.md")))


@pytest.mark.slow
def test_a_sync_killed_between_index_commit_and_manifest_save_leaves_no_orphans(
    vault: Vault, tmp_path: Path
) -> None:
    write_many(vault, 200)
    VaultIndex(vault).sync()
    meta = next((vault.state_dir / "index").glob("v*/meta.json"))
    for attempt in range(5):
        new = write_many(vault, 1500, start=10_000 * (attempt + 1), word="beta")
        committed = meta.stat().st_mtime_ns
        child = subprocess.Popen(
            memkit_command(vault.root, "sync"),
            env=child_env(),
            start_new_session=True,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        # Kill it the moment the index commit lands, before the manifest can follow.
        while child.poll() is None and meta.stat().st_mtime_ns == committed:
            pass
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        caught = bool(pending_in_manifest(vault) & set(new))
        # The new documents are in the index but the manifest does not know them; the files
        # of half of them go before the next sync.
        for relpath in list(new)[::2]:
            (vault.root / relpath).unlink()
        if caught:
            break
    index = VaultIndex(vault)
    try:
        index.sync()
        assert indexed(index) == rebuilt_from_scratch(vault, tmp_path / "scratch")
    finally:
        index.close()
    assert not pending_in_manifest(vault)
    assert caught, "never killed the sync between its commit and its manifest save"


@pytest.mark.slow
def test_two_processes_syncing_at_once_both_succeed(vault: Vault, tmp_path: Path) -> None:
    written = write_many(vault, 400)
    children = [
        subprocess.Popen(
            memkit_command(vault.root, "sync", "--json"),
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        json.loads(stdout)
    reports = [json.loads(stdout) for stdout, _ in outputs]
    # One of them indexed everything, the other found nothing left to do.
    assert sorted(len(r["added"]) for r in reports) == [0, 400]
    index = VaultIndex(vault)
    try:
        assert titles(index) == written
    finally:
        index.close()


# --- property: incremental sync == full rebuild -----------------------------------------------------

SLOTS = [f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md", f"{INSIGHTS}/c.md", f"{LONG_TERM}/sub/d.md"]
BODIES = st.text(alphabet="ab xy", min_size=1, max_size=12)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from(SLOTS), BODIES),
        st.tuples(st.just("delete"), st.sampled_from(SLOTS)),
        st.tuples(st.just("move"), st.sampled_from(SLOTS), st.sampled_from(SLOTS)),
        st.tuples(st.just("corrupt"), st.sampled_from(SLOTS), st.sampled_from(sorted(MALFORMED))),
        st.tuples(st.just("touch"), st.sampled_from(SLOTS)),
        st.tuples(st.just("sync")),
    ),
    max_size=14,
)


@pytest.mark.slow
@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_incremental_sync_always_matches_a_full_rebuild(operations: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        vault = Vault.init(Path(scratch) / "vault")
        index = VaultIndex(vault)
        try:
            for op in operations:
                path = vault.root / op[1] if len(op) > 1 else vault.root
                if op[0] == "write":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # Same-length bodies in the same tick are the hard case for mtime+size.
                    path.write_text(record_text(op[1], op[2]), "utf-8")
                elif op[0] == "delete":
                    path.unlink(missing_ok=True)
                elif op[0] == "move" and path.exists():
                    target = vault.root / op[2]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    path.rename(target)
                elif op[0] == "corrupt" and path.exists():
                    path.write_bytes(MALFORMED[op[2]][0])
                elif op[0] == "touch" and path.exists():
                    os.utime(path)
                elif op[0] == "sync":
                    index.sync()
            report = index.sync()
            incremental = indexed(index)
            problems = {p.path for p in report.problems}
        finally:
            index.close()
        assert incremental == rebuilt_from_scratch(vault, Path(scratch) / "copy")
        on_disk = {p for p in SLOTS if (vault.root / p).exists()}
        assert set(incremental) | problems == on_disk


# --- only regular files inside the vault are opened (issue 11) ----------------------------------


def _special_files(vault: Vault, outside: Path) -> dict[str, str]:
    """Make one of each special file in the long-term folder: relpath -> a word of its message."""
    folder = vault.root / LONG_TERM
    outside.write_text(record_text("Leak", "outsideonlyword"))
    os.mkfifo(folder / "fifo.md")
    (folder / "out.md").symlink_to(outside)
    (folder / "loop.md").symlink_to(folder / "loop.md")
    (folder / "typelist.md").write_text(
        "---\nid: 01TESTLIST\ntype: [long-term]\ncreated: 2026-01-01T00:00:00Z\n"
        "updated: 2026-01-01T00:00:00Z\n---\nlisted type\n"
    )
    made = {
        f"{LONG_TERM}/fifo.md": "FIFO",
        f"{LONG_TERM}/out.md": "leading out",
        f"{LONG_TERM}/loop.md": "loop",
        f"{LONG_TERM}/typelist.md": "one word",
    }
    if len(str(folder / "s.md")) < 100:
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(folder / "s.md"))
        server.close()  # the socket file stays
        made[f"{LONG_TERM}/s.md"] = "socket"
    if os.geteuid() == 0:  # making a device node needs root
        os.mknod(folder / "dev.md", 0o600 | 0o020000, os.makedev(1, 3))  # a char device (null)
        made[f"{LONG_TERM}/dev.md"] = "device"
    return made


def test_special_files_are_per_file_problems_and_every_good_record_is_indexed(
    run: Runner, vault: Vault, tmp_path: Path
) -> None:
    write_record(vault, f"{LONG_TERM}/good.md", "Good", "ordinaryword")
    write_record(vault, f"{LONG_TERM}/zz-last.md", "Last", "lastword")  # after the bad ones
    made = _special_files(vault, tmp_path / "outside.md")
    for command in (("sync",), ("reindex",), ("sync",)):
        result = run.run(*command, "--json")
        assert result.exit_code == 0, result.output
    problems = {
        p["path"]: p["message"] for p in json.loads(run.run("status", "--json").stdout)["problems"]
    }
    for path, word in made.items():
        assert word in problems[path], (path, problems.get(path))
    # `check` names every bad file (it does not stop at the first symlink leading out).
    checked = run.run("check", "--json")
    assert checked.exit_code == 1
    listed = checked.stdout + checked.stderr
    for path in made:
        assert path in listed
    assert run.run("list").exit_code == 0
    # Looking a record up by id reads candidate files: never the FIFO (it would hang).
    assert run.run("show", "01TESTNOSUCHRECORD0000000000").exit_code == 1
    found = json.loads(run.run("search", "ordinaryword", "--json").stdout)
    assert [hit["path"] for hit in found["hits"]] == [f"{LONG_TERM}/good.md"]
    assert json.loads(run.run("search", "lastword", "--json").stdout)["hits"]
    # The file a symlink leads to is never read: its text is not searchable.
    leaked = run.run("search", "outsideonlyword", "--json")
    assert json.loads(leaked.stdout)["hits"] == []
    assert "Leak" not in run.run("search", "outsideonlyword").output


def _unreadable_file_report(root: str) -> tuple[list[str], list[str], list[str]]:
    """(check's problem paths, sync's problem paths, search hits) for the vault at root."""
    vault = Vault(Path(root))
    index = VaultIndex(vault)
    try:
        report = index.sync()
        hits = [hit.path for hit in index.search("readableword")[0].hits]
    finally:
        index.close()
    return (
        [f"{p.path}: {p.message}" for p in vault.check().problems],
        [f"{p.path}: {p.message}" for p in report.problems],
        hits,
    )


def test_an_unreadable_file_is_a_per_file_problem(tmp_path: Path) -> None:
    # chmod 000 blocks reads for a normal user only: as root (CI), the same code runs in a
    # forked child that has become `nobody`, on a vault it owns.
    base = Path(tempfile.mkdtemp(prefix="memkit-unreadable-"))
    try:
        base.chmod(0o755)
        vault = Vault.init(base / "v")
        write_record(vault, f"{LONG_TERM}/ok.md", "Ok", "readableword")
        secret = write_record(vault, f"{LONG_TERM}/closed.md", "Closed", "closedword")
        if os.geteuid() != 0:
            secret.chmod(0o000)
            checked, synced, hits = _unreadable_file_report(str(vault.root))
        else:
            for folder, _dirs, files in os.walk(base):
                os.chown(folder, 65534, 65534)
                for name in files:
                    os.chown(os.path.join(folder, name), 65534, 65534)
            secret.chmod(0o000)
            reader, writer = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: drop root, answer through the pipe, exit at once
                code = 1
                try:
                    os.close(reader)
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                    os.write(writer, json.dumps(_unreadable_file_report(str(vault.root))).encode())
                    code = 0
                finally:
                    os._exit(code)
            os.close(writer)
            with os.fdopen(reader, "rb") as pipe:
                data = pipe.read()
            _pid, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            checked, synced, hits = json.loads(data)
        expected = f"{LONG_TERM}/closed.md: cannot be read: permission denied"
        assert expected in checked and expected in synced
        assert hits == [f"{LONG_TERM}/ok.md"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_edit_that_keeps_size_and_mtime_is_seen_by_ctime_and_inode(
    vault: Vault, vault_index: VaultIndex
) -> None:
    path = write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    old = 1_600_000_000_000_000_000
    os.utime(path, ns=(old, old))  # long before any sync: not racily clean
    vault_index.sync()
    assert vault_index.search("apples")[0].hits
    # `cp -p` / tar: a new file (another inode) with the same size and the old mtime.
    copy = path.with_name("a.md.tmp")
    copy.write_text(record_text("Alpha", "grapes"))
    os.utime(copy, ns=(old, old))
    os.replace(copy, path)
    assert vault_index.is_stale()
    assert [h.path for h in vault_index.search("grapes")[0].hits] == [f"{LONG_TERM}/a.md"]
    # `touch -r` after an in-place edit: same inode, same size and mtime, a new ctime.
    path.write_text(record_text("Alpha", "melons"))
    os.utime(path, ns=(old, old))
    assert vault_index.is_stale()
    assert [h.path for h in vault_index.search("melons")[0].hits] == [f"{LONG_TERM}/a.md"]
    assert not vault_index.search("grapes")[0].hits


# --- write-through and one freshness check (issue 12) -------------------------------------------


def saves(vault: Vault) -> int:
    """How many syncs saved changes to the manifest (each after its one index commit)."""
    index = VaultIndex(vault)
    try:
        return index.saves()
    finally:
        index.close()


def test_what_memkit_writes_is_indexed_at_once_by_path(run: Runner, vault: Vault) -> None:
    from memkit import Memory

    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    memory = Memory(vault)
    try:
        fact = memory.remember("the kettle is in the left cupboard")
        other = VaultIndex(vault)
        try:
            # Indexed by the write itself: nothing left for another process to find by a walk.
            assert not other.is_stale()
            hits = other.search("kettle", sync=False)[0].hits
            assert [h.record_id for h in hits] == [fact.id]
            memory.forget(fact.id)
            assert not other.is_stale() and not other.search("kettle", sync=False)[0].hits
        finally:
            other.close()
    finally:
        memory.close()
    # A command too: what it wrote is in the index when it returns.
    assert run.run("remember", "the bike lock code is in the drawer").exit_code == 0
    other = VaultIndex(vault)
    try:
        assert not other.is_stale()
        assert other.search("bike lock", sync=False)[0].hits
    finally:
        other.close()


@pytest.mark.slow
def test_expire_promotes_a_batch_with_one_index_commit_and_dedupes_within_it(
    tmp_path: Path,
) -> None:
    from datetime import timedelta

    from memkit import Memory
    from memkit.timeutil import utcnow

    vault = Vault.init(tmp_path / "v")
    memory = Memory(vault)
    try:
        for n in range(12):
            memory.remember(f"important item number {n}", type="short-term", importance=0.9)
        memory.remember("the same vital fact twice", type="short-term", importance=0.9)
        memory.remember("the same vital fact twice", type="short-term", importance=0.9)
        before = saves(vault)
        report = memory.expire(now=utcnow() + timedelta(days=30))
        # One sync saved: one index commit for the whole batch.
        assert saves(vault) == before + 1
        assert len(report.expired) == 14 and len(report.promoted) == 14
        facts = vault.scan(["long-term"]).records
        assert sorted(f.body.strip() for f in facts) == sorted(
            [f"important item number {n}" for n in range(12)] + ["the same vital fact twice"]
        )
        other = VaultIndex(vault)
        try:
            assert not other.is_stale()
            assert len(other.search("vital fact", sync=False)[0].hits) == 1
        finally:
            other.close()
    finally:
        memory.close()


def test_an_agent_turn_indexes_its_writes_in_one_commit(
    tmp_path: Path, llm_server: ScriptedLLMServer
) -> None:
    from memkit import Agent
    from memkit.llm import LLMConfig

    config = LLMConfig(
        model="test-model",
        base_url=llm_server.base_url,
        api_key=None,
        timeout_seconds=5,
        max_retries=0,
    )
    root = tmp_path / "vault"
    with Agent("Be brief.", vault=root, memory=True, llm=config) as agent:
        llm_server.reply_text("Noted.")
        agent.run("The boiler manual is in the blue folder.")
        before = saves(agent.vault)
        llm_server.reply_text("In the blue folder.")
        agent.run("Where is the boiler manual?")
        # The day file and two short-term items, all indexed by one sync (one index commit).
        assert saves(agent.vault) == before + 1
        other = VaultIndex(agent.vault)
        try:
            assert not other.is_stale()
        finally:
            other.close()


@pytest.mark.slow
def test_a_process_reads_just_the_saves_it_missed_and_agrees_with_a_fresh_read(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memkit.manifest, "TOMBSTONES", 3)  # prune often: older readers load it all
    rng = random.Random(7)
    first, second = VaultIndex(vault), VaultIndex(vault)
    try:
        for step in range(40):
            name = f"{LONG_TERM}/n{rng.randrange(8)}.md"
            path = vault.root / name
            if path.exists() and rng.random() < 0.4:
                path.unlink()
            else:
                write_record(vault, name, f"Note {step}")
            writer = rng.choice((first, second))
            if step % 13 == 12:
                writer.sync(full=True)  # a new generation
            else:
                writer.sync(paths=[name])
            fresh = VaultIndex(vault)
            try:
                expected = fresh.load_manifest()
            finally:
                fresh.close()
            assert first.load_manifest() == expected, step
            assert second.load_manifest() == expected, step
            assert set(expected) == {
                f"{LONG_TERM}/{p.name}" for p in (vault.root / LONG_TERM).glob("*.md")
            }
    finally:
        first.close()
        second.close()


def test_search_takes_a_request_or_the_same_fields_as_keywords(
    vault: Vault, vault_index: VaultIndex
) -> None:
    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples and pears")
    write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "apples")
    write_record(vault, f"{INSIGHTS}/c.md", "Charlie", "apples", type_="insight")
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    by_keywords, _ = vault_index.search("apples", k=5, types=["long-term"], now=now)
    by_request, stale = vault_index.search(
        SearchRequest("apples", k=5, types=["long-term"], now=now)
    )
    assert not stale
    assert [(h.path, h.score) for h in by_request.hits] == [
        (h.path, h.score) for h in by_keywords.hits
    ]
    assert {h.path for h in by_request.hits} == {f"{LONG_TERM}/a.md", f"{LONG_TERM}/b.md"}
    # A request's own weights rank; without them the vault's settings do (as for keywords).
    only_bm25 = RankWeights(bm25=1.0, importance=0.0, recency=0.0)
    weighted, _ = vault_index.search(SearchRequest("apples", k=5, now=now, weights=only_bm25))
    top = max(h.bm25 for h in weighted.hits)
    assert all(h.score == pytest.approx(h.bm25 / top) for h in weighted.hits)
    top = max(h.bm25 for h in by_keywords.hits)
    assert any(h.score != pytest.approx(h.bm25 / top) for h in by_keywords.hits)


# --- the rebuild ----------------------------------------------------------------------------

DAY_FILE = """---
id: 01TESTDAYFILE0000000000001
type: episodic
title: "2026-03-20"
date: 2026-03-20
created: 2026-03-20T07:11:00Z
updated: 2026-03-20T18:56:00Z
tags: [café, Rust]
---
## 09:38 · session s-2026-03-20-a · Zoë, assistant

- 09:38 **Zoë** [m-20260320-01]: Where did we get that crème brûlée in Kraków?
- 09:40 **assistant** [m-20260320-02]: At the little café near the market square.
- 09:43 **Zoë** [m-20260320-03]: Book it again for Friday.
- 09:44 **Zoë** [m-20260320-03]: Book it again for Saturday instead.
"""


def _everything(vault_index: VaultIndex) -> dict[str, object]:
    """All an index tells about its documents: every field of every hit, and ranked searches
    that reach the neighbouring-turn fields (scores rounded: segments may differ)."""
    documents = {
        key: (hit.to_json(), hit.line, hit.snippet)
        for key, hit in vault_index.indexed_documents().items()
    }
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    searches = {}
    for query in ("market square", "creme brulee", "Friday", "Zoë", "postgres", "rust"):
        result, _stale = vault_index.search(query, k=20, sync=False, now=now)
        searches[query] = [(hit.key, round(hit.score, 4)) for hit in result.hits]
    return {"documents": documents, "searches": searches}


@pytest.mark.slow
def test_a_rebuild_in_worker_processes_indexes_what_one_process_and_a_sync_do(
    sample_vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = sample_vault.root / "memory/episodic/2026/03/2026-03-20.md"
    day.parent.mkdir(parents=True, exist_ok=True)
    day.write_text(DAY_FILE, "utf-8")
    write_record(sample_vault, f"{LONG_TERM}/accents.md", "Ångström naïveté", "façade über")
    (sample_vault.root / LONG_TERM / "broken.md").write_text("no front-matter here\n", "utf-8")

    built: dict[str, dict[str, object]] = {}
    rows: dict[str, dict[str, memkit.manifest.Row]] = {}
    for how, threshold in (("pool", 1), ("here", 10**9)):
        # (The threshold only says from how many files a process pool pays off.)
        monkeypatch.setattr(sync_module, "PARALLEL_THRESHOLD", threshold)
        shutil.rmtree(sample_vault.state_dir, ignore_errors=True)
        vault_index = VaultIndex(Vault(sample_vault.root))
        try:
            report = vault_index.sync(full=True)
            assert report.rebuilt
            assert [p.path for p in report.problems] == [f"{LONG_TERM}/broken.md"]
            built[how] = _everything(vault_index)
            rows[how] = vault_index._manifest_rows()
        finally:
            vault_index.close()

    # The same files indexed by an incremental sync (the path a watcher or a write takes),
    # here and in worker processes.
    for how, threshold in (("sync", 10**9), ("sync in a pool", 1)):
        monkeypatch.setattr(sync_module, "PARALLEL_THRESHOLD", threshold)
        copy = Vault.init(tmp_path / how)
        vault_index = VaultIndex(copy)
        try:
            # A first sync rebuilds (one file), the next one adds all the others incrementally.
            write_record(copy, f"{LONG_TERM}/accents.md", "Ångström naïveté", "façade über")
            assert vault_index.sync().rebuilt
            shutil.copytree(
                sample_vault.root,
                copy.root,
                ignore=shutil.ignore_patterns(".memkit"),
                dirs_exist_ok=True,
            )
            assert not vault_index.sync().rebuilt
            built[how] = _everything(vault_index)
        finally:
            vault_index.close()

    assert built["pool"] == built["here"] == built["sync"] == built["sync in a pool"]
    assert rows["pool"] == rows["here"]
    documents = built["pool"]["documents"]
    assert isinstance(documents, dict)
    day_key = "memory/episodic/2026/03/2026-03-20.md"
    # One document per message; the repeated id keeps its last text.
    assert sorted(k for k in documents if k.startswith(day_key)) == [
        f"{day_key}#m-20260320-0{n}" for n in (1, 2, 3)
    ]
    assert "Saturday" in documents[f"{day_key}#m-20260320-03"][2]
    searches = built["pool"]["searches"]
    assert isinstance(searches, dict)
    # Found through its neighbour's words (the context field) and through folded accents.
    assert f"{day_key}#m-20260320-01" in [key for key, _ in searches["market square"]]
    assert f"{day_key}#m-20260320-01" in [key for key, _ in searches["creme brulee"]]


def test_a_reindex_lists_the_files_new_to_the_manifest_before_it_indexes_them(
    vault: Vault, vault_index: VaultIndex
) -> None:
    # Should it die after its index commit, the next sync still looks at them (and drops
    # their documents if the files went meanwhile): no orphans in the index.
    old = write_many(vault, 30)
    vault_index.sync()
    new = write_many(vault, 5, start=1000)
    during: list[tuple[set[str], set[str]]] = []

    def progress(done: int, total: int) -> None:  # called while the rebuild streams
        during.append((pending_in_manifest(vault), set(manifest_on_disk(vault))))

    report = vault_index.sync(full=True, progress=progress)
    assert report.rebuilt and during
    pending, listed = during[0]
    assert pending == set(new)
    assert listed == set(old) | set(new)
    assert not pending_in_manifest(vault)
    assert set(manifest_on_disk(vault)) == set(old) | set(new)
