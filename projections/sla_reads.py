"""What is read from the SLA read model, and noted beside it: the open
limits and the breaches the queries list, the alerts due and the breaches
still to put on their cases that the monitor looks for, and the monitor's
notes in its alert ledger (the tables are `projections.sla`'s)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, literal_column, select

from projections.base import utc
from projections.sla_tables import RUNNING, sla_alert, sla_case, sla_clock

_WITH_CASE = (sla_case.c.kind, sla_case.c.customer_id, sla_case.c.tier, sla_case.c.priority, sla_case.c.assignee)


def open_limits(conn: Connection, *, assignee: str | None = None, tier: str | None = None,
                kind: str | None = None, metric: str | None = None, limit: int = 100,
                after: tuple[datetime | None, str] | None = None) -> list[dict[str, Any]]:
    """Running and paused limits with their case, the most urgent first
    (the earliest deadline; paused ones, which have none, last). Two reads,
    each in the order of an index, so a page costs its rows, not the number
    of limits running (one sorted read of all of them took 24 ms at 17,000).
    `after`: the (deadline, clock id) of the last limit of the page before
    (deadline None: a paused one)."""
    def page(where: Any, order: tuple[Any, ...], n: int) -> list[dict[str, Any]]:
        query = (select(sla_clock, *_WITH_CASE).join(sla_case, sla_case.c.case_id == sla_clock.c.case_id)
                 .where(where).order_by(*order).limit(n))
        return _rows(conn, _filtered(query, assignee=assignee, tier=tier, kind=kind, metric=metric))

    deadline, clock_id = sla_clock.c.deadline, sla_clock.c.clock_id
    found: list[dict[str, Any]] = []
    if after is None or after[0] is not None:
        running = (sla_clock.c.state == "running") & deadline.is_not(None)
        if after is not None:
            at = utc(after[0])
            running &= (deadline > at) | ((deadline == at) & (clock_id > after[1]))
        found = page(running, (deadline, clock_id), limit)
    if len(found) < limit:
        paused = sla_clock.c.state.in_(RUNNING) & deadline.is_(None)
        if after is not None and after[0] is None:
            paused &= clock_id > after[1]
        found += page(paused, (clock_id,), limit - len(found))
    return found


def breaches(conn: Connection, now: datetime, *, since: datetime | None = None, until: datetime | None = None,
             tier: str | None = None, kind: str | None = None, metric: str | None = None,
             limit: int = 1000, after: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
    """Limits whose deadline passed before their step, by `now`: those the
    events showed (`breached_at`) and those still running past it; the
    latest first (by the instant of the breach, then clock id). `since`/
    `until` bound that instant; `after`: the (instant, clock id) of the last
    breach of the page before. Two reads in the order of an index, merged,
    so a page costs its rows, not every breach of the store's history."""
    def latest(instant: Any, where: Any) -> list[dict[str, Any]]:
        if since is not None:
            where &= instant >= utc(since)
        if until is not None:
            where &= instant < utc(until)
        if after is not None:
            at = utc(after[0])
            where &= (instant < at) | ((instant == at) & (sla_clock.c.clock_id > after[1]))
        query = (select(sla_clock, *_WITH_CASE).join(sla_case, sla_case.c.case_id == sla_clock.c.case_id)
                 .where(where).order_by(instant.desc(), sla_clock.c.clock_id).limit(limit))
        return _rows(conn, _filtered(query, tier=tier, kind=kind, metric=metric))

    shown = latest(sla_clock.c.breached_at, sla_clock.c.breached_at.is_not(None))
    overdue = latest(sla_clock.c.deadline, (sla_clock.c.state == "running") & sla_clock.c.breached_at.is_(None)
                     & (sla_clock.c.deadline <= utc(now)))
    found = sorted(shown + overdue, key=lambda row: (-breach_instant(row).timestamp(), row["clock_id"]))
    return found[:limit]


def breach_instant(row: dict[str, Any]) -> datetime:
    """When a breach happened: as the events showed it, or the deadline passed."""
    return utc(row["breached_at"] or row["deadline"])


def _filtered(query: Any, **filters: str | None) -> Any:
    columns = {"assignee": sla_case.c.assignee, "tier": sla_case.c.tier, "kind": sla_case.c.kind,
               "metric": sla_clock.c.metric}
    for name, value in filters.items():
        if value is not None:
            query = query.where(columns[name] == value)
    return query


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    found = []
    for row in conn.execute(query).mappings():
        found.append({k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()})
    return found


def _raised(alert: str | None = None) -> Any:
    query = select(sla_alert.c.clock_id).where(sla_alert.c.clock_id == sla_clock.c.clock_id)
    return (query if alert is None else query.where(sla_alert.c.alert == alert)).exists()


def due_alerts(conn: Connection, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """The alerts due at `now` and not raised yet, the earliest first: a
    breach for every limit past its deadline (running, or stopped late)
    whose breach is neither raised nor on the case; a warning for every
    running limit past its warning instant but not its deadline."""
    now = utc(now)
    base = select(sla_clock, *_WITH_CASE).join(sla_case, sla_case.c.case_id == sla_clock.c.case_id)
    breach = base.add_columns(literal_column("'breached'").label("alert")).where(
        sla_clock.c.recorded.is_(False), ~_raised("breached"))
    running_over = breach.where(sla_clock.c.state == "running", sla_clock.c.deadline <= now)
    stopped_over = breach.where(sla_clock.c.breached_at.is_not(None))  # noted by an event: paused or stopped late
    # The deadline compared inside a function: an index on it cannot serve
    # the term, so the warning instant's does (`state = ? AND warning_at <= ?`:
    # the limits past their warning, what is due), not the deadline's (`state =
    # ? AND deadline > ?`: every running limit not yet late, which SQLite picked,
    # 8 ms a look at 30,000 open limits). SQLAlchemy drops SQLite's INDEXED BY.
    not_late = func.coalesce(sla_clock.c.deadline, now) > now
    warned = base.add_columns(literal_column("'warning'").label("alert")).where(
        sla_clock.c.state == "running", sla_clock.c.warning_at <= now, not_late,
        sla_clock.c.breached_at.is_(None), ~_raised())
    found = {row["clock_id"]: row for query in (running_over, stopped_over)
             for row in _rows(conn, query.limit(limit))}
    found = list(found.values()) + _rows(conn, warned.limit(limit))
    return sorted(found, key=lambda row: (row["breached_at"] or row["deadline"] or now, row["clock_id"]))[:limit]


def unrecorded_breaches(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Breaches raised whose `sla_breached` event is not on the case yet."""
    query = (select(sla_clock, *_WITH_CASE)
             .join(sla_case, sla_case.c.case_id == sla_clock.c.case_id)
             .join(sla_alert, (sla_alert.c.clock_id == sla_clock.c.clock_id) & (sla_alert.c.alert == "breached"))
             .where(sla_alert.c.recorded_at.is_(None), sla_clock.c.recorded.is_(False))
             .order_by(sla_alert.c.raised_at).limit(limit))
    return _rows(conn, query)


def mark_raised(conn: Connection, clock: str, alert: str, at: datetime) -> None:
    """Note an alert as raised (a second monitor may have noted it first)."""
    exists = conn.execute(select(sla_alert.c.clock_id).where(
        sla_alert.c.clock_id == clock, sla_alert.c.alert == alert)).first()
    if exists is None:
        conn.execute(sla_alert.insert().values(clock_id=clock, alert=alert, raised_at=utc(at)))


def mark_recorded(conn: Connection, clock: str, at: datetime) -> None:
    conn.execute(sla_alert.update().where(sla_alert.c.clock_id == clock, sla_alert.c.alert == "breached")
                 .values(recorded_at=utc(at)))
