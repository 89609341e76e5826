"""Case summary: one row per case with its kind, customer, status, priority,
category, assignee, the time of each loop step, and its version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Connection, DateTime, Integer, MetaData, String, Table

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
    Column("follows_case_id", String(36)),
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
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Events whose name is the status the case is in afterwards.
STATUS_EVENTS = {"acknowledged", "analysed", "resolved", "revisited", "reopened", "withdrawn", "closed"}


def _changes(name: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    c = case_summary.c
    changes: dict[str, Any] = {}
    if name in STATUS_EVENTS:
        changes["status"] = name
        changes[f"{name}_at"] = at
    if name == "assigned":
        changes["assignee"] = data["assignee"]
    if name in ("assigned", "analysed") and data.get("department"):
        changes["department"] = data["department"]
    if name == "escalated":
        changes["escalation"] = data["level"]
    if name in ("customer_awaited", "resumed", "withdrawn"):
        changes["waiting_on_customer"] = name == "customer_awaited"
    if name == "resolved":
        changes.update(first_contact=data["first_contact"], compensation=data.get("compensation"))
    if name == "revisited":
        changes.update(satisfied=data["satisfied"], score=data["score"])
    if name == "reopened":
        changes.update(cycle=c.cycle + 1, resolved_at=None, revisited_at=None, closed_at=None,
                       first_contact=None, compensation=None, satisfied=None, score=None)
    return changes


class CaseSummary:
    name = "case_summary"
    metadata = metadata

    def apply(self, conn: Connection, event: Envelope) -> None:
        kind, name = event["type"].split(".", 1)
        at = datetime.fromisoformat(event["occurred_at"])
        data = event["data"]
        if name == "registered":
            conn.execute(case_summary.insert().values(
                case_id=event["aggregate_id"], kind=kind, customer_id=data["customer_id"],
                status="registered", priority=data.get("priority"), category=data.get("category"),
                channel=data.get("channel"), region=data.get("region"), product=data.get("product"),
                follows_case_id=data.get("follows_case_id"), waiting_on_customer=False, cycle=1,
                registered_at=at, version=event["aggregate_version"], updated_at=at,
            ))
            return
        conn.execute(
            case_summary.update()
            .where(case_summary.c.case_id == event["aggregate_id"])
            .values(version=event["aggregate_version"], updated_at=at, **_changes(name, data, at))
        )

    def reset(self, conn: Connection) -> None:
        conn.execute(case_summary.delete())
