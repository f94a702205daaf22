"""Memory semantics on top of the vault: remember, forget (recall and lifecycles build on these)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from memkit.errors import UsageError
from memkit.records import RECORD_TYPES, Record
from memkit.timeutil import format_time, utcnow
from memkit.vault import Vault

REMEMBER_TYPES = tuple(t for t in RECORD_TYPES if t not in ("proposal", "episodic"))


class Memory:
    """What an agent remembers, kept in a vault."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def remember(
        self,
        text: str,
        *,
        type: str = "long-term",  # noqa: A002 - the vault's own word for it
        title: str | None = None,
        tags: Iterable[str] = (),
        importance: float | None = None,
        source: Any = None,
        allow_secrets: bool = False,
    ) -> Record:
        """Write one memory record and return it."""
        if type not in REMEMBER_TYPES:
            raise UsageError(
                f"cannot remember a record of type {type!r}; choose one of: "
                f"{', '.join(REMEMBER_TYPES)}"
            )
        text = text.strip()
        if not text:
            raise UsageError("nothing to remember: the text is empty")
        if importance is not None and not 0 <= importance <= 1:
            raise UsageError(f"importance must be between 0 and 1, not {importance}")
        extra: dict[str, Any] = {}
        if type == "short-term":
            ttl = timedelta(hours=self.vault.settings.memory.short_term.ttl_hours)
            extra["expires"] = format_time(utcnow() + ttl)
        if type == "entity":
            extra["name"] = title or text.splitlines()[0][:80]
        if type == "long-term" and importance is None:
            importance = 0.5
        return self.vault.create(
            type,
            text,
            title=title,
            tags=tags,
            importance=importance,
            source=source,
            extra=extra,
            allow_secrets=allow_secrets,
        )

    def forget(self, ref: str) -> Record:
        """Delete a record's file; git keeps its history."""
        return self.vault.delete(ref)
