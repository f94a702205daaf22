"""Approving proposals: a proposal that sits in its store folder finalised into its store's
entry (type set, `approved` stamped, its op applied to its target, refused when the target
changed since it was proposed), by `memkit approve` or by a person moving the file there."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from memkit.errors import ConflictError, MemkitError, UsageError
from memkit.extraction import FOLDER_STORES, STORE_FOLDERS
from memkit.records import STORE_TYPES, Record
from memkit.timeutil import now_iso
from memkit.vault import NotRegularFile, Problem, Vault, fingerprint_bytes, read_regular

PROPOSAL_ONLY_KEYS = ("store", "op", "target", "target_digest")


@dataclass
class Approvals:
    """What finalising approvals-by-move did: the proposals approved (their paths in the store
    folders) and the entries they became, every file written as read back (None: deleted), and
    the proposals that could not be finalised (left exactly as they are) with why."""

    approved: list[str] = field(default_factory=list)
    entries: dict[str, Record] = field(default_factory=dict)  # approved path -> its entry
    written: dict[str, Record | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)

    def merge(self, other: Approvals) -> None:
        self.approved += other.approved
        self.entries.update(other.entries)
        self.written.update(other.written)
        self.problems += other.problems
        self.tried |= other.tried


def body_digest(body: str) -> str:
    """A short fingerprint of an entry's text: did the target change since it was proposed?"""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def finalise_moves(vault: Vault, found: Mapping[str, Record | None]) -> Approvals:
    """Finalise the proposals among `found` (path -> the file as a sync read it, or None:
    read it here) that sit in a store folder: a person approved them by moving them there.
    Other files are left alone. One that cannot be finalised (wrong store folder, its
    target changed) stays exactly as it is and becomes a problem naming the file and what
    to do. A record handed in is not parsed again (the file is checked to be unchanged)."""
    done = Approvals()
    for path, record in found.items():
        if path.rpartition("/")[0] not in FOLDER_STORES:
            continue
        if record is not None and record.type != "proposal":
            continue
        done.tried.add(path)
        try:
            entry = finalise_moved(vault, path, record, done.written)
        except MemkitError as error:
            message = str(error)
            if message.startswith(f"{path}: "):
                message = message[len(path) + 2 :]
            done.problems.append(Problem(path, 1, message))
            continue
        if entry is not None:
            done.approved.append(path)
            done.entries[path] = entry
    return done


def finalise_moved(
    vault: Vault,
    path: str,
    record: Record | None = None,
    written: dict[str, Record | None] | None = None,
) -> Record | None:
    """Finalise one proposal moved into a store folder (None: it is no proposal, say
    finalised already by another process); the files written go to `written`."""
    with vault.write_lock():
        if record is None or not _unchanged(vault, record):
            record = vault.read_record(path)
        if record.type != "proposal":
            return None
        folder = str(PurePosixPath(path).parent)
        store = str(record.meta.get("store", ""))
        if FOLDER_STORES.get(folder) != store:
            raise UsageError(
                f"{path}: this proposal is for the {store!r} store but was moved into "
                f"{folder}/; move it to {STORE_FOLDERS.get(store, '?')}/ to approve it, or set "
                f"`store: {FOLDER_STORES.get(folder, '?')}` in it. Nothing was changed."
            )
        return finalise(vault, record, written=written)


def _unchanged(vault: Vault, record: Record) -> bool:
    """Whether the record's file still holds the bytes it was read from (read, not parsed)."""
    assert record.path is not None
    if record.fingerprint is None:
        return False
    try:
        data, stat = read_regular(vault.root, str(vault.safe_path(record.path)))
    except (OSError, MemkitError, NotRegularFile):
        return False
    return fingerprint_bytes(data, stat)[1:] == record.fingerprint[1:]


def finalise(
    vault: Vault,
    record: Record,
    *,
    force: bool = False,
    written: dict[str, Record | None] | None = None,
) -> Record:
    """Turn a proposal that sits in its store folder into an entry, applying its op.
    `written` collects every file written, as read back (None: deleted), for the index."""
    written = {} if written is None else written
    assert record.path is not None
    store = str(record.meta["store"])
    op = str(record.meta.get("op", "add"))
    target = target_of(vault, record, force=force)
    stamp = now_iso()
    if op == "update" and target is not None:
        target.body = record.body
        if record.meta.get("title"):
            target.meta["title"] = record.meta["title"]
        if record.meta.get("tags"):
            target.meta["tags"] = sorted(set(target.tags) | set(record.tags))
        evidence = [str(e) for e in target.meta.get("evidence") or []]
        evidence += [str(e) for e in record.meta.get("evidence") or [] if str(e) not in evidence]
        if evidence:
            target.meta["evidence"] = evidence
        target.meta["approved"] = stamp
        updated = vault.update(target, allow_secrets=True)
        written[str(updated.path)] = updated
        # The proposal's text now lives in its target; git keeps the proposal's history.
        vault.delete(record)
        written[record.path] = None
        return updated
    record.meta["type"] = STORE_TYPES[store]
    record.meta["approved"] = stamp
    if op == "supersede" and target is not None:
        record.meta["supersedes"] = target.id
    for key in PROPOSAL_ONLY_KEYS:
        record.meta.pop(key, None)
    if STORE_TYPES[store] != "decision":
        record.meta.pop("rationale", None)
    finalised = vault.update(record, allow_secrets=True)
    written[str(finalised.path)] = finalised
    if op == "supersede" and target is not None:
        superseded = mark_superseded(vault, target, finalised)
        written[str(superseded.path)] = superseded
    return finalised


def target_of(vault: Vault, record: Record, *, force: bool) -> Record | None:
    """The entry an update/supersede proposal applies to, refusing if it changed since."""
    op = str(record.meta.get("op", "add"))
    if op not in ("update", "supersede"):
        return None
    target_id = record.meta.get("target")
    if not target_id:
        raise UsageError(f"{record.path}: a {op} proposal needs a target id")
    target = vault.get(str(target_id))
    expected = record.meta.get("target_digest")
    if expected and body_digest(target.body) != expected and not force:
        raise ConflictError(
            str(record.path),
            f"its target {target.path} changed since the proposal was made; review both "
            "and approve with --force to apply it anyway",
        )
    return target


def mark_superseded(vault: Vault, old: Record, new: Record) -> Record:
    """Mark `old` superseded by `new` (valid until `new` was created); returns it as written."""
    old.meta["superseded_by"] = new.id
    old.meta["valid_to"] = new.meta["created"]
    # Only front-matter changes (the guard checks what an update adds).
    return vault.update(old)
