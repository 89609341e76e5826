"""Rebuilt == live, for random histories: Hypothesis draws a department's
history (customers, complaints, repair jobs, callbacks, marks, tier and
priority changes, breaches, clearances, through the real aggregates), then
every projection is fed it the way the live consumer meets it (random batch
sizes, batches delivered again) in one SQLite file and rebuilt in one pass in
another; every table must hold the same rows."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from eventsourcing.cipher import AESCipher
from hypothesis import HealthCheck, example, given, settings
from sqlalchemy import inspect, select

from handlers.translate import envelope
from infra.config_files import DEFAULT_POLICY
from infra.store.database import make_engine
from infra.store.event_store import EventStore
from infra.store.fast_read import fast_envelope
from infra.store.rebuild import history as rebuild_history
from infra.store.rebuild import rebuild_projections
from projections.activity import Activity
from projections.base import apply_batch, create_tables, marks_of
from projections.case_summary import DIMENSIONS, OPEN, CaseSummary, case_summary, open_work
from projections.danger import DangerousCustomers
from projections.rebuilding import rebuild
from projections.sla import SlaLimits
from projections.staff import StaffFigures
from ticketing.callback import Callback
from ticketing.case import Context
from ticketing.complaint import Complaint, Registration
from ticketing.customer import Customer
from ticketing.errors import DomainError
from ticketing.repair_job import JobRegistration, RepairJob
from ticketing.sla.policy import SlaPolicy
from ticketing.values import Role

POLICY = SlaPolicy.parse(DEFAULT_POLICY.read_text())
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)

OPS = ["complaint", "repair_job", "acknowledge", "assign", "analyse", "escalate", "await", "resume", "resolve",
       "revisit", "reopen", "withdraw", "close", "reprioritise", "breach", "dispatch", "diagnose", "job_resolve",
       "schedule", "attempt", "complete", "tier", "flag", "unflag", "clear"]


class History:
    """Carries random operations out on real aggregates, keeping the events."""

    def __init__(self) -> None:
        self.at = T0
        self.customers: list[Customer] = []
        self.cases: list[Any] = []
        self.events: list[Any] = []

    def ctx(self, role: Role = Role.SUPERVISOR) -> Context:
        return Context(actor_id="p", role=role, at=self.at, correlation_id=uuid.uuid4(),
                       compensation_limit=Decimal("500"))

    def keep(self, aggregate: Any) -> None:
        self.events.extend(aggregate.collect_events())

    def run(self, op: str, pick: int, minutes: int) -> None:
        self.at += timedelta(minutes=minutes, microseconds=(pick % 2) * 123_457)  # times with and without them
        if not self.customers or op == "customer":
            customer = Customer.register(uuid.uuid4(), self.ctx(), name="n", phone="123", tier=["basic", "vip",
                                         "strategic"][pick % 3], region="华东")
            self.customers.append(customer)
            self.keep(customer)
            return
        customer = self.customers[pick % len(self.customers)]
        try:
            self._run(op, pick, customer)
        except DomainError:
            for aggregate in [*self.customers, *self.cases]:
                aggregate.collect_events()  # a refused command records nothing

    def _run(self, op: str, pick: int, customer: Customer) -> None:
        ctx = self.ctx()
        if op == "complaint":
            case = Complaint.register(uuid.uuid4(), Registration(
                customer.id, "phone", ["billing", "delivery"][pick % 2], ["low", "normal", "urgent"][pick % 3],
                "d", "P", "华东"), ctx)
            self.cases.append(case)
            return self.keep(case)
        if op == "repair_job":
            job = RepairJob.register(uuid.uuid4(), JobRegistration(customer.id, "repair", "M", "f", "normal",
                                                                   pick % 2 == 0, "addr"), ctx)
            self.cases.append(job)
            return self.keep(job)
        if op in ("tier", "flag", "unflag", "clear"):
            if op == "tier":
                customer.change_tier(ctx, ["basic", "vip", "strategic"][pick % 3])
            elif op == "flag":
                customer.flag(ctx, ["malicious", "extortion"][pick % 2], "r")
            elif op == "unflag":
                customer.unflag(ctx, ["malicious", "extortion"][pick % 2], "r")
            else:
                customer.clear_danger(ctx, "r")
            return self.keep(customer)
        if not self.cases:
            return None
        case = self.cases[-1 - pick % min(3, len(self.cases))]  # mostly the latest cases: longer lives
        if op == "schedule":
            if isinstance(case, Callback):
                return None
            callback = Callback.schedule(uuid.uuid4(), ctx, case_id=case.id, case_type=type(case).__name__.lower()
                                         .replace("repairjob", "repair_job"), customer_id=case.customer_id,
                                         due_at=self.at + timedelta(days=1))
            self.cases.append(callback)
            return self.keep(callback)
        at = self.at
        calls: dict[str, tuple[str, tuple[Any, ...]]] = {
            "acknowledge": ("acknowledge", ()),
            "assign": ("assign", (f"agent-{pick % 3}",)),
            "analyse": ("analyse", ("c", ["company", "customer"][pick % 2], "minor", "p")),
            "escalate": ("escalate", ("r", ["supervisor", "manager"][pick % 2])),
            "await": ("await_customer", ("r",)),
            "resume": ("resume", ()),
            "resolve": ("resolve", ("r", pick % 2 == 0, ["0", "2500.00"][pick % 2])),
            "revisit": ("revisit", (pick % 2 == 0, 40 + pick % 60)),
            "reopen": ("reopen", ("r",)),
            "withdraw": ("withdraw", ("r",)),
            "close": ("close", ()),
            "reprioritise": ("reprioritise", (["low", "high", "urgent"][pick % 3], "r")),
            "dispatch": ("dispatch", ("tech", at + timedelta(hours=1))),
            "diagnose": ("diagnose", ("d",)),
            "job_resolve": ("resolve", ("w",)),
            "attempt": ("attempt", ("no_answer",)),
            "complete": ("complete", (pick % 2 == 0, 50 + pick % 50)),
        }
        if op == "breach":
            case.record_sla_breach(self.ctx(Role.SYSTEM), "first_response", 1 + pick % 2, at, 1800)
            return self.keep(case)
        name, args = calls[op]
        kind_of = {"dispatch": RepairJob, "diagnose": RepairJob, "job_resolve": RepairJob, "attempt": Callback,
                   "complete": Callback}
        wanted = kind_of.get(op, Complaint if op in ("acknowledge", "assign", "analyse", "escalate", "await",
                                                     "resume", "resolve", "withdraw", "close") else None)
        if wanted is not None and not isinstance(case, wanted) or not hasattr(case, name):
            return None
        getattr(case, name)(ctx, *args)
        return self.keep(case)


operations = st.lists(st.tuples(st.sampled_from(["customer", *OPS]), st.integers(0, 50), st.integers(0, 3000)),
                      min_size=5, max_size=60)


def envelopes(history: History) -> list[dict[str, Any]]:
    return [envelope(e, position).model_dump(mode="json") for position, e in enumerate(history.events, start=1)]


def tables(engine: Any, projection: Any) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
                for table in projection.metadata.sorted_tables}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Found by this property: a complaint reopened while its first loop still ran
# left an `ended` row when applied event by event and none in one pass.
@example(steps=[("customer", 0, 0), ("complaint", 0, 0), ("resolve", 0, 0), ("reopen", 0, 0)], cuts=[1],
         again=False)
# An open case's customer changing tier moves it in the open-work counters.
@example(steps=[("customer", 0, 0), ("complaint", 0, 0), ("tier", 1, 0)], cuts=[2], again=False)
@given(steps=operations, cuts=st.lists(st.integers(1, 12), min_size=1, max_size=30), again=st.booleans())
def test_rebuilt_equals_live_for_random_histories(tmp_path: Path, steps: list[tuple[str, int, int]],
                                                  cuts: list[int], again: bool) -> None:
    history = History()
    for op, pick, minutes in steps:
        history.run(op, pick, minutes)
    events = envelopes(history)
    run = uuid.uuid4().hex[:8]
    live_engine = make_engine(f"sqlite:///{tmp_path}/live-{run}.db")
    rebuilt_engine = make_engine(f"sqlite:///{tmp_path}/rebuilt-{run}.db")
    every = (CaseSummary(), SlaLimits(POLICY), Activity(), DangerousCustomers(), StaffFigures())
    for projection in every:
        create_tables(live_engine, projection)
        create_tables(rebuilt_engine, projection)
    start, i = 0, 0
    while start < len(events):  # live: batches of random sizes to all at once, some delivered twice
        size = cuts[i % len(cuts)]
        batch = events[start:start + size]
        apply_batch(live_engine, every, batch)
        if again:
            apply_batch(live_engine, every, batch)
        start, i = start + size, i + 1
    rebuild(rebuilt_engine, every, lambda end: iter([events]), lambda: len(events))  # all together, one decode
    for projection in every:
        assert tables(live_engine, projection) == tables(rebuilt_engine, projection), projection.name
    with live_engine.connect() as conn:  # the kept counters are the open cases counted afresh
        kept = {(d, v): n for d, v, n in conn.execute(select(open_work.c.dimension, open_work.c.value,
                                                            open_work.c.n))}
        cases = conn.execute(select(case_summary)).mappings().all()
    counted = Counter((name, str(row[name]) if row[name] is not None else "(none)") for row in cases
                      if row["status"] in OPEN for name in DIMENSIONS)
    assert kept == dict(counted)
    live_engine.dispose()
    rebuilt_engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(steps=[("customer", 0, 0), ("complaint", 0, 0), ("resolve", 0, 0), ("repair_job", 0, 0),
                ("dispatch", 0, 0), ("diagnose", 0, 0), ("job_resolve", 0, 0), ("schedule", 0, 0)])
@given(steps=operations)
def test_the_rebuilds_fast_reading_of_the_store_is_what_the_relay_publishes(
        tmp_path: Path, steps: list[tuple[str, int, int]]) -> None:
    """A rebuild reads events straight from their stored JSON; the relay goes
    through the domain objects and the contract models. Same output, event
    for event (sealed registrations and older versions take the domain path)."""
    history = History()
    for op, pick, minutes in steps:
        history.run(op, pick, minutes)
    store = EventStore(f"sqlite:///{tmp_path}/events-{uuid.uuid4().hex[:8]}.db", AESCipher.create_key(32))
    try:
        store.recorder.insert_events([store.mapper.to_stored_event(e) for e in history.events])
        for notification in store.notifications(0, len(history.events) + 1):
            slow = envelope(store.mapper.to_domain_event(notification), notification.id).model_dump(mode="json")
            assert fast_envelope(store, notification) == slow, slow["type"]
    finally:
        store.engine.dispose()


def test_a_large_rebuild_decodes_in_a_process_of_its_own_with_the_same_pages(tmp_path: Path) -> None:
    """Past DECODE_APART_FROM events a child process reads and decodes the
    pages: the pages are those read in process, and a child that fails stops
    the rebuild with its reason instead of leaving it waiting."""
    history = History()
    for op, pick, minutes in [("customer", 0, 0), ("complaint", 0, 5), ("resolve", 0, 30), ("repair_job", 0, 2),
                              ("dispatch", 0, 1), ("diagnose", 0, 9), ("job_resolve", 0, 3), ("reopen", 0, 1)]:
        history.run(op, pick, minutes)
    store = EventStore(f"sqlite:///{tmp_path}/events.db", AESCipher.create_key(32))
    try:
        store.recorder.insert_events([store.mapper.to_stored_event(e) for e in history.events])
        end = store.max_position()
        in_process = list(rebuild_history(store, apart_from=10 ** 9)(end))
        apart = list(rebuild_history(store, apart_from=0)(end))
        assert apart == in_process and sum(len(page) for page in apart) == end
        assert list(rebuild_history(store, apart_from=0)(end, 3)) == [in_process[0][3:]]

        store.opened_with = (f"sqlite:///{tmp_path}/missing/events.db", None)
        with pytest.raises(RuntimeError, match="decoding process failed"):
            list(rebuild_history(store, apart_from=0)(end))
    finally:
        store.engine.dispose()


def test_a_large_rebuild_shares_the_projections_with_a_second_process_and_equals_one_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past APPLY_APART_FROM events (SQLite) a second process rebuilds some
    projections into a file of its own, adopted afterwards: every table as a
    rebuild in one process has it; a failing second process stops the
    rebuild with its reason."""
    import infra.store.rebuild as rebuilding

    history = History()
    for op, pick, minutes in [("customer", 0, 0), ("complaint", 0, 5), ("resolve", 0, 30), ("revisit", 0, 60),
                              ("complaint", 0, 5), ("repair_job", 0, 2), ("dispatch", 0, 1), ("diagnose", 0, 9),
                              ("job_resolve", 0, 3), ("reopen", 0, 1), ("flag", 0, 1)]:
        history.run(op, pick, minutes)
    store = EventStore(f"sqlite:///{tmp_path}/events.db", AESCipher.create_key(32))
    every = (CaseSummary(), SlaLimits(POLICY), Activity(), DangerousCustomers(), StaffFigures())
    one, two = (make_engine(f"sqlite:///{tmp_path}/{name}.db") for name in ("one", "two"))
    try:
        store.recorder.insert_events([store.mapper.to_stored_event(e) for e in history.events])
        assert rebuild_projections(store, one, every) == store.max_position()
        monkeypatch.setattr(rebuilding, "APPLY_APART_FROM", 0)
        monkeypatch.setattr(rebuilding, "DECODE_APART_FROM", 0)
        assert rebuild_projections(store, two, every) == store.max_position()
        for projection in every:
            assert tables(one, projection) == tables(two, projection), projection.name
            for table in projection.metadata.sorted_tables:  # those made last (indexes_made_after) are back
                defined = {index.name for index in table.indexes}
                for engine in (one, two):
                    assert defined <= {i["name"] for i in inspect(engine).get_indexes(table.name)}, table.name
        assert marks_of(two, "staff")[0] == marks_of(two, "sla")[0] == store.max_position()
        assert not list(tmp_path.glob("two.db.apart-*")), "the second process's file is removed"

        store.opened_with = (f"sqlite:///{tmp_path}/missing/events.db", None)
        with pytest.raises(RuntimeError, match="process failed"):  # the decoder or the second process
            rebuild_projections(store, two, every)
    finally:
        for engine in (one, two, store.engine):
            engine.dispose()
