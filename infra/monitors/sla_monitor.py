"""The SLA monitor's timer: each tick it asks the SLA read model what has
fallen due by now (the injected clock's now), raises each alert once, and has
each breach recorded on its case.

Once, across restarts, redeliveries and a second monitor:
1. the alert is published into the `TICKETING_ALERTS` stream with
   `Nats-Msg-Id` = its key (`sla/<case>/<metric>/<cycle>/<alert>`), so a
   copy published again within the stream's duplicate window is dropped;
2. then the alert ledger notes it (a crash between 1 and 2 republishes the
   same key: dropped);
3. then a breach is sent as `record_sla_breach` to the case, with a command id
   derived from the same key (a repeat gets the first reply), and the ledger
   notes it recorded. The case's `sla_breached` event marks the limit in the
   read model, so a rebuilt read model (or a lost ledger) raises nothing again.

Before looking, the timer waits until the read model has applied every event
committed by the instant it looks at, so a step taken just before a deadline
is not reported as a breach because its event was still on its way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from contracts.alerts import SlaAlert
from contracts.catalog import command_subject
from infra.auth.signing import Signer
from infra.monitors.alerts import AlertTimer, alert_id
from infra.monitors.policy_runner import CONCURRENCY, CommandSideAway, send_command
from infra.runtime.clock import Clock
from projections.base import utc
from projections.sla import running_from
from projections.sla_reads import due_alerts, mark_raised, mark_recorded, unrecorded_breaches
from projections.sla_tables import ledger_metadata
from ticketing.sla.policy import SlaPolicy, spelled

log = logging.getLogger(__name__)

ACTOR = {"id": "sla-monitor", "role": "system"}


def alert_key(clock_id: str, alert: str) -> str:
    return f"sla/{clock_id}/{alert}"


def alert_of(row: dict[str, Any], now: datetime, policy: SlaPolicy) -> SlaAlert:
    """The alert for a due limit, as published."""
    alert = row["alert"]
    running = running_from(row, row, policy) if row["state"] in ("running", "paused") else None
    elapsed = running.elapsed(now).total_seconds() if running else row["elapsed_seconds"]
    deadline = row["breached_at"] or row["deadline"]
    limit = spelled(timedelta(seconds=row["limit_seconds"]))
    if alert == "breached":
        reason = f"{row['metric']}: the {limit} limit passed at {deadline:%Y-%m-%d %H:%M} UTC"
    else:
        reason = f"{row['metric']}: {elapsed / row['limit_seconds']:.0%} of the {limit} limit used"
    calendar = "" if row["calendar"] == "24x7" else f" (counted in {row['calendar']} hours)"
    return SlaAlert(
        id=alert_id(alert_key(row["clock_id"], alert)), type=f"sla.{alert}", raised_at=now,
        case_id=row["case_id"], case_type=row["kind"], customer_id=row["customer_id"], metric=row["metric"],
        cycle=row["cycle"], tier=row["tier"], priority=row["priority"], assignee=row["assignee"],
        started_at=row["started_at"], deadline=deadline, warning_at=row["warning_at"], elapsed_seconds=elapsed,
        limit_seconds=row["limit_seconds"], calendar=row["calendar"], reasons=[reason + calendar])


def _by_case(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows of each case together, in their order."""
    cases: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        cases.setdefault(row["case_id"], []).append(row)
    return list(cases.values())


class SlaMonitor(AlertTimer):
    name = "sla_monitor"

    def __init__(self, engine: Engine, policy: SlaPolicy, nc: Nats, js: JetStreamContext, clock: Clock, *,
                 store_position: Callable[[], int], projection: str = "sla", tick_seconds: float = 0.2,
                 command_timeout: float = 5.0, signer: Signer) -> None:
        super().__init__(engine, js, clock, store_position=store_position, projection=projection,
                         tick_seconds=tick_seconds, signer=signer)
        self.policy = policy
        self.nc = nc
        self.command_timeout = command_timeout
        self._command_side_away = False

    async def prepare(self) -> None:
        """Create the alert ledger (the read model's tables are the
        projection's, and its running limits are counted against the policy
        as it is now where the projections start: `start_worker`)."""
        await asyncio.to_thread(ledger_metadata.create_all, self.engine)

    async def look(self, now: datetime) -> int:
        """Raise what is due and put the breaches on their cases: the cases
        concurrently (at most CONCURRENCY commands in flight, as the policies
        send theirs: a backlog after an outage is worked off at the command
        side's pace, not one round trip at a time), each case's in order. A
        case whose alert cannot go out (the bus or the command side away)
        stops there; the next tick takes it up again."""
        slots = asyncio.Semaphore(CONCURRENCY)

        async def in_order(rows: list[dict[str, Any]], step: Callable[..., Awaitable[bool]]) -> int:
            done = 0
            for row in rows:
                async with slots:
                    if not await step(row, now):
                        break
                done += 1
            return done

        due = _by_case(await asyncio.to_thread(self.read, due_alerts, now))
        raised = sum(await asyncio.gather(*(in_order(rows, self._raise) for rows in due)))
        unrecorded = _by_case(await asyncio.to_thread(self.read, unrecorded_breaches))
        await asyncio.gather(*(in_order(rows, self._record) for rows in unrecorded))
        return raised

    async def _raise(self, row: dict[str, Any], now: datetime) -> bool:
        alert = alert_of(row, now, self.policy)
        if not await self.publish(alert, alert_key(row["clock_id"], row["alert"])):
            return False
        with contextlib.suppress(IntegrityError):  # another monitor noted it between our look and our note
            await asyncio.to_thread(self.write, mark_raised, row["clock_id"], row["alert"], now)
        log.info("%s: %s %s cycle %d of %s %s", alert.type, row["metric"], "breached" if row["alert"] == "breached"
                 else "at risk", row["cycle"], row["kind"], row["case_id"])
        if row["alert"] == "breached":
            await self._record(row, now)
        return True

    async def _record(self, row: dict[str, Any], now: datetime) -> bool:
        """Put the breach on the case; False when the command side is away."""
        key = alert_key(row["clock_id"], "breached")
        command_id = alert_id(key + "/record")
        body = {"command_id": str(command_id), "actor": ACTOR, "aggregate_id": row["case_id"],
                "correlation_id": str(command_id),
                "data": {"metric": row["metric"], "cycle": row["cycle"],
                         "deadline": utc(row["breached_at"] or row["deadline"]).isoformat(),
                         "limit_seconds": row["limit_seconds"]}}
        try:
            answer = await send_command(self.nc, command_subject(row["kind"], "record_sla_breach"), body,
                                        self.command_timeout)
        except CommandSideAway as away:
            if not self._command_side_away:  # said once per outage, not per breach and tick
                log.warning("SLA monitor: recording breaches: %s; trying again every tick", away)
                self._command_side_away = True
            self.state.failed(away)
            return False
        if self._command_side_away:
            log.warning("SLA monitor: the command side answers again; recording breaches")
            self._command_side_away = False
        code = None if answer.get("ok") else answer["error"].get("code")
        if code is not None and code != "invalid_transition":  # invalid_transition: already on the case
            log.error("SLA monitor: the case refused breach %s: %s %s", key, code, answer["error"].get("message"))
        await asyncio.to_thread(self.write, mark_recorded, row["clock_id"], now)
        return True
