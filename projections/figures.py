"""The department's figures, read from the read models: the live dashboard
and the monthly / quarterly quality report. Periods are in the department's
time zone (TICKETING_TIMEZONE)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Integer, and_, cast, func, select

from projections.activity import activity, activity_customer
from projections.base import utc
from projections.case_summary import case_summary
from projections.sla import sla_case, sla_clock
from ticketing.periods import Period, day_of, month_of, previous, weeks

OPEN = ("registered", "acknowledged", "analysed", "reopened", "dispatch_requested", "dispatched", "scheduled")
"""Statuses of work not done yet (a resolved case waits only for its callback)."""
DIMENSIONS = ("kind", "status", "priority", "tier", "category", "region", "assignee")
AGE_BUCKETS = (("under 1h", 3600), ("1-4h", 4 * 3600), ("4-24h", 86400), ("1-3d", 3 * 86400), ("over 3d", None))
TARGETS = {"satisfaction": 90.0, "on_time": 0.95, "first_contact": 0.80}
"""The handbooks' monthly targets: satisfaction >= 90 points, timeliness >= 95 %,
first-contact resolution >= 80 %."""
CASE_KINDS = ("complaint", "repair_job")


def _between(column: Any, period: Period) -> Any:
    return and_(column >= utc(period.start), column < utc(period.end))


def _count(conn: Connection, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(activity).where(*where)).scalar_one())


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def on_time(conn: Connection, period: Period, metric: str) -> dict[str, Any]:
    """Limits of `metric` on complaints and repair jobs that stopped in the
    period: met, missed, the share met (callback cases' own limits aside)."""
    rows = conn.execute(select(sla_clock.c.state, func.count())
                        .join(sla_case, sla_case.c.case_id == sla_clock.c.case_id).where(
        sla_case.c.kind.in_(CASE_KINDS), sla_clock.c.metric == metric, sla_clock.c.state.in_(("met", "missed")),
        _between(sla_clock.c.stopped_at, period)).group_by(sla_clock.c.state)).all()
    counts = {"met": 0, "missed": 0} | {state: int(n) for state, n in rows}
    return counts | {"rate": _rate(counts["met"], counts["met"] + counts["missed"])}


def figures(conn: Connection, period: Period) -> dict[str, Any]:
    """What happened in a period."""
    in_period = _between(activity.c.at, period)
    by_kind = {kind: {name: _count(conn, in_period, activity.c.kind == kind, activity.c.event == name)
                      for name in ("registered", "resolved")} for kind in CASE_KINDS}
    resolved_fc = conn.execute(select(func.count(), func.sum(cast(activity.c.first_contact, Integer))).where(
        in_period, activity.c.event == "resolved", activity.c.first_contact.is_not(None))).one()
    satisfaction = conn.execute(select(func.avg(activity.c.score), func.count()).where(
        in_period, activity.c.event == "revisited", activity.c.score.is_not(None))).one()
    return {
        "period": period.name, "start": period.start, "end": period.end,
        "registered": {kind: by_kind[kind]["registered"] for kind in CASE_KINDS},
        "resolved": {kind: by_kind[kind]["resolved"] for kind in CASE_KINDS},
        "first_contact_rate": _rate(int(resolved_fc[1] or 0), int(resolved_fc[0])),
        "first_response_on_time": on_time(conn, period, "first_response")["rate"],
        "resolution_on_time": on_time(conn, period, "resolution")["rate"],
        "callbacks_done": _count(conn, in_period, activity.c.kind == "callback", activity.c.event == "completed"),
        "callbacks_missed": _count(conn, in_period, activity.c.kind == "callback", activity.c.event == "missed"),
        "satisfaction": float(satisfaction[0]) if satisfaction[1] else None,
        "revisits": int(satisfaction[1]),
    }


def dashboard(conn: Connection, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """Open work by dimension and age, today's and this month's figures, and
    the limits at risk and breached now."""
    columns = [case_summary.c[name] for name in DIMENSIONS]
    open_rows = conn.execute(select(*columns, case_summary.c.registered_at)
                             .where(case_summary.c.status.in_(OPEN))).all()
    by = {name: Counter() for name in DIMENSIONS}
    backlog = dict.fromkeys((label for label, _ in AGE_BUCKETS), 0)
    for row in open_rows:
        for name, value in zip(DIMENSIONS, row, strict=False):
            by[name][value if value is not None else "(none)"] += 1
        age = (now - utc(row.registered_at)).total_seconds()
        label = next(label for label, limit in AGE_BUCKETS if limit is None or age < limit)
        backlog[label] += 1
    now_utc = utc(now)
    running = sla_clock.c.state == "running"
    breached = conn.execute(select(func.count()).where(
        sla_clock.c.state.in_(("running", "paused")),
        sla_clock.c.breached_at.is_not(None) | (running & (sla_clock.c.deadline <= now_utc)))).scalar_one()
    at_risk = conn.execute(select(func.count()).where(
        running, sla_clock.c.breached_at.is_(None), sla_clock.c.warning_at <= now_utc,
        sla_clock.c.deadline > now_utc)).scalar_one()
    return {
        "at": now, "timezone": zone.key, "open_total": len(open_rows),
        "open": {name: dict(counter.most_common()) for name, counter in by.items()},
        "backlog": backlog, "today": figures(conn, day_of(now, zone)), "month": figures(conn, month_of(now, zone)),
        "limits_at_risk": int(at_risk), "limits_breached": int(breached),
    }


def _top(conn: Connection, column: Any, period: Period, limit: int = 5) -> list[dict[str, Any]]:
    rows = conn.execute(select(column, func.count().label("n")).where(
        _between(activity.c.at, period), activity.c.kind == "complaint", activity.c.event == "registered",
        column.is_not(None)).group_by(column).order_by(func.count().desc(), column).limit(limit)).all()
    return [{"name": name, "count": int(n)} for name, n in rows]


def complaint_rate(conn: Connection, period: Period) -> float | None:
    """Complaints registered in the period per 100 customers known by its end."""
    customers = conn.execute(select(func.count()).select_from(activity_customer).where(
        activity_customer.c.registered_at < utc(period.end))).scalar_one()
    complaints = _count(conn, _between(activity.c.at, period), activity.c.kind == "complaint",
                        activity.c.event == "registered")
    return 100 * complaints / customers if customers else None


def typical_cases(conn: Connection, period: Period, limit: int = 5) -> list[dict[str, Any]]:
    """The cases that tell the period's story: the least satisfied, those
    escalated to a manager, those that breached the most limits."""
    in_period = _between(activity.c.at, period)
    found: dict[str, dict[str, Any]] = {}

    def add(rows: Any, why: str) -> None:
        for row in rows:
            case = found.setdefault(row.case_id, {
                "case_id": row.case_id, "kind": row.kind, "category": row.category, "product": row.product,
                "region": row.region, "tier": row.tier, "why": []})
            case["why"].append(why.format(**row._mapping))

    base = select(activity.c.case_id, activity.c.kind, activity.c.category, activity.c.product,
                  activity.c.region, activity.c.tier)
    add(conn.execute(base.add_columns(activity.c.score).where(
        in_period, activity.c.event == "revisited", activity.c.satisfied.is_(False))
        .order_by(activity.c.score, activity.c.position).limit(limit)).all(), "not satisfied at the callback "
        "(score {score})")
    add(conn.execute(base.where(in_period, activity.c.event == "escalated", activity.c.level == "manager")
                     .order_by(activity.c.position).limit(limit)).all(), "escalated to a manager")
    breaches = func.count().label("breaches")
    add(conn.execute(base.add_columns(breaches).where(in_period, activity.c.event == "sla_breached")
                     .group_by(*base.selected_columns).order_by(breaches.desc(), activity.c.case_id)
                     .limit(limit)).all(), "{breaches} service limit(s) breached")
    return list(found.values())


def report(conn: Connection, period: Period, zone: ZoneInfo) -> dict[str, Any]:
    """The quality report of a month or a quarter, with the period before for comparison."""
    before = previous(period, zone)
    now, then = figures(conn, period), figures(conn, before)
    rate, rate_before = complaint_rate(conn, period), complaint_rate(conn, before)
    trend = []
    for week in weeks(period, zone):
        average, count = conn.execute(select(func.avg(activity.c.score), func.count()).where(
            _between(activity.c.at, week), activity.c.event == "revisited", activity.c.score.is_not(None))).one()
        trend.append({"week": week.name, "start": week.start, "end": week.end,
                      "average": float(average) if count else None, "count": int(count)})
    limits = {metric: on_time(conn, period, metric)
              for metric in ("first_response", "plan", "resolution", "callback", "loop")}
    misses = []
    if now["satisfaction"] is not None and now["satisfaction"] < TARGETS["satisfaction"]:
        misses.append(f"satisfaction {now['satisfaction']:.1f} is below the target of {TARGETS['satisfaction']:.0f}")
    for metric, counts in limits.items():
        if counts["rate"] is not None and counts["rate"] < TARGETS["on_time"]:
            misses.append(f"{metric} on time {counts['rate']:.1%} is below the target of {TARGETS['on_time']:.0%}")
    if now["first_contact_rate"] is not None and now["first_contact_rate"] < TARGETS["first_contact"]:
        misses.append(f"first-contact resolution {now['first_contact_rate']:.1%} is below the target of "
                      f"{TARGETS['first_contact']:.0%}")
    return {
        "period": period.name, "start": period.start, "end": period.end, "timezone": zone.key,
        "figures": now, "previous": then, "complaint_rate": rate, "complaint_rate_previous": rate_before,
        "complaint_rate_change": (rate - rate_before) / rate_before if rate is not None and rate_before else None,
        "satisfaction_trend": trend, "on_time": limits,
        "top": {"categories": _top(conn, activity.c.category, period),
                "products": _top(conn, activity.c.product, period),
                "regions": _top(conn, activity.c.region, period)},
        "typical_cases": typical_cases(conn, period), "targets": TARGETS, "misses": misses,
    }
