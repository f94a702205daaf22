"""The vault in git, with the real `git` binary: init, autocommit, history, two machines syncing
through a bare repository, conflicts kept as copies, approvals arriving by `git mv`, hooks."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from memkit import Vault
from memkit.conversations import ConversationMessage, Episodes
from memkit.errors import GitError
from memkit.gitvault import GitVault
from memkit.learning import Learning
from memkit.maintenance import sync_with_remote
from memkit.memory import Memory
from memkit.timeutil import parse_time

from .conftest import Runner


def git(cwd: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


@pytest.fixture(autouse=True)
def _git_config(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's git ignores the developer's own config; local clones are allowed; the
    current folder is the test's own, so nothing can touch the checkout tests run from."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path_factory.mktemp("gitconfig") / "config"
    config.write_text('[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def identify(repo: Path, name: str) -> None:
    git(repo, "config", "user.name", name)
    git(repo, "config", "user.email", f"{name.lower()}@example.com")


@dataclass
class Machine:
    vault: Vault
    run: Runner

    @property
    def root(self) -> Path:
        return self.vault.root

    def fresh(self) -> Vault:
        """A new Vault object, as each command gets (its `touched` starts empty)."""
        self.vault = Vault(self.root)
        return self.vault


@pytest.fixture
def machines(tmp_path: Path) -> tuple[Machine, Machine]:
    """Machine A made the vault and pushed it to a bare repository; machine B cloned it."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", str(origin))
    a_root = tmp_path / "a"
    vault_a = Vault.init(a_root)
    GitVault(vault_a).init()
    identify(a_root, "Ada")
    git(a_root, "add", "-A")
    git(a_root, "commit", "--quiet", "-m", "a memkit vault")
    git(a_root, "remote", "add", "origin", str(origin))
    git(a_root, "push", "--quiet", "-u", "origin", "main")
    b_root = tmp_path / "b"
    git(tmp_path, "clone", "--quiet", str(origin), str(b_root))
    identify(b_root, "Bo")
    return Machine(vault_a, Runner(a_root)), Machine(Vault(b_root), Runner(b_root))


def log(repo: Path, *args: str) -> list[str]:
    return git(repo, "log", "--format=%s", *args).splitlines()


def committed_files(repo: Path, rev: str = "HEAD") -> list[str]:
    return git(repo, "show", "--format=", "--name-only", rev).splitlines()


# --- init ------------------------------------------------------------------------------------


def test_init_git_sets_up_merge_friendly_files_idempotently(tmp_path: Path) -> None:
    result = Runner(tmp_path).run("init", str(tmp_path / "v"), "--git", "--json", vault=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    root = Path(data["root"])
    assert data["git"]["created"] is True and Path(data["git"]["top"]) == root
    attributes = (root / ".gitattributes").read_text()
    assert "*.md text eol=lf" in attributes
    day = "memory/episodic/2026/11/2026-11-04.md"
    assert git(root, "check-attr", "merge", "eol", "--", day).splitlines() == [
        f"{day}: merge: union",
        f"{day}: eol: lf",
    ]
    assert git(root, "check-ignore", ".memkit/index") == ".memkit/index"
    again = json.loads(Runner(root).run("init", str(root), "--git", "--json", vault=False).stdout)
    assert again["git"] == {**data["git"], "created": False, "changed": []}
    assert (root / ".gitattributes").read_text() == attributes
    assert (root / ".gitignore").read_text().count(".memkit/") == 1


def test_init_uses_the_enclosing_repository_and_commits_only_vault_paths(tmp_path: Path) -> None:
    outer = tmp_path / "project"
    outer.mkdir()
    git(outer, "init", "--quiet")
    identify(outer, "Ada")
    (outer / "notes.txt").write_text("unrelated\n")
    git(outer, "add", "notes.txt")
    git(outer, "commit", "--quiet", "-m", "project")
    vault = Vault.init(outer / "agent" / "vault")
    report = GitVault(vault).init()
    assert report.created is False and Path(report.top) == outer.resolve()
    assert (vault.root / ".gitattributes").is_file() and not (outer / ".gitattributes").exists()
    # Someone's own work, staged and not: none of it may end up in memkit's commit.
    (outer / "notes.txt").write_text("half-done edit, staged\n")
    git(outer, "add", "notes.txt")
    (outer / "draft.txt").write_text("untracked\n")
    runner = Runner(vault.root)
    result = runner.run("remember", "Dana walks Miso at 7am", "--commit")
    assert result.exit_code == 0, result.output
    assert log(outer, "-1") == ['memkit: remember long-term "Dana walks Miso at 7am"']
    (record_path,) = committed_files(outer)
    assert record_path.startswith("agent/vault/memory/long-term/dana-walks-miso-at-7am-")
    assert git(outer, "diff", "--cached", "--name-only") == "notes.txt"
    assert "?? draft.txt" in git(outer, "status", "--porcelain")
    history = json.loads(runner.run("history", record_path.split("vault/", 1)[1], "--json").stdout)
    assert [h["change"] for h in history["history"]] == ["added"]
    assert history["history"][0]["path"] == record_path.split("vault/", 1)[1]


# --- autocommit ------------------------------------------------------------------------------


def test_each_write_command_is_one_commit_saying_what_happened(
    machines: tuple[Machine, Machine], tmp_path: Path
) -> None:
    a, _ = machines
    settings = a.root / "memkit.yaml"
    settings.write_text(settings.read_text().replace("autocommit: false", "autocommit: true"))
    git(a.root, "commit", "--quiet", "-am", "autocommit on")
    head = git(a.root, "rev-parse", "HEAD")

    result = a.run.run("remember", "Dana walks Miso at 7am", "--tag", "dog")
    assert result.exit_code == 0, result.output
    assert "Committed" in result.stderr
    fact_id = json.loads(a.run.run("list", "--json").stdout)[0]["id"]
    a.run.run("entity", "Miso", "--kind", "pet", "--set", "breed=shiba")
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        "".join(
            json.dumps(
                {
                    "role": "user",
                    "content": f"message {n}",
                    "time": f"2026-11-0{1 + n % 3}T09:00:00Z",
                }
            )
            + "\n"
            for n in range(6)
        )
    )
    a.run.run("import", str(chat))
    a.run.run("forget", fact_id)
    a.run.run("remember", "Not committed", "--no-commit")

    assert log(a.root, f"{head}..HEAD") == [
        'memkit: forget long-term "Dana walks Miso at 7am"',
        "memkit: import 6 messages from chat.jsonl",
        'memkit: create entity "Miso"',
        'memkit: remember long-term "Dana walks Miso at 7am"',
    ]
    # The import wrote three day files: one commit holds them all.
    assert len(committed_files(a.root, "HEAD~1")) == 3
    assert git(a.root, "show", "--format=", "--name-status", "HEAD").startswith(
        "D\tmemory/long-term/"
    )
    untracked = git(a.root, "status", "--porcelain", "--untracked-files=all")
    assert untracked.startswith("?? memory/long-term/not-committed-")
    # What the person's .gitignore keeps out of git stays out, without an error.
    with (a.root / ".gitignore").open("a") as handle:
        handle.write("memory/short-term/\n")
    result = a.run.run("remember", "Buy dog food", "--type", "short-term")
    assert result.exit_code == 0 and "Committed" not in result.stderr
    assert log(a.root, "-1") == ['memkit: forget long-term "Dana walks Miso at 7am"']


def test_commit_flag_outside_a_repository_refuses_before_writing(tmp_path: Path) -> None:
    runner = Runner(Vault.init(tmp_path / "plain").root)
    result = runner.run("remember", "Nothing to see", "--commit")
    assert result.exit_code == 1
    assert "not in a git repository" in result.stderr and "memkit init --git" in result.stderr
    assert json.loads(runner.run("list", "--json").stdout) == []


def test_a_missing_git_binary_is_a_clear_error(vault: Vault) -> None:
    with pytest.raises(GitError, match="could not find it on PATH; install git"):
        GitVault(vault, git="no-such-git-binary").is_repo()


# --- history ---------------------------------------------------------------------------------


def test_approve_commits_the_move_and_history_follows_it(machines: tuple[Machine, Machine]) -> None:
    a, _ = machines
    learning = Learning(a.vault)
    try:
        proposal = learning.propose(
            "persona", "Dana prefers concise answers, code first.", title="Prefers concise answers"
        )
    finally:
        learning.close()
    GitVault(a.vault).commit(a.vault.touched, "memkit: propose persona")
    a.vault.safe_path(str(proposal.path)).write_text(
        a.vault.safe_path(str(proposal.path)).read_text() + "Especially for Rust questions.\n"
    )
    git(a.root, "commit", "--quiet", "-am", "sharpen the proposal")

    result = a.run.run("approve", proposal.id, "--commit")
    assert result.exit_code == 0, result.output
    assert log(a.root, "-1") == ['memkit: approve persona "Prefers concise answers"']

    history = json.loads(a.run.run("history", proposal.id, "--json").stdout)
    assert history["path"].startswith("learning/persona/prefers-concise-answers-")
    changes = [
        (h["change"], h["path"].split("/")[1], h.get("from", "")) for h in history["history"]
    ]
    assert changes == [
        ("renamed", "persona", proposal.path),
        ("modified", "proposals", ""),
        ("added", "proposals", ""),
    ]
    first = history["history"][-1]
    assert set(first) == {"commit", "date", "author", "message", "path", "change"}
    assert first["author"] == "Ada <ada@example.com>" and len(first["commit"]) == 40
    text = a.run.run("history", history["path"]).stdout
    assert f"{proposal.path} -> {history['path']}" in text

    # A forgotten record still has a history, found by its id.
    a.run.run("forget", proposal.id, "--commit")
    gone = json.loads(a.run.run("history", proposal.id, "--json").stdout)
    assert [h["change"] for h in gone["history"]] == ["deleted", "renamed", "modified", "added"]


# --- two machines ----------------------------------------------------------------------------


def test_two_machines_write_concurrently_and_sync(machines: tuple[Machine, Machine]) -> None:
    a, b = machines
    assert a.run.run("remember", "Ledger deploys on Tuesdays", "--commit").exit_code == 0
    assert b.run.run("remember", "Priya leads the Ledger team", "--commit").exit_code == 0
    Memory(b.fresh()).remember("Uncommitted note from B about Ledger", type="long-term")

    pushed = json.loads(a.run.run("sync", "--remote", "--json").stdout)
    assert pushed["git"]["pushed"] is True and pushed["git"]["merged"] == "up to date"

    result = b.run.run("sync", "--remote")
    assert result.exit_code == 0, result.output
    assert "Pulled origin/main: merge, 1 files changed" in result.stdout
    assert "Pushed to origin/main" in result.stdout
    assert "memkit: commit 1 changed files before sync" in log(b.root)

    report = GitVault(a.fresh()).sync_remote()  # the library, as an agent would call it
    assert report.merged == "fast-forward" and not report.pushed
    assert {path.split("/")[1] for _, path in report.changed} == {"long-term"}
    assert len(report.changed) == 2
    for machine in (a, b):
        titles = sorted(r["title"] for r in json.loads(machine.run.run("list", "--json").stdout))
        assert titles == [
            "Ledger deploys on Tuesdays",
            "Priya leads the Ledger team",
            "Uncommitted note from B about Ledger",
        ]
        assert git(machine.root, "status", "--porcelain") == ""
    found = json.loads(a.run.run("search", "Priya", "--json").stdout)
    assert [hit["title"] for hit in found["hits"]] == ["Priya leads the Ledger team"]
    assert found["stale"] is False


def record_day(vault: Vault, when: str, texts: list[str], session: str) -> None:
    moment = parse_time(when)
    messages = [ConversationMessage(text=t, time=moment, session=session) for t in texts]
    Episodes(vault).record(messages)
    assert GitVault(vault).commit(vault.touched, f"memkit: import {len(texts)} messages")


def test_same_day_episodic_appends_from_both_machines_are_kept(
    machines: tuple[Machine, Machine],
) -> None:
    a, b = machines
    # Both start the same day file, neither knowing of the other's.
    record_day(a.vault, "2026-11-04T09:00:00Z", ["A: morning walk with Miso"], "s-a")
    record_day(b.vault, "2026-11-04T10:00:00Z", ["B: deploy went fine"], "s-b")
    GitVault(a.fresh()).sync_remote()
    first = GitVault(b.fresh()).sync_remote()
    assert first.merged == "merge" and first.conflicts == [] and first.pushed
    # Then both append to the day file they now share.
    GitVault(a.fresh()).sync_remote()
    record_day(a.fresh(), "2026-11-04T18:00:00Z", ["A: evening walk"], "s-a2")
    record_day(b.fresh(), "2026-11-04T19:00:00Z", ["B: rollback plan written"], "s-b2")
    GitVault(a.fresh()).sync_remote()
    second = GitVault(b.fresh()).sync_remote()
    assert second.conflicts == [] and second.merged == "merge"
    GitVault(a.fresh()).sync_remote()

    day = "memory/episodic/2026/11/2026-11-04.md"
    texts = []
    for machine in (a, b):
        record = machine.fresh().read_record(day)
        assert record.meta["date"] == "2026-11-04"
        assert machine.vault.check().problems == []
        texts.append(record.body)
    assert texts[0] == texts[1]
    for line in ("morning walk", "deploy went fine", "evening walk", "rollback plan"):
        assert texts[0].count(line) == 1
    assert (a.root / day).read_text().count("\nid: ") == 1  # one front-matter, not two


def test_the_same_record_edited_on_both_keeps_both_versions(
    machines: tuple[Machine, Machine],
) -> None:
    a, b = machines
    a.run.run("remember", "The staging database is db-stage-2", "--commit")
    a.run.run("sync", "--remote")
    b.run.run("sync", "--remote")
    (relpath,) = [r["path"] for r in json.loads(b.run.run("list", "--json").stdout)]
    for machine, text in ((a, "db-stage-3 since Monday"), (b, "db-stage-4 since Tuesday")):
        vault = machine.fresh()
        record = vault.read_record(relpath)
        record.body = f"The staging database is {text}\n"
        vault.update(record)
        GitVault(vault).commit(vault.touched, "memkit: edit")
    a.run.run("sync", "--remote")

    result = b.run.run("sync", "--remote", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["git"]
    (conflict,) = report["conflicts"]
    assert conflict["path"] == relpath and conflict["copy"].startswith(f"{relpath}.conflict-")
    assert "was changed on both machines" in result.stderr and "delete the copy" in result.stderr
    assert report["pushed"] is True
    assert "db-stage-4" in (b.root / relpath).read_text()  # this machine's version stays
    assert "db-stage-3" in (b.root / conflict["copy"]).read_text()  # the other one is kept

    for machine in (b, a):
        if machine is a:
            machine.run.run("sync", "--remote")
        checked = machine.run.run("check")
        assert checked.exit_code == 1
        assert f"{conflict['copy']}:1: conflict copy of {relpath}" in checked.stdout
        status = json.loads(machine.run.run("status", "--json").stdout)
        assert status["conflicts"] == [conflict["copy"]]
        assert any(p["path"] == conflict["copy"] for p in status["problems"])
        # The copy is never indexed as a second record.
        hits = json.loads(machine.run.run("search", "staging database", "--json").stdout)["hits"]
        assert [h["path"] for h in hits] == [relpath]

    # Resolving: keep what matters, delete the copy, sync.
    (a.root / conflict["copy"]).unlink()
    a.run.run("sync", "--remote")
    b.run.run("sync", "--remote")
    assert b.run.run("check").exit_code == 0
    assert GitVault(b.fresh()).conflict_copies() == []


def test_deleted_on_one_machine_and_edited_on_the_other_keeps_the_edit(
    machines: tuple[Machine, Machine],
) -> None:
    a, b = machines
    a.run.run("remember", "Miso eats at 6pm", "--commit")
    a.run.run("sync", "--remote")
    b.run.run("sync", "--remote")
    (record,) = json.loads(a.run.run("list", "--json").stdout)
    a.run.run("forget", record["id"], "--commit")
    vault = b.fresh()
    edited = vault.read_record(record["path"])
    edited.body = "Miso eats at 6pm and at 7am\n"
    vault.update(edited)
    a.run.run("sync", "--remote")
    report = GitVault(b.fresh()).sync_remote()
    assert report.kept == [record["path"]] and report.conflicts == []
    assert "7am" in (b.root / record["path"]).read_text()


def test_an_approval_by_git_mv_on_one_machine_is_finalised_after_pull(
    machines: tuple[Machine, Machine],
) -> None:
    a, b = machines
    learning = Learning(b.vault)
    try:
        proposal = learning.propose("persona", "Prefers concise answers.", title="Concise answers")
    finally:
        learning.close()
    GitVault(b.vault).commit(b.vault.touched, "memkit: propose persona")
    b.run.run("sync", "--remote")
    a.run.run("sync", "--remote")
    # A reviewer approves on machine A (or in a pull request) by moving the file with git.
    name = Path(str(proposal.path)).name
    git(a.root, "mv", str(proposal.path), f"learning/persona/{name}")
    git(a.root, "commit", "--quiet", "-m", "Approve: concise answers")
    git(a.root, "push", "--quiet")

    result = b.run.run("sync", "--remote", "--json")
    assert result.exit_code == 0, result.output
    approved = b.fresh().read_record(f"learning/persona/{name}")
    assert approved.type == "persona" and approved.id == proposal.id and "approved" in approved.meta
    assert "store" not in approved.meta
    assert log(b.root, "-1") == [
        'memkit: approve persona "Concise answers" (moved into its store in git)'
    ]
    assert json.loads(result.stdout)["git"]["pushed"] is True
    assert b.run.run("check").exit_code == 0
    a.run.run("sync", "--remote")
    assert a.fresh().read_record(f"learning/persona/{name}").type == "persona"
    assert json.loads(a.run.run("proposals", "--json").stdout) == []


def test_the_library_syncs_with_the_remote_as_the_cli_does(
    machines: tuple[Machine, Machine], capsys: pytest.CaptureFixture[str]
) -> None:
    """`maintenance.sync_with_remote` (what the MCP server or an Agent would call): pull, sync
    the index, finalise an approval that came by `git mv`, commit it, push; it prints nothing
    and its JSON is the CLI's."""
    a, b = machines
    learning = Learning(b.vault)
    try:
        proposal = learning.propose("persona", "Answers in English.", title="English answers")
    finally:
        learning.close()
    GitVault(b.vault).commit(b.vault.touched, "memkit: propose persona")
    GitVault(b.fresh()).sync_remote()
    GitVault(a.fresh()).sync_remote()
    name = Path(str(proposal.path)).name
    git(a.root, "mv", str(proposal.path), f"learning/persona/{name}")
    git(a.root, "commit", "--quiet", "-m", "Approve: English answers")
    git(a.root, "push", "--quiet")
    capsys.readouterr()

    result = sync_with_remote(b.fresh())
    assert capsys.readouterr() == ("", "")
    assert result.git.merged == "fast-forward" and result.git.pushed
    assert result.git.conflicts == [] and len(result.git.commits) == 1
    assert f"learning/persona/{name}" in result.index.changed
    assert result.index.proposals_in_stores == [] and result.index.problems == []
    assert log(b.root, "-1") == [
        'memkit: approve persona "English answers" (moved into its store in git)'
    ]
    assert b.fresh().read_record(f"learning/persona/{name}").type == "persona"
    assert result.to_json() == {**result.index.to_json(), "git": result.git.to_json()}
    cli_json = json.loads(b.run.run("sync", "--remote", "--json").stdout)
    assert set(cli_json) == set(result.to_json())
    assert cli_json["git"]["merged"] == "up to date" and cli_json["git"]["pushed"] is False


def test_sync_remote_says_what_is_missing(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "solo")
    runner = Runner(vault.root)
    result = runner.run("sync", "--remote")
    assert result.exit_code == 1 and "not in a git repository" in result.stderr
    GitVault(vault).init()
    result = runner.run("sync", "--remote", "upstream")
    assert result.exit_code == 1
    assert "no git remote named 'upstream'" in result.stderr
    assert "git remote add upstream URL" in result.stderr


# --- hooks -----------------------------------------------------------------------------------


def test_the_pre_commit_hook_rejects_a_bad_record(tmp_path: Path) -> None:
    runner = Runner(tmp_path / "hooked")
    data = json.loads(
        runner.run("init", str(runner.root), "--git", "--hooks", "--json", vault=False).stdout
    )
    root = Path(data["root"])
    assert Path(data["git"]["hook"]) == root / ".git" / "hooks" / "pre-commit"
    identify(root, "Ada")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "vault")
    # memkit's own commits pass the hook.
    assert runner.run("remember", "A good fact", "--commit").exit_code == 0
    bad = root / "memory" / "long-term" / "bad.md"
    bad.write_text("---\nid: 01BAD\ntype: long-term\n---\nNo dates.\n")
    git(root, "add", "memory/long-term/bad.md")
    done = subprocess.run(
        ["git", "-C", str(root), "commit", "-m", "bad"], capture_output=True, text=True
    )
    assert done.returncode == 1
    said = done.stdout + done.stderr
    assert "memory/long-term/bad.md:4: front-matter is missing required field 'created'" in said
    assert log(root, "-1") == ['memkit: remember long-term "A good fact"']
    # A hook someone else wrote is never replaced.
    hook = root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(GitError, match="will not replace it"):
        GitVault(Vault(root)).install_hook()
