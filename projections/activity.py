"""Activity: one row per case event, with the case's dimensions as they were
when it happened (kind, customer, tier, category, product, region,
priority) and the measures the department reports on (first contact,
satisfaction, compensation, escalation level, responsible party). The
dashboard's "today" and "this month" and the quality report are sums over a
period of these rows; a reopened case keeps its first resolution here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from projections.base import Envelope, Rows, empty, utc

metadata = MetaData()

activity_case = Table(
    "activity_case",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("customer_id", String(36), nullable=False),
    Column("tier", String(20), nullable=False),
    Column("category", String(30)),
    Column("product", String(200)),
    Column("region", String(200)),
    Column("priority", String(10)),
    Column("channel", String(20)),
)

activity_customer = Table(
    "activity_customer",
    metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("tier", String(20), nullable=False),
    Column("region", String(200)),
    Column("registered_at", DateTime(timezone=True), nullable=False),
)

activity = Table(
    "activity",
    metadata,
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("case_id", String(36), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("event", String(30), nullable=False, index=True),
    Column("customer_id", String(36), nullable=False, index=True),
    Column("tier", String(20), nullable=False),
    Column("category", String(30)),
    Column("product", String(200)),
    Column("region", String(200)),
    Column("priority", String(10)),
    Column("first_contact", Boolean),
    Column("satisfied", Boolean),
    Column("score", Integer),
    Column("amount", String(20)),  # compensation (complaints) or charge (repair jobs)
    Column("level", String(20)),  # escalated to
    Column("responsible_party", String(20)),
    Column("metric", String(20)),  # sla_breached
    # The figures count one kind of event in a period: each count is a range
    # of one of these, the period's rows only, whatever the history's size.
    Index("ix_activity_event_at", "event", "at"),
    Index("ix_activity_kind_event_at", "kind", "event", "at"),
)

DEFAULT_TIER = "basic"


class Activity:
    name = "activity"
    metadata = metadata

    def apply(self, conn: Connection, events: list[Envelope]) -> None:
        cases_in = {e["aggregate_id"] for e in events if e["aggregate_type"] != "customer"}
        customer_ids = {e["aggregate_id"] for e in events if e["aggregate_type"] == "customer"}
        customer_ids |= {e["data"]["customer_id"] for e in events if "customer_id" in e["data"]}
        cases = Rows(conn, activity_case, activity_case.c.case_id, cases_in)
        customer_ids |= {row["customer_id"] for row in cases.rows.values()}  # events after the first carry none
        customers = Rows(conn, activity_customer, activity_customer.c.customer_id, customer_ids)
        rows = []
        for event in events:
            name, data = event["type"].split(".", 1)[1], event["data"]
            at = utc(datetime.fromisoformat(event["occurred_at"]))
            if event["aggregate_type"] == "customer":
                if name == "registered":
                    customers.put(event["aggregate_id"], {"customer_id": event["aggregate_id"], "tier": data["tier"],
                                                          "region": data["region"], "registered_at": at})
                elif name == "tier_changed" and (customer := customers.get(event["aggregate_id"])):
                    customers.put(event["aggregate_id"], customer | {"tier": data["tier"]})
                continue
            case = cases.get(event["aggregate_id"])
            if case is None:
                case = _new_case(event, customers.get(data["customer_id"]))
                cases.put(event["aggregate_id"], case)
            if name == "priority_changed":
                case = case | {"priority": data["priority"]}
                cases.put(event["aggregate_id"], case)
            customer = customers.get(case["customer_id"])
            rows.append({
                "position": event["position"], "at": at, "case_id": case["case_id"], "kind": case["kind"],
                "event": name, "customer_id": case["customer_id"],
                "tier": customer["tier"] if customer else case["tier"], "category": case["category"],
                "product": case["product"], "region": case["region"], "priority": case["priority"],
                "first_contact": data.get("first_contact") if name == "resolved" else None,
                "satisfied": data.get("satisfied"), "score": data.get("score"),
                "amount": data.get("compensation") or data.get("charge") if name == "resolved" else None,
                "level": data.get("level") if name == "escalated" else None,
                "responsible_party": data.get("responsible_party"),
                "metric": data.get("metric") if name == "sla_breached" else None,
            })
        customers.write()
        cases.write()
        if rows:
            conn.execute(activity.insert(), rows)

    def reset(self, conn: Connection) -> None:
        empty(conn, metadata)


def _new_case(event: Envelope, customer: dict[str, Any] | None) -> dict[str, Any]:
    data = event["data"]
    return {"case_id": event["aggregate_id"], "kind": event["aggregate_type"], "customer_id": data["customer_id"],
            "tier": customer["tier"] if customer else DEFAULT_TIER, "category": data.get("category"),
            "product": data.get("product") or data.get("product_model"),
            "region": data.get("region") or (customer["region"] if customer else None),
            "priority": data.get("priority"), "channel": data.get("channel")}
