"""What a sync did: the files it added, changed, deleted and moved, and the problems it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memkit.records import Record
from memkit.vault import Problem


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    proposals_in_stores: list[str] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)  # (filled by who finalises approvals)
    held: dict[str, Record] = field(default_factory=dict)  # see `VaultIndex.sync(hold=True)`
    rebuilt: bool = False
    seconds: float = 0.0
    checked_by: str = ""  # who said what changed: "watcher", "walk" ("" when not recorded)

    @property
    def files_changed(self) -> int:
        """How many files this sync added, changed or deleted in the index."""
        return len(self.added) + len(self.changed) + len(self.deleted)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "moved": [{"from": a, "to": b} for a, b in self.moved],
            "unchanged": self.unchanged,
            "rebuilt": self.rebuilt,
            "problems": [p.to_json() for p in self.problems],
            "proposals_in_stores": self.proposals_in_stores,
            "approved": self.approved,
            "seconds": round(self.seconds, 3),
            "checked_by": self.checked_by,
        }
