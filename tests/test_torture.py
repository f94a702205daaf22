"""The torture suite (benchmarks/torture.py) at a small scale: races, full disks, kill -9."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# Imported by name, from benchmarks/: the writer processes it spawns import it the same way
# (spawn hands them this sys.path).
sys.path.insert(0, str(ROOT / "benchmarks"))
torture = importlib.import_module("torture")
SMALL = torture.SCALES["small"]


@pytest.mark.slow
def test_editor_saves_racing_memkit_updates_lose_no_edit(tmp_path: Path) -> None:
    figure = torture.editor_race(tmp_path, SMALL, appends=False)
    assert figure.met, figure.line()


@pytest.mark.slow
def test_full_disk_and_read_only_vault_are_one_line_errors(tmp_path: Path) -> None:
    figure = torture.conditions(tmp_path, SMALL)
    assert figure.met, figure.line()


def test_a_write_on_a_full_disk_says_so_in_one_line(tmp_path: Path) -> None:
    vault = torture.new_vault(tmp_path)
    done = torture.run_memkit(
        vault.root,
        "entity",
        "Dana",
        "--note",
        "x " * 50_000,
        preexec=torture._file_size_limit(32 * 1024),
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "cannot write memory/entities/Dana.md" in done.stderr and "(EFBIG)" in done.stderr
    assert torture._leftover_temps(vault.root) == 0
    assert not (vault.root / "memory/entities/Dana.md").exists()


@pytest.mark.slow
def test_a_read_only_vault_refuses_writes_in_one_line(tmp_path: Path) -> None:
    vault = torture.new_vault(tmp_path)
    assert torture.run_memkit(vault.root, "remember", "a fact before").returncode == 0
    with torture.read_only(vault.root):
        done = torture.run_memkit(vault.root, "remember", "a fact after")
        listed = torture.run_memkit(vault.root, "list")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "read-only" in done.stderr or "permission denied" in done.stderr
    assert listed.returncode == 0 and "a fact before" in listed.stdout


@pytest.mark.slow
def test_kill_9_of_reindex_sync_and_watch_leaves_a_consistent_index(tmp_path: Path) -> None:
    figure = torture.kills(tmp_path, SMALL)
    assert figure.met, figure.line()


@pytest.mark.slow
def test_hostile_files_never_crash_or_hang_a_command(tmp_path: Path) -> None:
    figure = torture.hostile_files(tmp_path, SMALL)
    assert figure.met, figure.line()
