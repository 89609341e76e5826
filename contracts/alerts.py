"""Alerts (`ticketing.v1.alerts.<kind>`): published when something needs a
person, into the JetStream stream `TICKETING_ALERTS`, once per fact. Each
message's `Nats-Msg-Id` header is the alert's key and `id` is derived from it,
so a copy (a restart, a second monitor) is dropped by the stream and
recognisable by any subscriber."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel

from contracts.types import Metric, Priority, Tier, Time

ALERT_STREAM = "TICKETING_ALERTS"


class SlaAlert(BaseModel):
    """`sla.warning`: a share of the limit (default 75 %) is used up;
    `sla.breached`: the deadline passed before the step. Times are when the
    limit's clock started, its deadline and its warning instant; elapsed is
    counted on the limit's calendar, without the time spent waiting on the
    customer."""

    id: UUID
    type: Literal["sla.warning", "sla.breached"]
    raised_at: Time
    case_id: UUID
    case_type: Literal["complaint", "repair_job", "callback"]
    customer_id: UUID
    metric: Metric
    cycle: int
    tier: Tier
    priority: Priority
    assignee: str | None
    started_at: Time
    deadline: Time
    warning_at: Time | None
    elapsed_seconds: float
    limit_seconds: int
    calendar: str
    reasons: list[str]


ALERTS: dict[str, type[BaseModel]] = {"sla.warning": SlaAlert, "sla.breached": SlaAlert}
