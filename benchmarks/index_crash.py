"""kill -9 of an index writer at random moments, commits included: does the next writer recover?

A child process keeps replacing documents of one index (each commit deletes from the big segment,
so it writes a `.del` file); this script kills it with SIGKILL after a random delay, then opens
the index itself, repeats the child's last batch (the same operations, so the same opstamps,
which is how a killed commit's leftovers collide with the next one) and checks the index: every
key once, the expected number of documents, searchable. It prints one line per kill and a
figure: kills, and how many left an index that failed, was inconsistent or asked for a rebuild.

    python benchmarks/index_crash.py [--kills 25] [--docs 2000] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memkit.index import IndexDoc, SearchIndex

CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from index_crash import batch
from memkit.index import SearchIndex
index = SearchIndex(Path(sys.argv[1]))
step = int(sys.argv[2])
print("ready", flush=True)
while True:
    # Written before the commit: the parent repeats exactly this batch after the kill.
    Path(sys.argv[1], "step").write_text(str(step))
    index.update(*batch(step))
    step += 1
"""


def doc(number: int, step: int) -> IndexDoc:
    path = f"notes/n{number}.md"
    return IndexDoc(
        key=path,
        path=path,
        record_id=f"id{number}",
        type="long-term",
        title=f"note {number}",
        text=f"common words for note {number}, version {step}",
    )


def batch(step: int, docs: int = 2000) -> tuple[list[IndexDoc], list[str]]:
    """The upserts and deletes of one commit: a few documents replaced (old versions deleted)."""
    rng = random.Random(step)
    numbers = rng.sample(range(docs), 5)
    return [doc(n, step) for n in numbers], []


def check(index: SearchIndex, docs: int) -> str | None:
    """What is wrong with the index, or None."""
    if index.needs_rebuild:
        return "the index asks for a rebuild (a commit failed on a killed commit's leftovers)"
    if index.doc_count() != docs:
        return f"{index.doc_count()} documents, expected {docs}"
    result = index.search("", k=docs + 1, include_hidden=True)
    keys = [hit.key for hit in result.hits]
    if len(set(keys)) != docs:
        return f"{len(set(keys))} distinct keys, expected {docs}"
    if index.search("common words", k=1).total != docs:
        return "a search does not find every document"
    return None


def kill_once(directory: Path, step: int, rng: random.Random, docs: int) -> tuple[int, str | None]:
    """Run the child from `step`, kill it, recover; (next step, what went wrong or None)."""
    here = str(Path(__file__).resolve().parent)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(step), here],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    child.stdout.readline()  # "ready": the index is open, commits follow back to back
    time.sleep(rng.uniform(0.05, 0.6))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    last = int((directory / "step").read_text())
    try:
        index = SearchIndex(directory)
        try:
            # The killed commit's batch again (same operations, same opstamps), then the next.
            index.update(*batch(last, docs))
            index.update(*batch(last + 1, docs))
            return last + 2, check(index, docs)
        finally:
            index.close()
    except Exception as e:  # the figure counts any failure
        return last + 2, f"{type(e).__name__}: {e}"


def run(directory: Path, kills: int, docs: int, seed: int = 7) -> list[str | None]:
    shutil.rmtree(directory, ignore_errors=True)
    index = SearchIndex(directory)
    index.replace_all([doc(n, 0) for n in range(docs)])
    index.close()
    rng = random.Random(seed)
    step, outcomes = 1, []
    for _ in range(kills):
        step, problem = kill_once(directory, step, rng, docs)
        outcomes.append(problem)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="memkit-crash-")) / "index"
    outcomes = run(directory, args.kills, args.docs)
    for number, problem in enumerate(outcomes, start=1):
        print(f"kill {number:3d}: {problem or 'ok'}")
    bad = sum(p is not None for p in outcomes)
    print(
        f"\n| kills | then failing, inconsistent or needing a rebuild |\n|---:|---:|\n| {len(outcomes)} | {bad} |"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
