"""What one approval by `mv` costs: the time until the entry is searchable in its store folder,
parses of the approved file and index commits, finalised by `memkit sync` (`refresh`), by a
watcher alone, and by a watcher while a search polls (which indexes the move first); each beside
the same costs of a plain edit of one record, measured in the same run (the floor: one parse,
one commit).

A fresh synthetic vault (the generator of benchmarks/speed.py); parses are counted by a wrapper
around the real parser, commits by the index's own counter (both in this process: the watcher
runs here, in a thread, as `memkit watch` runs it).

    python benchmarks/approval.py [--size 10000] [--runs 7] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import generate

import memkit.sync as sync_module
import memkit.vault as vault_module
from memkit.learning import Learning
from memkit.maintenance import approving_watcher, refresh
from memkit.records import Record, parse_record
from memkit.sync import VaultIndex
from memkit.vault import Vault

PARSES: Counter[str] = Counter()
Row = tuple[float, int, int]  # ms until searchable, parses, index commits


def _counting(data: bytes, path: str) -> Record:
    PARSES[path] += 1
    return parse_record(data, path)


def _word(rng: random.Random) -> str:
    # Letters only and far apart: a fuzzy match of another run's word must not count as found.
    return "zq" + "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(12))


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault = Vault(root)
        self.index = VaultIndex(self.vault)  # the searcher's (and `refresh`'s) index
        self.index.sync()
        self.learning = Learning(self.vault)
        self.rng = random.Random(7)
        self.watcher_index: VaultIndex | None = None

    def close(self) -> None:
        self.learning.close()
        self.index.close()

    def approval(self, finalise: Callable[[], object] | None, polls: bool) -> Row:
        word = _word(self.rng)
        proposal = self.learning.propose("insights", f"Use {word} when deploying.", title=word)
        assert proposal.path is not None
        source, moved = self.root / proposal.path, f"learning/insights/{Path(proposal.path).name}"
        return self._timed(
            lambda: os.rename(source, self.root / moved), finalise, word, moved, polls
        )

    def edit(self, finalise: Callable[[], object] | None, polls: bool) -> Row:
        word, added = _word(self.rng), _word(self.rng)
        record = self.vault.create("long-term", f"Plain fact about {word}.", title=word)
        assert record.path is not None
        path = self.root / record.path
        text = path.read_text().replace("Plain fact", f"Plain fact ({added})")
        return self._timed(lambda: path.write_text(text), finalise, added, record.path, polls)

    def _timed(
        self,
        change: Callable[[], object],
        finalise: Callable[[], object] | None,
        word: str,
        path: str,
        polls: bool,
    ) -> Row:
        """Make `change`, finalise it (by hand) or let the watcher do it, and wait until `word`
        finds `path` as an entry (a search polling syncs first when `polls`)."""
        self.index.index_writes()
        time.sleep(0.3)  # the file's own creation is synced (by a watcher) before the clock runs
        PARSES.clear()
        commits = self._commits()
        started = time.perf_counter()
        change()
        if finalise is not None:
            finalise()
        deadline = started + 10
        while True:
            hits = self.index.search(word, sync=polls)[0].hits
            if any(hit.path == path and hit.type != "proposal" for hit in hits):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{path} was not searchable as an entry within 10 s")
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        time.sleep(0.4)  # the watcher's sync of its own rewrite is counted too
        return seconds * 1000, sum(PARSES.values()), self._commits() - commits

    def _commits(self) -> int:
        watcher = self.watcher_index
        extra = watcher.search_index.commits if watcher is not None else 0
        return self.index.search_index.commits + extra


def run(root: Path, runs: int) -> list[tuple[str, list[Row], list[Row]]]:
    sync_module.parse_record = _counting  # counted (benchmark only)
    vault_module.parse_record = _counting
    bench = Bench(root)
    rows: list[tuple[str, list[Row], list[Row]]] = []
    try:

        def by_hand() -> None:
            refresh(bench.vault, vault_index=bench.index)

        rows.append(
            (
                "`memkit sync` (refresh)",
                [bench.approval(by_hand, False) for _ in range(runs)],
                [bench.edit(by_hand, False) for _ in range(runs)],
            )
        )
        for label, polls in (("watcher alone", False), ("watcher, a search polling", True)):
            bench.watcher_index = VaultIndex(bench.vault)
            watcher = approving_watcher(bench.vault, bench.watcher_index)
            try:
                with watcher:
                    rows.append(
                        (
                            label,
                            [bench.approval(None, polls) for _ in range(runs)],
                            [bench.edit(None, polls) for _ in range(runs)],
                        )
                    )
            finally:
                bench.watcher_index.close()
                bench.watcher_index = None
    finally:
        bench.close()
    return rows


def _median(rows: list[Row], column: int) -> float:
    return statistics.median(row[column] for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the generated vault")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="memkit-approval-"))
    try:
        generate(work / "vault", args.size)
        rows = run(work / "vault", args.runs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"One approval by mv at {args.size:,} records (median of {args.runs}), beside one edit")
    print(
        "| finalised by | approval ms | parses | commits | edit ms (baseline) | parses | commits |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, approvals, edits in rows:
        print(
            f"| {label} | {_median(approvals, 0):.0f} | {_median(approvals, 1):g} | "
            f"{_median(approvals, 2):g} | {_median(edits, 0):.0f} | {_median(edits, 1):g} | "
            f"{_median(edits, 2):g} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
