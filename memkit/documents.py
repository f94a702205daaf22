"""What the search index holds for a record: one document, or one per message of a day file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from memkit.index import IndexDoc
from memkit.records import Record
from memkit.timeutil import parse_time

# Neighbouring turns indexed with a message, at lower weights: questions often use the words
# of the turn before or after the one that holds the answer (a question and its reply), or of
# a turn a little further away in the same exchange. The nearest go into `context`, the
# others, up to SURROUNDING_TURNS away on each side, into `surround`.
NEIGHBOUR_TURNS = 1
SURROUNDING_TURNS = 3


def _flatten(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k} {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(_flatten(v) for v in value)
    return "" if value is None else str(value)


def _earliest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def _context(record: Record) -> str:
    meta = record.meta
    parts: list[str] = []
    if record.type == "entity":
        parts += [_flatten(meta.get(k)) for k in ("name", "kind", "aliases", "attributes")]
    for key in ("rationale", "alternatives", "area", "signal", "store", "session", "reason"):
        if key in meta:
            parts.append(_flatten(meta[key]))
    return " ".join(p for p in parts if p)


def documents_for(record: Record) -> list[IndexDoc]:
    """The index documents of one parsed record."""
    assert record.path is not None
    meta = record.meta
    created = parse_time(meta.get("created"))
    updated = parse_time(meta.get("updated")) or created
    importance = record.importance if record.importance is not None else 0.5
    # A fact no longer valid (valid_to passed) hides like an expired one.
    expires = _earliest(parse_time(meta.get("expires")), parse_time(meta.get("valid_to")))
    superseded = bool(meta.get("superseded_by"))
    common: dict[str, Any] = {
        "path": record.path,
        "record_id": record.id,
        "type": record.type,
        "tags": record.tags,
        "importance": importance,
        "expires": expires,
        "superseded": superseded,
    }
    if record.type == "episodic":
        docs = _message_documents(record, common, created, updated)
        if docs:
            return docs
    body_line = (record.front_matter_text or "").count("\n") + 3 if record.front_matter_text else 1
    return [
        IndexDoc(
            key=record.path,
            title=record.title,
            text=record.body,
            context=_context(record),
            created=created,
            updated=updated,
            line=body_line,
            session=str(meta.get("session", "")),
            **common,
        )
    ]


def _message_documents(
    record: Record, common: dict[str, Any], created: datetime | None, updated: datetime | None
) -> list[IndexDoc]:
    assert record.path is not None
    body_offset = (record.front_matter_text or "").count("\n") + 2
    day = str(record.meta.get("date", ""))
    day_words = ""
    day_start = parse_time(day) if day else None
    if day_start is not None:
        day_words = day_start.strftime("%A %-d %B %Y")
    docs: list[IndexDoc] = []
    from memkit.episodic import parse_day  # (here: a sync with no day file to read skips it)

    for interaction in parse_day(record.body):
        turns = interaction.messages
        for position, message in enumerate(turns):
            near = NEIGHBOUR_TURNS
            far = max(SURROUNDING_TURNS, near)
            neighbours = turns[max(0, position - near) : position] + turns[position + 1 :][:near]
            further = (
                turns[max(0, position - far) : max(0, position - near)]
                + turns[position + 1 + near :][: far - near]
            )
            context = " ".join(
                [message.speaker, interaction.session, day_words]
                + [f"{n.speaker}: {n.text}" for n in neighbours]
            )
            moment = created
            if day_start is not None and (message.time or interaction.time):
                moment = parse_time(f"{day}T{message.time or interaction.time}") or day_start
            docs.append(
                IndexDoc(
                    key=f"{record.path}#{message.message_id}",
                    title=f"{message.speaker}, {day}",
                    text=message.text,
                    context=context,
                    created=moment,
                    updated=moment or updated,
                    line=body_offset + message.line,
                    message_id=message.message_id,
                    session=interaction.session,
                    speaker=message.speaker,
                    surround=" ".join(n.text for n in further),
                    **common,
                )
            )
    return docs
