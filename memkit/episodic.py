"""Episodic day files: interactions as Markdown sections, messages as lines that keep their ids."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# `## 10:12 · session s-2026-11-04-a · Dana, assistant` (speakers optional, "-" also accepted)
_HEADING = re.compile(
    r"^##\s+(?P<time>\d{1,2}:\d{2}(?::\d{2})?)(?:\s*UTC)?\s*[·\-|]\s*session\s+`?(?P<session>[^\s`]+)`?"
    r"(?:\s*[·\-|]\s*(?P<speakers>.*))?\s*$"
)
# `- 10:12 **Dana** [m-0411-01]: message text`
_MESSAGE = re.compile(
    r"^-\s+(?:(?P<time>\d{1,2}:\d{2}(?::\d{2})?)\s+)?\*\*(?P<speaker>[^*]+)\*\*\s*"
    r"\[(?P<id>[^\]\s]+)\]\s*:\s?(?P<text>.*)$"
)


@dataclass
class Message:
    message_id: str
    speaker: str
    text: str
    time: str = ""  # HH:MM (UTC) as written
    line: int = 0  # 1-based line in the body


@dataclass
class Interaction:
    time: str
    session: str
    speakers: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    line: int = 0


def parse_day(body: str) -> list[Interaction]:
    """Interactions of a day file's body. Lines a person added that are not messages are kept in
    the file but are not messages (they still count as text of the day for search)."""
    interactions: list[Interaction] = []
    current: Interaction | None = None
    last: Message | None = None
    for number, line in enumerate(body.split("\n"), start=1):
        heading = _HEADING.match(line)
        if heading:
            speakers = [
                s.strip() for s in (heading.group("speakers") or "").split(",") if s.strip()
            ]
            current = Interaction(
                heading.group("time"), heading.group("session"), speakers, [], number
            )
            interactions.append(current)
            last = None
            continue
        message = _MESSAGE.match(line)
        if message and current is not None:
            last = Message(
                message.group("id"),
                message.group("speaker").strip(),
                message.group("text"),
                message.group("time") or "",
                number,
            )
            current.messages.append(last)
            continue
        if last is not None and line.startswith("  ") and line.strip():
            last.text += "\n" + line[2:]
            continue
        if not line.strip():
            continue
        last = None
    return interactions


def message_ids(body: str) -> set[str]:
    return {m.message_id for i in parse_day(body) for m in i.messages}


def _one_line(text: str) -> str:
    lines = text.strip().split("\n")
    return "\n".join([lines[0], *("  " + line if line.strip() else "" for line in lines[1:])])


def render_interaction(interaction: Interaction) -> str:
    """A section for one interaction, ready to append to a day file's body."""
    speakers = list(dict.fromkeys(m.speaker for m in interaction.messages))
    heading = f"## {interaction.time} · session {interaction.session}"
    if speakers:
        heading += " · " + ", ".join(speakers)
    lines = [heading, ""]
    for message in interaction.messages:
        stamp = f"{message.time} " if message.time else ""
        lines.append(
            f"- {stamp}**{message.speaker}** [{message.message_id}]: {_one_line(message.text)}"
        )
    return "\n".join(lines) + "\n"


def append_interaction(body: str, interaction: Interaction) -> str:
    body = body.rstrip("\n")
    section = render_interaction(interaction)
    return f"{body}\n\n{section}" if body.strip() else section
