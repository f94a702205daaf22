"""Where a vault's watcher listens, and asking it what changed (memkit/watcher.py answers)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WATCHER_FILE = "watcher.json"
# A heartbeat older than this means the watcher is gone (killed without cleaning up).
WATCHER_STALE_SECONDS = 30.0


@dataclass(frozen=True)
class WatcherAnswer:
    """What a healthy watcher vouches for: every file not named here is in the index as it is
    on disk; these paths (and folders) changed and its sync has not committed them yet."""

    paths: list[str]
    directories: list[str]


def watcher_info(state_dir: Path) -> dict[str, Any] | None:
    """The running watcher's pid and heartbeat, or None when none is alive."""
    try:
        info: dict[str, Any] = json.loads((state_dir / WATCHER_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except PermissionError:
        pass  # alive, but another user's process
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    try:
        if time.time() - float(info.get("heartbeat", 0)) > WATCHER_STALE_SECONDS:
            return None
    except (TypeError, ValueError):
        return None
    return info


# How long a process waits for the watcher's answer before it walks the vault itself.
WATCHER_ANSWER_SECONDS = 0.5


def watcher_address(state_dir: Path) -> str:
    """Where the watcher of the vault with this state folder listens: a Unix socket in it, or
    (when that path is too long for a socket) an abstract Linux socket named after it, written
    with a leading "@"."""
    path = str(state_dir / "watch.sock")
    if len(os.fsencode(path)) < 100:
        return path
    return "@memkit-watch-" + hashlib.sha256(os.fsencode(path)).hexdigest()[:24]


def socket_address(address: str) -> str | bytes:
    """The address to bind or connect to for one from `watcher_address`."""
    return b"\0" + address[1:].encode() if address.startswith("@") else address


def ask_watcher(state_dir: Path, timeout: float | None = None) -> WatcherAnswer | None:
    """Ask the vault's running watcher what changed that its index does not hold yet (it first
    makes sure it has seen every file event up to now: see memkit/watcher.py). None when no
    healthy watcher answers in time (absent, starting, overflowed, polling, slow): walk then."""
    if timeout is None:
        timeout = WATCHER_ANSWER_SECONDS  # read at call time: a loaded test machine raises it
    try:
        info = json.loads((state_dir / WATCHER_FILE).read_bytes())
        address = str(info["socket"])
        if time.time() - float(info.get("heartbeat", 0)) > WATCHER_STALE_SECONDS:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(socket_address(address))
            client.sendall(b'{"ask": "changes"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        if reply.get("ok") is not True:
            return None
        return WatcherAnswer(
            [str(p) for p in reply["paths"]], [str(d) for d in reply["directories"]]
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
