"""Keeping a vault in order: sync plus finalising approvals-by-move, sync with a git remote,
status, the watch loop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memkit.errors import LockTimeout, MemkitError
from memkit.sync import Progress, SyncReport, VaultIndex, ask_watcher
from memkit.vault import Problem, Vault

if TYPE_CHECKING:  # (git's module is imported by the work that needs it: most syncs have no remote)
    from memkit.gitvault import RemoteSyncReport


def finalise_moved_proposals(
    vault: Vault, report: SyncReport, vault_index: VaultIndex | None = None
) -> list[str]:
    """Proposals a person moved into a store folder are approvals: finalise them.

    One that cannot be finalised (wrong store folder, its target changed) stays exactly as it
    is and becomes a problem in the report, naming the file and what to do.
    """
    if not report.proposals_in_stores:
        return []
    # Imported here: a sync that finds no approval needs no LLM client.
    from memkit.learning import Learning

    learning = Learning(vault, index=vault_index)  # the caller's open index, when it has one
    finalised = []
    for path in report.proposals_in_stores:
        try:
            finalised.append(learning.finalise_moved(path))
        except MemkitError as error:
            message = str(error)
            if message.startswith(f"{path}: "):
                message = message[len(path) + 2 :]
            report.problems.append(Problem(path, 1, message))
    return finalised


def refresh(
    vault: Vault,
    *,
    full: bool = False,
    progress: Progress | None = None,
    vault_index: VaultIndex | None = None,
) -> SyncReport:
    """Sync the index with the files, finalise approvals that arrived by moving a file, and
    index the finalised entries by path (write-through: no second walk)."""
    own_index = vault_index is None
    index = vault_index or VaultIndex(vault)
    try:
        answer = None if full else ask_watcher(vault.state_dir)
        if answer is not None:
            # A healthy watcher vouches for every file it does not name: no walk.
            report = index.sync(
                paths=answer.paths, directories=answer.directories, progress=progress
            )
            report.checked_by = "watcher"
        else:
            report = index.sync(full=full, progress=progress)
            report.checked_by = "walk"
        if report.proposals_in_stores and finalise_moved_proposals(vault, report, index):
            again = index.index_writes() or SyncReport()
            report.changed = sorted(set(report.changed) | set(again.changed) | set(again.added))
            unfinalised = [p for p in report.problems if p.path in again.proposals_in_stores]
            report.problems = again.problems + unfinalised
            report.proposals_in_stores = again.proposals_in_stores
        return report
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


def approvals_message(vault: Vault, paths: Iterable[str]) -> str | None:
    """The commit message for proposals finalised after a pull (moved into a store in git)."""
    from memkit.gitvault import quoted

    finalised = []
    for path in sorted(paths):
        if path.endswith(".md") and vault.safe_path(path).is_file():
            record = vault.read_record(path)
            finalised.append(f"{record.type} {quoted(record.title)}")
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
        before = set(vault.touched)
        synced.append(refresh(vault, progress=progress))
        return approvals_message(vault, vault.touched - before)

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


def watch_vault(
    vault: Vault,
    *,
    polling: bool = False,
    reconcile_seconds: float = 60.0,
    on_sync: Callable[[SyncReport], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Run the watcher in the foreground until Ctrl-C."""
    from memkit.watcher import Watcher

    index = VaultIndex(vault)

    def after_sync(report: SyncReport) -> None:
        if report.proposals_in_stores and finalise_moved_proposals(vault, report, index):
            index.index_writes()  # write-through: searchable now, not after the next event
        if on_sync is not None:
            on_sync(report)

    watcher = Watcher(
        index,
        polling=polling,
        reconcile_seconds=reconcile_seconds,
        on_sync=after_sync,
        on_error=on_error,
    )
    try:
        watcher.run_forever()
    finally:
        index.close()
