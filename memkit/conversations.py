"""Conversations into episodic memory: the import formats, day files, idempotent appends."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memkit import ids
from memkit.episodic import Interaction, Message, append_interaction, message_ids, parse_day
from memkit.errors import ConflictError, ImportFormatError, InvalidRecord, RecordNotFound
from memkit.secret_guard import find_secrets, redact_secrets
from memkit.timeutil import parse_time, utcnow
from memkit.vault import Vault

EPISODIC_FOLDER = "memory/episodic"


@dataclass
class ConversationMessage:
    """One message to record: what the import formats and agents hand over."""

    text: str
    speaker: str = "user"
    message_id: str = ""
    session: str = ""
    time: datetime | None = None
    line: int = 0  # where it came from in an imported file


@dataclass
class ImportReport:
    added: int = 0
    skipped: int = 0  # already recorded (same message id)
    redacted: int = 0  # messages whose credentials were replaced by [REDACTED:...]
    days: list[str] = field(default_factory=list)  # day files written
    sessions: list[str] = field(default_factory=list)
    latest_session: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "skipped": self.skipped,
            "redacted": self.redacted,
            "days": self.days,
            "sessions": self.sessions,
            "latest_session": self.latest_session,
        }


def _message_from(
    data: Any, where: str, line: int, problems: list[str]
) -> ConversationMessage | None:
    if not isinstance(data, dict):
        problems.append(
            f"{where}:{line}: expected a JSON object for a message, got {type(data).__name__}"
        )
        return None
    text = data.get("text", data.get("content"))
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}:{line}: a message needs non-empty 'text' or 'content' (a string)")
        return None
    speaker = data.get("speaker", data.get("role", "user"))
    if not isinstance(speaker, str) or not speaker.strip():
        problems.append(f"{where}:{line}: 'speaker'/'role' must be a non-empty string")
        return None
    moment = None
    if data.get("time") is not None:
        moment = parse_time(data["time"]) if isinstance(data["time"], str) else None
        if moment is None:
            problems.append(
                f"{where}:{line}: 'time' must be an ISO 8601 date and time, got {data['time']!r}"
            )
            return None
    for key in ("id", "session"):
        if key in data and (not isinstance(data[key], (str, int)) or isinstance(data[key], bool)):
            problems.append(f"{where}:{line}: {key!r} must be a string")
            return None
    if "id" in data and any(c.isspace() or c in "[]" for c in str(data["id"])):
        problems.append(f"{where}:{line}: 'id' must not contain spaces or brackets")
        return None
    return ConversationMessage(
        text=text.strip(),
        speaker=speaker.strip().replace("*", ""),
        message_id=str(data.get("id", "")),
        session=str(data.get("session", "")),
        time=moment,
        line=line,
    )


def _array_elements(text: str) -> list[tuple[int, Any]]:
    """(line, value) of each element of a JSON array, so errors can name their line."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    elements: list[tuple[int, Any]] = []
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text):
            raise ValueError("the JSON array is not closed with ']'")
        if text[position] == "]":
            return elements
        line = text.count("\n", 0, position) + 1
        value, position = decoder.raw_decode(text, position)
        elements.append((line, value))


def parse_conversation(text: str, where: str) -> list[ConversationMessage]:
    """Messages from JSONL (one per line) or a JSON array of {role, content}; every bad line is
    reported as `FILE:LINE: why` and nothing is returned until all are fixed."""
    problems: list[str] = []
    messages: list[ConversationMessage] = []
    if text.startswith("\ufeff"):
        text = text[1:]
    if text.lstrip().startswith("["):
        try:
            elements = _array_elements(text)
        except ValueError as error:
            raise ImportFormatError(
                [
                    f"{where}:{getattr(error, 'lineno', 1)}: not valid JSON: "
                    f"{getattr(error, 'msg', error)}"
                ]
            ) from None
        for line, value in elements:
            message = _message_from(value, where, line, problems)
            if message is not None:
                messages.append(message)
    else:
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError as error:
                problems.append(f"{where}:{line}: not valid JSON: {getattr(error, 'msg', error)}")
                continue
            message = _message_from(value, where, line, problems)
            if message is not None:
                messages.append(message)
    if problems:
        raise ImportFormatError(problems)
    if not messages:
        raise ImportFormatError([f"{where}:1: no messages found"])
    return messages


def day_id(day: str) -> str:
    """The id of a day file: the same on every machine (a ULID at the day's midnight)."""
    midnight = parse_time(day)
    assert midnight is not None
    digest = int.from_bytes(hashlib.sha256(day.encode()).digest()[:10], "big")
    return ids.encode_ulid(int(midnight.timestamp() * 1000), digest)


def _derived_id(message: ConversationMessage, ordinal: int) -> str:
    """A stable id for a message that came without one, so a re-import adds nothing twice."""
    stamp = message.time.isoformat() if message.time else ""
    key = f"{message.session}\x1f{stamp}\x1f{message.speaker}\x1f{message.text}\x1f{ordinal}"
    return "m-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


class Episodes:
    """Episodic memory: one Markdown file per day, interactions appended as sections."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def day_path(self, day: str) -> str:
        year, month, _ = day.split("-")
        return f"{EPISODIC_FOLDER}/{year}/{month}/{day}.md"

    def known_message_ids(self, days: Iterable[str] | None = None) -> set[str]:
        """Ids of the messages recorded (on just these days, when given)."""
        found: set[str] = set()
        if days is not None:
            for day in days:
                with contextlib.suppress(RecordNotFound, InvalidRecord):
                    found |= message_ids(self.vault.read_record(self.day_path(day)).body)
            return found
        for record in self.vault.scan(["episodic"]).records:
            found |= message_ids(record.body)
        return found

    def prepare(
        self,
        messages: Sequence[ConversationMessage],
        *,
        session: str = "",
        now: datetime | None = None,
    ) -> list[ConversationMessage]:
        """Copies of the messages with session, time and a stable id filled in."""
        now = now or utcnow()
        ordinals: dict[str, int] = {}
        prepared: list[ConversationMessage] = []
        for original in messages:
            message = ConversationMessage(**vars(original))
            message.session = message.session or session or f"s-{now.date().isoformat()}"
            if message.time is None:
                message.time = now
            ordinals[message.session] = ordinals.get(message.session, 0) + 1
            message.message_id = message.message_id or _derived_id(
                message, ordinals[message.session]
            )
            prepared.append(message)
        return prepared

    def record(
        self,
        messages: Sequence[ConversationMessage],
        *,
        session: str = "",
        allow_secrets: bool = False,
        now: datetime | None = None,
    ) -> ImportReport:
        """Append messages to their day files, skipping ones already recorded (by id)."""
        report = ImportReport()
        prepared = self.prepare(messages, session=session, now=now)
        for message in prepared:
            if find_secrets(message.text) and not allow_secrets:
                message.text = redact_secrets(message.text)
                report.redacted += 1
        if not prepared:
            return report
        with self.vault.write_lock():
            # Messages that carry their own time (an agent's turn) can only be recorded on their
            # days: look at those day files, not every one (unbounded with retention 0).
            dated = all(m.time is not None for m in messages)
            known = self.known_message_ids(
                {m.time.date().isoformat() for m in prepared if m.time} if dated else None
            )
            groups: dict[tuple[str, str], list[ConversationMessage]] = {}
            for message in prepared:
                if message.message_id in known:
                    report.skipped += 1
                    continue
                known.add(message.message_id)
                assert message.time is not None
                groups.setdefault((message.time.date().isoformat(), message.session), []).append(
                    message
                )
            for (day, session_id), group in groups.items():
                self._append(day, session_id, group)
                report.added += len(group)
                if day not in report.days:
                    report.days.append(day)
                if session_id not in report.sessions:
                    report.sessions.append(session_id)
        report.latest_session = prepared[-1].session
        return report

    def _append(self, day: str, session: str, group: list[ConversationMessage]) -> None:
        assert group[0].time is not None
        interaction = Interaction(
            time=group[0].time.strftime("%H:%M"),
            session=session,
            messages=[
                Message(m.message_id, m.speaker, m.text, m.time.strftime("%H:%M") if m.time else "")
                for m in group
            ],
        )
        relpath = self.day_path(day)
        for _attempt in range(3):
            try:
                record = self.vault.read_record(relpath)
            except RecordNotFound:
                body = append_interaction("", interaction)
                self.vault.create(
                    "episodic",
                    body,
                    title=day,
                    extra={"date": day},
                    relpath=relpath,
                    allow_secrets=True,
                    # The same id and timestamps on every machine: two machines that start the
                    # same day write identical front-matter, so git's union merge joins them.
                    record_id=day_id(day),
                    created=f"{day}T00:00:00Z",
                )
                return
            record.body = append_interaction(record.body, interaction)
            try:
                # `updated` stays as it is: appends then only add lines at the end, which the
                # union merge driver of .gitattributes joins without conflict.
                self.vault.update(record, touch=False, allow_secrets=True)
                return
            except ConflictError:
                continue  # a person saved the file just now: read their version and append again
        raise ConflictError(relpath, "it kept changing while memkit tried to append")

    def import_text(
        self, text: str, where: str, *, session: str = "", allow_secrets: bool = False
    ) -> ImportReport:
        messages = parse_conversation(text, where)
        return self.record(messages, session=session, allow_secrets=allow_secrets)

    def session_messages(self, session: str) -> list[Message]:
        found: list[Message] = []
        for record in sorted(self.vault.scan(["episodic"]).records, key=lambda r: str(r.path)):
            for interaction in parse_day(record.body):
                if interaction.session == session:
                    found.extend(interaction.messages)
        return found


def session_default(name: str) -> str:
    """A session id from a file name (`chat-2026-11-04.jsonl` -> `chat-2026-11-04`); `stdin`
    for standard input, so that importing the same text twice still adds nothing twice."""
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    if not stem or stem in ("-", "<stdin>"):
        return "stdin"
    return stem


def decode_conversation(data: bytes, where: str) -> str:
    """A conversation file's text; bytes that are not UTF-8 are named by line and offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ImportFormatError(
            [
                f"{where}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
                f"{error.start}); save the file as UTF-8"
            ]
        ) from None
