"""Keeping a vault in order: sync plus finalising approvals-by-move, sync with a git remote,
status, the watch loop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memkit.errors import LockTimeout
from memkit.records import Record
from memkit.sync import Progress, SyncReport, VaultIndex, ask_watcher
from memkit.vault import Vault

if TYPE_CHECKING:
    # (Imported by the work that needs them: a sync that finds no approval needs no learning
    # and so no LLM client, one without a remote no git.)
    from memkit.gitvault import RemoteSyncReport
    from memkit.learning import Approvals, Learning
    from memkit.watcher import Watcher


class MovedProposals:
    """Finalising the proposals a person moved into a store folder (approvals by move), for
    one sync. `settle` takes what a `sync(hold=True)` held out (files whose type is not their
    folder's, as it read them), lets learning finalise the proposals among them and indexes them
    all as written, in one more sync and one commit, with no parse of its own; `finish` takes
    the proposals the sync found indexed already where they sit (moved, then synced by another
    process, or a rebuild), finalises them and indexes them by path."""

    def __init__(self, vault: Vault, index: VaultIndex) -> None:
        self.vault = vault
        self.index = index
        self._learning: Learning | None = None
        self._done: Approvals | None = None

    @property
    def learning(self) -> Learning:
        if self._learning is None:
            from memkit.learning import Learning

            self._learning = Learning(self.vault, index=self.index)  # the caller's open index
        return self._learning

    @property
    def done(self) -> Approvals:
        """The approvals finalised so far (made when the first one is tried)."""
        if self._done is None:
            from memkit.learning import Approvals

            self._done = Approvals()
        return self._done

    def settle(self, report: SyncReport) -> SyncReport:
        """`report` of a `sync(hold=True)` with its held files finalised (when they are
        approvals) and indexed (all of them): one sync, one commit."""
        held, report.held = report.held, {}
        if not held:
            return report
        found = self.learning.finalise_moves(held)
        self.done.merge(found)
        records = {p: r for p, r in held.items() if p not in found.written}
        records.update({p: r for p, r in found.written.items() if r is not None})
        origins = [origin for origin, path in report.moved if path in held]
        # With this process's writes not indexed yet (learning's among them): write-through.
        touched = self.index.vault.touched
        end = len(touched.log)
        looked_at = sorted({*held, *found.written, *origins, *touched.log[touched.indexed : end]})
        again = self.index.sync(paths=looked_at, records=records)
        touched.indexed = max(touched.indexed, end)
        # The first sync's own changes are in `again`'s count of unchanged files.
        report.unchanged = again.unchanged - len(report.added) - len(report.changed)
        report.added = sorted({*report.added, *again.added})
        report.changed = sorted({*report.changed, *again.changed} - set(report.added))
        report.deleted = sorted({*report.deleted, *again.deleted})
        report.problems = again.problems
        report.proposals_in_stores = again.proposals_in_stores
        return report

    def finish(self, report: SyncReport) -> SyncReport:
        """`report` with the approvals finalised: `approved` lists them, `proposals_in_stores`
        and `problems` what is left (a proposal that cannot be finalised is left as it is)."""
        tried = self._done.tried if self._done is not None else ()
        leftover = [p for p in report.proposals_in_stores if p not in tried]
        if leftover:
            found = self.learning.finalise_moves(dict.fromkeys(leftover))
            self.done.merge(found)
            if found.written:
                records = {p: r for p, r in found.written.items() if r is not None}
                again = self.index.index_writes(records=records) or SyncReport()
                report.changed = sorted({*report.changed, *again.changed, *again.added})
                report.problems = again.problems
                report.proposals_in_stores = again.proposals_in_stores
        if self._done is None:
            return report  # nothing was tried
        report.approved = sorted({*report.approved, *self._done.approved})
        left = set(report.proposals_in_stores)
        report.problems = sorted(
            [*report.problems, *(p for p in self._done.problems if p.path in left)],
            key=lambda problem: problem.path,
        )
        return report


def finalise_moved_proposals(
    vault: Vault, report: SyncReport, vault_index: VaultIndex | None = None
) -> list[str]:
    """Proposals a person moved into a store folder are approvals: finalise the ones `report`
    lists, index them, and return their paths (`report` says what is left, and why).

    One that cannot be finalised (wrong store folder, its target changed) stays exactly as it
    is and becomes a problem in the report, naming the file and what to do.
    """
    if not report.proposals_in_stores:
        return []
    own_index = vault_index is None
    index = vault_index or VaultIndex(vault)
    try:
        moved = MovedProposals(vault, index)
        moved.finish(report)
        return moved.done.approved
    finally:
        if own_index:
            index.close()


def _refresh(
    vault: Vault, index: VaultIndex, *, full: bool, progress: Progress | None
) -> tuple[SyncReport, MovedProposals]:
    moved = MovedProposals(vault, index)
    answer = None if full else ask_watcher(vault.state_dir)
    if answer is not None:
        # A healthy watcher vouches for every file it does not name: no walk.
        report = index.sync(
            paths=answer.paths, directories=answer.directories, progress=progress, hold=True
        )
        report.checked_by = "watcher"
    else:
        report = index.sync(full=full, progress=progress, hold=True)
        report.checked_by = "walk"
    return moved.finish(moved.settle(report)), moved


def refresh(
    vault: Vault,
    *,
    full: bool = False,
    progress: Progress | None = None,
    vault_index: VaultIndex | None = None,
) -> SyncReport:
    """Sync the index with the files and finalise approvals that arrived by moving a file:
    the moved file is finalised before it is indexed, then indexed as finalised in one commit
    (no second walk, no parse of the finalised file)."""
    own_index = vault_index is None
    index = vault_index or VaultIndex(vault)
    try:
        return _refresh(vault, index, full=full, progress=progress)[0]
    finally:
        if own_index:
            index.close()


def index_own_writes(vault: Vault) -> None:
    """Write-through for a command: index exactly the paths it wrote (not yet indexed by the
    Memory or Learning object that wrote them), without a walk."""
    touched = vault.touched
    if touched.indexed >= len(touched.log):
        return
    index = VaultIndex(vault)
    try:
        with contextlib.suppress(LockTimeout):  # the next freshness check (or watcher) has it
            index.index_writes()
    finally:
        index.close()


@dataclass
class RemoteSync:
    """What `sync_with_remote` did: the git side (pull, conflicts, push) and the index sync."""

    git: RemoteSyncReport
    index: SyncReport

    def to_json(self) -> dict[str, Any]:
        return {**self.index.to_json(), "git": self.git.to_json()}


def approvals_message(entries: Iterable[Record]) -> str | None:
    """The commit message for proposals finalised after a pull (moved into a store in git),
    from the entries they became."""
    from memkit.gitvault import quoted

    finalised = [
        f"{record.type} {quoted(record.title)}"
        for record in sorted(entries, key=lambda r: str(r.path))
    ]
    if not finalised:
        return None
    if len(finalised) == 1:
        return f"memkit: approve {finalised[0]} (moved into its store in git)"
    return f"memkit: approve {len(finalised)} proposals moved into their stores in git"


def sync_with_remote(
    vault: Vault, remote: str | None = None, *, progress: Progress | None = None
) -> RemoteSync:
    """Commit the vault's changes, pull `remote` (None: the branch's upstream, else origin),
    sync the index and finalise approvals that came with the pull (committed), push.

    Conflicts are kept as copies and listed in the result's `git.conflicts`, for the caller to
    tell a person; nothing is printed here.
    """
    from memkit.gitvault import GitVault

    synced: list[SyncReport] = []

    def after_pull(_report: RemoteSyncReport) -> str | None:
        index = VaultIndex(vault)
        try:
            report, moved = _refresh(vault, index, full=False, progress=progress)
        finally:
            index.close()
        synced.append(report)
        return approvals_message(moved.done.entries.values())

    git_report = GitVault(vault).sync_remote(remote, after_pull=after_pull)
    return RemoteSync(git=git_report, index=synced[-1])


def vault_status(vault: Vault) -> dict[str, Any]:
    """Counts by type, index freshness, files that failed to parse, the watcher. Read-only:
    counts and problems are those of the last sync; `fresh` says whether files changed since
    (or the index must be rebuilt); `checked_by` says who answered that: a running watcher
    ("watcher") or a walk of the files ("walk")."""
    index = VaultIndex(vault)
    try:
        rebuild_needed = index.search_index.needs_rebuild
        answer = ask_watcher(vault.state_dir)
        changed: list[str]
        gone: list[str]
        if answer is not None:
            manifest = index.load_manifest()
            files = len(manifest)  # the watcher vouches that the manifest lists them all
            changed, gone = index.freshness_of(answer.paths, answer.directories)
            checked_by = "watcher"
        else:
            stats, manifest, changed, gone = index.freshness()
            files = len(stats)
            checked_by = "walk"
        counts: dict[str, int] = {}
        for state in manifest.values():
            if state.type:
                counts[state.type] = counts.get(state.type, 0) + 1
        watcher = index.watcher_info()
        fresh = not (changed or gone or rebuild_needed) and bool(manifest or not files)
        copies = vault.conflict_copies()
        return {
            "vault": str(vault.root),
            "records": sum(counts.values()),
            "counts": dict(sorted(counts.items())),
            "index": {
                "documents": index.search_index.doc_count(),
                "fresh": fresh,
                "changed": len(changed),
                "deleted": len(gone),
                "files": files,
                "checked_by": checked_by,
            },
            "problems": [
                p.to_json() for p in [*index.problems(manifest), *vault.conflict_problems(copies)]
            ],
            # Conflict copies left by `memkit sync --remote`, waiting for a person.
            "conflicts": copies,
            "watcher": {"running": watcher is not None, **(watcher or {})},
        }
    finally:
        index.close()


def approving_watcher(
    vault: Vault,
    index: VaultIndex,
    *,
    on_sync: Callable[[SyncReport], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
    **options: Any,
) -> Watcher:
    """A `Watcher` of `index` that finalises approvals by move as it syncs: a moved proposal
    is finalised inside the sync that sees it (one commit); one another process indexed first
    is finalised after (see `MovedProposals`). `options` go to the Watcher."""
    from memkit.watcher import Watcher

    batch: list[MovedProposals] = []

    def settle(report: SyncReport) -> SyncReport:
        # Inside the watcher's batch: a process asking meanwhile is told these paths changed.
        if not report.held:
            return report
        batch.append(MovedProposals(vault, index))
        return batch[-1].settle(report)

    def after_sync(report: SyncReport) -> None:
        moved = batch.pop() if batch else MovedProposals(vault, index)
        batch.clear()
        moved.finish(report)  # write-through: searchable now, not after the next event
        if on_sync is not None:
            on_sync(report)

    def failed(error: Exception) -> None:
        batch.clear()  # a sync that failed after settling: its approvals are not the next one's
        if on_error is not None:
            on_error(error)

    return Watcher(index, on_sync=after_sync, on_error=failed, settle=settle, **options)


def watch_vault(
    vault: Vault,
    *,
    polling: bool = False,
    reconcile_seconds: float = 60.0,
    on_sync: Callable[[SyncReport], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Run the watcher in the foreground until Ctrl-C."""
    index = VaultIndex(vault)
    watcher = approving_watcher(
        vault,
        index,
        on_sync=on_sync,
        on_error=on_error,
        polling=polling,
        reconcile_seconds=reconcile_seconds,
    )
    try:
        watcher.run_forever()
    finally:
        index.close()
