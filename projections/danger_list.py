"""The dangerous-customer list as the monitor keeps it: the facts it reads
for the customers with news (from `projections.danger`), the rules applied to
them at an instant, what it has announced (its ledger), and the list as it
last assessed it, which `customers.dangerous` pages through."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
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
from projections.base import utc
from projections.danger import danger_customer, danger_fact
from projections.rows import delete_in, insert_many
from ticketing.danger import LEVELS, MARKS, Assessment, Fact, Facts, Rules


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
