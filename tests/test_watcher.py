"""`memkit watch`: a real watchdog observer keeping a real index in line with real files."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from watchdog.observers import Observer
from watchdog.observers.inotify_c import InotifyFD

import memkit.watcher as watcher_module
from memkit import Vault
from memkit.errors import MemkitError
from memkit.sync import SyncReport, VaultIndex
from memkit.watcher import Watcher

from .test_sync import (
    INSIGHTS,
    LONG_TERM,
    MALFORMED,
    child_env,
    indexed,
    manifest_on_disk,
    memkit_command,
    rebuilt_from_scratch,
    record_text,
    titles,
    wait_until,
    write_malformed,
    write_record,
)


@dataclass
class Watching:
    vault: Vault
    index: VaultIndex
    watcher: Watcher
    reports: list[SyncReport] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)

    def titles(self) -> dict[str, str]:
        return titles(self.index)

    def texts(self) -> dict[str, str]:
        return {key: snippet for key, (_title, snippet) in indexed(self.index).items()}

    def until_titles(self, expected: dict[str, str], what: str = "") -> None:
        wait_until(lambda: self.titles() == expected, what=what or f"index == {expected}")

    def moves(self) -> list[tuple[str, str]]:
        return [move for report in list(self.reports) for move in report.moved]


def start_watching(vault: Vault, **options: float | bool) -> Watching:
    """A real Watcher on `vault`, quick to settle (50 ms of quiet), collecting its reports."""
    reports: list[SyncReport] = []
    errors: list[Exception] = []
    index = VaultIndex(vault)
    settings: dict[str, float | bool] = {"quiet_seconds": 0.05, "reconcile_seconds": 3600.0}
    watcher = Watcher(
        index,
        on_sync=reports.append,
        on_error=errors.append,
        **{**settings, **options},  # type: ignore[arg-type]
    )
    watcher.start()
    return Watching(vault, index, watcher, reports, errors)


def stop_watching(watching: Watching) -> None:
    watching.watcher.stop()
    watching.index.close()
    assert not watching.errors, watching.errors


@pytest.fixture
def watching(vault: Vault) -> Iterator[Watching]:
    w = start_watching(vault)
    yield w
    stop_watching(w)


A = f"{LONG_TERM}/a.md"
B = f"{LONG_TERM}/b.md"


# --- what people and programs do to files -------------------------------------------------------


def test_create_edit_delete(watching: Watching) -> None:
    write_record(watching.vault, A, "Alpha", "apples")
    watching.until_titles({A: "Alpha"})
    write_record(watching.vault, A, "Alpha two", "apricots")
    watching.until_titles({A: "Alpha two"})
    assert watching.texts()[A] == "apricots"
    (watching.vault.root / A).unlink()
    watching.until_titles({})
    assert watching.watcher.running


def test_renames_and_moves_between_folders_are_seen_at_both_ends(watching: Watching) -> None:
    root = watching.vault.root
    write_record(watching.vault, A, "Alpha")
    watching.until_titles({A: "Alpha"})
    (root / A).rename(root / B)
    watching.until_titles({B: "Alpha"})
    insight = f"{INSIGHTS}/b.md"
    (root / B).rename(root / insight)
    watching.until_titles({insight: "Alpha"})
    wait_until(lambda: (B, insight) in watching.moves())
    assert (A, B) in watching.moves()


@pytest.mark.slow
def test_folder_moves_inside_into_and_out_of_the_vault(watching: Watching, tmp_path: Path) -> None:
    root = watching.vault.root
    for name in ("x", "y", "z"):
        write_record(watching.vault, f"{LONG_TERM}/proj/{name}.md", name.upper())
    watching.until_titles({f"{LONG_TERM}/proj/{n}.md": n.upper() for n in "xyz"})
    (root / LONG_TERM / "proj").rename(root / LONG_TERM / "renamed")
    watching.until_titles({f"{LONG_TERM}/renamed/{n}.md": n.upper() for n in "xyz"})
    outside = tmp_path / "outside"
    (root / LONG_TERM / "renamed").rename(outside)  # out of the watched tree: a delete
    watching.until_titles({})
    outside.rename(root / INSIGHTS / "back")  # into it: a create
    watching.until_titles({f"{INSIGHTS}/back/{n}.md": n.upper() for n in "xyz"})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_observer_that_stops_reporting_is_replaced_by_polling(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # watchdog runs one inotify thread for the whole process; this test kills it, so it gets
    # its own, and the other tests get theirs back afterwards.
    monkeypatch.setattr(InotifyFD, "_instance", None)
    watching = start_watching(vault, heartbeat_seconds=0.2)
    try:
        # Make watchdog's inotify thread die: here by turning a warning it gives on a folder
        # moved out and back into an error; in life, say, inotify refusing a watch for a new
        # folder (ENOSPC), which ends the thread that every inotify observer shares.
        warnings.filterwarnings("error", message="Callback with id", category=RuntimeWarning)
        root = vault.root
        write_record(vault, f"{LONG_TERM}/proj/x.md", "X")
        watching.until_titles({f"{LONG_TERM}/proj/x.md": "X"})
        (root / LONG_TERM / "proj").rename(tmp_path / "proj")
        watching.until_titles({})
        (tmp_path / "proj").rename(root / LONG_TERM / "proj")
        wait_until(lambda: watching.watcher.observer_restarts == 1, what="the observer's restart")
        assert watching.watcher.using_polling
        watching.until_titles({f"{LONG_TERM}/proj/x.md": "X"})  # reconciled after the restart
        write_record(vault, A, "Alpha")  # and new changes are seen again
        watching.until_titles({f"{LONG_TERM}/proj/x.md": "X", A: "Alpha"})
        assert watching.watcher.running
    finally:
        stop_watching(watching)


def test_atomic_save_by_rename(watching: Watching) -> None:
    root = watching.vault.root
    write_record(watching.vault, A, "Alpha", "first")
    watching.until_titles({A: "Alpha"})
    temp = root / LONG_TERM / ".a.md.tmp"
    temp.write_text(record_text("Alpha saved", "second"))
    os.replace(temp, root / A)
    watching.until_titles({A: "Alpha saved"})
    assert watching.texts()[A] == "second"


def test_in_place_truncate_and_write(watching: Watching) -> None:
    write_record(watching.vault, A, "Alpha", "first")
    watching.until_titles({A: "Alpha"})
    text = record_text("Alpha rewritten", "second version of the text")
    with open(watching.vault.root / A, "r+", encoding="utf-8") as handle:
        # VS Code: truncate, then write (here in two pieces, flushed, as a slow writer would).
        handle.truncate(0)
        handle.flush()
        handle.write(text[:20])
        handle.flush()
        handle.write(text[20:])
    watching.until_titles({A: "Alpha rewritten"})
    assert watching.texts()[A] == "second version of the text"


def test_vims_save_dance(watching: Watching) -> None:
    folder = watching.vault.root / LONG_TERM
    write_record(watching.vault, A, "Alpha", "first")
    watching.until_titles({A: "Alpha"})
    probe = folder / "4913"  # vim checks it may create files in the folder
    probe.write_text("")
    probe.unlink()
    (folder / "a.md").rename(folder / "a.md~")  # the backup
    (folder / "a.md").write_text(record_text("Alpha by vim", "second"))
    (folder / "a.md~").unlink()
    watching.until_titles({A: "Alpha by vim"})
    assert watching.texts()[A] == "second"


def test_jetbrains_safe_write(watching: Watching) -> None:
    folder = watching.vault.root / LONG_TERM
    write_record(watching.vault, A, "Alpha", "first")
    watching.until_titles({A: "Alpha"})
    (folder / "a.md___jb_tmp___").write_text(record_text("Alpha by IDEA", "second"))
    (folder / "a.md").rename(folder / "a.md___jb_old___")
    (folder / "a.md___jb_tmp___").rename(folder / "a.md")
    (folder / "a.md___jb_old___").unlink()
    watching.until_titles({A: "Alpha by IDEA"})
    assert watching.texts()[A] == "second"


def test_malformed_files_are_reported_and_never_stop_the_watcher(watching: Watching) -> None:
    write_malformed(watching.vault)
    wanted = {f"{LONG_TERM}/{name}" for name in MALFORMED}
    wait_until(lambda: {p.path for p in watching.index.problems()} == wanted, what="problems")
    problems = {p.path: p for p in watching.index.problems()}
    for name, (_data, line, why) in MALFORMED.items():
        assert problems[f"{LONG_TERM}/{name}"].line == line
        assert why in problems[f"{LONG_TERM}/{name}"].message
    write_record(watching.vault, A, "Still alive")
    watching.until_titles({A: "Still alive"})
    assert watching.watcher.running
    # A broken file fixed is indexed; a good file broken leaves the index.
    write_record(watching.vault, f"{LONG_TERM}/empty.md", "Fixed")
    (watching.vault.root / A).write_bytes(b"---\nid: [unclosed\n---\n")
    watching.until_titles({f"{LONG_TERM}/empty.md": "Fixed"})


def test_the_state_folder_deleted_under_a_running_watcher(watching: Watching) -> None:
    write_record(watching.vault, A, "Alpha")
    watching.until_titles({A: "Alpha"})
    state = watching.vault.root / ".memkit"

    # The watcher may write its heartbeat while the folder is being removed: try until gone.
    def removed() -> bool:
        shutil.rmtree(state, ignore_errors=True)
        return not state.exists()

    wait_until(removed, what="the state folder to be removed")
    # Another process opens (so creates) a new, empty index before the watcher syncs again:
    # the watcher must notice that its index folder is not the one on disk any more.
    other = VaultIndex(watching.vault)
    try:
        # (Until the watcher syncs again, this new index is empty and stale; under load the
        # watcher's own reconcile may already have rebuilt it, so only the end state is asserted.)
        write_record(watching.vault, B, "Bravo")
        wait_until(lambda: titles(other) == {A: "Alpha", B: "Bravo"}, what="the rebuilt index")
    finally:
        other.close()
    fresh = VaultIndex(watching.vault)
    try:
        # Searchable comes first (the index commit), the manifest is saved just after it.
        wait_until(lambda: not fresh.is_stale(), what="the manifest to catch up")
    finally:
        fresh.close()
    # Deleting .memkit/ while a sync is writing into it can fail that one sync (files vanish
    # under Tantivy or the journal): the watcher reports it and recovers, as asserted above.
    assert all(isinstance(e, (MemkitError, OSError)) for e in watching.errors), watching.errors
    watching.errors.clear()


def test_a_burst_of_300_files_is_coalesced(watching: Watching) -> None:
    syncs_before = watching.watcher.syncs
    expected = {}
    for i in range(300):
        relpath = f"{LONG_TERM}/burst/n{i:03d}.md"
        write_record(watching.vault, relpath, f"Burst {i}")
        expected[relpath] = f"Burst {i}"
    watching.until_titles(expected)
    # Writing 300 files takes well under the watcher's 1 s cap on waiting: a handful of syncs.
    assert watching.watcher.syncs - syncs_before < 30


def git(root: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.org",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
def test_a_git_checkout_between_two_branches(vault: Vault, tmp_path: Path) -> None:
    root = vault.root
    git(root, "init", "-q")
    for i in range(200):
        write_record(vault, f"{LONG_TERM}/n{i:03d}.md", f"Main {i}")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "main")
    git(root, "checkout", "-q", "-b", "other")
    for i in range(0, 200, 2):
        write_record(vault, f"{LONG_TERM}/n{i:03d}.md", f"Other {i}")  # changed
    for i in range(1, 200, 4):
        (root / LONG_TERM / f"n{i:03d}.md").unlink()  # deleted
    for i in range(100):
        write_record(vault, f"{INSIGHTS}/o{i:03d}.md", f"Insight {i}", type_="insight")  # new
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "other")
    git(root, "checkout", "-q", "main")

    watching = start_watching(vault)
    try:
        main_titles = watching.titles()
        assert len(main_titles) == 200
        git(root, "checkout", "-q", "other")
        expected = rebuilt_from_scratch(vault, tmp_path / "other")
        wait_until(lambda: indexed(watching.index) == expected, what="index of branch other")
        git(root, "checkout", "-q", "main")
        wait_until(lambda: watching.titles() == main_titles, what="index of branch main")
    finally:
        stop_watching(watching)


# --- reconciling: at start, periodically, after an overflow ---------------------------------------


def change_unseen(path: Path, text: str) -> None:
    """Change a file so that no inotify watch on the vault hears it: through a hard link
    outside the vault (events go to the link's folder, which nobody watches)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


@pytest.mark.slow
def test_changes_made_while_no_watcher_ran_are_reconciled_at_start(vault: Vault) -> None:
    write_record(vault, A, "Alpha")
    write_record(vault, B, "Bravo")
    first = start_watching(vault)
    stop_watching(first)
    write_record(vault, A, "Alpha changed")
    (vault.root / B).unlink()
    write_record(vault, f"{INSIGHTS}/c.md", "Charlie", type_="insight")
    second = start_watching(vault)
    try:
        # start() returns with the index in line: no waiting needed.
        assert second.titles() == {A: "Alpha changed", f"{INSIGHTS}/c.md": "Charlie"}
        assert second.reports and second.reports[0].deleted == [B]
    finally:
        stop_watching(second)


@pytest.mark.slow
def test_periodic_reconcile_finds_changes_no_event_reported(vault: Vault, tmp_path: Path) -> None:
    write_record(vault, A, "Alpha")
    link = tmp_path / "a-link.md"
    os.link(vault.root / A, link)
    watching = start_watching(vault, reconcile_seconds=0.5)
    try:
        change_unseen(link, record_text("Alpha unseen", "changed behind the watcher's back"))
        watching.until_titles({A: "Alpha unseen"})
    finally:
        stop_watching(watching)


@pytest.mark.slow
def test_a_steady_stream_of_events_does_not_put_off_the_periodic_reconcile(
    vault: Vault, tmp_path: Path
) -> None:
    write_record(vault, A, "Alpha")
    busy = f"{INSIGHTS}/busy.md"  # another folder: nothing done to it touches a.md's
    write_record(vault, busy, "Busy 0")
    link = tmp_path / "a-link.md"
    os.link(vault.root / A, link)
    watching = start_watching(vault, reconcile_seconds=1.0)
    stop = threading.Event()

    def busy_agent() -> None:
        n = 0
        while not stop.wait(0.15):  # an edit every 0.15 s, well inside the reconcile period
            n += 1
            write_record(vault, busy, f"Busy {n}")

    agent = threading.Thread(target=busy_agent)
    agent.start()
    try:
        change_unseen(link, record_text("Alpha unseen", "changed behind the watcher's back"))
        wait_until(
            lambda: watching.titles().get(A) == "Alpha unseen",
            timeout=10,
            what="the periodic reconcile",
        )
    finally:
        stop.set()
        agent.join()
        stop_watching(watching)


def test_request_reconcile_after_an_overflow(vault: Vault, tmp_path: Path) -> None:
    write_record(vault, A, "Alpha")
    link = tmp_path / "a-link.md"
    os.link(vault.root / A, link)
    watching = start_watching(vault)
    try:
        change_unseen(link, record_text("Alpha one", "first unseen change"))
        watching.watcher.request_reconcile()
        watching.until_titles({A: "Alpha one"})
        # watchdog only logs an inotify queue overflow (IN_Q_OVERFLOW): that log line is enough.
        change_unseen(link, record_text("Alpha two", "second unseen change"))
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        watching.until_titles({A: "Alpha two"})
    finally:
        stop_watching(watching)


# --- polling ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_polling_observer_keeps_the_index_fresh(vault: Vault) -> None:
    watching = start_watching(vault, polling=True)
    try:
        assert watching.watcher.using_polling
        write_record(vault, A, "Alpha")
        watching.until_titles({A: "Alpha"})
        (vault.root / A).rename(vault.root / B)
        watching.until_titles({B: "Alpha"})
        info = watching.index.watcher_info()
        assert info is not None and info["polling"] is True
    finally:
        stop_watching(watching)


class NoInotify(Observer):  # type: ignore[misc,valid-type]
    """The real inotify observer on a machine whose inotify watches have run out."""

    def start(self) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


@pytest.mark.slow
def test_falls_back_to_polling_when_inotify_is_unavailable(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(watcher_module, "Observer", NoInotify)
    watching = start_watching(vault)
    try:
        assert watching.watcher.using_polling
        assert "falling back to polling" in caplog.text
        write_record(vault, A, "Alpha")
        watching.until_titles({A: "Alpha"})
    finally:
        stop_watching(watching)


# --- approval by move -----------------------------------------------------------------------------


def test_an_approval_by_move_arrives_as_one_move(sample_vault: Vault) -> None:
    watching = start_watching(sample_vault)
    try:
        proposals = sample_vault.root / "learning" / "proposals"
        source = next(proposals.glob("wants-the-concept*.md"))
        target = sample_vault.root / "learning" / "persona" / source.name
        source.rename(target)
        moved = (f"learning/proposals/{source.name}", f"learning/persona/{source.name}")
        wait_until(lambda: moved in watching.moves(), what="the move")
        report = next(r for r in watching.reports if moved in r.moved)
        assert report.proposals_in_stores == [moved[1]]
        assert report.added == [moved[1]] and report.deleted == [moved[0]]
    finally:
        stop_watching(watching)


# --- the CLI watcher as a real process -----------------------------------------------------------


class WatchProcess:
    """`memkit watch --json` in a subprocess; its report lines collected by a thread."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.process = subprocess.Popen(
            memkit_command(root, "watch", "--json", *args),
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.reports: list[dict[str, object]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        heartbeat = root / ".memkit" / "watcher.json"
        wait_until(
            lambda: heartbeat.exists() or self.process.poll() is not None,
            what="the watcher's heartbeat",
        )
        assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.append(json.loads(line))

    def interrupt(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        self.process.send_signal(signum)
        _out, err = self.process.communicate(timeout=30)
        self.reader.join(timeout=5)
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.mark.slow
def test_memkit_watch_finalises_an_approval_by_move_and_stops_cleanly_on_ctrl_c(
    sample_vault: Vault,
) -> None:
    root = sample_vault.root
    watch = WatchProcess(root)
    try:
        source = next((root / "learning" / "proposals").glob("wants-the-concept*.md"))
        moved = {
            "from": f"learning/proposals/{source.name}",
            "to": f"learning/persona/{source.name}",
        }
        source.rename(root / "learning" / "persona" / source.name)
        wait_until(
            lambda: any(moved in r["moved"] for r in watch.reports),  # type: ignore[operator]
            what="the move report",
        )
        report = next(r for r in watch.reports if moved in r["moved"])  # type: ignore[operator]
        # Finalised before it was indexed, as `memkit sync` does: approved, no proposal left.
        assert report["approved"] == [moved["to"]]
        assert report["proposals_in_stores"] == []
        assert "type: persona" in (root / moved["to"]).read_text()
        # The watcher lives on after finalising the approval: a later edit is indexed.
        write_record(sample_vault, A, "After the approval", "okapi")
        wait_until(
            lambda: any(A in r["added"] for r in watch.reports),  # type: ignore[operator]
            what="the edit after the approval",
        )
        code, err = watch.interrupt()
    finally:
        watch.kill()
    assert code == 0, err
    assert "Traceback" not in err
    assert not (root / ".memkit" / "watcher.json").exists()
    index = VaultIndex(sample_vault)
    try:
        assert not index.is_stale()
        assert index.watcher_info() is None
    finally:
        index.close()


@pytest.mark.slow
def test_memkit_watch_stops_cleanly_on_sigterm(vault: Vault) -> None:
    watch = WatchProcess(vault.root)
    try:
        code, err = watch.interrupt(signal.SIGTERM)
    finally:
        watch.kill()
    assert code == 0, err
    assert "Stopped." in err and "Traceback" not in err
    assert not (vault.root / ".memkit" / "watcher.json").exists()


@pytest.mark.slow
def test_remember_from_other_processes_while_a_watcher_runs(vault: Vault) -> None:
    watch = WatchProcess(vault.root)
    words = ["zebra crossing", "quantum lattice", "marmalade recipe"]
    try:
        children = [
            subprocess.Popen(
                memkit_command(vault.root, "remember", "--json", f"Note about the {w} today"),
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in words
        ]
        outputs = [child.communicate(timeout=60) for child in children]
        for child, (_out, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err
            assert "lock" not in err.lower(), err
        paths = {json.loads(out)["path"] for out, _err in outputs}
        assert len(paths) == len(words)
        index = VaultIndex(vault)
        try:
            wait_until(lambda: paths <= set(titles(index)), what="every remembered record")
        finally:
            index.close()
        code, err = watch.interrupt()
    finally:
        watch.kill()
    assert code == 0, err


@pytest.mark.slow
def test_an_idle_watcher_stays_idle(watching: Watching) -> None:
    # Its own heartbeat file is an event in the vault: it must not wake it into writing another.
    heartbeat = watching.vault.state_dir / "watcher.json"
    syncs = watching.watcher.syncs
    seen: set[str] = set()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # (a busy watcher rewrote it ~600 times a second)
        seen.add(heartbeat.read_text())
        time.sleep(0.001)
    assert len(seen) <= 2
    assert watching.watcher.syncs == syncs


def test_the_watchers_syncs_save_to_the_manifest_that_other_processes_read(
    watching: Watching,
) -> None:
    vault = watching.vault
    write_record(vault, A, "Alpha")
    watching.until_titles({A: "Alpha"})
    wait_until(lambda: A in manifest_on_disk(vault), what="the manifest to list a.md")
    before = manifest_on_disk(vault)[A]
    write_record(vault, A, "Alpha two")
    watching.until_titles({A: "Alpha two"})
    wait_until(lambda: manifest_on_disk(vault)[A] != before, what="a.md's row saved")
    # Another process (a CLI search, say) syncs what the watcher may not have seen yet.
    other = VaultIndex(vault)
    try:
        write_record(vault, B, "Bravo")
        other.sync()
        watching.until_titles({A: "Alpha two", B: "Bravo"})
        write_record(vault, A, "Alpha three")
        watching.until_titles({A: "Alpha three", B: "Bravo"})
        wait_until(lambda: not other.is_stale(), what="the other process to see it all")
        assert other.load_manifest() == watching.index.load_manifest()
        assert not other.sync().files_changed
    finally:
        other.close()


# --- a watcher that vouches for the index (issue 12) --------------------------------------------


def test_a_healthy_watcher_tells_other_processes_what_changed_instead_of_a_walk(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memkit.watch_protocol
    import memkit.watcher
    from memkit.maintenance import vault_status
    from memkit.sync import ask_watcher

    # A slow answer is a legitimate reason to walk; on a loaded test machine the cookie's round
    # trip can pass the production bounds, so this test gives the watcher time to answer.
    monkeypatch.setattr(memkit.watcher, "COOKIE_SECONDS", 5.0)
    monkeypatch.setattr(memkit.watch_protocol, "WATCHER_ANSWER_SECONDS", 6.0)

    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    # A long quiet time: the watcher's own sync of the edit below comes seconds later, so what
    # makes it searchable at once is the watcher's answer (and the asker's sync of that path).
    watching = start_watching(vault, quiet_seconds=5.0, max_delay_seconds=10.0)
    other = VaultIndex(vault)
    try:
        answer = ask_watcher(vault.state_dir)
        assert answer is not None and answer.paths == [] and answer.directories == []
        write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
        result, stale = other.search("bananas")
        assert [hit.path for hit in result.hits] == [f"{LONG_TERM}/b.md"] and not stale
        assert other.last_check == "watcher"
        status = vault_status(vault)
        assert status["index"]["checked_by"] == "watcher" and status["index"]["fresh"]
        # An edit that keeps size and mtime is named by the watcher too.
        path = vault.root / LONG_TERM / "a.md"
        mtime = path.stat().st_mtime_ns
        path.write_text(record_text("Alpha", "grapes"))
        os.utime(path, ns=(mtime, mtime))
        assert [h.path for h in other.search("grapes")[0].hits] == [f"{LONG_TERM}/a.md"]
        assert other.last_check == "watcher"
    finally:
        other.close()
        stop_watching(watching)
    # No watcher: others walk, and still see every change.
    assert ask_watcher(vault.state_dir) is None
    write_record(vault, f"{LONG_TERM}/c.md", "Charlie", "cherries")
    other = VaultIndex(vault)
    try:
        assert [h.path for h in other.search("cherries")[0].hits] == [f"{LONG_TERM}/c.md"]
        assert other.last_check == "walk"
        assert vault_status(vault)["index"]["checked_by"] == "walk"
    finally:
        other.close()


@pytest.mark.slow
def test_a_watcher_due_to_reconcile_or_polling_sends_others_to_walk(vault: Vault) -> None:
    from memkit.sync import ask_watcher

    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    watching = start_watching(vault, quiet_seconds=5.0, max_delay_seconds=10.0)
    try:
        assert ask_watcher(vault.state_dir) is not None
        watching.watcher.request_reconcile()  # as after an inotify overflow: events were lost
        assert ask_watcher(vault.state_dir) is None
        write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
        other = VaultIndex(vault)
        try:
            assert other.search("bananas")[0].hits
            assert other.last_check == "walk"
        finally:
            other.close()
    finally:
        stop_watching(watching)
    watching = start_watching(vault, polling=True)
    try:
        assert ask_watcher(vault.state_dir) is None  # seconds behind: a walk is quicker
    finally:
        stop_watching(watching)


def test_memkit_sync_with_a_healthy_watcher_reports_without_a_walk(vault: Vault) -> None:
    from memkit.maintenance import refresh

    write_record(vault, f"{LONG_TERM}/a.md", "Alpha", "apples")
    (vault.root / LONG_TERM / "bad.md").write_text("---\ntitle: Re: x\n---\n")
    watching = start_watching(vault)
    try:
        report = refresh(vault)  # a fresh process's view: no rows in memory
        assert report.checked_by == "watcher"
        assert report.files_changed == 0 and report.unchanged == 2
        assert [p.path for p in report.problems] == [f"{LONG_TERM}/bad.md"]
        write_record(vault, f"{LONG_TERM}/b.md", "Bravo", "bananas")
        report = refresh(vault)
        assert report.checked_by == "watcher"
        # Named by the watcher, synced by this process (or by the watcher first): indexed.
        assert f"{LONG_TERM}/b.md" in titles(watching.index)
        assert [p.path for p in report.problems] == [f"{LONG_TERM}/bad.md"]
    finally:
        stop_watching(watching)
    report = refresh(vault)
    assert report.checked_by == "walk" and report.files_changed == 0 and report.unchanged == 3
