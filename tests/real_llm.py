"""Start and stop the shared real model server (../shared/llm/serve) for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_LLM = REPO.parent / "shared" / "llm"
SERVE = SHARED_LLM / "serve"


@dataclass(frozen=True)
class RealServer:
    base_url: str
    model: str
    pid: int
    log: str
    context: int
    shadow: str = ""  # the repaired copy of ../shared/llm, removed by stop()


def _repaired_copy(source: Path) -> Path:
    """A folder of links to `source` whose library symlinks are real symlinks again.

    Some copies of ../shared turn each `libx.so -> libx.so.0.5.0` symlink into a small text
    file holding the target's name, which the dynamic loader then fails to load ("file too
    short"); linking to the same files fixes that without touching the shared folder.
    """
    shadow = Path(tempfile.mkdtemp(prefix="memkit-llm-"))
    (shadow / "bin").mkdir()
    for item in (source / "bin").iterdir():
        link = shadow / "bin" / item.name
        if item.is_file() and not item.is_symlink() and item.stat().st_size < 256:
            text = item.read_bytes()
            if text.isascii() and b"/" not in text and text.strip():
                link.symlink_to(text.decode().strip())
                continue
        link.symlink_to(item)
    for item in source.iterdir():
        if item.name != "bin":
            target = shadow / item.name
            if item.name == "serve":
                shutil.copy2(item, target)
            else:
                target.symlink_to(item)
    return shadow


def _needs_repair(source: Path) -> bool:
    for item in (source / "bin").glob("*.so*"):
        if not item.is_symlink() and item.stat().st_size < 256:
            return True
    return False


def start(context: int = 8192, *, parallel: int = 1) -> RealServer:
    """Run ../shared/llm/serve and return where it listens; raises when it cannot start."""
    if not SERVE.is_file():
        raise RuntimeError(
            f"the shared model server {SERVE} is missing: real-model tests need ../shared/llm "
            "next to the repository (see ../shared/llm/README.md)"
        )
    serve = SERVE
    shadow = ""
    if _needs_repair(SHARED_LLM):
        serve = _repaired_copy(SHARED_LLM) / "serve"
        shadow = str(serve.parent)
    environment = {**os.environ, "LLM_CTX": str(context), "LLM_PARALLEL": str(parallel)}
    done = subprocess.run(
        [str(serve)], capture_output=True, text=True, env=environment, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{serve} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    values = dict(
        line.split("=", 1)
        for line in done.stdout.splitlines()
        if "=" in line and line[:4] == "LLM_"
    )
    return RealServer(
        values["LLM_BASE_URL"],
        values["LLM_MODEL"],
        int(values["LLM_PID"]),
        values.get("LLM_LOG", ""),
        context,
        shadow,
    )


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


def stop(server: RealServer) -> None:
    try:
        _stop(server.pid)
    finally:
        if server.shadow:
            shutil.rmtree(server.shadow, ignore_errors=True)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_USER_LINES = [
    "Hi, I'm Dana. I lead the Ledger team and we are moving our Postgres 12 cluster to 16.",
    "Please keep answers short and show the commands first, then one line of why.",
    "We deploy on Tuesdays and Thursdays only; Fridays are frozen since the March outage.",
    "Priya reviews every migration plan before it runs. She wants a written rollback plan.",
    "I prefer pg_upgrade with --link over dump and restore, our database is 1.8 TB.",
    "Staging runs on two replicas; production has three, one in the Frankfurt region.",
    "We decided to keep pgbouncer in transaction mode, session mode broke the ORM last year.",
    "My editor is vim and I read your answers on my phone in the evening, so no wide tables.",
    "The maintenance window is Tuesday 02:00 to 04:00 UTC, agreed with support.",
    "Oh, and the extension pg_partman must be upgraded first or the upgrade check fails.",
]
_ASSISTANT_LINES = [
    "Noted. For 12 to 16 run `pg_upgrade --check` first on a copy of staging.",
    "Understood: commands first, then one line of why.",
    "Then plan the production run for a Tuesday window and keep Thursday as the fallback.",
    "I will draft the rollback plan: keep the old cluster stopped but intact until checks pass.",
    "With --link the upgrade takes minutes; the catch is that rollback needs the old cluster untouched.",
    "Upgrade the replicas after the primary with rsync, as the pg_upgrade docs describe.",
    "Keeping transaction mode is fine; re-test prepared statements after the upgrade.",
    "I will keep lines short and avoid tables.",
    "Two hours is enough for --link plus analyze on 1.8 TB if the check ran the day before.",
    "Good catch: upgrade pg_partman to 5.x on 12 first, then run the check again.",
]


def realistic_conversation(messages: int, *, session: str = "s-ledger") -> str:
    """A JSONL conversation of `messages` messages (user and assistant in turn), with ids and
    times a minute apart: the kind of chat memkit learns from."""
    import json

    lines = []
    for number in range(messages):
        user = number % 2 == 0
        pool = _USER_LINES if user else _ASSISTANT_LINES
        text = pool[(number // 2) % len(pool)]
        if number // 2 >= len(pool):
            text += f" (again, point {number // 2 - len(pool) + 1})"
        lines.append(
            json.dumps(
                {
                    "id": f"msg-{number + 1:04d}",
                    "speaker": "Dana" if user else "assistant",
                    "text": text,
                    "time": f"2026-11-20T{9 + number // 60:02d}:{number % 60:02d}:00Z",
                    "session": session,
                }
            )
        )
    return "\n".join(lines) + "\n"
