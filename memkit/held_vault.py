"""A vault and its one search index held open by a long-lived server, kept fresh by a watcher."""

# Used by the MCP server (`mcp_server`), which needs no SDK for any of this: the held `Memory`,
# `Learning` and index, the change counter that lets a search skip the walk, the edits checked
# against the copy the agent was shown.

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memkit.browse import StampCache, find_record
from memkit.editing import RecordEdit, update_record
from memkit.errors import MemkitError
from memkit.learning import Learning
from memkit.memory import Memory
from memkit.records import Record
from memkit.sync import SyncReport, VaultIndex
from memkit.vault import RECORD_ROOTS, Vault
from memkit.watcher import Watcher

# How long a search waits for the watcher's cookie before walking the files instead.
COOKIE_SECONDS = 0.2
log = logging.getLogger("memkit.mcp")


class _ChangeCounter(Watcher):
    """`memkit watch`'s watcher, run inside the server, which also counts changes to the record
    folders and reports a cookie file coming back through the observer."""

    def __init__(self, vault_index: VaultIndex, cookie: Path) -> None:
        super().__init__(vault_index)
        self.cookie = str(cookie)
        self.generation = 0  # changes seen to files under the record folders (or lost events)
        self._prefixes = tuple(str(vault_index.vault.root / top) + os.sep for top in RECORD_ROOTS)
        self._count_lock = threading.Lock()
        self._cookie_lock = threading.Lock()
        self._cookie_back = threading.Event()

    def notice(self, paths: list[str], *, is_directory: bool = False) -> None:
        if self.cookie in paths:
            self._cookie_back.set()
            paths = [path for path in paths if path != self.cookie]
        if any(path.startswith(self._prefixes) for path in paths):
            with self._count_lock:
                self.generation += 1
        if paths:
            super().notice(paths, is_directory=is_directory)

    def request_reconcile(self) -> None:
        with self._count_lock:
            self.generation += 1  # events were lost: whatever was clean is not known to be
        super().request_reconcile()

    def settled(self, timeout: float) -> bool:
        """Whether every change made before this call has been counted: a cookie is written and
        comes back through the observer, which reports events in order (watchman's way)."""
        if not self.running or self.using_polling:
            return False  # polling reports only once a second: walk instead
        with self._cookie_lock:
            self._cookie_back.clear()
            try:
                with open(self.cookie, "w") as handle:
                    handle.write(str(time.time_ns()))
            except OSError:
                return False
            return self._cookie_back.wait(timeout)


class _CountedIndex(VaultIndex):
    """The server's index: `is_stale` skips the walk when the in-process watcher has counted
    no change since the index was last known fresh (after its cookie came back)."""

    def __init__(self, vault: Vault) -> None:
        super().__init__(vault)
        self.counter: _ChangeCounter | None = None
        self._fresh_at = -1  # the change count at which the index was last in line with the files
        self._checking_at = -1

    def is_stale(self) -> bool:
        counter = self.counter
        if counter is None or not counter.settled(COOKIE_SECONDS):
            self._checking_at = -1
            return super().is_stale()
        seen = counter.generation
        if seen == self._fresh_at and not self.search_index.needs_rebuild:
            return False
        self._checking_at = seen
        stale = super().is_stale()  # this walk comes after `seen` was counted
        if not stale:
            self._fresh_at = seen
        return stale

    def sync(self, **options: Any) -> SyncReport:
        # A full sync walks after the count was taken: what it saw includes every change counted.
        counter = self.counter
        seen = counter.generation if counter is not None else -1
        if self._checking_at >= 0:
            seen = min(seen, self._checking_at)
        report = super().sync(**options)
        if counter is not None and not options.get("paths") and not options.get("directories"):
            self._fresh_at = seen
        return report


class HeldVault:
    """The vault and its one search index, open for the server's whole life.

    Every tool goes through `use()`: the SDK runs tools in worker threads, and an index handle
    is not thread-safe, so calls take turns. The index keeps the freshness rules of
    `VaultIndex.search` (sync first when files changed; `stale` when it could not). With the
    watcher started (`watch()`), a change count replaces the walk of every file: a search after
    no change costs a cookie's trip through inotify and the query, never a stale answer.
    """

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.index = _CountedIndex(vault)
        self.memory = Memory(vault, self.index)
        self.learning = Learning(vault, index=self.index)
        self.stamps = StampCache()  # each file's `updated`, while its stat is unchanged
        # (path, `updated`) -> SHA-256 of the file as this server last handed it to the agent, so
        # that `update` with expected_updated also sees a person's edit that left `updated` alone.
        self._served: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._watcher: _ChangeCounter | None = None

    def served(self, record: Record) -> dict[str, Any]:
        """The record's JSON, remembering which file content the agent was shown."""
        if record.path is not None and record.fingerprint is not None:
            self._served[(record.path, str(record.meta.get("updated")))] = record.fingerprint[2]
        return record.to_json()

    def edit(self, ref: str, edit: RecordEdit) -> Record:
        """`update_record`, refusing an edit of a copy older than the file even when a person's
        edit did not change `updated` (the agent's copy is known by its content)."""
        if edit.expected_updated is not None and edit.expected_sha256 is None:
            record = find_record(self.vault, ref)
            assert record.path is not None
            ref = record.path  # found once: a title is not looked for twice
            seen = self._served.get((record.path, edit.expected_updated.strip()))
            if seen is not None:
                edit = dataclasses.replace(edit, expected_sha256=seen)
        return update_record(self.vault, ref, edit)

    def watch(self) -> None:
        """Start the in-process watcher (its own index handle, syncing what changes); until it
        runs, and whenever it cannot vouch, searches walk the files as the CLI does."""
        cookie = self.vault.state_dir / f"mcp-cookie-{os.getpid()}"
        watcher = _ChangeCounter(VaultIndex(self.vault), cookie)
        try:
            watcher.start()
        except (MemkitError, OSError) as error:
            log.warning("no watcher for the MCP server, searches walk the files: %s", error)
            return
        self._watcher = watcher
        self.index.counter = watcher

    @contextlib.contextmanager
    def use(self) -> Iterator["HeldVault"]:
        with self._lock:
            try:
                yield self
            finally:
                # Paths written are kept for a commit; this server never commits, and a
                # server lives long: do not let the set grow without bound.
                self.vault.touched.clear()

    def close(self) -> None:
        watcher, self._watcher, self.index.counter = self._watcher, None, None
        if watcher is not None:
            watcher.stop()
            watcher.vault_index.close()
            with contextlib.suppress(OSError):
                os.unlink(watcher.cookie)
        self.index.close()
