"""`memkit watch`: a watchdog observer that keeps the index fresh as files change on disk."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from memkit.sync import WATCHER_FILE, SyncReport, VaultIndex, socket_address, watcher_address
from memkit.vault import RECORD_ROOTS, is_temporary_name

log = logging.getLogger("memkit.watcher")

# How often the watcher says it is alive in .memkit/watcher.json (status calls it gone after
# WATCHER_STALE_SECONDS without a heartbeat).
HEARTBEAT_SECONDS = 5.0
# After a sync fails, wait this long before trying again (with a full reconcile).
RETRY_SECONDS = 1.0
# When idle, the worker wakes this often to check that watchdog's threads are still alive.
HEALTH_SECONDS = 1.0
# How long the watcher waits to see its own cookie file's event before it tells a process to
# walk instead (the client gives up a little later: sync.WATCHER_ANSWER_SECONDS).
COOKIE_SECONDS = 0.3
COOKIE_PREFIX = "cookie."


class _OverflowSpotter(logging.Handler):
    """watchdog only *logs* an inotify queue overflow; this turns that log line into a signal."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads (ours included) change nothing
        if event.is_directory and event.event_type == "modified":
            # Comes with every file created, deleted or moved in the folder, whose own event
            # names the file; looking at the whole folder each time would cost a walk per save.
            return
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        if self.watcher.heartbeat_path in paths:
            self.watcher.heartbeat_heard()
            return
        if any(p.startswith(self.watcher.cookie_prefix) for p in paths):
            self.watcher.cookie_heard(paths)
            return
        self.watcher.notice(paths, is_directory=event.is_directory)


class Watcher:
    """Coalesces file events, waits for quiet, then syncs just the paths that changed.

    Reconciles the whole vault at start, every `reconcile_seconds`, and after an inotify
    overflow (whose lost events are never delivered). Every `heartbeat_seconds` it rewrites
    `.memkit/watcher.json`, which says a watcher runs and doubles as a canary: when the
    observer stops reporting even that write, it is replaced by a polling one.

    It vouches for the index, as git's fsmonitor daemon does for `git status`: other processes
    ask it over a Unix socket (named in watcher.json) what changed that the index does not hold
    yet, instead of walking the vault. Before it answers, it writes a cookie file under
    `.memkit/` and waits for that file's own event: events arrive in order, so every change
    made before the question is then in its pending set. It answers "walk yourself" while a
    full reconcile is due (start, overflow, a failed sync, a dead observer), when polling, or
    when the cookie is slow.
    """

    def __init__(
        self,
        vault_index: VaultIndex,
        *,
        quiet_seconds: float = 0.1,
        max_delay_seconds: float = 1.0,
        reconcile_seconds: float = 60.0,
        polling: bool = False,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        on_sync: Callable[[SyncReport], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        settle: Callable[[SyncReport], SyncReport] | None = None,
    ) -> None:
        self.vault_index = vault_index
        self.root = vault_index.vault.root
        self._notes = vault_index.vault.notes_folders
        self.heartbeat_path = str(vault_index.vault.state_dir / WATCHER_FILE)
        self.heartbeat_seconds = heartbeat_seconds
        self.quiet_seconds = quiet_seconds
        self.max_delay_seconds = max_delay_seconds
        self.reconcile_seconds = reconcile_seconds
        self.polling = polling
        self.on_sync = on_sync
        self.on_error = on_error
        # Given a batch's report of a `sync(hold=True)`, index what it held (rewritten first, as
        # an approval): inside the batch, so a process asking meanwhile is told those changed.
        self.settle = settle
        self.using_polling = False
        self._pending: set[str] = set()
        self._pending_dirs: set[str] = set()
        self._full_pending = False
        self._first_event = 0.0
        self._last_event = 0.0
        self._next_reconcile = 0.0
        self._last_heartbeat = 0.0
        self._unheard_since = 0.0  # when a heartbeat was written that no event has reported yet
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        self._spotter = _OverflowSpotter(self.request_reconcile)
        self._restart_observer = False
        self.syncs = 0
        self.observer_restarts = 0
        # The batch the worker is syncing now: still "changed" to a process asking, until its
        # commit is done.
        self._inflight: tuple[set[str], set[str], bool] = (set(), set(), False)
        self.cookie_prefix = str(vault_index.vault.state_dir / COOKIE_PREFIX)
        self._cookies: dict[str, threading.Event] = {}
        self._cookie_count = 0
        self.address = watcher_address(vault_index.vault.state_dir)
        self._server: socket.socket | None = None
        self._server_thread: threading.Thread | None = None
        self.answers = 0

    # --- events in ---------------------------------------------------------------------------

    def _relevant(self, relpath: str) -> bool:
        parts = relpath.split("/")
        return (
            bool(parts)
            and (parts[0] in RECORD_ROOTS or any(relpath.startswith(f + "/") for f in self._notes))
            and not any(part.startswith(".") and part != "." for part in parts[:-1])
        )

    def notice(self, paths: list[str], *, is_directory: bool = False) -> None:
        """Note paths that changed (absolute, as watchdog reports them); the worker syncs them
        once they have been quiet for `quiet_seconds`."""
        now = time.monotonic()
        prefix = str(self.root) + os.sep
        relevant = False
        with self._condition:
            for path in paths:
                if not path.startswith(prefix):
                    continue
                relpath = path[len(prefix) :].replace(os.sep, "/")
                if not self._relevant(relpath):
                    continue  # .memkit/ (our own writes), .git/, files outside the record folders
                if is_directory:
                    self._pending_dirs.add(relpath)
                elif relpath.endswith(".md") and not is_temporary_name(relpath.rsplit("/", 1)[-1]):
                    self._pending.add(relpath)
                else:
                    continue  # an editor's scratch file: its rename onto the real name arrives too
                relevant = True
                if not self._first_event:
                    self._first_event = now
                self._last_event = now
            # Waking the worker for an irrelevant event would make it write its heartbeat,
            # which is an event itself: only wake it for work.
            if relevant:
                self._condition.notify()

    def heartbeat_heard(self) -> None:
        """The observer reported our own heartbeat write: it is alive."""
        self._unheard_since = 0.0

    def cookie_heard(self, paths: list[str]) -> None:
        """The observer reported a cookie file: every event before it has been noticed."""
        for path in paths:
            event = self._cookies.get(path)
            if event is not None:
                event.set()

    # --- vouching for the index ----------------------------------------------------------------

    def changes(self) -> dict[str, object]:
        """The answer to a process asking what changed: {"ok": true, "paths", "directories"},
        or {"ok": false, "why"} when it must walk the vault itself."""
        if self.using_polling:
            return {"ok": False, "why": "polling"}  # seconds behind: a walk is quicker
        self._cookie_count += 1
        cookie = f"{self.cookie_prefix}{os.getpid()}.{self._cookie_count}"
        heard = threading.Event()
        self._cookies[cookie] = heard
        try:
            with open(cookie, "wb"):
                pass
            if not heard.wait(COOKIE_SECONDS):
                return {"ok": False, "why": "slow"}
        except OSError as error:
            return {"ok": False, "why": f"cookie: {error.strerror}"}
        finally:
            self._cookies.pop(cookie, None)
            with contextlib.suppress(OSError):
                os.unlink(cookie)
        with self._condition:
            paths, directories, full = self._inflight
            if full or self._full_pending or self._restart_observer or self._stop.is_set():
                return {"ok": False, "why": "reconciling"}
            if not self._observer_alive():
                return {"ok": False, "why": "observer"}
            self.answers += 1
            return {
                "ok": True,
                "paths": sorted(self._pending | paths),
                "directories": sorted(self._pending_dirs | directories),
            }

    def _serve(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            with connection:
                try:
                    connection.settimeout(1.0)
                    data = b""
                    while not data.endswith(b"\n") and len(data) < 4096:
                        chunk = connection.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    answer = self.changes()
                    connection.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    continue  # the asker went away: it walks

    def _start_server(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if not self.address.startswith("@"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address)  # left by a watcher killed without cleaning up
            server.bind(socket_address(self.address))
            server.listen(16)
            server.settimeout(0.5)
        except OSError as error:
            # Others then walk, as without a watcher; the watcher itself works on.
            log.warning("cannot answer other processes (%s); they will walk the vault", error)
            server.close()
            return
        self._server = server
        self._server_thread = threading.Thread(
            target=self._serve, args=(server,), name="memkit-watch-answer", daemon=True
        )
        self._server_thread.start()

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        if not self.address.startswith("@"):
            with contextlib.suppress(OSError):
                os.unlink(self.address)

    def request_reconcile(self) -> None:
        with self._condition:
            self._full_pending = True
            self._first_event = self._first_event or time.monotonic()
            self._last_event = time.monotonic()
            self._condition.notify()

    # --- the worker ----------------------------------------------------------------------------

    def _take_batch(self) -> tuple[set[str], set[str], bool] | None:
        """Wait until events have gone quiet (or waited too long); None when stopping."""
        with self._condition:
            while not self._stop.is_set():
                now = time.monotonic()
                # The reconcile deadline is the watcher's, not this batch's: a steady stream
                # of events must not put it off for ever.
                if now >= self._next_reconcile and not self._full_pending:
                    self._full_pending = True
                    self._first_event = self._first_event or now
                    self._last_event = 0.0
                has_work = self._pending or self._pending_dirs or self._full_pending
                if has_work:
                    quiet_for = now - self._last_event
                    waited = now - self._first_event
                    if quiet_for >= self.quiet_seconds or waited >= self.max_delay_seconds:
                        batch = (self._pending, self._pending_dirs, self._full_pending)
                        self._inflight = batch
                        self._pending, self._pending_dirs = set(), set()
                        self._full_pending = False
                        self._first_event = 0.0
                        return batch
                    timeout = max(
                        0.005, min(self.quiet_seconds - quiet_for, self.max_delay_seconds - waited)
                    )
                else:
                    timeout = max(0.01, min(HEALTH_SECONDS, self._next_reconcile - now))
                self._condition.wait(timeout)
                if time.monotonic() - self._last_heartbeat >= self.heartbeat_seconds:
                    self._heartbeat()
                if not self._restart_observer and not self._observer_alive():
                    # A watchdog thread died (say, inotify refused a watch on a new folder: the
                    # error ends watchdog's one inotify thread, shared by the whole process) and
                    # no event will come again. Poll from now on, and reconcile what was missed.
                    log.warning("the file observer stopped reporting; polling from now on")
                    self._restart_observer = True
                    self._full_pending = True
                    self._first_event = self._first_event or time.monotonic()
                    self._last_event = 0.0
        return None

    def _observer_alive(self) -> bool:
        observer = self._observer
        if observer is None or self._stop.is_set():
            return True  # nothing to check (starting or stopping)
        if not observer.is_alive() or not all(e.is_alive() for e in list(observer.emitters)):
            return False
        if self.using_polling:
            return True  # its threads are its own: alive means working
        # watchdog's inotify thread is shared and not ours to look at: if our own heartbeat
        # write goes unreported for long, nothing else is being reported either.
        unheard = self._unheard_since
        return not unheard or time.monotonic() - unheard < 2 * self.heartbeat_seconds + 0.5

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if batch is None:
                return
            paths, directories, full = batch
            if self._restart_observer:
                self._replace_observer()
            try:
                hold = self.settle is not None
                if full:
                    report = self.vault_index.sync(hold=hold)
                else:
                    report = self.vault_index.sync(
                        paths=sorted(paths), directories=sorted(directories), hold=hold
                    )
                if self.settle is not None:
                    report = self.settle(report)
            except Exception as error:  # the watcher must outlive any one sync
                # Never die on one bad sync: say so and reconcile everything on the next round.
                log.warning("sync failed: %s", error)
                self._report_error(error)
                with self._condition:
                    self._full_pending = True
                    self._first_event = time.monotonic()
                    self._last_event = time.monotonic()
                self._stop.wait(RETRY_SECONDS)
                continue
            finally:
                with self._condition:
                    self._inflight = (set(), set(), False)
                if full:
                    self._next_reconcile = time.monotonic() + self.reconcile_seconds
            self.syncs += 1
            self._deliver(report)

    def _deliver(self, report: SyncReport) -> None:
        """Hand a sync report to `on_sync`; a failing callback is reported, never fatal."""
        # A proposal in a store folder is handed on even when this sync changed nothing: another
        # process asking this watcher may have synced the move itself (before `settle` could
        # see it), and then the watcher's callback finalises the approval.
        if self.on_sync is None or not (report.files_changed or report.proposals_in_stores):
            return
        try:
            self.on_sync(report)
        except Exception as error:  # e.g. finalising an approval failed
            log.warning("after sync: %s", error)
            self._report_error(error)

    def _report_error(self, error: Exception) -> None:
        if self.on_error is not None:
            with contextlib.suppress(Exception):
                self.on_error(error)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        self._last_heartbeat = now
        info: dict[str, object] = {
            "pid": os.getpid(),
            "heartbeat": time.time(),
            "polling": self.using_polling,
        }
        if self._server is not None:
            info["socket"] = self.address
        path = self.vault_index.vault.state_dir / WATCHER_FILE
        try:
            temp = path.with_suffix(f".{os.getpid()}.tmp")
            temp.write_text(json.dumps(info))
            os.replace(temp, path)
        except OSError:
            return  # a full disk, say: status will call the watcher gone; it works on
        if not self._unheard_since:
            self._unheard_since = now

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start observing, then reconcile once so that nothing that changed while no watcher
        ran is missed. Returns with the index in line with the files."""
        for folder in RECORD_ROOTS:
            (self.root / folder).mkdir(exist_ok=True)
        logging.getLogger("watchdog").addHandler(self._spotter)
        # A watched folder moved out of the vault and back (or renamed across watched places)
        # keeps its inotify watch; watchdog then warns that it overwrites the watch's callback
        # and carries on correctly. Nothing anyone can act on; and where warnings are errors
        # (tests), the warning would kill watchdog's thread.
        warnings.filterwarnings(
            "ignore",
            message="Callback with id .* already exists for watch",
            category=RuntimeWarning,
            module="watchdog",
        )
        # Observe first, reconcile second: a change made during the reconcile then arrives as
        # an event instead of falling between the two.
        try:
            self._observer = self._make_observer()
            report = self.vault_index.sync()
        except BaseException:
            self._stop_observer()
            logging.getLogger("watchdog").removeHandler(self._spotter)
            raise
        self._next_reconcile = time.monotonic() + self.reconcile_seconds
        self.syncs += 1
        self._start_server()  # reconciled: from now on it can vouch for the index
        self._heartbeat()
        self._deliver(report)  # before the worker starts: callbacks never overlap
        self._thread = threading.Thread(target=self._run, name="memkit-watch-sync", daemon=True)
        self._thread.start()

    def _replace_observer(self) -> None:
        self._stop_observer()
        # A new inotify observer would share watchdog's dead inotify thread: poll instead.
        self.polling = True
        self._unheard_since = 0.0
        try:
            self._observer = self._make_observer()
        except OSError as error:
            log.warning("cannot restart the file observer: %s", error)
            self._report_error(error)
            return  # still flagged: tried again with the next batch
        finally:
            self.observer_restarts += 1
        self._restart_observer = False

    def _make_observer(self) -> BaseObserver:
        if not self.polling:
            observer: BaseObserver = Observer()
            try:
                observer.schedule(_Handler(self), str(self.root), recursive=True)
                observer.start()
                return observer
            except OSError as error:
                # inotify watch or instance limit reached (errno 28 / 24): poll instead.
                log.warning("inotify unavailable (%s); falling back to polling", error)
                with contextlib.suppress(Exception):
                    observer.stop()
        self.using_polling = True
        polling = PollingObserver(timeout=1.0)
        polling.schedule(_Handler(self), str(self.root), recursive=True)
        polling.start()
        return polling

    @property
    def running(self) -> bool:
        """Whether the worker is alive (it stops only when asked to)."""
        return self._thread is not None and self._thread.is_alive()

    def _stop_observer(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout=5)
            self._observer = None

    def stop(self) -> None:
        """Stop observing and syncing; the heartbeat file goes (if it is still ours)."""
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        self._stop_server()
        self._stop_observer()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._stop_observer()  # one the worker may have just restarted
        logging.getLogger("watchdog").removeHandler(self._spotter)
        path = self.vault_index.vault.state_dir / WATCHER_FILE
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            # Another watcher started on this vault since owns the file now: leave it.
            if json.loads(path.read_text())["pid"] == os.getpid():
                path.unlink()

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Block until interrupted (Ctrl-C), then stop cleanly."""
        try:
            self.start()
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
