"""How a figure reads, wherever it is shown (the CLI's dashboard, the report
files, the console): one place, so the views cannot disagree on what an
absent figure or a rate on a handful of cases says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NO_DATA = "no data"
SMALL_BASE = 5
"""A rate over fewer cases than this is shown with its base: 100 % of 1 is not a trend."""


def share(value: float | None, base: int | None = None) -> str:
    """A rate as a percentage; `no data` when nothing was counted, never 0 %."""
    if value is None or base == 0:
        return NO_DATA
    text = f"{100 * value:.1f}%"
    return f"{text} (of {base})" if base is not None and base < SMALL_BASE else text


def score(value: float | None, digits: int = 1) -> str:
    return NO_DATA if value is None else f"{value:.{digits}f}"


def time_left(seconds: float | None) -> str:
    """A limit's time left (negative: overdue), as the console's countdown shows it."""
    if seconds is None:
        return "-"
    sign, left = ("-" if seconds < 0 else ""), int(abs(round(seconds)))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    return f"{sign}{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{sign}{minutes:02d}m {secs:02d}s"


def instant(value: str | None) -> str:
    """An RFC 3339 instant as people read it (to the second; UTC unless it says otherwise)."""
    if not value:
        return "-"
    from datetime import datetime

    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    zone = at.strftime("%Z").replace("UTC+00:00", "UTC") or "UTC"
    return f"{at:%Y-%m-%d %H:%M:%S} {zone}"


FIGURES: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("complaints registered", lambda f: str(f["registered"]["complaint"])),
    ("repair jobs registered", lambda f: str(f["registered"]["repair_job"])),
    ("resolved", lambda f: str(sum(f["resolved"].values()))),
    ("first-contact resolution", lambda f: share(f["first_contact_rate"])),
    ("first response on time", lambda f: share(f["first_response_on_time"])),
    ("resolution on time", lambda f: share(f["resolution_on_time"])),
    ("callbacks done / missed", lambda f: f"{f['callbacks_done']} / {f['callbacks_missed']}"),
    ("average satisfaction", lambda f: score(f["satisfaction"])),
]
"""A period's figures (the dashboard's today and month), label and reading, in the order shown."""

OPEN_BY = ("kind", "status", "priority", "tier", "category", "region", "assignee")

FORMATS: dict[str, Any] = {"share": share, "score": score, "time_left": time_left, "instant": instant, "FIGURES": FIGURES, "OPEN_BY": OPEN_BY,
                           "NO_DATA": NO_DATA}
"""For templates (Jinja globals)."""
