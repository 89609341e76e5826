"""The dangerous-customer monitor: each tick it applies the rules to the
facts at the clock's now, and announces each change that needs a person,
once: a customer entering the list or rising to a higher level
(`ticketing.v1.alerts.customer.dangerous`), and leaving it
(`ticketing.v1.alerts.customer.cleared`) when their reasons age out or a
supervisor clears them. A level that falls is noted, not announced.

Once: each alert's `Nats-Msg-Id` is derived from the customer, the start of
their stay on the list and the level (or `cleared`), so a monitor that
restarts before noting what it published publishes the same key again and the
stream drops it; what was published is noted apart from the read model, so
a rebuild announces nobody again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import Engine

from contracts.alerts import CustomerAlert
from infra.auth.signing import Signer
from infra.monitors.alerts import AlertTimer, alert_id
from infra.monitors.policy_runner import CONCURRENCY
from infra.runtime.clock import Clock
from projections.danger_list import (
    Listing,
    assess,
    candidates,
    entry,
    facts_after,
    facts_of,
    last_fact,
    ledger_metadata,
    list_entries,
    listing,
    note,
    published,
    reason_of,
)
from ticketing.danger import LEVELS, Assessment, Facts, Rules

log = logging.getLogger(__name__)


class DangerMonitor(AlertTimer):
    name = "danger_monitor"

    def __init__(self, engine: Engine, rules: Rules, js: JetStreamContext, clock: Clock, *,
                 store_position: Callable[[], int], tick_seconds: float = 1.0, signer: Signer) -> None:
        super().__init__(engine, js, clock, store_position=store_position, projection="danger",
                         tick_seconds=tick_seconds, signer=signer)
        self.rules = rules
        self._seen: int | None = None
        """The last fact looked at; None until the first look, which looks at everyone."""
        self._recheck: dict[str, datetime | None] = {}
        """Listed customers: when their standing may change with nothing new (a fact ageing out)."""
        self._facts: dict[str, Facts] = {}
        """Listed customers' facts that can still count (the longest window's
        and their marks), by signal and in time order, kept from look to look: a look
        reads only the facts that are new since the last, not again the
        window of everyone with news (at 500 complaints a second, that was
        every customer's window every second, a stall of the projections
        sharing the process)."""

    def assess_changed(self, conn: Any, now: datetime, listed: set[str]) -> dict[str, tuple[Assessment | None, Any]]:
        """Those who may have changed, and only they, so a look costs what
        changed, not the size of the list: everyone at the first look; then
        those with new facts (the only way onto the list or up it, a
        clearance among them) and those listed whose facts age out by now."""
        since = now - self.rules.longest_window
        if self._seen is None:
            self._seen = last_fact(conn)  # a fact added after this is new at the next look
            self._facts = {c: Facts(facts) for c, facts in
                           facts_of(conn, candidates(conn, since) | listed, since, self._seen).items()}
            changed = set(self._facts)
        else:
            fresh, self._seen = facts_after(conn, self._seen)
            due = {c for c in listed if c not in self._recheck or
                   ((at := self._recheck[c]) is not None and at <= now)}
            changed = fresh.keys() | due
            unknown = changed - self._facts.keys()  # read whole (their fresh facts among them)
            for customer_id, facts in fresh.items():
                if customer_id not in unknown:
                    for fact in facts:
                        self._facts[customer_id].add(fact)
            self._facts |= {c: Facts(facts) for c, facts in facts_of(conn, unknown, since, self._seen).items()}
        found = assess(conn, self.rules, now, {c: self._facts[c] for c in changed})
        for customer_id, (assessment, _) in found.items():
            if assessment is None:  # off the list: read again should they come back
                self._recheck.pop(customer_id, None)
                self._facts.pop(customer_id, None)
            else:
                self._recheck[customer_id] = assessment.next_change
                self._facts[customer_id].forget_until(since)
        return found

    async def prepare(self) -> None:
        await asyncio.to_thread(ledger_metadata.create_all, self.engine)

    async def look(self, now: datetime) -> int:
        """Assess who may have changed, publish their alerts concurrently (at
        most CONCURRENCY in flight: a burst of customers entering the list,
        as a busy morning brings, goes out at the bus's pace, not one round
        trip after another), then note what went out and write their
        entries in one transaction. A customer whose alert could not go out
        is neither noted nor listed anew: the next look, which looks at
        everyone again, takes them up."""
        states = await asyncio.to_thread(self.read, published)
        assessed = await asyncio.to_thread(self.read, lambda conn: self.assess_changed(conn, now, set(states)))
        changes = [_change(customer_id, assessment, customer, states.get(customer_id), now)
                   for customer_id, (assessment, customer) in sorted(assessed.items())]
        slots = asyncio.Semaphore(CONCURRENCY)

        async def out(change: _Change) -> bool:
            if change.alert is None:
                return True
            async with slots:
                return await self.publish(change.alert, change.key)

        sent = await asyncio.gather(*(out(change) for change in changes))
        done = [change for change, ok in zip(changes, sent, strict=True) if ok]
        if len(done) < len(changes):
            self._seen = None  # the bus is away: look at everyone again once it is back
        rows = await asyncio.to_thread(listing, {
            change.customer_id: entry(change.customer, change.assessment, change.entered_at)
            if change.assessment is not None else None for change in done})
        await asyncio.to_thread(self.write, _record, done, rows)
        for change in done:
            if change.alert is not None:
                log.info("%s: customer %s (%s)", change.alert.type, change.customer_id,
                         change.alert.level or "off the list")
        return sum(change.alert is not None for change in done)


@dataclass(frozen=True)
class _Change:
    """What a look does for one customer it assessed."""

    customer_id: str
    customer: dict[str, Any]
    assessment: Assessment | None
    entered_at: datetime
    """When they entered the list (meaningless off it)."""
    alert: CustomerAlert | None
    """To publish: entering the list, rising on it, or leaving it."""
    key: str
    noted: dict[str, Any] | None | bool
    """The state to note as published (None: off the list); False: nothing to note."""


def _change(customer_id: str, assessment: Assessment | None, customer: dict[str, Any],
            state: dict[str, Any] | None, now: datetime) -> _Change:
    entered_at = state["entered_at"] if state else assessment.since if assessment else now
    alert, key, noted = None, "", False
    if assessment is not None and (state is None or _rank(assessment.level) > _rank(state["level"])):
        key = _key(customer_id, entered_at, assessment.level)
        alert = CustomerAlert(
            id=alert_id(key), type="customer.dangerous", raised_at=now, customer_id=customer_id,
            level=assessment.level, previous_level=state["level"] if state else None,
            danger_type=assessment.danger_type, entered_at=entered_at,
            reasons=[reason_of(r) for r in assessment.reasons], counter_measure=assessment.counter_measure)
        noted = _state(assessment, entered_at)
    elif assessment is None and state is not None:
        key = _key(customer_id, state["entered_at"], "cleared")
        alert = CustomerAlert(
            id=alert_id(key), type="customer.cleared", raised_at=now, customer_id=customer_id, level=None,
            previous_level=state["level"], danger_type=state["danger_type"], entered_at=state["entered_at"],
            reasons=[], counter_measure=None)
        noted = None
    elif assessment is not None and state is not None and assessment.level != state["level"]:
        noted = _state(assessment, entered_at)  # a level that falls: noted, not announced
    return _Change(customer_id, customer, assessment, entered_at, alert, key, noted)


def _record(conn: Any, changes: list[_Change], rows: Listing) -> None:
    """Note what went out and write the customers' entries, in one transaction."""
    note(conn, {change.customer_id: change.noted for change in changes
                if change.noted is not False})  # type: ignore[misc]
    list_entries(conn, rows)


def _rank(level: str) -> int:
    return LEVELS.index(level)


def _key(customer_id: str, entered_at: datetime, what: str) -> str:
    return f"danger/{customer_id}/{entered_at.isoformat()}/{what}"


def _state(assessment: Assessment, entered_at: datetime) -> dict[str, Any]:
    return {"level": assessment.level, "danger_type": assessment.danger_type, "entered_at": entered_at}
