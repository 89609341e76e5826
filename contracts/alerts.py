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


class DangerReason(BaseModel):
    rule: str
    type: str
    level: Literal["watch", "high", "critical"]
    text: str
    case_ids: list[UUID]
    """The latest cases behind it, at most 20 (so a list stays well under the bus's payload limit)."""
    case_count: int = 0
    """How many cases are behind it in all."""
    since: Time


class DangerousCustomer(BaseModel):
    """A customer on the dangerous-customer list (危险客户统计表)."""

    customer_id: UUID
    tier: Tier
    region: str | None
    level: Literal["watch", "high", "critical"]
    danger_type: Literal["churn_risk", "malicious_complainant", "extortion", "escalation_magnet"]
    types: dict[str, str]
    """Every danger type that holds, with its level."""
    reasons: list[DangerReason]
    entered_at: Time
    counter_measure: str


class CustomerAlert(BaseModel):
    """`customer.dangerous`: a customer entered the list or moved to a higher
    level (`previous_level` is None on entering); `customer.cleared`: they
    left it (their reasons aged out, or a supervisor cleared them)."""

    id: UUID
    type: Literal["customer.dangerous", "customer.cleared"]
    raised_at: Time
    customer_id: UUID
    level: Literal["watch", "high", "critical"] | None
    previous_level: Literal["watch", "high", "critical"] | None
    danger_type: str
    entered_at: Time
    reasons: list[DangerReason]
    counter_measure: str | None


ALERTS["customer.dangerous"] = CustomerAlert
ALERTS["customer.cleared"] = CustomerAlert
