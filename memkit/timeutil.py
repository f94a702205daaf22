"""Timestamps as memkit writes them: ISO 8601, UTC, seconds precision, a trailing Z."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    # isoformat, not strftime: glibc's %Y does not pad years before 1000 to four digits.
    return moment.astimezone(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def now_iso() -> str:
    return format_time(utcnow())


def parse_time(value: object) -> datetime | None:
    """An aware UTC datetime from an ISO string (or date/datetime); None when it is not one.

    A date alone means midnight UTC; a time without offset is taken as UTC.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if _DATE_ONLY.match(text):
            text += "T00:00:00"
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_when(text: str, now: datetime | None = None) -> datetime | None:
    """Dates a person types on the command line: ISO dates/times, 'today', 'yesterday', '7d', '2w'."""
    now = now or utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    now = now.astimezone(timezone.utc)
    lowered = text.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if lowered == "today":
        return midnight
    if lowered == "yesterday":
        return midnight - timedelta(days=1)
    match = re.fullmatch(r"(\d+)\s*([hdw])", lowered)
    if match:
        amount = int(match.group(1))
        unit = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
        return now - amount * unit[match.group(2)]
    return parse_time(text)
