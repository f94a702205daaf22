"""Approvals by move and by command, counted: at most two parses of the approved file and one
index commit on every path that finalises one (`memkit sync`, the watcher, `sync --remote`'s
refresh, `memkit approve`), with what already worked kept: an approval that cannot be finalised
stays as it is and is reported, a person's edit is never overwritten, and the index holds what
a rebuild from the files would hold. A real vault on disk and a real Tantivy index throughout;
parses are counted by a wrapper around the real parser (installed for the test only), commits
by the index's own counter."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

import memkit.files as files_module
import memkit.sync as sync_module
import memkit.vault as vault_module
from memkit.learning import Learning
from memkit.maintenance import approving_watcher, refresh
from memkit.records import Record, parse_record
from memkit.sync import SyncReport, VaultIndex
from memkit.vault import Vault

from .conftest import Runner

INSIGHTS = "learning/insights"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Parses of each file (vault-relative path) from now on: the real parser, counted."""
    counts: Counter[str] = Counter()

    def counting(data: bytes, path: str) -> Record:
        counts[path] += 1
        return parse_record(data, path)

    # The homes that parse files: the sync (indexing), the vault (reads) and the vault's
    # files (a record just written, from the bytes in hand).
    monkeypatch.setattr(sync_module, "parse_record", counting)
    monkeypatch.setattr(vault_module, "parse_record", counting)
    monkeypatch.setattr(files_module, "parse_record", counting)
    return counts


def propose(vault: Vault, text: str, *, store: str = "insights", **more: str) -> Record:
    learning = Learning(vault)
    try:
        return learning.propose(store, text, **more)  # type: ignore[arg-type]
    finally:
        learning.close()


def seeded(vault: Vault) -> VaultIndex:
    for n in range(5):
        vault.create("long-term", f"Fact {n} about the deploy pipeline.", title=f"Fact {n}")
    index = VaultIndex(vault)
    index.sync()
    return index


def move_into_store(vault: Vault, proposal: Record, folder: str = INSIGHTS) -> tuple[str, str]:
    assert proposal.path is not None
    moved = f"{folder}/{Path(proposal.path).name}"
    os.rename(vault.root / proposal.path, vault.root / moved)
    return proposal.path, moved


def commits(index: VaultIndex) -> int:
    return index.search_index.commits


def documents(index: VaultIndex) -> dict[str, tuple[str, str, str, str]]:
    return {
        key: (hit.path, hit.type, hit.title, hit.snippet)
        for key, hit in index.indexed_documents().items()
    }


def rebuilt(vault: Vault, scratch: Path) -> dict[str, tuple[str, str, str, str]]:
    """What a full rebuild from the vault's files holds (in a copy: `vault` is untouched)."""
    shutil.copytree(vault.root, scratch, ignore=shutil.ignore_patterns(".memkit", ".git"))
    fresh = VaultIndex(Vault(scratch))
    try:
        fresh.sync(full=True)
        return documents(fresh)
    finally:
        fresh.close()


def test_an_approval_by_move_costs_two_parses_and_one_commit_through_sync(
    vault: Vault, parses: Counter[str], tmp_path: Path
) -> None:
    proposal = propose(vault, "Use blue-green deploys for the billing service.", title="Blue")
    index = seeded(vault)
    try:
        origin, moved = move_into_store(vault, proposal)
        parses.clear()
        before = commits(index)
        report = refresh(vault, vault_index=index)
        assert dict(parses) == {moved: 2}  # the sync's read, the finalised file's read-back
        assert commits(index) == before + 1
        assert report.moved == [(origin, moved)]
        assert report.added == [moved] and report.deleted == [origin]
        assert report.changed == [] and report.unchanged == 5
        assert report.approved == [moved] and report.proposals_in_stores == []
        assert not report.problems
        text = (vault.root / moved).read_text()
        assert "type: insight" in text and "approved:" in text and "store:" not in text

        # The index holds the finalised entry (what a rebuild gives), and the manifest the
        # finalised file: the next sync parses nothing and commits nothing.
        assert documents(index) == rebuilt(vault, tmp_path / "scratch")
        parses.clear()
        before = commits(index)
        again = index.sync()
        assert not parses and commits(index) == before and again.files_changed == 0
        hits = index.search("blue-green billing", types=["insight"])[0].hits
        assert [hit.path for hit in hits] == [moved]
    finally:
        index.close()


def test_an_approval_synced_with_other_changes_adds_one_commit_and_no_parse(
    vault: Vault, parses: Counter[str], tmp_path: Path
) -> None:
    proposal = propose(vault, "Use blue-green deploys for the billing service.", title="Blue")
    index = seeded(vault)
    try:
        origin, moved = move_into_store(vault, proposal)
        fact = sorted((vault.root / "memory/long-term").glob("*.md"))[0]
        fact.write_text(fact.read_text().replace("deploy pipeline", "release train"))
        edited = f"memory/long-term/{fact.name}"
        parses.clear()
        before = commits(index)
        report = refresh(vault, vault_index=index)
        # The edit is committed with the rest of the sync; the approval's own commit follows.
        assert dict(parses) == {moved: 2, edited: 1}
        assert commits(index) == before + 2
        assert report.moved == [(origin, moved)] and report.approved == [moved]
        assert report.added == [moved] and report.deleted == [origin]
        assert report.changed == [edited] and report.unchanged == 4
        assert documents(index) == rebuilt(vault, tmp_path / "scratch")
    finally:
        index.close()


def test_memkit_sync_reports_the_approval_it_finalised(run: Runner, vault: Vault) -> None:
    proposal = propose(vault, "Prefers answers that show the code first.", store="persona")
    assert run.run("sync").exit_code == 0
    origin, moved = move_into_store(vault, proposal, "learning/persona")
    result = run.run("sync", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["approved"] == [moved] and report["proposals_in_stores"] == []
    assert report["moved"] == [{"from": origin, "to": moved}]


def test_an_update_approved_by_move_changes_its_target_in_one_commit(
    vault: Vault, parses: Counter[str], tmp_path: Path
) -> None:
    target = vault.create("insight", "Dana deploys on Tuesdays.", title="Deploy day")
    proposal = propose(
        vault, "Dana deploys on Tuesdays and Thursdays.", op="update", target=target.id
    )
    index = seeded(vault)
    try:
        origin, moved = move_into_store(vault, proposal)
        parses.clear()
        before = commits(index)
        report = refresh(vault, vault_index=index)
        assert parses[moved] == 1  # read by the sync; then deleted (its text is the target's)
        assert commits(index) == before + 1
        assert report.approved == [moved] and not report.problems
        assert report.moved == [(origin, moved)] and report.deleted == [origin]
        assert not (vault.root / moved).exists()
        assert vault.get(target.id).body == "Dana deploys on Tuesdays and Thursdays.\n"
        assert documents(index) == rebuilt(vault, tmp_path / "scratch")
    finally:
        index.close()


def test_a_proposal_moved_into_the_wrong_store_stays_as_it_is_and_is_reported(
    vault: Vault, parses: Counter[str], tmp_path: Path
) -> None:
    proposal = propose(vault, "Prefers short answers.", store="persona")
    index = seeded(vault)
    try:
        origin, moved = move_into_store(vault, proposal)  # into insights, not persona
        before_bytes = (vault.root / moved).read_bytes()
        parses.clear()
        before = commits(index)
        report = refresh(vault, vault_index=index)
        assert (vault.root / moved).read_bytes() == before_bytes
        assert report.approved == [] and report.proposals_in_stores == [moved]
        assert [p.path for p in report.problems] == [moved]
        assert "for the 'persona' store but was moved into learning/insights" in str(
            report.problems[0]
        )
        # Indexed where it sits, as it is (searchable, not lost), from the sync's one parse.
        assert dict(parses) == {moved: 1} and commits(index) == before + 1
        assert report.moved == [(origin, moved)]
        assert documents(index) == rebuilt(vault, tmp_path / "scratch")
        # The next sync reports it again (nothing finalised behind a person's back).
        assert [p.path for p in refresh(vault, vault_index=index).problems] == [moved]
    finally:
        index.close()


def test_an_update_whose_target_changed_is_kept_and_reported(vault: Vault) -> None:
    target = vault.create("insight", "Dana deploys on Tuesdays.", title="Deploy day")
    proposal = propose(vault, "Dana deploys on Fridays.", op="update", target=target.id)
    fresh = vault.get(target.id)
    fresh.body = "Dana deploys on Wednesdays now.\n"
    vault.update(fresh)
    index = seeded(vault)
    try:
        _origin, moved = move_into_store(vault, proposal)
        before_bytes = (vault.root / moved).read_bytes()
        report = refresh(vault, vault_index=index)
        assert (vault.root / moved).read_bytes() == before_bytes
        assert report.approved == [] and report.proposals_in_stores == [moved]
        assert any("changed since the proposal" in p.message for p in report.problems)
        assert vault.get(target.id).body == "Dana deploys on Wednesdays now.\n"
    finally:
        index.close()


def test_a_persons_edit_after_the_sync_read_the_file_is_finalised_not_lost(
    vault: Vault,
) -> None:
    """Learning is handed the file as the sync read it; an edit that lands after that read is
    seen (the file is compared before it is rewritten) and finalised instead of overwritten."""
    proposal = propose(vault, "Use canary deploys first.", title="Canary")
    _origin, moved = move_into_store(vault, proposal)
    as_read = vault.read_record(moved)
    path = vault.root / moved
    path.write_text(path.read_text().replace("canary deploys", "canary deploys at 5%"))
    learning = Learning(vault)
    try:
        done = learning.finalise_moves({moved: as_read})
    finally:
        learning.close()
    assert done.approved == [moved] and not done.problems
    text = path.read_text()
    assert "canary deploys at 5%" in text and "type: insight" in text


def test_a_record_handed_to_sync_is_used_only_while_the_file_is_what_was_read(
    vault: Vault, parses: Counter[str]
) -> None:
    record = vault.create("long-term", "The staging database is Postgres 15.", title="Staging")
    assert record.path is not None
    index = VaultIndex(vault)
    try:
        index.sync()
        current = vault.read_record(record.path)
        (vault.root / record.path).write_text(
            (vault.root / record.path).read_text().replace("Postgres 15", "Postgres 16 now")
        )
        parses.clear()
        index.sync(paths=[record.path], records={record.path: current})
        assert parses[record.path] == 1  # changed since read: parsed afresh, not trusted
        hits = index.search("Postgres 16", sync=False)[0].hits
        assert [hit.path for hit in hits] == [record.path]
    finally:
        index.close()


@pytest.mark.slow
def test_the_watcher_finalises_an_approval_by_move_in_two_parses_and_one_commit(
    vault: Vault, parses: Counter[str], tmp_path: Path
) -> None:
    proposal = propose(vault, "Roll back on the first failed health check.", title="Rollback")
    index = VaultIndex(vault)
    reports: list[SyncReport] = []
    errors: list[Exception] = []
    watcher = approving_watcher(
        vault,
        index,
        on_sync=reports.append,
        on_error=errors.append,
        quiet_seconds=0.05,
        reconcile_seconds=3600.0,
    )
    try:
        with watcher:
            before = commits(index)
            parses.clear()
            origin, moved = move_into_store(vault, proposal)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(r.approved for r in reports):
                time.sleep(0.02)
            report = next(r for r in reports if r.approved)
            time.sleep(0.3)  # the finalised file's own events: synced, nothing to parse
            assert parses[moved] == 2
            assert commits(index) == before + 1
        assert not errors, errors
        assert report.approved == [moved] and report.moved == [(origin, moved)]
        assert report.proposals_in_stores == []
        assert documents(index) == rebuilt(vault, tmp_path / "scratch")
    finally:
        index.close()


def test_memkit_approve_reads_the_proposal_once_and_commits_once(
    run: Runner, vault: Vault, parses: Counter[str], tmp_path: Path
) -> None:
    proposal = propose(vault, "Deploy freezes start on Friday noon.", title="Freeze")
    assert proposal.path is not None
    assert run.run("sync").exit_code == 0
    moved = f"{INSIGHTS}/{Path(proposal.path).name}"
    parses.clear()
    result = run.run("approve", proposal.path, "--json")
    assert result.exit_code == 0, result.output
    # The command's read, and the vault's read-backs after the move and after the rewrite; the
    # index takes the rewritten file from the last one.
    assert parses[moved] + parses[proposal.path] <= 3
    assert (vault.root / moved).read_text().count("type: insight") == 1
    index = VaultIndex(vault)
    try:
        assert documents(index) == rebuilt(vault, tmp_path / "scratch")
        assert not index.is_stale()
    finally:
        index.close()


def test_a_held_file_stays_out_of_the_index_and_manifest_until_it_is_indexed(
    vault: Vault, parses: Counter[str]
) -> None:
    """The index layer's part: a file whose type is not its folder's is held (with the file it
    moved from) and handed back as read; nothing of it is committed or saved until the caller
    indexes it, and then from the record it hands in, unparsed."""
    proposal = propose(vault, "Ship small changes often.", title="Small")
    index = seeded(vault)
    try:
        origin, moved = move_into_store(vault, proposal)
        before = commits(index)
        report = index.sync(hold=True)
        assert list(report.held) == [moved] and report.held[moved].type == "proposal"
        assert report.moved == [(origin, moved)] and not report.added and not report.deleted
        assert commits(index) == before  # nothing else changed: no commit at all
        assert index.is_stale()  # neither the index nor the manifest took the move
        parses.clear()
        again = index.sync(paths=[origin, moved], records=report.held)
        assert not parses and again.added == [moved] and again.deleted == [origin]
        assert not index.is_stale() and commits(index) == before + 1
    finally:
        index.close()


@pytest.mark.slow
def test_while_the_watcher_settles_an_approval_a_process_asking_is_told_it_changed(
    vault: Vault,
) -> None:
    """Search never silently returns stale results: while the watcher finalises a held file,
    a process asking it what changed is told both paths of the move (and then syncs them)."""
    from memkit.sync import ask_watcher

    proposal = propose(vault, "Tag releases before deploying.", title="Tags")
    index = VaultIndex(vault)
    answers = []
    watcher = approving_watcher(vault, index, quiet_seconds=0.05, reconcile_seconds=3600.0)
    settle = watcher.settle
    assert settle is not None

    def asking_first(report: SyncReport) -> SyncReport:
        answers.append(ask_watcher(vault.state_dir))  # as another process would, meanwhile
        return settle(report)

    watcher.settle = asking_first
    try:
        with watcher:
            origin, moved = move_into_store(vault, proposal)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and "type: insight" not in _text(vault, moved):
                time.sleep(0.02)
    finally:
        index.close()
    assert answers and answers[0] is not None
    assert {origin, moved} <= set(answers[0].paths)
    assert "type: insight" in _text(vault, moved)


def _text(vault: Vault, relpath: str) -> str:
    try:
        return (vault.root / relpath).read_text()
    except FileNotFoundError:
        return ""  # taken aside for a few microseconds by the vault's safe update
