"""Conversations into episodic memory: the import formats, day files, idempotent appends."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memkit import ids
from memkit.episodic import (
    Interaction,
    Message,
    append_interaction,
    message_ids,
    parse_day,
    render_interaction,
)
from memkit.errors import (
    ConflictError,
    ImportFormatError,
    InvalidRecord,
    RecordNotFound,
    SecretRefused,
)
from memkit.records import MAX_RECORD_BYTES, Record
from memkit.secret_guard import check_text, find_secrets, redact_secrets
from memkit.timeutil import parse_time, utcnow
from memkit.vault import Vault

EPISODIC_FOLDER = "memory/episodic"
# A day's file holds at most this much, so that it stays a valid record (4 MB) with its
# front-matter and a person's additions; a larger day continues in part files
# (`YYYY-MM-DD.part-2.md`, ...), which memkit reads as the same day.
DAY_PART_BYTES = MAX_RECORD_BYTES - 256 * 1024
# One message must fit in one part file with room to spare.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
_PART = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2})(?:\.part-(?P<number>\d+))?\.md$")
# Control characters other than tab, newline and carriage return (line ends are normalised)
# break the day file's Markdown lines (NUL makes it binary): refused, not silently dropped.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
        text=text.replace("\r\n", "\n").replace("\r", "\n").strip(),
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


_TOO_DEEP = "JSON nested too deeply; a message is a flat object with 'text' and 'speaker'"


def _deep_line(text: str) -> int:
    """The line of the array element that nests too deeply (its first line)."""
    depth = 0
    for position, char in enumerate(text):
        if char in "[{":
            depth += 1
            if depth == 2:
                start = position
            if depth > 100:
                return text.count("\n", 0, start) + 1
        elif char in "]}":
            depth -= 1
    return 1


def message_problems(
    message: ConversationMessage, where: str, number: int, *, allow_secrets: bool = False
) -> list[str]:
    """Why a message cannot be written into a day file, as `FILE:LINE: why` lines (empty when
    it can): not valid Unicode, control characters, too large, a credential in a name."""
    at = f"{where}:{message.line}" if message.line else f"{where}: message {number}"
    problems: list[str] = []
    fields = {
        "text": message.text,
        "speaker": message.speaker,
        "id": message.message_id,
        "session": message.session,
    }
    for key, value in fields.items():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as error:
            code = ord(value[error.start])
            problems.append(
                f"{at}: {key!r} holds a lone surrogate (\\u{code:04x}), which is not valid "
                "Unicode; fix the exporter or remove it"
            )
            continue
        bad = _CONTROL.search(value) if key == "text" else re.search(r"[\x00-\x1f\x7f]", value)
        if bad:
            problems.append(
                f"{at}: {key!r} holds the control character U+{ord(bad.group()):04X}"
                + (" (NUL)" if bad.group() == "\x00" else "")
                + "; a day file is Markdown text"
            )
        if key == "text" and size > MAX_MESSAGE_BYTES:
            problems.append(
                f"{at}: the message is {size:,} bytes; one message may be at most "
                f"{MAX_MESSAGE_BYTES:,} bytes (split it into several messages)"
            )
        elif key != "text" and size > 200:
            problems.append(f"{at}: {key!r} is {size:,} characters long; at most 200")
        if key != "text" and value:
            try:
                check_text(value, allow_secrets=allow_secrets)
            except SecretRefused as error:
                problems.append(
                    f"{at}: {key!r} holds a credential ({'; '.join(error.findings)}). "
                    "Rewrite it without the credential: names and ids are written into the "
                    "day file as they are"
                )
    return problems


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
        except RecursionError:
            raise ImportFormatError([f"{where}:{_deep_line(text)}: {_TOO_DEEP}"]) from None
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
                # Every bad line is named at once (credentials are checked when recording,
                # where allow_secrets is known).
                problems.extend(message_problems(message, where, line, allow_secrets=True))
                messages.append(message)
    else:
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except RecursionError:
                problems.append(f"{where}:{line}: {_TOO_DEEP}")
                continue
            except ValueError as error:
                problems.append(f"{where}:{line}: not valid JSON: {getattr(error, 'msg', error)}")
                continue
            message = _message_from(value, where, line, problems)
            if message is not None:
                # Every bad line is named at once (credentials are checked when recording,
                # where allow_secrets is known).
                problems.extend(message_problems(message, where, line, allow_secrets=True))
                messages.append(message)
    if problems:
        raise ImportFormatError(problems)
    if not messages:
        raise ImportFormatError([f"{where}:1: no messages found"])
    return messages


def day_id(day: str, part: int = 1) -> str:
    """The id of a day file (or of its part file): the same on every machine (a ULID at the
    day's midnight)."""
    midnight = parse_time(day)
    assert midnight is not None
    key = day if part == 1 else f"{day}/part-{part}"
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:10], "big")
    return ids.encode_ulid(int(midnight.timestamp() * 1000), digest)


def day_order(record: Record) -> tuple[str, int, str]:
    """Sort key of day files: by day, then part number (part-10 after part-9)."""
    name = str(record.path).rsplit("/", 1)[-1]
    match = _PART.match(name)
    if match is None:
        return (str(record.meta.get("date", "")), 0, name)
    return (match.group("day"), int(match.group("number") or 1), name)


def _interaction(session: str, group: list[ConversationMessage]) -> Interaction:
    assert group[0].time is not None
    return Interaction(
        time=group[0].time.strftime("%H:%M"),
        session=session,
        messages=[
            Message(m.message_id, m.speaker, m.text, m.time.strftime("%H:%M") if m.time else "")
            for m in group
        ],
    )


def _fitting(group: list[ConversationMessage], session: str, room: int) -> int:
    """How many of the group's first messages fit, as one interaction, in `room` bytes."""
    if room <= 0:
        return 0
    speakers = {m.speaker for m in group}
    # The blank line before the section, its heading (the speakers counted for all of the
    # group: an upper bound) and the blank line after the heading.
    used = 4 + len(f"## 00:00 · session {session} · ".encode()) + 8
    used += sum(len(s.encode()) + 2 for s in speakers)
    for count, message in enumerate(group):
        line = render_interaction(
            Interaction(
                "00:00",
                session,
                messages=[Message(message.message_id, message.speaker, message.text, "00:00")],
            )
        ).split("\n", 2)[2]
        used += len(line.encode())
        if used > room:
            return count
    return len(group)


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
                for number in range(1, self._last_part(day) + 1):  # a day's part files too
                    with contextlib.suppress(RecordNotFound, InvalidRecord):
                        found |= message_ids(
                            self.vault.read_record(self.part_path(day, number)).body
                        )
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
            ordinals[message.session] = ordinals.get(message.session, 0) + 1
            # The id is derived before an undated message is given the time of the import:
            # importing the same file again, a second or a day later, finds the same ids.
            message.message_id = message.message_id or _derived_id(
                message, ordinals[message.session]
            )
            if message.time is None:
                message.time = now
            prepared.append(message)
        return prepared

    def record(
        self,
        messages: Sequence[ConversationMessage],
        *,
        session: str = "",
        allow_secrets: bool = False,
        now: datetime | None = None,
        where: str = "messages",
    ) -> ImportReport:
        """Append messages to their day files, skipping ones already recorded (by id). All or
        nothing: every message is checked first, and one bad message means nothing is written
        (ImportFormatError naming `where` and the line or number of each bad message)."""
        report = ImportReport()
        prepared = self.prepare(messages, session=session, now=now)
        problems = [
            problem
            for number, message in enumerate(prepared, start=1)
            for problem in message_problems(message, where, number, allow_secrets=allow_secrets)
        ]
        if problems:
            raise ImportFormatError(problems)
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
                self._append(day, session_id, group, allow_secrets=allow_secrets)
                report.added += len(group)
                if day not in report.days:
                    report.days.append(day)
                if session_id not in report.sessions:
                    report.sessions.append(session_id)
        report.latest_session = prepared[-1].session
        return report

    def part_path(self, day: str, number: int) -> str:
        """The day file (number 1) or its continuation `YYYY-MM-DD.part-N.md`."""
        first = self.day_path(day)
        return first if number == 1 else first[: -len(".md")] + f".part-{number}.md"

    def _last_part(self, day: str) -> int:
        folder = self.vault.root / self.day_path(day)
        numbers = [1]
        for sibling in folder.parent.glob(f"{day}.part-*.md"):
            match = _PART.match(sibling.name)
            if match and match.group("number"):
                numbers.append(int(match.group("number")))
        return max(numbers)

    def _append(
        self, day: str, session: str, group: list[ConversationMessage], *, allow_secrets: bool
    ) -> None:
        """Append the group to the day's last part file, starting a new part when it is full."""
        number = self._last_part(day)
        remaining = group
        attempts = 0
        while remaining:
            relpath = self.part_path(day, number)
            try:
                record: Record | None = self.vault.read_record(relpath)
            except RecordNotFound:
                record = None
            except InvalidRecord:
                # A day file left over the record limit (by a memkit before part files) stays
                # as it is for a person to split; the day goes on in the next part.
                if self.vault.safe_path(relpath).stat().st_size <= DAY_PART_BYTES:
                    raise
                number += 1
                continue
            # A new file's front-matter (id, type, title, dates) takes well under 1 KB.
            used = record.fingerprint[1] if record is not None and record.fingerprint else 1024
            take = _fitting(remaining, session, DAY_PART_BYTES - used)
            if take == 0:
                if record is None:  # cannot be: message_problems bounds a message's size
                    raise ImportFormatError([f"{relpath}:1: a message does not fit in a day file"])
                number += 1  # this part is full: the day goes on in the next one
                continue
            try:
                self._write_part(
                    day, number, relpath, record, session, remaining[:take], allow_secrets
                )
            except ConflictError as error:
                if error.kept:
                    # Both versions kept (a conflict copy): reported, not retried. What was
                    # written stays; importing again adds only what is missing.
                    raise
                attempts += 1
                if attempts >= 3:
                    raise ConflictError(
                        relpath, "it kept changing while memkit tried to append"
                    ) from None
                continue  # a person saved the file just now: read theirs and append again
            remaining = remaining[take:]

    def _write_part(
        self,
        day: str,
        number: int,
        relpath: str,
        record: Record | None,
        session: str,
        group: list[ConversationMessage],
        allow_secrets: bool,
    ) -> None:
        interaction = _interaction(session, group)
        if record is None:
            self.vault.create(
                "episodic",
                append_interaction("", interaction),
                title=day if number == 1 else f"{day} (part {number})",
                extra={"date": day},
                relpath=relpath,
                allow_secrets=allow_secrets,  # texts were redacted; ids, speakers checked
                # The same id and timestamps on every machine: two machines that start the
                # same day write identical front-matter, so git's union merge joins them.
                record_id=day_id(day) if number == 1 else day_id(day, number),
                created=f"{day}T00:00:00Z",
            )
            return
        record.body = append_interaction(record.body, interaction)
        # `updated` stays as it is: appends then only add lines at the end, which the union
        # merge driver of .gitattributes joins without conflict.
        self.vault.update(record, touch=False, allow_secrets=allow_secrets)

    def import_text(
        self, text: str, where: str, *, session: str = "", allow_secrets: bool = False
    ) -> ImportReport:
        messages = parse_conversation(text, where)
        return self.record(messages, session=session, allow_secrets=allow_secrets, where=where)

    def session_messages(self, session: str) -> list[Message]:
        found: list[Message] = []
        for record in sorted(self.vault.scan(["episodic"]).records, key=day_order):
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
