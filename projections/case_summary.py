"""Case summary: one row per case (complaints and callbacks) with its kind,
customer and the customer's tier, status, priority, category, assignee, the
time of each loop step, the cases it follows and was followed by, and its
version; and one row per customer with tier, region and marks (never
contact data)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
)

from projections.base import READ_BY_APPLY, Envelope, empty
from projections.rows import Rows

metadata = MetaData()

OPEN = ("registered", "acknowledged", "analysed", "reopened", "dispatch_requested", "dispatched", "scheduled")
"""Statuses of work not done yet (a resolved case waits only for its callback)."""
DIMENSIONS = ("kind", "status", "priority", "tier", "category", "region", "assignee")
"""What the dashboard counts open work by (`open_work`)."""
NONE = "(none)"

case_summary = Table(
    "case_summary",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("customer_id", String(36), nullable=False),
    Column("tier", String(20)),
    Column("status", String(20), nullable=False),
    Column("priority", String(10)),
    Column("category", String(30)),
    Column("channel", String(20)),
    Column("region", String(200)),
    Column("product", String(200)),
    Column("assignee", String(200)),
    Column("department", String(20)),
    Column("escalation", String(20)),
    Column("waiting_on_customer", Boolean, nullable=False, default=False),
    Column("cycle", Integer, nullable=False, default=1),
    Column("follows_case_id", String(36)),
    Column("follow_up_case_id", String(36)),
    Column("due_at", DateTime(timezone=True)),
    Column("attempts", Integer),
    Column("first_contact", Boolean),
    Column("compensation", String(20)),
    Column("satisfied", Boolean),
    Column("score", Integer),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("analysed_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("revisited_at", DateTime(timezone=True)),
    Column("reopened_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("withdrawn_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("missed_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_case_summary_status_registered", "status", "registered_at"),  # open work by age
    # a tier change moves the customer's cases
    Index("ix_case_summary_customer_id", "customer_id", info={READ_BY_APPLY: True}),
)

open_work = Table(
    "open_work",
    metadata,
    Column("key", String(250), primary_key=True),  # "dimension|value"
    Column("dimension", String(20), nullable=False),
    Column("value", String(220), nullable=False),
    Column("n", Integer, nullable=False),
)
"""Open cases counted by each dimension's value, kept as the cases change:
the dashboard reads these rows, not the open cases (a row whose count
falls to 0 is deleted, so a rebuild leaves the same rows)."""

customers = Table(
    "customer_summary",
    metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("tier", String(20), nullable=False, index=True),
    Column("region", String(200)),
    Column("malicious", Boolean, nullable=False),
    Column("extortion", Boolean, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

COLUMNS = [column.name for column in case_summary.columns]
CUSTOMER_COLUMNS = [column.name for column in customers.columns]

# Events whose name is the status the case is in afterwards.
STATUS_EVENTS = {"acknowledged", "analysed", "resolved", "revisited", "reopened", "withdrawn", "closed",
                 "missed", "completed", "dispatched", "cancelled"}
CREATED = {"registered": "registered", "scheduled": "scheduled"}


def evolve_customer(row: dict[str, Any] | None, event: Envelope) -> dict[str, Any]:
    """The row of a customer after one more of its events (None before the first)."""
    name, data = event["type"].split(".", 1)[1], event["data"]
    at = datetime.fromisoformat(event["occurred_at"])
    if row is None:
        row = dict.fromkeys(CUSTOMER_COLUMNS)
        row.update(customer_id=event["aggregate_id"], tier=data["tier"], region=data["region"],
                   malicious=False, extortion=False, registered_at=at)
    else:
        row = dict(row)
    row.update(version=event["aggregate_version"], updated_at=at)
    if name == "tier_changed":
        row["tier"] = data["tier"]
    if name in ("flagged", "unflagged"):
        row[data["mark"]] = name == "flagged"
    return row


def evolve(row: dict[str, Any] | None, event: Envelope) -> dict[str, Any]:
    """The row of a case after one more of its events (None before the first)."""
    kind, name = event["type"].split(".", 1)
    at = datetime.fromisoformat(event["occurred_at"])
    data = event["data"]
    if row is None:
        row = dict.fromkeys(COLUMNS)
        row.update(case_id=event["aggregate_id"], kind=kind, customer_id=data["customer_id"],
                   status=CREATED[name], priority=data.get("priority"), category=data.get("category"),
                   channel=data.get("channel"), region=data.get("region"),
                   product=data.get("product") or data.get("product_model"),
                   follows_case_id=data.get("follows_case_id") or data.get("case_id"),
                   due_at=_time(data.get("due_at")), waiting_on_customer=False, cycle=1, registered_at=at)
    else:
        row = dict(row)
    row.update(version=event["aggregate_version"], updated_at=at)
    if name in STATUS_EVENTS:
        row["status"] = name
        row[f"{name}_at"] = at
    row["assignee"] = assignee_after(row["assignee"], name, data)
    if name == "dispatch_requested":
        row["status"] = name
    if name in ("assigned", "analysed") and data.get("department"):
        row["department"] = data["department"]
    if name == "escalated":
        row["escalation"] = data["level"]
    if name in ("customer_awaited", "resumed", "withdrawn"):
        row["waiting_on_customer"] = name == "customer_awaited"
    if name == "resolved":
        row.update(first_contact=data.get("first_contact"),
                   compensation=data.get("compensation") or data.get("charge"))
    if name in ("revisited", "completed"):
        row.update(satisfied=data["satisfied"], score=data["score"])
    if name == "attempted":
        row["attempts"] = data["attempt"]
    if name == "priority_changed":
        row["priority"] = data["priority"]
    if name == "follow_up_opened":
        row["follow_up_case_id"] = data["follow_up_case_id"]
    if name == "reopened":
        row.update(cycle=row["cycle"] + 1, resolved_at=None, revisited_at=None, closed_at=None,
                   first_contact=None, compensation=None, satisfied=None, score=None)
    return row


def assignee_after(current: str | None, name: str, data: dict[str, Any]) -> str | None:
    """Who has the case after an event: the assignee, or the technician sent."""
    if name == "assigned":
        return str(data["assignee"])
    if name in ("dispatch_requested", "dispatched"):
        return str(data["technician"])
    return current


def _counted(row: dict[str, Any]) -> Counter[tuple[str, str]]:
    """What a case adds to the open-work counters: one per dimension while open."""
    if row["status"] not in OPEN:
        return Counter()
    return Counter((name, str(row[name]) if row[name] is not None else NONE) for name in DIMENSIONS)


def _count_open(conn: Connection, change: Counter[tuple[str, str]]) -> None:
    change = Counter({key: n for key, n in change.items() if n})
    if not change:
        return
    kept = Rows(conn, open_work, open_work.c.key, {f"{d}|{v}" for d, v in change})
    gone = []
    for (dimension, value), n in change.items():
        key = f"{dimension}|{value}"
        total = n + ((kept.get(key) or {}).get("n") or 0)
        if total:
            kept.put(key, {"key": key, "dimension": dimension, "value": value, "n": total})
        elif key in kept.existing:
            gone.append(key)
    kept.write()
    if gone:
        conn.execute(open_work.delete().where(open_work.c.key.in_(gone)))


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class CaseSummary:
    name = "case_summary"
    metadata = metadata

    def apply(self, conn: Connection, events: list[Envelope]) -> None:
        """Read the batch's rows once, evolve them in memory, write each
        changed row once (an insert and an update statement per table)."""
        customer_events = [e for e in events if e["aggregate_type"] == "customer"]
        case_events = [e for e in events if e["aggregate_type"] != "customer"]
        customer_ids = {e["aggregate_id"] for e in customer_events}
        customer_ids |= {e["data"]["customer_id"] for e in case_events if "customer_id" in e["data"]}
        people = Rows(conn, customers, customers.c.customer_id, customer_ids)
        cases = Rows(conn, case_summary, case_summary.c.case_id, {e["aggregate_id"] for e in case_events})
        before = {key: _counted(row) for key, row in cases.rows.items()}
        for event in events:
            if event["aggregate_type"] == "customer":
                people.put(event["aggregate_id"], evolve_customer(people.get(event["aggregate_id"]), event))
                continue
            row = evolve(cases.get(event["aggregate_id"]), event)
            if customer := people.get(row["customer_id"]):  # the customer's, unless the case says otherwise
                row["tier"] = row["tier"] or customer["tier"]
                row["region"] = row["region"] or customer["region"]
            cases.put(event["aggregate_id"], row)
        people.write()
        cases.write()
        change: Counter[tuple[str, str]] = Counter()
        for key in cases.changed:
            change.subtract(before.get(key, {}))
            change.update(_counted(cases.rows[key]))
        for event in customer_events:  # cases follow their customer's tier
            if event["type"] == "customer.tier_changed":
                tier, whose = event["data"]["tier"], case_summary.c.customer_id == event["aggregate_id"]
                for old, n in conn.execute(select(case_summary.c.tier, func.count()).where(
                        whose, case_summary.c.status.in_(OPEN)).group_by(case_summary.c.tier)):
                    change[("tier", old or NONE)] -= n
                    change[("tier", tier)] += n
                conn.execute(case_summary.update().where(whose).values(tier=tier))
        _count_open(conn, change)

    def stale(self, conn: Connection) -> bool:
        """Cases open but no open-work counters: they were added by a newer version."""
        return (conn.execute(select(open_work.c.key).limit(1)).first() is None
                and conn.execute(select(case_summary.c.case_id).where(
                    case_summary.c.status.in_(OPEN)).limit(1)).first() is not None)

    def reset(self, conn: Connection) -> None:
        empty(conn, metadata)
