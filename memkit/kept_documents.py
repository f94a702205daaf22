"""The documents of the files of many documents a process indexed last, to replace only those that changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from memkit.index import IndexDoc

# How many files of many documents (day files) a process keeps the documents of: an Agent
# appends to one day file, a watcher sees a few.
KEPT_FILES = 8


class KeptDocuments:
    """path -> (content hash, its documents by key) of the files of many documents this process
    indexed last, oldest first. A day file that gained a message then costs the index a few
    documents, not the whole day's (and the segment merges that churn brings)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, dict[str, IndexDoc]]] = {}

    def clear(self) -> None:
        self._files.clear()

    def changes(
        self, upserts: list[IndexDoc], manifest: Mapping[str, Sequence[Any]]
    ) -> tuple[list[IndexDoc], set[str], set[str]]:
        """(the documents to add, the paths whose documents are replaced one key at a time,
        the keys to drop) for `upserts`. Only for a file whose content hash in the manifest
        (`row[2]`) is the one kept here: no other process indexed another version since."""
        if not self._files:
            return upserts, set(), set()
        by_path: dict[str, list[IndexDoc]] = {}
        for doc in upserts:
            by_path.setdefault(doc.path, []).append(doc)
        added: list[IndexDoc] = []
        keep: set[str] = set()
        stale: set[str] = set()
        for path, docs in by_path.items():
            known = self._files.get(path)
            row = manifest.get(path)
            now = {doc.key: doc for doc in docs}
            if known is None or row is None or row[2] != known[0] or len(now) != len(docs):
                added.extend(docs)  # (a key twice, too: the whole file's documents replaced)
                continue
            before = known[1]
            keep.add(path)
            stale.update(before.keys() - now.keys())
            added.extend(doc for key, doc in now.items() if before.get(key) != doc)
        return added, keep, stale

    def remember(
        self,
        indexed: Iterable[tuple[str, str, list[IndexDoc] | None]],
        deleted: Iterable[str],
    ) -> None:
        """After a commit: keep the documents of the files of many documents just indexed,
        given as (path, content hash, documents or None when not reindexed)."""
        for path in deleted:
            self._files.pop(path, None)
        for path, sha256, docs in indexed:
            if docs is None:
                continue
            self._files.pop(path, None)
            if len(docs) > 1:
                self._files[path] = (sha256, {doc.key: doc for doc in docs})
        while len(self._files) > KEPT_FILES:
            del self._files[next(iter(self._files))]
