"""The department's figures, read from the read models: the live dashboard
and the monthly / quarterly quality report. Periods are in the department's
time zone (TICKETING_TIMEZONE)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, select

from projections.activity import activity, customer_day, figure_day, figure_top
from projections.base import utc
from projections.case_summary import DIMENSIONS, OPEN, case_summary, open_work
from projections.sla_tables import sla_clock, sla_on_time
from ticketing.periods import Period, day_of, month_of, previous, weeks

AGE_BUCKETS = (("under 1h", 3600), ("1-4h", 4 * 3600), ("4-24h", 86400), ("1-3d", 3 * 86400), ("over 3d", None))
TARGETS = {"satisfaction": 90.0, "on_time": 0.95, "first_contact": 0.80}
"""The handbooks' monthly targets: satisfaction >= 90 points, timeliness >= 95 %,
first-contact resolution >= 80 %."""
CASE_KINDS = ("complaint", "repair_job")


def _between(column: Any, period: Period) -> Any:
    return and_(column >= utc(period.start), column < utc(period.end))


def _days(column: Any, period: Period, zone: ZoneInfo) -> Any:
    """The local days of a period (it begins and ends at local midnights)."""
    return and_(column >= period.start.astimezone(zone).date(), column < period.end.astimezone(zone).date())


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def on_time(conn: Connection, period: Period, metric: str, zone: ZoneInfo) -> dict[str, Any]:
    """Limits of `metric` on complaints and repair jobs that stopped in the
    period: met, missed, the share met (callback cases' own limits aside)."""
    met, missed = conn.execute(select(func.coalesce(func.sum(sla_on_time.c.met), 0),
                                      func.coalesce(func.sum(sla_on_time.c.missed), 0)).where(
        sla_on_time.c.metric == metric, sla_on_time.c.kind.in_(CASE_KINDS),
        _days(sla_on_time.c.day, period, zone))).one()
    return {"met": int(met), "missed": int(missed), "rate": _rate(int(met), int(met) + int(missed))}


def figures(conn: Connection, period: Period, zone: ZoneInfo) -> dict[str, Any]:
    """What happened in a period: sums of the day counters."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    measures = ("n", "first_contact_n", "first_contact_yes", "score_sum", "score_n")
    rows = conn.execute(select(figure_day.c.kind, figure_day.c.event,
                               *(func.sum(figure_day.c[m]).label(m) for m in measures))
                        .where(_days(figure_day.c.day, period, zone))
                        .group_by(figure_day.c.kind, figure_day.c.event)).mappings()
    for row in rows:
        counts[(row["kind"], row["event"])] = {m: int(row[m] or 0) for m in measures}

    def total(measure: str, event: str, kind: str | None = None) -> int:
        return sum(c[measure] for (k, e), c in counts.items() if e == event and kind in (None, k))
    score_n = total("score_n", "revisited")
    return {
        "period": period.name, "start": period.start, "end": period.end,
        "registered": {kind: total("n", "registered", kind) for kind in CASE_KINDS},
        "resolved": {kind: total("n", "resolved", kind) for kind in CASE_KINDS},
        "first_contact_rate": _rate(total("first_contact_yes", "resolved"), total("first_contact_n", "resolved")),
        "first_response_on_time": on_time(conn, period, "first_response", zone)["rate"],
        "resolution_on_time": on_time(conn, period, "resolution", zone)["rate"],
        "callbacks_done": total("n", "completed", "callback"),
        "callbacks_missed": total("n", "missed", "callback"),
        "satisfaction": total("score_sum", "revisited") / score_n if score_n else None,
        "revisits": score_n,
    }


def dashboard(conn: Connection, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """Open work by dimension and age, today's and this month's figures, and
    the limits at risk and breached now."""
    by: dict[str, Counter[str]] = {name: Counter() for name in DIMENSIONS}
    for dimension, value, n in conn.execute(select(open_work.c.dimension, open_work.c.value, open_work.c.n)):
        by[dimension][value] += n  # kept by the case summary as cases change: no case is read
    # By age: only the cases registered in the last AGE_BUCKETS' span are
    # counted (an index range on status and registration); the rest is older.
    registered = case_summary.c.registered_at
    younger = {label: conn.execute(select(func.count()).where(
        case_summary.c.status.in_(OPEN), registered > utc(now - timedelta(seconds=limit)))).scalar_one()
        for label, limit in AGE_BUCKETS if limit is not None}
    open_total = sum(by["kind"].values())
    backlog, counted = {}, 0
    for label, _limit in AGE_BUCKETS:
        within = younger.get(label, open_total)
        backlog[label], counted = within - counted, within
    now_utc = utc(now)
    running = sla_clock.c.state == "running"
    breached = conn.execute(select(func.count()).where(  # each count an index range: what is late, not all
        sla_clock.c.state.in_(("running", "paused")), sla_clock.c.breached_at.is_not(None))).scalar_one()
    breached += conn.execute(select(func.count()).where(
        running, sla_clock.c.deadline <= now_utc, sla_clock.c.breached_at.is_(None))).scalar_one()
    at_risk = conn.execute(select(func.count()).where(
        running, sla_clock.c.breached_at.is_(None), sla_clock.c.warning_at <= now_utc,
        sla_clock.c.deadline > now_utc)).scalar_one()
    return {
        "at": now, "timezone": zone.key, "open_total": open_total,
        "open": {name: dict(counter.most_common()) for name, counter in by.items()},
        "backlog": backlog, "today": figures(conn, day_of(now, zone), zone),
        "month": figures(conn, month_of(now, zone), zone),
        "limits_at_risk": int(at_risk), "limits_breached": int(breached),
    }


def _top(conn: Connection, dimension: str, period: Period, zone: ZoneInfo, limit: int = 5) -> list[dict[str, Any]]:
    n = func.sum(figure_top.c.n).label("n")
    rows = conn.execute(select(figure_top.c.value, n).where(
        figure_top.c.dimension == dimension, _days(figure_top.c.day, period, zone))
        .group_by(figure_top.c.value).order_by(n.desc(), figure_top.c.value).limit(limit)).all()
    return [{"name": name, "count": int(count)} for name, count in rows]


def complaint_rate(conn: Connection, period: Period, zone: ZoneInfo) -> float | None:
    """Complaints registered in the period per 100 customers known by its end."""
    customers = conn.execute(select(func.coalesce(func.sum(customer_day.c.n), 0)).where(
        customer_day.c.day < period.end.astimezone(zone).date())).scalar_one()
    complaints = conn.execute(select(func.coalesce(func.sum(figure_day.c.n), 0)).where(
        figure_day.c.kind == "complaint", figure_day.c.event == "registered",
        _days(figure_day.c.day, period, zone))).scalar_one()
    return 100 * int(complaints) / int(customers) if customers else None


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
    now, then = figures(conn, period, zone), figures(conn, before, zone)
    rate, rate_before = complaint_rate(conn, period, zone), complaint_rate(conn, before, zone)
    trend = []
    for week in weeks(period, zone):
        total, count = conn.execute(select(func.sum(figure_day.c.score_sum), func.sum(figure_day.c.score_n)).where(
            figure_day.c.event == "revisited", _days(figure_day.c.day, week, zone))).one()
        trend.append({"week": week.name, "start": week.start, "end": week.end,
                      "average": int(total) / int(count) if count else None, "count": int(count or 0)})
    limits = {metric: on_time(conn, period, metric, zone)
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
        "top": {"categories": _top(conn, "category", period, zone),
                "products": _top(conn, "product", period, zone),
                "regions": _top(conn, "region", period, zone)},
        "typical_cases": typical_cases(conn, period), "targets": TARGETS, "misses": misses,
    }
