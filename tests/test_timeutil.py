"""Timestamps memkit writes and the dates people type (`--since today`, `7d`, ISO dates)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memkit.timeutil import format_time, parse_time, parse_when

NOW = datetime(2026, 11, 29, 15, 42, 7, 123456, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("today", datetime(2026, 11, 29, tzinfo=timezone.utc)),
        ("  Today ", datetime(2026, 11, 29, tzinfo=timezone.utc)),
        ("yesterday", datetime(2026, 11, 28, tzinfo=timezone.utc)),
        ("7d", NOW - timedelta(days=7)),
        ("7 d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("36h", NOW - timedelta(hours=36)),
        ("0d", NOW),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=timezone.utc)),
        ("2026-11-01T08:30:00Z", datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)),
        ("2026-11-01 08:30", datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)),
        ("2026-11-01T10:30:00+02:00", datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_when_understands_what_people_type(typed: str, expected: datetime) -> None:
    assert parse_when(typed, now=NOW) == expected


@pytest.mark.parametrize("typed", ["", "soon", "7", "d7", "7y", "-3d", "2026-13-01", "last week"])
def test_parse_when_returns_none_for_what_it_cannot_read(typed: str) -> None:
    assert parse_when(typed, now=NOW) is None


def test_parse_when_treats_a_naive_now_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_when("today", now=naive) == datetime(2026, 11, 29, tzinfo=timezone.utc)


def test_parse_when_without_now_uses_the_clock() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    moment = parse_when("1h")
    after = datetime.now(timezone.utc)
    assert moment is not None
    assert before - timedelta(hours=1, seconds=1) <= moment <= after - timedelta(hours=1)


def test_parse_time_accepts_dates_and_datetimes() -> None:
    assert parse_time(date(2026, 1, 2)) == datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert parse_time(datetime(2026, 1, 2, 3)) == datetime(2026, 1, 2, 3, tzinfo=timezone.utc)
    assert parse_time(12) is None
    assert parse_time("not a date") is None


@given(st.datetimes(timezones=st.just(timezone.utc)))
def test_format_then_parse_round_trips_to_the_second(moment: datetime) -> None:
    text = format_time(moment)
    assert text.endswith("Z")
    assert parse_time(text) == moment.replace(microsecond=0)
