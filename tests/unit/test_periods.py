"""Reporting periods in the department's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ticketing.periods import day_of, month_of, parse, previous, weeks

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_month_and_a_quarter_start_at_local_midnight() -> None:
    november = parse("2026-11", SHANGHAI)
    assert november.start == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert november.end == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    q4 = parse("2026-q4", SHANGHAI)
    assert (q4.name, q4.start, q4.end) == ("2026-Q4", november.start - (november.start - datetime(
        2026, 9, 30, 16, 0, tzinfo=UTC)), datetime(2026, 12, 31, 16, 0, tzinfo=UTC))
    assert previous(parse("2026-01", SHANGHAI), SHANGHAI).name == "2025-12"
    assert previous(parse("2026-Q1", SHANGHAI), SHANGHAI).name == "2025-Q4"
    with pytest.raises(ValueError, match="2026-11"):
        parse("2026-13", SHANGHAI)


def test_today_and_this_month_follow_the_local_date() -> None:
    late_utc = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 1 December, 01:00 in Shanghai
    assert day_of(late_utc, SHANGHAI).name == "2026-12-01"
    assert month_of(late_utc, SHANGHAI).name == "2026-12"
    assert month_of(late_utc, ZoneInfo("UTC")).name == "2026-11"


def test_weeks_cover_the_period_exactly() -> None:
    november = parse("2026-11", SHANGHAI)
    found = weeks(november, SHANGHAI)
    assert found[0].start == november.start and found[-1].end == november.end
    assert all(a.end == b.start for a, b in zip(found, found[1:], strict=False))
    assert [w.name for w in found][:2] == ["2026-W44", "2026-W45"]


def test_times_are_written_with_four_digit_years() -> None:
    from datetime import UTC, datetime

    from contracts.types import rfc3339

    assert rfc3339(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"
    assert rfc3339(datetime(2026, 11, 25, 2, 5, 15, 123456, tzinfo=UTC)) == "2026-11-25T02:05:15.123456Z"
