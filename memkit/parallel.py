"""Work over many files in a process pool: batches in order, bounded look-ahead, only when safe."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def worker_processes_are_safe() -> bool:
    """Whether a process pool may start here. Its workers import the main module again: a
    person's script without an `if __name__ == "__main__":` guard would run once more in each
    worker. Safe without a main file (a REPL, `python -c`), under `python -m` (runpy's
    `__main__` modules are not run again) and under the `memkit` command itself."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__file__", None) is None:
        return True
    spec = getattr(main, "__spec__", None)
    if spec is not None and str(spec.name).endswith("__main__"):
        return True
    return getattr(getattr(main, "main", None), "__module__", None) == "memkit.cli"


def in_batches(
    work: Callable[[str, list[_Item]], list[_Result]],
    root: str,
    items: Sequence[_Item],
    threshold: int,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[_Result]]:
    """`work(root, batch)` for `items` in batches, the results in order: in a process pool
    (`work` importable by name) from `threshold` items on when that is safe, else here.
    `progress(done, total)` after each batch."""
    total = len(items)
    if total < threshold or (os.cpu_count() or 1) < 2 or not worker_processes_are_safe():
        step = 200
        for first in range(0, total, step):
            yield work(root, list(items[first : first + step]))
            if progress:
                progress(min(first + step, total), total)
        return
    # Imported here: only a big sync needs them, and they cost every command ~15 ms.
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor
    from multiprocessing import get_context

    # Parsing YAML is the slow part of a rebuild: spread it over the cores.
    workers = min(os.cpu_count() or 2, 4)
    # Batches of at most 250 files, at most two per worker submitted ahead: results of a batch
    # wait in memory until the consumer (a rebuild: the index writer) takes them. 250 episodic
    # day files are ~3,000 documents with their neighbouring turns: batches of 1000 cost each
    # worker ~45 MB more at their peak, and the parent as much per batch waiting, for no speed
    # (a batch's round trip is well under a millisecond).
    chunk = max(100, min(250, total // (workers * 8)))
    starts = iter(range(0, total, chunk))
    ahead: deque[Future[list[_Result]]] = deque()
    done = 0
    with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
        while True:
            while len(ahead) < 2 * workers and (start := next(starts, None)) is not None:
                ahead.append(pool.submit(work, root, list(items[start : start + chunk])))
            if not ahead:
                return
            batch = ahead.popleft().result()
            done += chunk
            if progress:
                progress(min(done, total), total)
            yield batch
