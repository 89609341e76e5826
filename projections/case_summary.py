"""Case summary: one row per case (complaints and callbacks) with its kind,
customer, status, priority, category, assignee, the time of each loop step,
the cases it follows and was followed by, and its version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Connection, DateTime, Integer, MetaData, String, Table, bindparam, select

from projections.base import Envelope

metadata = MetaData()

case_summary = Table(
    "case_summary",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False, index=True),
    Column("customer_id", String(36), nullable=False, index=True),
    Column("status", String(20), nullable=False, index=True),
    Column("priority", String(10)),
    Column("category", String(30)),
    Column("channel", String(20)),
    Column("region", String(200)),
    Column("product", String(200)),
    Column("assignee", String(200), index=True),
    Column("department", String(20)),
    Column("escalation", String(20)),
    Column("waiting_on_customer", Boolean, nullable=False, default=False),
    Column("cycle", Integer, nullable=False, default=1),
    Column("follows_case_id", String(36), index=True),
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
    Column("missed_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

COLUMNS = [column.name for column in case_summary.columns]

# Events whose name is the status the case is in afterwards.
STATUS_EVENTS = {"acknowledged", "analysed", "resolved", "revisited", "reopened", "withdrawn", "closed",
                 "missed", "completed"}
CREATED = {"registered": "registered", "scheduled": "scheduled"}


def evolve(row: dict[str, Any] | None, event: Envelope) -> dict[str, Any]:
    """The row of a case after one more of its events (None before the first)."""
    kind, name = event["type"].split(".", 1)
    at = datetime.fromisoformat(event["occurred_at"])
    data = event["data"]
    if row is None:
        row = dict.fromkeys(COLUMNS)
        row.update(case_id=event["aggregate_id"], kind=kind, customer_id=data["customer_id"],
                   status=CREATED[name], priority=data.get("priority"), category=data.get("category"),
                   channel=data.get("channel"), region=data.get("region"), product=data.get("product"),
                   follows_case_id=data.get("follows_case_id") or data.get("case_id"),
                   due_at=_time(data.get("due_at")), waiting_on_customer=False, cycle=1, registered_at=at)
    else:
        row = dict(row)
    row.update(version=event["aggregate_version"], updated_at=at)
    if name in STATUS_EVENTS:
        row["status"] = name
        row[f"{name}_at"] = at
    if name == "assigned":
        row["assignee"] = data["assignee"]
    if name in ("assigned", "analysed") and data.get("department"):
        row["department"] = data["department"]
    if name == "escalated":
        row["escalation"] = data["level"]
    if name in ("customer_awaited", "resumed", "withdrawn"):
        row["waiting_on_customer"] = name == "customer_awaited"
    if name == "resolved":
        row.update(first_contact=data["first_contact"], compensation=data.get("compensation"))
    if name in ("revisited", "completed"):
        row.update(satisfied=data["satisfied"], score=data["score"])
    if name == "attempted":
        row["attempts"] = data["attempt"]
    if name == "follow_up_opened":
        row["follow_up_case_id"] = data["follow_up_case_id"]
    if name == "reopened":
        row.update(cycle=row["cycle"] + 1, resolved_at=None, revisited_at=None, closed_at=None,
                   first_contact=None, compensation=None, satisfied=None, score=None)
    return row


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_update = (case_summary.update().where(case_summary.c.case_id == bindparam("_case_id"))
           .values({name: bindparam(name) for name in COLUMNS if name != "case_id"}))


class CaseSummary:
    name = "case_summary"
    metadata = metadata

    def apply(self, conn: Connection, events: list[Envelope]) -> None:
        """Read the batch's cases once, evolve them in memory, write each
        changed row once (one insert and one update statement in all)."""
        ids = list({event["aggregate_id"] for event in events})
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            query = select(case_summary).where(case_summary.c.case_id.in_(chunk))
            rows.update((row["case_id"], dict(row)) for row in conn.execute(query).mappings())
        existing = set(rows)
        for event in events:
            rows[event["aggregate_id"]] = evolve(rows.get(event["aggregate_id"]), event)
        inserts = [row for case_id, row in rows.items() if case_id not in existing]
        updates = [row | {"_case_id": case_id} for case_id, row in rows.items() if case_id in existing]
        if inserts:
            conn.execute(case_summary.insert(), inserts)
        if updates:
            conn.execute(_update, updates)

    def reset(self, conn: Connection) -> None:
        conn.execute(case_summary.delete())
