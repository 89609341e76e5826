"""The dangerous-customer read model: the facts about each customer that the
rules count (see ticketing/danger.py), each case's customer, each customer's
tier and last clearance. The list itself is the rules applied to these facts
at an instant: facts age out as time passes, with no event."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

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

from projections.base import Envelope, empty, utc
from projections.rows import Rows, insert_many

metadata = MetaData()

danger_fact = Table(
    "danger_fact",
    metadata,
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("customer_id", String(36), nullable=False),  # read through ix_danger_fact_customer_at
    Column("signal", String(30), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("case_id", String(36)),
    Column("amount", String(20)),
    Column("lifted", Boolean, nullable=False),
    Index("ix_danger_fact_customer_at", "customer_id", "at"),
)

danger_case = Table(
    "danger_case",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("customer_id", String(36), nullable=False),
)

danger_customer = Table(
    "danger_customer",
    metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("tier", String(20), nullable=False),
    Column("region", String(200)),
    Column("cleared_at", DateTime(timezone=True)),
)

WATCHED_TIERS = ("vip", "strategic")


def fact_of(event: Envelope, tier: str | None) -> tuple[str, Decimal | None, bool] | None:
    """(signal, amount, lifted) for an event the rules count, else None."""
    kind, name = event["type"].split(".", 1)
    data = event["data"]
    if kind == "customer":
        if name in ("flagged", "unflagged"):
            return f"{data['mark']}_mark", None, name == "unflagged"
        return None
    if event["type"] == "complaint.registered":
        return "complaint", None, False
    if name == "revisited" and data.get("satisfied") is False:
        return "unsatisfied_callback", None, False
    if name == "sla_breached" and tier in WATCHED_TIERS:
        return "vip_breach", None, False
    if event["type"] == "complaint.escalated" and data.get("level") == "manager":
        return "manager_escalation", None, False
    if event["type"] == "complaint.resolved" and data.get("compensation"):
        return "compensation", Decimal(data["compensation"]), False
    if event["type"] == "complaint.withdrawn" or (
            event["type"] == "complaint.analysed" and data.get("responsible_party") == "customer"):
        return "unfounded", None, False
    return None


class DangerousCustomers:
    name = "danger"
    metadata = metadata

    def apply(self, conn: Connection, events: list[Envelope]) -> None:
        case_ids = {e["aggregate_id"] for e in events if e["aggregate_type"] != "customer"}
        cases = Rows(conn, danger_case, danger_case.c.case_id, case_ids)
        for event in events:  # new cases first: their customer is needed below
            if event["aggregate_type"] != "customer" and "customer_id" in event["data"] \
                    and cases.get(event["aggregate_id"]) is None:
                cases.put(event["aggregate_id"], {"case_id": event["aggregate_id"],
                                                  "customer_id": event["data"]["customer_id"]})
        customer_ids = {e["aggregate_id"] for e in events if e["aggregate_type"] == "customer"}
        customer_ids |= {row["customer_id"] for row in cases.rows.values()}
        customers = Rows(conn, danger_customer, danger_customer.c.customer_id, customer_ids)
        facts = []
        for event in events:
            at = utc(datetime.fromisoformat(event["occurred_at"]))
            name, data = event["type"].split(".", 1)[1], event["data"]
            if event["aggregate_type"] == "customer":
                customer_id, case_id = event["aggregate_id"], data.get("case_id")
                if name == "registered":
                    customers.put(customer_id, {"customer_id": customer_id, "tier": data["tier"],
                                                "region": data["region"], "cleared_at": None})
                elif name == "tier_changed":  # a fact too: the monitor's listing shows the tier
                    customers.put(customer_id, customers.get(customer_id) | {"tier": data["tier"]})
                    facts.append({"position": event["position"], "customer_id": customer_id,
                                  "signal": "tier_changed", "at": at, "case_id": None, "amount": None,
                                  "lifted": False})
                    continue
                elif name == "danger_cleared":  # a fact too, so the monitor sees news of the customer
                    customers.put(customer_id, customers.get(customer_id) | {"cleared_at": at})
                    facts.append({"position": event["position"], "customer_id": customer_id, "signal": "cleared",
                                  "at": at, "case_id": None, "amount": None, "lifted": False})
                    continue
            else:
                case = cases.get(event["aggregate_id"])
                if case is None:  # a case from before this projection knew its customer
                    continue
                customer_id, case_id = case["customer_id"], event["aggregate_id"]
            customer = customers.get(customer_id)
            found = fact_of(event, customer["tier"] if customer else None)
            if found is not None:
                signal, amount, lifted = found
                facts.append({"position": event["position"], "customer_id": customer_id, "signal": signal,
                              "at": at, "case_id": case_id, "amount": str(amount) if amount is not None else None,
                              "lifted": lifted})
        cases.write()
        customers.write()
        if facts:
            insert_many(conn, danger_fact, facts)

    def reset(self, conn: Connection) -> None:
        empty(conn, metadata)
