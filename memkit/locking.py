"""Exclusive locks between memkit processes: one helper for the vault's write lock and the index lock."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from memkit.errors import LockTimeout

# Windows has no fcntl: there the lock is msvcrt's byte-range lock, polled (msvcrt cannot wait
# with a timeout). Importing memkit and reading a vault never needs either.
if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: IO[Any]) -> bool:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _block_lock(handle: IO[Any]) -> None:
        while not _try_lock(handle):
            time.sleep(0.01)

    def _unlock(handle: IO[Any]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import errno

    try:
        import fcntl
    except ImportError:  # a POSIX-like system without flock: reading still works
        fcntl = None  # type: ignore[assignment]

    def _no_locking() -> OSError:
        return OSError(errno.ENOSYS, "file locking (fcntl) is not available on this system")

    def _try_lock(handle: IO[Any]) -> bool:
        if fcntl is None:
            raise _no_locking()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _block_lock(handle: IO[Any]) -> None:
        if fcntl is None:
            raise _no_locking()
        fcntl.flock(handle, fcntl.LOCK_EX)

    def _unlock(handle: IO[Any]) -> None:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)


class HeldLock:
    """A lock this process holds; `release()` gives it back."""

    def __init__(self, handle: IO[Any]) -> None:
        self._handle: IO[Any] | None = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                _unlock(handle)
            finally:
                handle.close()


class _Waiter(threading.Thread):
    """Waits in the kernel for the lock, so the waiter is woken the moment the holder lets go
    and competes at every hand-over (a polling waiter sleeps through most of them: with ten
    writers one of them waited 30 s and gave up). If the caller stops waiting first, the waiter takes ownership of
    the file handle and lets the lock go as soon as it gets it."""

    def __init__(self, handle: IO[Any]) -> None:
        super().__init__(name="memkit-lock-waiter", daemon=True)
        self.handle = handle
        self.error: BaseException | None = None
        self.abandoned = False
        self.state = threading.Lock()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            _block_lock(self.handle)
        except BaseException as error:  # handed back to the caller, never lost
            self.error = error
        with self.state:
            self.done.set()
            if self.abandoned:
                if self.error is None:
                    with contextlib.suppress(OSError):
                        _unlock(self.handle)
                self.handle.close()


def acquire(path: Path, timeout: float) -> HeldLock | None:
    """Take the exclusive lock on `path` (created if missing), waiting at most `timeout` seconds;
    None when another process kept it for that long."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        if _try_lock(handle):
            return HeldLock(handle)
    except BaseException:
        handle.close()
        raise
    waiter = _Waiter(handle)
    waiter.start()
    try:
        waiter.done.wait(max(timeout, 0.0))
    finally:
        # Timed out (or interrupted): the waiter closes the handle when it gets through.
        with waiter.state:
            gave_up = waiter.abandoned = not waiter.done.is_set()
    if gave_up:
        return None
    if waiter.error is not None:
        handle.close()
        raise waiter.error
    return HeldLock(handle)


@contextlib.contextmanager
def held(path: Path, timeout: float, message: str) -> Iterator[None]:
    """Hold the exclusive lock on `path` for the block; LockTimeout(message) after `timeout` s."""
    lock = acquire(path, timeout)
    if lock is None:
        raise LockTimeout(message)
    try:
        yield
    finally:
        lock.release()
