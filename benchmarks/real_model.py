"""memkit learn and chat against a real model server: does it complete, how long, what it costs.

By default the shared small model (../shared/llm/serve: llama.cpp with SmolLM2-135M on this
machine's CPU) is started for the run and stopped after it; `--base-url URL --model NAME` points
at any other OpenAI-compatible server instead. What runs, each as the `memkit` command a person
would type (a fresh vault each time, default settings):

| scenario | what |
|---|---|
| learn 15 | `memkit learn` on a realistic 15-message conversation, `--runs` times (default 10) |
| learn 120 @2048 | `memkit learn` once on a 120-message conversation, the model's context 2048 tokens |
| chat | `memkit chat --no-stream` with 3 lines: when the first reply appears vs when learning ends |

The baseline in the same run is the model server's own speed: one plain chat completion.
A table is printed (Markdown), with the machine's load (`uptime`) next to it, since the figures
depend on what else runs.

    python benchmarks/real_model.py [--base-url URL --model NAME] [--runs 10] [--long 120]
                                    [--timeout SECONDS] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.real_llm import RealServer, realistic_conversation, start, stop  # noqa: E402


@dataclass
class Runs:
    name: str
    walls: list[float] = field(default_factory=list)
    completed: int = 0
    attempted: int = 0
    prompt_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    written: int = 0
    refused: int = 0
    chunks: list[int] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def memkit(
    vault: Path, *args: str, env: dict[str, str], stdin: str | None = None
) -> tuple[int, str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "memkit", "--vault", str(vault), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


TIMEOUT: float | None = None  # --timeout: llm.timeout_seconds for every vault


def fresh_vault(root: Path, name: str, context: int | None = None) -> Path:
    vault = root / name
    subprocess.run(
        [sys.executable, "-m", "memkit", "init", str(vault)], capture_output=True, check=True
    )
    settings = vault / "memkit.yaml"
    text = settings.read_text()
    if context:
        text = text.replace("llm:\n", f"llm:\n  context_tokens: {context}\n", 1)
    if TIMEOUT:
        # A slow machine: each request may take TIMEOUT, and a long conversation many requests.
        text = text.replace(
            "llm:\n", f"llm:\n  timeout_seconds: {TIMEOUT}\n  max_wall_seconds: 3600\n", 1
        )
    settings.write_text(text)
    return vault


def learn_runs(
    name: str, root: Path, env: dict[str, str], messages: int, runs: int, context: int | None
) -> Runs:
    result = Runs(name)
    conversation = root / f"talk-{messages}.jsonl"
    conversation.write_text(realistic_conversation(messages))
    for number in range(runs):
        vault = fresh_vault(root, f"{name.replace(' ', '-')}-{number}", context)
        result.attempted += 1
        code, out, err, wall = memkit(vault, "learn", str(conversation), "--json", env=env)
        result.walls.append(wall)
        if code != 0:
            result.failures.append(err.strip().splitlines()[-1] if err.strip() else f"exit {code}")
            print(f"  {name} #{number + 1}: exit {code} in {wall:.1f} s: {result.failures[-1]}")
            continue
        report = json.loads(out)
        result.completed += 1
        result.prompt_tokens.append(report["prompt_tokens"])
        result.output_tokens.append(report["output_tokens"])
        result.written += len(report["written"])
        result.refused += len(report["refused"])
        result.chunks.append(report["chunks"])
        result.fallbacks += report["fallbacks"]
        print(
            f"  {name} #{number + 1}: {wall:.1f} s, {len(report['written'])} written, "
            f"{len(report['refused'])} refused, {report['chunks']} chunk(s)",
            flush=True,
        )
    return result


def chat_run(root: Path, env: dict[str, str]) -> tuple[Runs, float, float]:
    """Three chat lines: seconds until the first reply is on stdout, and until the exit."""
    vault = fresh_vault(root, "chat")
    lines = "I'm Dana; we upgrade Postgres 12 to 16 on Tuesday.\nKeep answers short.\n/quit\n"
    process = subprocess.Popen(
        [sys.executable, "-m", "memkit", "--vault", str(vault), "chat", "--no-stream"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    started = time.monotonic()
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(lines)
    process.stdin.close()
    process.stdout.readline()
    first_reply = time.monotonic() - started
    process.stdout.read()
    assert process.stderr is not None
    err = process.stderr.read()
    process.wait()
    total = time.monotonic() - started
    result = Runs("chat (2 turns)", attempted=1)
    result.walls.append(total)
    if process.returncode == 0:
        result.completed = 1
    else:
        result.failures.append(err.strip().splitlines()[-1] if err.strip() else "exit")
    result.written = err.count("learned: ")
    result.refused = err.count("not learned: ")
    return result, first_reply, total


def baseline(server_url: str, model: str) -> float:
    import urllib.request

    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
    request = urllib.request.Request(
        f"{server_url}/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=300) as reply:
        reply.read()
    return time.monotonic() - started


def mean(values: list[int]) -> str:
    return f"{statistics.mean(values):.0f}" if values else "-"


def table(rows: list[Runs], base: float, first_reply: float, chat_total: float, load: str) -> str:
    head = (
        "| scenario | completed | wall p50 (s) | wall p95 (s) | prompt tokens | output tokens "
        "| written / refused | chunks | fallbacks |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for row in rows:
        body += (
            f"| {row.name} | {row.completed}/{row.attempted} | {percentile(row.walls, 0.5):.1f} "
            f"| {percentile(row.walls, 0.95):.1f} | {mean(row.prompt_tokens)} "
            f"| {mean(row.output_tokens)} | {row.written} / {row.refused} "
            f"| {mean(row.chunks)} | {', '.join(sorted(set(row.fallbacks))) or 'none'} |\n"
        )
    return (
        head
        + body
        + (f"\nllm.timeout_seconds: {TIMEOUT:g}, max_wall_seconds: 3600" if TIMEOUT else "")
        + f"\nchat: first reply on stdout after {first_reply:.1f} s; the command (learning "
        f"included) ended after {chat_total:.1f} s.\nbaseline: one plain 16-token completion "
        f"took {base:.1f} s.\nmachine load (uptime): {load}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: the shared one)")
    parser.add_argument("--model", help="the model name at --base-url")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--long", type=int, default=120, help="messages in the long conversation (default 120)"
    )
    parser.add_argument(
        "--timeout", type=float, help="llm.timeout_seconds for the runs (default: memkit's 60)"
    )
    args = parser.parse_args()
    global TIMEOUT
    TIMEOUT = args.timeout
    # A kill still stops the servers this run started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    servers: list[RealServer] = []
    try:
        if args.base_url:
            url, model, url_2048, model_2048 = args.base_url, args.model, args.base_url, args.model
        else:
            servers.append(start(8192))
            servers.append(start(2048))
            url, model = servers[0].base_url, servers[0].model
            url_2048, model_2048 = servers[1].base_url, servers[1].model
        env = {**os.environ, "OPENAI_BASE_URL": url, "MEMKIT_MODEL": model or ""}
        env_2048 = {**env, "OPENAI_BASE_URL": url_2048, "MEMKIT_MODEL": model_2048 or ""}
        with tempfile.TemporaryDirectory(prefix="memkit-real-model-") as folder:
            root = Path(folder)
            base = baseline(url, model or "")
            rows = [learn_runs("learn 15", root, env, 15, args.runs, None)]
            rows.append(learn_runs(f"learn {args.long} @2048", root, env_2048, args.long, 1, 2048))
            chat, first_reply, chat_total = chat_run(root, env)
            rows.append(chat)
        load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
        text = table(rows, base, first_reply, chat_total, load.strip())
        print(text)
        for row in rows:
            for failure in row.failures:
                print(f"failure ({row.name}): {failure}")
        if args.out:
            args.out.write_text(text)
    finally:
        for server in servers:
            stop(server)


if __name__ == "__main__":
    main()
