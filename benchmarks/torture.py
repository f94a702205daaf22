"""Torture suite: concurrent writers, editor races, hostile files, full disks, kill -9; a figure each.

Run by hand: `python benchmarks/torture.py --scale small|full [--only NAME ...]`. Each scenario
prints one line: its name, the figure measured, the target, and whether it was met. The fast
parts run in CI through tests/test_torture.py at the small scale.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memkit.errors import ConflictError, LockTimeout, MemkitError
from memkit.vault import Vault

ROOT = Path(__file__).resolve().parent.parent
MEMKIT = [sys.executable, "-m", "memkit"]


@dataclass(frozen=True)
class Scale:
    name: str
    editor_saves: int  # person saves racing memkit updates
    memkit_updates: int  # at least this many memkit updates of the same file
    appends: int  # in-place `>>` appends racing memkit updates
    writers: int  # concurrent writer processes for the lock scenario
    writes_each: int
    burst: int  # short-term writes past capacity while the watcher runs
    kills: int  # kill -9 of reindex, sync and watch
    bad_files: int  # malformed and special files (at least 65 at full scale)


SCALES = {
    "small": Scale("small", 200, 30, 200, 4, 5, 12, 3, 65),
    "full": Scale("full", 1000, 30, 1000, 10, 20, 60, 21, 65),
}


@dataclass
class Figure:
    scenario: str
    value: float | str
    target: str
    met: bool | None  # None: skipped
    detail: str = ""

    def line(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "skipped"}[self.met]
        return f"| {self.scenario} | {self.value} | {self.target} | {verdict} | {self.detail} |"


def new_vault(base: Path, name: str = "vault") -> Vault:
    return Vault.init(base / name)


def run_memkit(
    vault: Path, *args: str, timeout: float = 60, preexec: Callable[[], None] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMKIT_VAULT": str(vault), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*MEMKIT, *args], capture_output=True, text=True, timeout=timeout, env=env,
        preexec_fn=preexec, input=stdin, check=False,
    )


# --- a person's editor racing memkit ------------------------------------------------------


def _editor_saves(path: Path, saves: int, stop: threading.Event, marks: list[str]) -> None:
    """A person's editor: read the file, add a line, write a temp file, rename it over."""
    for number in range(saves):
        if stop.is_set():
            break
        mark = f"person-edit-{number}"
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            time.sleep(0.0005)  # memkit has it aside for a moment; the editor saves again
            text = path.read_text("utf-8") if path.exists() else ""
        if not text:
            continue
        temp = path.with_name(f".{path.name}.editor~")
        temp.write_text(text.rstrip("\n") + f"\n{mark}\n", "utf-8")
        os.rename(temp, path)
        marks.append(mark)
        time.sleep(random.uniform(0, 0.002))


def _appends(path: Path, count: int, stop: threading.Event, marks: list[str]) -> None:
    """`echo line >> file`: opens the name, appends, closes."""
    for number in range(count):
        if stop.is_set():
            break
        mark = f"person-append-{number}"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{mark}\n")
        marks.append(mark)
        time.sleep(random.uniform(0, 0.002))


def _memkit_updates(root: str, relpath: str, stop: Any, updates: Any, conflicts: Any) -> None:
    """memkit updating the same record (what `entity --set` does), retrying on conflicts; runs
    in its own process, as memkit does beside a person's editor."""
    vault = Vault(Path(root))
    number = 0
    while not stop.is_set():
        try:
            record = vault.read_record(relpath)
        except MemkitError:
            time.sleep(0.0005)
            continue
        record.meta["counter"] = number
        try:
            vault.update(record)
            updates.value += 1
            number += 1
        except ConflictError as error:
            conflicts.value += 1
            if error.written:
                updates.value += 1
                number += 1


def _kept_text(vault: Vault, relpath: str) -> str:
    text = (vault.root / relpath).read_text("utf-8")
    for copy in vault.conflict_copies():
        if copy.startswith(relpath):
            text += (vault.root / copy).read_text("utf-8")
    return text


def editor_race(base: Path, scale: Scale, *, appends: bool) -> Figure:
    vault = new_vault(base, "appends" if appends else "editor")
    record = vault.create("long-term", "A note a person edits while memkit updates it.\n", title="raced")
    assert record.path is not None
    path = vault.root / record.path
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    updates, conflicts = context.Value("i", 0), context.Value("i", 0)
    marks: list[str] = []
    updater = context.Process(
        target=_memkit_updates, args=(str(vault.root), record.path, stop, updates, conflicts)
    )
    updater.start()
    while updates.value == 0 and updater.is_alive():
        time.sleep(0.01)  # the racing starts when memkit is writing
    person_stop = threading.Event()
    if appends:
        _appends(path, scale.appends, person_stop, marks)
    else:
        _editor_saves(path, scale.editor_saves, person_stop, marks)
    stop.set()
    updater.join()
    counts = {"updates": updates.value, "conflicts": conflicts.value}
    kept = _kept_text(vault, record.path)
    lost = [mark for mark in marks if f"{mark}\n" not in kept]
    name = "in-place appends lost" if appends else "person edits lost (editor saves)"
    limit = len(marks) // 1000 if appends else 0
    return Figure(
        name,
        f"{len(lost)} of {len(marks)}",
        "<= 1 in 1,000" if appends else "0",
        len(lost) <= limit,
        f"{counts['updates']} memkit updates, {counts['conflicts']} conflicts reported, "
        f"{len(vault.conflict_copies())} conflict copies",
    )
