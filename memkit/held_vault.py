"""A vault and its one search index held open by a long-lived server, kept fresh by a watcher."""

# Used by the MCP server (`mcp_server`), which needs no SDK for any of this: the held `Memory`,
# `Learning` and index, the in-process watcher that vouches for the index, the edits checked
# against the copy the agent was shown.

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Any

from memkit.browse import StampCache, find_record
from memkit.editing import RecordEdit, update_record
from memkit.errors import MemkitError
from memkit.learning import Learning
from memkit.memory import Memory
from memkit.records import Record
from memkit.sync import VaultIndex
from memkit.vault import Vault
from memkit.watcher import Watcher

log = logging.getLogger("memkit.mcp")


class HeldVault:
    """The vault and its one search index, open for the server's whole life.

    Every tool goes through `use()`: the SDK runs tools in worker threads, and an index handle
    is not thread-safe, so calls take turns. The index keeps the freshness rules of
    `VaultIndex.search` (sync first when files changed; `stale` when it could not). With the
    watcher started (`watch()`), it answers the index's freshness check over its socket as
    `memkit watch` does (`VaultIndex.ensure_fresh`): a search after no change costs a cookie's
    trip through inotify and the query, not a walk of every file, never a stale answer.
    """

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.index = VaultIndex(vault)
        self.memory = Memory(vault, self.index)
        self.learning = Learning(vault, index=self.index)
        self.stamps = StampCache()  # each file's `updated`, while its stat is unchanged
        # (path, `updated`) -> SHA-256 of the file as this server last handed it to the agent, so
        # that `update` with expected_updated also sees a person's edit that left `updated` alone.
        self._served: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._watcher: Watcher | None = None

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
        watcher = Watcher(VaultIndex(self.vault))
        try:
            watcher.start()
        except (MemkitError, OSError) as error:
            log.warning("no watcher for the MCP server, searches walk the files: %s", error)
            return
        self._watcher = watcher

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
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.vault_index.close()
        self.index.close()
