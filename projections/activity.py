"""Activity: one row per case event, with the case's dimensions as they were
when it happened (kind, customer, tier, category, product, region,
priority) and the measures the department reports on (first contact,
satisfaction, compensation, escalation level, responsible party). The
dashboard's "today" and "this month" and the quality report are sums over a
period: of day counters kept beside these rows (per day in the department's
time zone, so a quarter is some ninety rows whatever the store's size), and
of these rows for the typical cases; a reopened case keeps its first
resolution here."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    select,
)

from projections.base import UTC_ZONE, Envelope, counted_elsewhere, empty, utc
from projections.rows import Rows, insert_many, insert_missing

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
    Column("at", DateTime(timezone=True), nullable=False),
    Column("case_id", String(36), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("event", String(30), nullable=False),
    Column("customer_id", String(36), nullable=False),
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
    # The figures read one kind of event in a period: a range of this index,
    # the period's rows only, whatever the history's size. The only index:
    # a row per event, and each index more is written at every event (the
    # ones on case, customer, time and kind were read by nothing).
    Index("ix_activity_event_at", "event", "at"),
)

# Day counters: what the figures sum. Keyed by a text key ("day|kind|event")
# so a batch reads and writes the few it touches at once.
figure_day = Table(
    "figure_day",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("day", Date, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("event", String(30), nullable=False),
    Column("n", Integer, nullable=False),
    Column("first_contact_n", Integer, nullable=False),  # resolutions that say whether at first contact
    Column("first_contact_yes", Integer, nullable=False),
    Column("score_sum", Integer, nullable=False),  # callbacks' scores
    Column("score_n", Integer, nullable=False),
    Index("ix_figure_day_day", "day"),
)

figure_top = Table(
    "figure_top",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("day", Date, nullable=False),
    Column("dimension", String(20), nullable=False),  # category, product, region of complaints registered
    Column("value", String(200), nullable=False),
    Column("n", Integer, nullable=False),
    Index("ix_figure_top_dimension_day", "dimension", "day"),
)

customer_day = Table(
    "customer_day",
    metadata,
    Column("day", Date, primary_key=True),
    Column("n", Integer, nullable=False),  # customers registered that day
)

counted_in = Table(
    "activity_zone",
    metadata,
    Column("name", String(20), primary_key=True),
    Column("zone", String(64), nullable=False),
)
"""The time zone the day counters were kept in: another one means a rebuild."""

TOP_DIMENSIONS = ("category", "product", "region")
DEFAULT_TIER = "basic"


class Activity:
    name = "activity"
    metadata = metadata

    def __init__(self, zone: ZoneInfo = UTC_ZONE) -> None:
        self.zone = zone

    def stale(self, conn: Connection) -> bool:
        """Its day counters were kept in another time zone."""
        kept = conn.execute(select(counted_in.c.zone).where(counted_in.c.name == "days")).scalar()
        return counted_elsewhere(conn, self.name, kept, self.zone)

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
            insert_many(conn, activity, rows)
        self._count(conn, rows, [c for k, c in customers.rows.items() if k in customers.changed
                                 and k not in customers.existing])

    def _count(self, conn: Connection, rows: list[dict[str, Any]], new_customers: list[dict[str, Any]]) -> None:
        """Add this batch to the day counters."""
        days: dict[str, dict[str, Any]] = {}
        tops: dict[str, dict[str, Any]] = {}
        joined: dict[str, dict[str, Any]] = {}
        for row in rows:
            day = row["at"].astimezone(self.zone).date()
            key = f"{day.isoformat()}|{row['kind']}|{row['event']}"
            counts = days.setdefault(key, {"key": key, "day": day, "kind": row["kind"], "event": row["event"],
                                           "n": 0, "first_contact_n": 0, "first_contact_yes": 0, "score_sum": 0,
                                           "score_n": 0})
            counts["n"] += 1
            if row["event"] == "resolved" and row["first_contact"] is not None:
                counts["first_contact_n"] += 1
                counts["first_contact_yes"] += int(bool(row["first_contact"]))
            if row["event"] == "revisited" and row["score"] is not None:
                counts["score_sum"] += row["score"]
                counts["score_n"] += 1
            if row["kind"] == "complaint" and row["event"] == "registered":
                for dimension in TOP_DIMENSIONS:
                    if row[dimension] is not None:
                        top = f"{day.isoformat()}|{dimension}|{row[dimension]}"
                        tops.setdefault(top, {"key": top, "day": day, "dimension": dimension,
                                              "value": row[dimension], "n": 0})["n"] += 1
        for customer in new_customers:
            day = customer["registered_at"].astimezone(self.zone).date()
            joined.setdefault(day.isoformat(), {"day": day, "n": 0})["n"] += 1
        for table, key, found in ((figure_day, figure_day.c.key, days), (figure_top, figure_top.c.key, tops),
                                  (customer_day, customer_day.c.day, joined)):
            if not found:
                continue
            kept = Rows(conn, table, key, set(found) if table is not customer_day else
                        {date.fromisoformat(k) for k in found})
            measures = [c.name for c in table.columns if c.name not in ("key", "day", "kind", "event",
                                                                         "dimension", "value")]
            for name, counts in found.items():
                k = name if table is not customer_day else counts["day"]
                before = kept.get(k)
                kept.put(k, counts if before is None else before | {m: before[m] + counts[m] for m in measures})
            kept.write()
        insert_missing(conn, counted_in, {"name": "days", "zone": self.zone.key})

    def reset(self, conn: Connection) -> None:
        empty(conn, metadata)


def _new_case(event: Envelope, customer: dict[str, Any] | None) -> dict[str, Any]:
    data = event["data"]
    return {"case_id": event["aggregate_id"], "kind": event["aggregate_type"], "customer_id": data["customer_id"],
            "tier": customer["tier"] if customer else DEFAULT_TIER, "category": data.get("category"),
            "product": data.get("product") or data.get("product_model"),
            "region": data.get("region") or (customer["region"] if customer else None),
            "priority": data.get("priority"), "channel": data.get("channel")}
