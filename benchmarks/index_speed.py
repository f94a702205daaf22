"""Speed of the index layer alone (no manifest, no process pool): a full rebuild and small commits.

`benchmarks/speed.py` times memkit as a person runs it, sync and all. This script isolates what
`memkit/index/` does, so that a change there can be judged on a machine other work also loads:
each phase runs in a child process, current code and a baseline copy of memkit alternate (A, B,
A, B...), and besides wall time it reports the CPU seconds the child used, which other processes
disturb much less.

- rebuild: parse every `.md` file of a vault (serially, in the child) and stream the documents
  into `SearchIndex.replace_all`, as `memkit reindex` does; peak RSS of the child, index size.
- commits: on that index, `update` one document N times (what the watcher does per edit): time
  until it is searchable (update, then a search that finds it) and until `update` returns.

The baseline is a folder holding a `memkit` package (and `schemas/`), e.g. from
`git archive main memkit schemas | tar -x -C /tmp/base`.

    python benchmarks/index_speed.py --vault V [--baseline /tmp/base ...] [--runs 2] [--commits 40]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def vault_files(root: Path) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith(".md")
        ]
    return sorted(found)


def child_rebuild(vault: Path, index_dir: Path) -> dict[str, Any]:
    from memkit.index import IndexDoc, SearchIndex
    from memkit.sync import _parse_file

    files = vault_files(vault)
    root = str(vault)

    def documents() -> Iterator[IndexDoc]:
        for relpath in files:
            parsed = _parse_file(root, relpath)
            if parsed is not None and parsed.docs:
                yield from parsed.docs

    shutil.rmtree(index_dir, ignore_errors=True)
    index = SearchIndex(index_dir)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    count = index.replace_all(documents())
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    index.close()
    size = sum(f.stat().st_size for f in index_dir.rglob("*") if f.is_file())
    return {
        "seconds": wall,
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "rss_mb": after.ru_maxrss / 1024,
        "docs": count,
        "index_mb": size / 1e6,
    }


def child_commits(index_dir: Path, commits: int) -> dict[str, Any]:
    from memkit.index import IndexDoc, SearchIndex

    index = SearchIndex(index_dir)
    searchable: list[float] = []
    returned: list[float] = []
    for serial in range(commits):
        token = f"zqx{serial}token"
        path = f"memory/long-term/bench-{serial % 7}.md"
        doc = IndexDoc(
            key=path, path=path, record_id=f"b{serial}", type="long-term", title="", text=token
        )
        started = time.perf_counter()
        index.update([doc], [])
        returned.append(time.perf_counter() - started)
        if index.search(token, k=1).total != 1:
            raise RuntimeError(f"{token} is not searchable after update()")
        searchable.append(time.perf_counter() - started)
    index.close()
    return {
        "searchable_p50_ms": statistics.median(searchable) * 1000,
        "searchable_p95_ms": percentile(searchable, 95) * 1000,
        "returned_p95_ms": percentile(returned, 95) * 1000,
        "max_ms": max(returned) * 1000,
    }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run_child(args: list[str], baseline: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline)
    done = subprocess.run(
        [sys.executable, str(HERE), "--child", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--vault", type=Path)
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="folder holding a baseline memkit package (repeat for several; named by folder)",
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        phase, *rest = args.child
        if phase == "rebuild":
            print(json.dumps(child_rebuild(Path(rest[0]), Path(rest[1]))))
        else:
            print(json.dumps(child_commits(Path(rest[0]), int(rest[1]))))
        return 0
    if args.vault is None:
        parser.error("--vault is required")
    work = Path(tempfile.mkdtemp(prefix="memkit-index-speed-"))
    variants: dict[str, Path | None] = {"current": None}
    variants.update({f"{path.name}": path for path in args.baseline})
    rebuilds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    commits: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    load_before = os.getloadavg()[0]
    try:
        for _run in range(args.runs):
            for name, baseline in variants.items():
                index_dir = work / name
                rebuilds[name].append(
                    run_child(["rebuild", str(args.vault), str(index_dir)], baseline)
                )
                commits[name].append(
                    run_child(["commits", str(index_dir), str(args.commits)], baseline)
                )
                print(f"{name}: {rebuilds[name][-1]} {commits[name][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("rebuild, wall s (best)", "seconds", rebuilds, min),
        ("rebuild, CPU s (best)", "cpu_seconds", rebuilds, min),
        ("rebuild, peak RSS MB (worst)", "rss_mb", rebuilds, max),
        ("index size MB", "index_mb", rebuilds, max),
        ("commit -> searchable p50 ms (best run)", "searchable_p50_ms", commits, min),
        ("commit -> searchable p95 ms (best run)", "searchable_p95_ms", commits, min),
        ("update() returns p95 ms (best run)", "returned_p95_ms", commits, min),
    ]
    names = list(variants)
    print(
        f"index layer, {rebuilds[names[0]][0]['docs']} documents, {args.runs} runs each, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
    )
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, key, table, pick in rows:
        cells = [f"{pick(r[key] for r in table[n]):.2f}" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
