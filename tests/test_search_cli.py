"""`memkit search` and `memkit status`: never silently stale, never tripped up by what people type."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memkit import Vault
from memkit.sync import VaultIndex
from memkit.watcher import Watcher

from .conftest import Runner
from .test_sync import (
    LONG_TERM,
    MALFORMED,
    child_env,
    memkit_command,
    write_malformed,
    write_record,
)

A = f"{LONG_TERM}/a.md"


def search(run: Runner, *words: str) -> dict[str, object]:
    result = run.run("search", "--json", *words)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def hit_paths(data: dict[str, object]) -> list[str]:
    return [hit["path"] for hit in data["hits"]]  # type: ignore[attr-defined]


def test_search_after_an_edit_syncs_first_and_is_not_stale(run: Runner, vault: Vault) -> None:
    write_record(vault, A, "Alpha", "the capybara sleeps")
    assert run.run("sync").exit_code == 0
    write_record(vault, A, "Alpha", "the okapi wakes")  # no watcher runs
    data = search(run, "okapi")
    assert hit_paths(data) == [A] and data["stale"] is False
    assert hit_paths(search(run, "capybara")) == []
    (vault.root / A).unlink()
    assert hit_paths(search(run, "okapi")) == []


def test_search_with_no_sync_says_the_index_is_stale(run: Runner, vault: Vault) -> None:
    write_record(vault, A, "Alpha", "the capybara sleeps")
    assert run.run("sync").exit_code == 0
    write_record(vault, A, "Alpha", "the okapi wakes")
    result = run.run("search", "--json", "--no-sync", "capybara")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["stale"] is True and hit_paths(data) == [A]
    assert "out of date" in result.stderr


@pytest.mark.slow
def test_search_while_another_process_holds_the_index_lock_says_stale(
    run: Runner, vault: Vault
) -> None:
    write_record(vault, A, "Alpha", "the capybara sleeps")
    assert run.run("sync").exit_code == 0
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys
            from memkit import Vault
            from memkit.sync import VaultIndex
            with VaultIndex(Vault({str(vault.root)!r})).lock():
                print("locked", flush=True)
                sys.stdin.read()  # until the test closes our stdin
        """),
        ],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline() == "locked\n"
            write_record(vault, A, "Alpha", "the okapi wakes")
            result = run.run("search", "--json", "capybara")
            assert result.exit_code == 0, result.output
            data = json.loads(result.stdout)
            assert data["stale"] is True
            assert hit_paths(data) == [A]  # the old content, and said to be so
            assert "warning: the index is out of date" in result.stderr
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
    # Once the lock is free, the next search catches up.
    data = search(run, "okapi")
    assert data["stale"] is False and hit_paths(data) == [A]


QUERIES = [
    "it's",
    '"unbalanced',
    'a "b c',
    "a:b",
    "title:x",
    "-",
    "--",
    "OR",
    "x OR",
    "AND NOT",
    "(",
    ")",
    "[",
    "{",
    "*",
    "?",
    "~",
    "^2",
    "\\",
    "\\\\",
    "/",
    "🦫",
    "🦫 capybara",
    "café",
    "type:",
    "tag:",
    "type:nothing",
    "importance:[0.5 TO 1]",
    "+",
    "!",
    "'",
    "''",
    '""',
    "a" * 300,
    "\t",
    "\x00",
    "ＡＢＣ",
    "\u200b",
    "🏳️‍🌈",
]


@pytest.fixture(scope="module")
def synced_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .conftest import SAMPLE_VAULT

    root = tmp_path_factory.mktemp("special") / "sample"
    shutil.copytree(SAMPLE_VAULT, root, ignore=shutil.ignore_patterns(".memkit"))
    index = VaultIndex(Vault(root))
    index.sync()
    index.close()
    return root


@pytest.mark.parametrize("query", QUERIES)
def test_any_query_text_exits_0(synced_sample: Path, query: str) -> None:
    run = Runner(synced_sample)
    result = run.run("search", "--json", "--", query)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stale"] is False and isinstance(data["hits"], list)
    assert run.run("search", "--", query).exit_code == 0  # the text output too


def test_special_queries_through_a_real_process(synced_sample: Path) -> None:
    # (Each process costs ~0.4 s to start: a few queries; CliRunner runs them all above.)
    for query in ("it's", '"unbalanced', "\\", "🦫"):
        out = subprocess.run(
            memkit_command(synced_sample, "search", "--json", "--", query),
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, (query, out.stderr)
        json.loads(out.stdout)


def test_a_search_still_finds_what_the_special_characters_surround(synced_sample: Path) -> None:
    run = Runner(synced_sample)
    assert hit_paths(search(run, "Miso's"))  # the dog
    assert hit_paths(search(run, '"Miso'))


# --- status ----------------------------------------------------------------------------------------


def status(run: Runner) -> dict[str, object]:
    result = run.run("status", "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_status_counts_freshness_and_problems(run_sample: Runner, sample_vault: Vault) -> None:
    assert run_sample.run("sync").exit_code == 0
    data = status(run_sample)
    counts = data["counts"]
    assert isinstance(counts, dict)
    expected: dict[str, int] = {}
    for path in sample_vault.root.glob("*/*/**/*.md"):
        head = path.read_text("utf-8").split("\n---", 1)[0]
        kind = next(line[6:].strip() for line in head.splitlines() if line.startswith("type: "))
        expected[kind] = expected.get(kind, 0) + 1
    assert counts == expected and data["records"] == sum(expected.values())
    index = data["index"]
    assert isinstance(index, dict)
    assert index["fresh"] is True and index["changed"] == 0 and index["deleted"] == 0
    assert index["documents"] > data["records"]  # one per message of the day files
    assert data["problems"] == []
    assert data["watcher"] == {"running": False}

    write_record(sample_vault, A, "New", "new")
    next(sample_vault.root.glob("memory/entities/*.md")).unlink()
    index = status(run_sample)["index"]
    assert isinstance(index, dict)
    assert (index["fresh"], index["changed"], index["deleted"]) == (False, 1, 1)

    write_malformed(sample_vault)
    assert run_sample.run("sync").exit_code == 0
    data = status(run_sample)
    problems = {p["path"]: p for p in data["problems"]}  # type: ignore[attr-defined]
    assert set(problems) == {f"{LONG_TERM}/{name}" for name in MALFORMED}
    for name, (_data, line, why) in MALFORMED.items():
        problem = problems[f"{LONG_TERM}/{name}"]
        assert problem["line"] == line and why in problem["message"]
    text = run_sample.run("status").stdout
    assert f"problem: {LONG_TERM}/bad-yaml.md:3: invalid YAML" in text


def test_status_says_stale_when_the_index_is_gone(run: Runner, vault: Vault) -> None:
    write_record(vault, A, "Alpha")
    assert run.run("sync").exit_code == 0
    shutil.rmtree(vault.root / ".memkit" / "index")
    index = status(run)["index"]
    assert isinstance(index, dict)
    assert index["fresh"] is False


def test_status_sees_a_running_watcher(run: Runner, vault: Vault) -> None:
    index = VaultIndex(vault)
    watcher = Watcher(index)
    watcher.start()
    try:
        data = status(run)
        watching = data["watcher"]
        assert isinstance(watching, dict)
        assert watching["running"] is True and watching["pid"] == os.getpid()
        assert watching["polling"] is False
        assert "watcher: running (pid" in run.run("status").stdout
    finally:
        watcher.stop()
        index.close()
    assert status(run)["watcher"] == {"running": False}


def test_status_ignores_the_heartbeat_of_a_dead_watcher(run: Runner, vault: Vault) -> None:
    # A watcher killed with -9 leaves its heartbeat behind; its pid is gone.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    heartbeat = {"pid": int(dead.stdout), "heartbeat": 0, "polling": False}
    (vault.state_dir / "watcher.json").write_text(json.dumps(heartbeat))
    assert status(run)["watcher"] == {"running": False}
    (vault.state_dir / "watcher.json").write_text("{not json")
    assert status(run)["watcher"] == {"running": False}
