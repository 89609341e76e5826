"""Reporting periods in the department's time zone: a day, a month, a
quarter, as UTC instants [start, end)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Period:
    name: str
    """`2026-11-25`, `2026-11`, `2026-Q4`, or a week: `2026-W48`."""
    start: datetime
    end: datetime


def _at(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def day_of(now: datetime, zone: ZoneInfo) -> Period:
    day = now.astimezone(zone).date()
    return Period(day.isoformat(), _at(day, zone), _at(day + timedelta(days=1), zone))


def month(year: int, number: int, zone: ZoneInfo) -> Period:
    first = date(year, number, 1)
    following = date(year + number // 12, number % 12 + 1, 1)
    return Period(f"{year:04d}-{number:02d}", _at(first, zone), _at(following, zone))


def quarter(year: int, number: int, zone: ZoneInfo) -> Period:
    first = date(year, 3 * number - 2, 1)
    following = date(year + number // 4, (3 * number) % 12 + 1, 1)
    return Period(f"{year:04d}-Q{number}", _at(first, zone), _at(following, zone))


def month_of(now: datetime, zone: ZoneInfo) -> Period:
    local = now.astimezone(zone)
    return month(local.year, local.month, zone)


YEARS = range(1900, 3000)
"""The years a report may cover (with the period before it, for comparison)."""


def parse(text: str, zone: ZoneInfo) -> Period:
    """`2026-11` (a month) or `2026-Q4` (a quarter); ValueError otherwise."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", text) or re.fullmatch(r"(\d{4})-[Qq]([1-4])", text)
    if found and int(found.group(1)) not in YEARS:
        raise ValueError(f"{text!r}: the year must be between {YEARS[0]} and {YEARS[-1]}")
    if found and "-Q" in text.upper():
        return quarter(int(found.group(1)), int(found.group(2)), zone)
    if found and 1 <= int(found.group(2)) <= 12:
        return month(int(found.group(1)), int(found.group(2)), zone)
    raise ValueError(f"{text!r} is not a month such as 2026-11 or a quarter such as 2026-Q4")


def previous(period: Period, zone: ZoneInfo) -> Period:
    """The period of the same length before (the month or quarter before)."""
    kind = "Q" if "Q" in period.name else "M"
    local = (period.start - timedelta(days=1)).astimezone(zone)
    if kind == "Q":
        return quarter(local.year, (local.month - 1) // 3 + 1, zone)
    return month(local.year, local.month, zone)


def weeks(period: Period, zone: ZoneInfo) -> list[Period]:
    """The ISO weeks the period touches, each cut to the period."""
    found = []
    day = period.start.astimezone(zone).date()
    last = (period.end - timedelta(microseconds=1)).astimezone(zone).date()
    while day <= last:
        monday = day - timedelta(days=day.weekday())
        year, week, _ = day.isocalendar()
        start = max(_at(monday, zone), period.start)
        end = min(_at(monday + timedelta(days=7), zone), period.end)
        found.append(Period(f"{year}-W{week:02d}", start, end))
        day = monday + timedelta(days=7)
    return found
