"""The dangerous-customer read model: the facts about each customer that the
rules count (see ticketing/danger.py), each case's customer, each customer's
tier and last clearance. The list itself is the rules applied to these facts
at an instant: facts age out as time passes, with no event."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
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
    Text,
    and_,
    func,
    or_,
    select,
)

from contracts.alerts import DangerousCustomer, DangerReason
from projections.base import Envelope, empty, utc
from projections.rows import Rows, delete_in, insert_many
from ticketing.danger import LEVELS, MARKS, Assessment, Fact, Facts, Rules

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


def candidates(conn: Connection, since: datetime) -> set[str]:
    """Customers who may be on the list: a fact since `since`, or a mark."""
    recent = select(danger_fact.c.customer_id).where(
        (danger_fact.c.at > utc(since)) | danger_fact.c.signal.in_(("malicious_mark", "extortion_mark")))
    return set(conn.execute(recent.distinct()).scalars())


def facts_of(conn: Connection, customer_ids: set[str], since: datetime, up_to: int) -> dict[str, list[Fact]]:
    """The customers' facts that can count now, up to position `up_to`:
    those after `since` (the start of the longest window) and their marks,
    whatever their age (a mark counts while it stands). What a customer did
    before the longest window is not read: a look costs what the window
    holds, not the customer's whole history."""
    found: dict[str, list[tuple[int, Fact]]] = {c: [] for c in customer_ids}
    ordered = sorted(customer_ids)
    for start in range(0, len(ordered), 500):
        chunk = (danger_fact.c.customer_id.in_(ordered[start:start + 500]), danger_fact.c.position <= up_to)
        recent = select(danger_fact).where(*chunk, danger_fact.c.at > utc(since))
        marks = select(danger_fact).where(*chunk, danger_fact.c.at <= utc(since), danger_fact.c.signal.in_(MARKS))
        for query in (recent, marks):
            for row in conn.execute(query).mappings():
                found[row["customer_id"]].append((row["position"], _fact(row)))
    return {c: [fact for _, fact in sorted(facts, key=lambda pair: pair[0])] for c, facts in found.items()}


def facts_after(conn: Connection, after: int) -> tuple[dict[str, list[Fact]], int]:
    """The facts past position `after`, by customer in position order, and
    the last position read."""
    last = last_fact(conn)
    found: dict[str, list[Fact]] = {}
    for row in conn.execute(select(danger_fact).where(danger_fact.c.position > after, danger_fact.c.position <= last)
                            .order_by(danger_fact.c.position)).mappings():
        found.setdefault(row["customer_id"], []).append(_fact(row))
    return found, max(last, after)


def _fact(row: Any) -> Fact:
    return Fact(row["signal"], utc(row["at"]), row["case_id"], Decimal(row["amount"]) if row["amount"] else None,
                row["lifted"])


def customers_of(conn: Connection, customer_ids: set[str]) -> dict[str, dict[str, Any]]:
    ordered = sorted(customer_ids)
    found = {}
    for start in range(0, len(ordered), 500):
        for row in conn.execute(select(danger_customer).where(
                danger_customer.c.customer_id.in_(ordered[start:start + 500]))).mappings():
            found[row["customer_id"]] = dict(row) | {"cleared_at": utc(row["cleared_at"])}
    return found


def last_fact(conn: Connection) -> int:
    return int(conn.execute(select(func.max(danger_fact.c.position))).scalar_one() or 0)


def assess(conn: Connection, rules: Rules, now: datetime, facts: dict[str, Facts]
           ) -> dict[str, tuple[Assessment | None, dict[str, Any]]]:
    """Each customer's assessment at `now` from their facts (None: not on
    the list) and their row."""
    rows = customers_of(conn, set(facts))
    return {customer_id: (rules.assess(own, now, rows.get(customer_id, {}).get("cleared_at")),
                          rows.get(customer_id, {"customer_id": customer_id, "tier": "basic", "region": None}))
            for customer_id, own in facts.items()}


def entry(customer: dict[str, Any], assessment: Assessment, entered_at: datetime) -> DangerousCustomer:
    return DangerousCustomer(
        customer_id=customer["customer_id"], tier=customer["tier"], region=customer.get("region"),
        level=assessment.level, danger_type=assessment.danger_type, types=assessment.types,
        reasons=[reason_of(r) for r in assessment.reasons], entered_at=entered_at,
        counter_measure=assessment.counter_measure)


CASE_IDS_SHOWN = 20
"""A reason names its latest cases, this many at most, and counts them all."""


def reason_of(reason: Any) -> DangerReason:
    case_ids = list(reason.case_ids)
    return DangerReason(rule=reason.rule, type=reason.type, level=reason.level, text=reason.text,
                        case_ids=case_ids[-CASE_IDS_SHOWN:], case_count=len(case_ids), since=reason.since)


# ---- what the monitor has published ---------------------------------------------
# Kept apart from the read model above: a rebuild replaces the read model but
# must not announce anyone again.

ledger_metadata = MetaData()

danger_state = Table(
    "danger_state",
    ledger_metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("level", String(10), nullable=False),
    Column("danger_type", String(30), nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
)


def published(conn: Connection) -> dict[str, dict[str, Any]]:
    return {row["customer_id"]: dict(row) | {"entered_at": utc(row["entered_at"])}
            for row in conn.execute(select(danger_state)).mappings()}


def note(conn: Connection, states: dict[str, dict[str, Any] | None]) -> None:
    """What is published for these customers now (None: off the list), in
    two statements whatever their number (a busy morning brings hundreds at
    once, and the write lock is held meanwhile)."""
    if not states:
        return
    delete_in(conn, danger_state.c.customer_id, list(states))
    insert_many(conn, danger_state, [
        {"customer_id": customer_id, "level": state["level"], "danger_type": state["danger_type"],
         "entered_at": utc(state["entered_at"])} for customer_id, state in states.items() if state is not None])


# ---- the list as the monitor last assessed it ------------------------------------
# What `customers.dangerous` reads: one row per listed customer, written by
# the monitor for each customer it assesses (those with news, those whose
# facts age out), so a query reads a page off an index whatever the store's
# size. Beside the ledger: a rebuild of the facts does not empty it.

danger_listing = Table(
    "danger_listing",
    ledger_metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("rank", Integer, nullable=False),  # the level's index in LEVELS: the highest first
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Column("types", String(200), nullable=False),  # ",churn_risk,extortion,": every type that holds
    Column("entry", Text, nullable=False),  # the DangerousCustomer, as JSON
    Index("ix_danger_listing_order", "rank", "entered_at", "customer_id"),
)

Cursor = tuple[int, datetime, str]
"""Where an entry stands in the list's order: (-rank, entered_at, customer id)."""


Listing = dict[str, dict[str, Any] | None]
"""Listing rows by customer (None: not on the list), made by `listing`."""


def listing(entries: dict[str, DangerousCustomer | None]) -> Listing:
    """The rows of these entries (their JSON made here, before the write
    lock is taken: a look lists every customer with news)."""
    return {customer_id: None if entry is None else {
        "customer_id": customer_id, "rank": LEVELS.index(entry.level), "entered_at": utc(entry.entered_at),
        "types": "," + ",".join(sorted(entry.types)) + ",", "entry": entry.model_dump_json()}
        for customer_id, entry in entries.items()}


def list_entries(conn: Connection, rows: Listing) -> None:
    """Write what the monitor found for these customers."""
    if not rows:
        return
    delete_in(conn, danger_listing.c.customer_id, list(rows))
    insert_many(conn, danger_listing, [row for row in rows.values() if row is not None])


def listed(conn: Connection, *, least: int = 0, danger_type: str | None = None, after: Cursor | None = None,
           limit: int = 100) -> tuple[list[DangerousCustomer], int]:
    """A page of the list, the most dangerous first (then the earliest
    entry), after the cursor; and how many are listed in all (with the filters)."""
    where = [danger_listing.c.rank >= least]
    if danger_type is not None:
        where.append(danger_listing.c.types.contains(f",{danger_type},"))
    total = int(conn.execute(select(func.count()).select_from(danger_listing).where(*where)).scalar_one())
    query = select(danger_listing.c.entry).where(*where)
    if after is not None:
        rank, entered_at, customer_id = -after[0], utc(after[1]), after[2]
        query = query.where(or_(
            danger_listing.c.rank < rank,
            and_(danger_listing.c.rank == rank, or_(
                danger_listing.c.entered_at > entered_at,
                and_(danger_listing.c.entered_at == entered_at, danger_listing.c.customer_id > customer_id)))))
    query = query.order_by(danger_listing.c.rank.desc(), danger_listing.c.entered_at,
                           danger_listing.c.customer_id).limit(limit)
    return [DangerousCustomer.model_validate_json(entry) for entry in conn.execute(query).scalars()], total
