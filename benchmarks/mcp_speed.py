"""Speed of memkit's MCP server: a search tool round trip over stdio, beside the CLI and the library.

A fresh synthetic vault per size (the generator of benchmarks/speed.py: same seed, same
records, same ~200 queries), indexed once, then, in the same run and on the same files:

| measure | what is timed |
|---|---|
| MCP search round trip | the official SDK's client calls `search` on `memkit mcp` over stdio (one server for the run: one open vault and index, and the server's own watcher, so no walk per search) |
| MCP ping round trip | the same client's `ping`: the floor of a round trip over stdio (no memkit work) |
| MCP show / list round trip | `show` by id, `list` with `limit=20` |
| library search, held index | `VaultIndex.search` in this process on one held `VaultIndex` with no watcher: its freshness check walks every file per call |
| library search, handle per call | a new `VaultIndex` per query, closed after it: what each MCP tool call cost before the server held one |
| CLI search | `memkit --vault V search Q --json` wall time, whole process |
| python -c pass | the floor of any command |

Round trips are p50 / p95 over the queries (the first 10 are warm-up and not timed).

    python benchmarks/mcp_speed.py [--sizes 1000,10000] [--queries 200] [--out FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import SEED, generate, memkit_command, percentile, wall_times

from memkit.sync import VaultIndex
from memkit.vault import Vault

DEFAULT_SIZES = (1000, 10000)
WARMUP = 10
CLI_RUNS = 15


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50) * 1000,
        "p95": percentile(values, 95) * 1000,
        "n": len(values),
    }


async def mcp_phase(root: Path, queries: list[str], record_id: str) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else None
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "memkit", "--vault", str(root), "mcp"], env=env
    )
    out: dict[str, Any] = {}
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(server, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()

            async def timed(call: Callable[[], Any], count: int) -> list[float]:
                times: list[float] = []
                for i in range(count + WARMUP):
                    started = time.perf_counter()
                    result = await call()
                    elapsed = time.perf_counter() - started
                    if getattr(result, "is_error", getattr(result, "isError", False)):
                        raise RuntimeError(f"tool error: {result.content}")
                    if i >= WARMUP:
                        times.append(elapsed)
                return times

            picks = iter(queries * 2)
            out["search"] = _ms(
                await timed(
                    lambda: session.call_tool("search", {"query": next(picks)}), len(queries)
                )
            )
            out["ping"] = _ms(await timed(session.send_ping, len(queries)))
            out["show"] = _ms(
                await timed(lambda: session.call_tool("show", {"ref": record_id}), 50)
            )
            out["list"] = _ms(await timed(lambda: session.call_tool("list", {"limit": 20}), 10))
    return out


def library_phase(root: Path, queries: list[str]) -> dict[str, Any]:
    vault = Vault(root)
    held = VaultIndex(vault)
    held_times: list[float] = []
    for i, query in enumerate(queries):
        started = time.perf_counter()
        held.search(query)
        if i >= WARMUP:
            held_times.append(time.perf_counter() - started)
    held.close()
    fresh_times: list[float] = []
    for i, query in enumerate(queries[:60]):
        started = time.perf_counter()
        index = VaultIndex(Vault(root))
        try:
            index.search(query)
        finally:
            index.close()
        if i >= WARMUP:
            fresh_times.append(time.perf_counter() - started)
    return {"held": _ms(held_times), "per_call": _ms(fresh_times)}


def cli_phase(root: Path, queries: list[str]) -> dict[str, Any]:
    memkit = memkit_command()
    picks = [q for q in queries if '"' not in q][: CLI_RUNS + 1]
    wall_times([[*memkit, "--vault", str(root), "search", picks[0], "--json"]])  # warm
    searches = wall_times([*memkit, "--vault", str(root), "search", q, "--json"] for q in picks[1:])
    floor = wall_times([sys.executable, "-c", "pass"] for _ in range(CLI_RUNS))
    return {"search": _ms(searches), "python": _ms(floor)}


def run_size(
    count: int, seed: int, n_queries: int, keep: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"memkit-mcp-speed-{count}-"))
    try:
        generated = generate(work / "vault", count, seed)
        root = generated.vault
        log(f"{count}: generated {generated.files} files in {generated.seconds:.1f} s ({work})")
        index = VaultIndex(Vault(root))
        started = time.perf_counter()
        index.sync(full=True)
        index.close()
        log(f"{count}: indexed in {time.perf_counter() - started:.1f} s")
        record_id = next(
            line.split(":", 1)[1].strip()
            for line in next((root / "memory" / "long-term").glob("*.md")).read_text().splitlines()
            if line.startswith("id:")
        )
        queries = generated.queries[:n_queries]
        out: dict[str, Any] = {"size": count, "files": generated.files}
        out["mcp"] = asyncio.run(mcp_phase(root, queries, record_id))
        log(
            f"{count}: MCP search p50 {out['mcp']['search']['p50']:.1f} ms, "
            f"ping p50 {out['mcp']['ping']['p50']:.2f} ms"
        )
        out["library"] = library_phase(root, queries)
        out["cli"] = cli_phase(root, queries)
        log(f"{count}: CLI search p50 {out['cli']['search']['p50']:.0f} ms")
        return out
    finally:
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def markdown(results: list[dict[str, Any]]) -> str:
    sizes = [f"{r['size'] // 1000}k" for r in results]
    header = "| measure | " + " | ".join(f"{s} p50 / p95" for s in sizes) + " |"
    lines = [header, "|---|" + "---:|" * len(results)]
    rows: list[tuple[str, Callable[[dict[str, Any]], dict[str, float]]]] = [
        (
            "MCP `search` round trip (stdio; held index, server's watcher)",
            lambda r: r["mcp"]["search"],
        ),
        ("MCP `show` by id round trip", lambda r: r["mcp"]["show"]),
        ("MCP `list` limit 20 round trip", lambda r: r["mcp"]["list"]),
        ("baseline: MCP `ping` round trip", lambda r: r["mcp"]["ping"]),
        (
            "library search, held `VaultIndex`, no watcher (walks per call)",
            lambda r: r["library"]["held"],
        ),
        ("library search, new `VaultIndex` per call (before)", lambda r: r["library"]["per_call"]),
        ("`memkit search --json` (whole command)", lambda r: r["cli"]["search"]),
        ("baseline: `python -c pass`", lambda r: r["cli"]["python"]),
    ]
    for label, pick in rows:
        cells = [f"{pick(r)['p50']:.1f} / {pick(r)['p95']:.1f} ms" for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--queries", type=int, default=200, help="search queries per size")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--keep", action="store_true", help="keep the generated vaults")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("k", "000")) for s in args.sizes.split(",") if s.strip()]
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    log(f"load average before the run: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    results = [run_size(count, args.seed, args.queries, args.keep, log) for count in sizes]
    header = (
        f"memkit MCP speed, {datetime.now(timezone.utc):%Y-%m-%d}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average at the end {os.getloadavg()[0]:.2f}, "
        f"run took {time.perf_counter() - started:.0f} s; target: MCP search p50 <= 25 ms at 10k\n\n"
    )
    table = header + markdown(results)
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
