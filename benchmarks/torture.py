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
    vault: Path,
    *args: str,
    timeout: float = 60,
    preexec: Callable[[], None] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMKIT_VAULT": str(vault), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*MEMKIT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=preexec,
        input=stdin,
        check=False,
    )


# --- a person's editor racing memkit ------------------------------------------------------


def _editor_saves(
    path: Path, saves: int, stop: threading.Event, marks: list[str], start: int = 0
) -> None:
    """A person's editor: read the file, add a line, write a temp file, rename it over."""
    for number in range(start, start + saves):
        if stop.is_set():
            break
        mark = f"person-edit-{number}"
        text = ""
        for _ in range(1000):
            try:
                text = path.read_text("utf-8")
                break
            except FileNotFoundError:
                time.sleep(0.0005)  # memkit has it aside for a moment: the editor reads again
        if not text:
            continue
        temp = path.with_name(f".{path.name}.editor~")
        temp.write_text(text.rstrip("\n") + f"\n{mark}\n", "utf-8")
        os.rename(temp, path)
        marks.append(mark)
        time.sleep(random.uniform(0, 0.002))


def _appends(
    path: Path, count: int, stop: threading.Event, marks: list[str], start: int = 0
) -> None:
    """`echo line >> file`: opens the name, appends, closes. An append that lands while memkit
    has the file aside creates a new file with just that line (the rest is kept as a conflict
    copy): the person then joins the two, as `check` tells them to."""
    for number in range(start, start + count):
        if stop.is_set():
            break
        _join_conflict_copies(path)
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
            if getattr(error, "written", False):  # (older memkit: no such attribute)
                updates.value += 1
                number += 1


JOINED = {"count": 0}


def _join_conflict_copies(path: Path) -> None:
    """What a person does with a conflict copy: put its text in front of the file's, delete it."""
    copies = sorted(path.parent.glob(f"{path.name}.conflict-*"))
    try:
        current = path.read_text("utf-8")
    except FileNotFoundError:
        return  # memkit has it aside this moment
    if not copies or current.startswith("---"):
        return  # only a file left without its front-matter needs joining
    joined = "".join(copy.read_text("utf-8") for copy in copies) + current
    temp = path.with_name(f".{path.name}.editor~")
    temp.write_text(joined, "utf-8")
    os.rename(temp, path)
    for copy in copies:
        copy.unlink()
    JOINED["count"] += 1


def _kept_text(vault: Vault, relpath: str) -> str:
    text = (vault.root / relpath).read_text("utf-8")
    for copy in vault.conflict_copies():
        if copy.startswith(relpath):
            text += (vault.root / copy).read_text("utf-8")
    return text


def editor_race(base: Path, scale: Scale, *, appends: bool) -> Figure:
    vault = new_vault(base, "appends" if appends else "editor")
    JOINED["count"] = 0
    record = vault.create(
        "long-term", "A note a person edits while memkit updates it.\n", title="raced"
    )
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
    wanted = scale.appends if appends else scale.editor_saves
    deadline = time.monotonic() + 60
    # The person goes on until both sides did their share: at least `wanted` saves racing at
    # least `memkit_updates` updates.
    attempted = 0
    try:
        while len(marks) < wanted or (
            updates.value < scale.memkit_updates and time.monotonic() < deadline
        ):
            batch: list[str] = []
            if appends:
                _appends(path, 100, person_stop, batch, start=attempted)
            else:
                _editor_saves(path, 100, person_stop, batch, start=attempted)
            attempted += 100
            marks += batch
    finally:
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
        len(lost) <= limit and counts["updates"] >= scale.memkit_updates,
        f"{counts['updates']} memkit updates, {counts['conflicts']} conflicts reported, "
        f"{len(vault.conflict_copies())} conflict copies left"
        + (f", {JOINED['count']} joined by the person" if appends else ""),
    )


# --- concurrent writers with the watcher ------------------------------------------------------


def _api_writer(root: str, tag: str, count: int) -> list[str]:
    """A Python API writer: `count` long-term memories, each with a unique word."""
    from memkit import Memory

    memory = Memory(Vault(Path(root)))
    return [
        str(memory.remember(f"writer {tag} note {n} with the word {tag}w{n}q").id)
        for n in range(count)
    ]


def _short_burst(root: str, count: int) -> None:
    """Short-term writes past the buffer's capacity (the oldest are dropped or promoted)."""
    from memkit import Memory

    memory = Memory(Vault(Path(root)))
    for n in range(count):
        memory.remember(f"short item {n} sw{n}q", type="short-term")


def _refusals(root: str, tag: str, count: int) -> int:
    """A writer counting the writes refused because the lock could not be had."""
    from memkit import Memory

    memory = Memory(Vault(Path(root)))
    refused = 0
    for n in range(count):
        try:
            memory.remember(f"lock writer {tag} note {n} word {tag}l{n}q")
        except LockTimeout:
            refused += 1
    return refused


@contextlib.contextmanager
def watching(vault: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "MEMKIT_VAULT": str(vault), "PYTHONPATH": str(ROOT)}
    watcher = subprocess.Popen(
        [*MEMKIT, "watch"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1.0)
        yield watcher
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(20)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()


def writers_with_watcher(base: Path, scale: Scale) -> Figure:
    vault = new_vault(base, "writers")
    capacity = vault.settings.memory.short_term.capacity
    count = scale.writes_each * 2
    context = multiprocessing.get_context("spawn")
    burst = capacity + scale.burst
    with watching(vault.root), context.Pool(3) as pool:
        api = pool.starmap_async(
            _api_writer, [(str(vault.root), "a", count), (str(vault.root), "b", count)]
        )
        shorts = pool.apply_async(_short_burst, (str(vault.root), burst))
        cli_ids = []
        for n in range(count):
            done = run_memkit(
                vault.root, "remember", f"cli note {n} with the word cw{n}q", "--json"
            )
            if done.returncode == 0:
                cli_ids.append(json.loads(done.stdout)["id"])
        api_ids = [i for batch in api.get(300) for i in batch]
        shorts.get(300)
        time.sleep(2.0)  # the watcher's last batch
    present = {r.id for r in vault.scan().records}
    expected = set(cli_ids) | set(api_ids)
    lost = len(expected - present) + (2 * count - len(api_ids)) + (count - len(cli_ids))
    # Past capacity the oldest short-term items are dropped (or promoted) by design; the
    # newest `capacity` must all be there.
    short = [r for r in vault.scan(["short-term"]).records]
    texts = {r.body.strip() for r in short}
    newest_missing = sum(
        f"short item {n} sw{n}q" not in texts for n in range(burst - capacity, burst)
    )
    # And searchable (the watcher's index; search syncs only what it missed).
    searched = run_memkit(
        vault.root, "search", "note", "-k", "1000", "--type", "long-term", "--json"
    )
    found = (
        {hit["id"] for hit in json.loads(searched.stdout)["hits"]}
        if searched.returncode == 0
        else set()
    )
    unsearchable = len(expected - found)
    total = lost + newest_missing + unsearchable
    return Figure(
        "records lost (3 writers + short-term burst, watcher running)",
        total,
        "0",
        total == 0,
        f"{len(expected)} long-term written, {burst} short-term (capacity {capacity}); "
        f"{lost} missing files, {newest_missing} newest short-term missing, {unsearchable} unsearchable",
    )


def lock_refusals(base: Path, scale: Scale) -> Figure:
    vault = new_vault(base, "lock")
    context = multiprocessing.get_context("spawn")
    with context.Pool(scale.writers) as pool:
        refused = pool.starmap(
            _refusals, [(str(vault.root), f"t{n}", scale.writes_each) for n in range(scale.writers)]
        )
    written = len(list(vault.record_paths()))
    return Figure(
        f"writes refused for the lock ({scale.writers} concurrent writers)",
        sum(refused),
        "0",
        sum(refused) == 0,
        f"{written} of {scale.writers * scale.writes_each} written",
    )


# --- secrets ---------------------------------------------------------------------------------


def secrets_in_vault(base: Path, scale: Scale) -> Figure:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from secret_corpus import run_secret_channels  # type: ignore[import-not-found]
    except ImportError as error:
        return Figure(
            "secrets in any vault file",
            "-",
            "0",
            None,
            f"benchmarks/secret_corpus.py is not here yet ({error})",
        )
    result = run_secret_channels(
        base / "secrets", instances_per_kind=6 if scale.name == "full" else 1
    )
    leaked = result["leaked"] + result["leaked_casefolded"]
    return Figure(
        "secrets in any vault file",
        f"{leaked} of {result['attempts']}",
        "0; 0 false positives",
        leaked == 0 and result["false_positives"] == 0,
        f"{result['kinds']} kinds; {result['false_positives']} false positives in "
        f"{result['ordinary_texts']} ordinary texts; errors: {len(result['errors'])}",
    )


# --- hostile files and conditions ------------------------------------------------------------

GOOD = "---\nid: {id}\ntype: long-term\ncreated: 2026-11-01T10:00:00Z\nupdated: 2026-11-01T10:00:00Z\n---\nGood record {n} about tortoise number g{n}q.\n"


def _good_id(n: int) -> str:
    return f"01JD{n:022d}"[:26]


def make_hostile_vault(base: Path, good: int, bad: int) -> tuple[Vault, list[str]]:
    """A vault with `good` valid records and at least `bad` malformed or special files."""
    vault = new_vault(base, "hostile")
    folder = vault.root / "memory/long-term"
    for n in range(good):
        (folder / f"good-{n}.md").write_text(GOOD.format(id=_good_id(n), n=n), "utf-8")
    front = "---\nid: 01JDBAD{n:019d}\ntype: long-term\ncreated: 2026-11-01T10:00:00Z\nupdated: 2026-11-01T10:00:00Z\n"
    makers: list[Callable[[Path, int], None]] = [
        lambda p, n: p.write_text(
            front.format(n=n).replace("type: long-term", "type: [long-term]") + "---\nx\n"
        ),
        lambda p, n: p.write_text(
            front.format(n=n).replace("type: long-term", "type: {a: 1}") + "---\nx\n"
        ),
        lambda p, n: p.write_text(front.format(n=n) + "tags: 5\n---\nx\n"),
        lambda p, n: p.write_text(front.format(n=n) + "importance: high\n---\nx\n"),
        lambda p, n: p.write_text("no front matter at all\n"),
        lambda p, n: p.write_text(""),
        lambda p, n: p.write_bytes(b"---\nid: \xff\xfe\n---\nnot utf-8 \x80\n"),
        lambda p, n: p.write_bytes(bytes(range(256)) * 4),
        lambda p, n: p.write_text(front.format(n=n) + "---\n" + "big " * 1_200_000),
        lambda p, n: p.write_text(front.format(n=n) + "key: [unclosed\n---\nx\n"),
        lambda p, n: p.write_text(front.format(n=n) + "id: again\n---\nx\n"),
        lambda p, n: p.write_text(front.format(n=n) + "title: " + "[" * 5000 + "\n---\nx\n"),
        lambda p, n: p.write_text(front.format(n=n) + "---\nNUL \x00 inside\n"),
        lambda p, n: p.write_text("---\n- a\n- list\n---\nbody\n"),
        lambda p, n: p.write_text("---\n" + "a: &a [*a]\n" + "---\n"),
        lambda p, n: p.mkdir(),
        lambda p, n: os.mkfifo(p),
        lambda p, n: os.symlink(p.name, p),  # a loop onto itself
        lambda p, n: os.symlink("/etc/hostname", p),  # leads out of the vault
        lambda p, n: os.symlink(p.parent / "missing-target.md", p),  # dangling
        lambda p, n: (p.write_text(GOOD.format(id=f"01JDUNREAD{n:016d}", n=n)), p.chmod(0)),
    ]
    names: list[str] = []
    for n in range(bad):
        path = folder / f"bad-{n}.md"
        makers[n % len(makers)](path, n)
        names.append(path.name)
    if not bad:
        return vault, names
    # A socket too, and a device where permitted.
    with contextlib.suppress(OSError):
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(folder / "sock.md"))
        sock.close()
    with contextlib.suppress(OSError, PermissionError):
        os.mknod(folder / "null.md", 0o600 | 0o020000, os.makedev(1, 3))
    return vault, names


COMMANDS = [
    ("check",),
    ("sync",),
    ("reindex",),
    ("list", "--json"),
    ("search", "tortoise", "--json", "-k", "1000"),
    ("status", "--json"),
    ("remember", "a new fact about tortoise hostile"),
    ("entity", "Dana", "--set", "role=tester"),
    ("recall", "tortoise"),
    ("context", "tortoise"),
]


def _run_all(
    vault: Path, preexec: Callable[[], None] | None = None, timeout: float = 120
) -> tuple[int, int, list[str]]:
    """Run every command; (tracebacks, hangs, notes)."""
    tracebacks = hangs = 0
    notes: list[str] = []
    for command in COMMANDS:
        try:
            done = run_memkit(vault, *command, timeout=timeout, preexec=preexec)
        except subprocess.TimeoutExpired:
            hangs += 1
            notes.append(f"{command[0]}: hang")
            continue
        if "Traceback" in done.stderr:
            tracebacks += 1
            notes.append(f"{command[0]}: traceback {done.stderr.strip().splitlines()[-1][:120]}")
        elif done.returncode not in (0, 1):
            notes.append(f"{command[0]}: exit {done.returncode}")
    return tracebacks, hangs, notes


def hostile_files(base: Path, scale: Scale) -> Figure:
    good = 205 if scale.name == "full" else 40
    vault, bad = make_hostile_vault(base, good, scale.bad_files)
    tracebacks, hangs, notes = _run_all(vault.root)
    searched = run_memkit(
        vault.root, "search", "tortoise", "-k", "1000", "--json", "--type", "long-term"
    )
    found = set()
    if searched.returncode == 0:
        found = {hit["path"] for hit in json.loads(searched.stdout)["hits"]}
    unsearchable = sum(f"memory/long-term/good-{n}.md" not in found for n in range(good))
    checked = run_memkit(vault.root, "check")
    named = sum(f"{name}:" in checked.stdout + checked.stderr for name in bad)
    ok = tracebacks == 0 and hangs == 0 and unsearchable == 0
    return Figure(
        f"tracebacks + hangs over {len(bad) + 2} malformed/special files",
        f"{tracebacks} + {hangs}",
        "0 + 0; every good record searchable",
        ok,
        f"{unsearchable} of {good} good records unsearchable; check named {named} of {len(bad)} "
        f"bad files with a line; " + "; ".join(notes[:6]),
    )


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str]:
    """Make `path` read-only: a read-only bind mount as root, chmod otherwise."""
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "--bind", str(path), str(path)], capture_output=True, check=False
        )
        if done.returncode == 0:
            remount = subprocess.run(
                ["mount", "-o", "remount,bind,ro", str(path)], capture_output=True, check=False
            )
            try:
                yield "read-only bind mount" if remount.returncode == 0 else "bind mount (rw)"
            finally:
                subprocess.run(["umount", str(path)], check=False)
            return
    modes = []
    for folder, _, files in os.walk(path):
        for name in [*files, ""]:
            item = Path(folder) / name
            modes.append((item, item.stat().st_mode))
            item.chmod(item.stat().st_mode & ~0o222)
    try:
        yield "chmod a-w"
    finally:
        for item, mode in reversed(modes):
            item.chmod(mode)


def _leftover_temps(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.name.endswith(".tmp") and ".memkit" not in p.parts)


def conditions(base: Path, scale: Scale) -> Figure:
    vault, _ = make_hostile_vault(base / "cond", 20, 0)
    run_memkit(vault.root, "sync")
    notes: list[str] = []
    tracebacks = hangs = 0
    # A full disk: writes past 64 KiB fail with EFBIG (the same path as ENOSPC).
    big = "a long note " * 8_000  # 96 KB: past the limit, under the 128 KB of one argument
    for command in (("remember", big), ("entity", "Dana", "--note", big), ("reindex",)):
        done = run_memkit(vault.root, *command, preexec=_file_size_limit(64 * 1024))
        if "Traceback" in done.stderr:
            tracebacks += 1
            notes.append(f"full disk {command[0]}: {done.stderr.strip().splitlines()[-1][:100]}")
    t, h, n = _run_all(vault.root, _file_size_limit(64 * 1024))
    tracebacks, hangs = tracebacks + t, hangs + h
    notes += [f"full disk {x}" for x in n]
    with read_only(vault.root) as how:
        notes.append(how)
        t, h, n = _run_all(vault.root)
        tracebacks, hangs = tracebacks + t, hangs + h
        notes += [f"{how} {x}" for x in n]
    temps = _leftover_temps(vault.root)
    return Figure(
        "tracebacks + hangs under full disk / read-only",
        f"{tracebacks} + {hangs}",
        "0 + 0; no temp file left",
        tracebacks == 0 and hangs == 0 and temps == 0,
        f"{temps} temp files left; " + "; ".join(notes[:6]),
    )


# --- kill -9 -----------------------------------------------------------------------------------


def kills(base: Path, scale: Scale) -> Figure:
    vault, _ = make_hostile_vault(base / "kills", 150 if scale.name == "full" else 40, 0)
    good = {f"memory/long-term/good-{n}.md" for n in range(150 if scale.name == "full" else 40)}
    env = {**os.environ, "MEMKIT_VAULT": str(vault.root), "PYTHONPATH": str(ROOT)}
    rng = random.Random(11)
    inconsistent = failures = 0
    notes: list[str] = []
    extra = 0
    for round_ in range(scale.kills):
        # Give the next command work: edits, new files, deletions.
        for _ in range(5):
            extra += 1
            name = f"memory/long-term/extra-{extra}.md"
            (vault.root / name).write_text(
                GOOD.format(id=f"01JE{extra:022d}"[:26], n=10_000 + extra)
            )
            good.add(name)
        victim = rng.choice(sorted(good))
        (vault.root / victim).unlink()
        good.discard(victim)
        command = ("reindex", "sync", "watch")[round_ % 3]
        process = subprocess.Popen(
            [*MEMKIT, command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.05, 1.5))
        process.kill()
        process.wait()
        # The next plain command must recover by itself and agree with the files.
        try:
            done = run_memkit(vault.root, "search", "tortoise", "-k", "1000", "--json", timeout=120)
        except subprocess.TimeoutExpired:
            failures += 1
            notes.append(f"after {command}: search hung")
            continue
        if done.returncode != 0:
            failures += 1
            notes.append(
                f"after {command}: {done.stderr.strip().splitlines()[-1][:100] if done.stderr else done.returncode}"
            )
            continue
        found = {hit["path"] for hit in json.loads(done.stdout)["hits"]}
        if found != good:
            inconsistent += 1
            notes.append(
                f"after {command}: {len(good - found)} missing, {len(found - good)} ghosts"
            )
    return Figure(
        f"index inconsistencies after {scale.kills} kill -9 (reindex, sync, watch)",
        inconsistent + failures,
        "0",
        inconsistent + failures == 0,
        f"{failures} failed next commands; " + "; ".join(notes[:5]),
    )


# --- the run -----------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Path, Scale], Figure]] = {
    "writers": writers_with_watcher,
    "lock": lock_refusals,
    "editor": lambda base, scale: editor_race(base, scale, appends=False),
    "appends": lambda base, scale: editor_race(base, scale, appends=True),
    "secrets": secrets_in_vault,
    "hostile": hostile_files,
    "conditions": conditions,
    "kills": kills,
}


def run(scale: Scale, only: list[str] | None = None) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory(prefix="memkit-torture-") as tmp:
        for name, scenario in SCENARIOS.items():
            if only and name not in only:
                continue
            started = time.monotonic()
            base = Path(tmp) / name
            base.mkdir()
            figure = scenario(base, scale)
            figure.detail += f" ({time.monotonic() - started:.0f} s)"
            print(figure.line(), flush=True)
            figures.append(figure)
            shutil.rmtree(base, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="repeatable")
    args = parser.parse_args(argv)
    print(f"torture suite, scale {args.scale}\n")
    print("| scenario | figure | target | verdict | detail |\n|---|---|---|---|---|", flush=True)
    figures = run(SCALES[args.scale], args.only)
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
