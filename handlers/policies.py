"""Policies: what the department does, unasked, when something happens. A
policy reacts to an event with commands, sent over the bus like anyone's.
Their command ids derive from the event's id, so an event delivered twice
sends the same commands twice and the second time gets their first replies:
each reaction happens once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from contracts.types import rfc3339
from handlers.translate import case_id_for
from ticketing.sla.policy import SlaPolicy

Envelope = dict[str, Any]

POLICY_NAMESPACE = UUID("0b7e2f4a-6d1c-4e8b-9a3f-5c2d7e9f1a64")


@dataclass(frozen=True)
class Send:
    """One command a policy sends: `body` is the v1 request."""

    aggregate: str
    command: str
    body: dict[str, Any]

    @property
    def subject(self) -> str:
        return f"ticketing.v1.commands.{self.aggregate}.{self.command}"


def command_id(event: Envelope, purpose: str) -> UUID:
    return uuid5(POLICY_NAMESPACE, f"{event['id']}/{purpose}")


def request(event: Envelope, purpose: str, actor: str, data: dict[str, Any],
            aggregate_id: UUID | str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "command_id": str(command_id(event, purpose)),
        "actor": {"id": actor, "role": "system"},
        "correlation_id": event["correlation_id"],
        "causation_id": event["id"],
        "data": data,
    }
    if aggregate_id is not None:
        body["aggregate_id"] = str(aggregate_id)
    return body


class CallbackPolicy:
    """回访: a resolved case gets one callback, due within `delay`, or sooner
    when the SLA policy gives the case's callback a shorter limit (a VIP's
    12 hours, say: the callback is due when the limit runs out); a completed
    callback records `revisited` on its case and, when the customer is not
    satisfied or asks for something new, opens a follow-up case linked both
    ways."""

    name = "callbacks"
    actor = "policy:callbacks"
    subjects = ["ticketing.v1.events.complaint.resolved", "ticketing.v1.events.repair_job.resolved",
                "ticketing.v1.events.callback.completed"]

    def __init__(self, case: Callable[[UUID], Any], *, delay: timedelta, max_attempts: int,
                 sla: SlaPolicy | None = None) -> None:
        self.case = case
        """Loads a case, or a customer, by id."""
        self.delay = delay
        self.max_attempts = max_attempts
        self.sla = sla

    def react(self, event: Envelope) -> list[Send]:
        if event["type"] in ("complaint.resolved", "repair_job.resolved"):
            return self._schedule(event)
        if event["type"] == "callback.completed":
            return self._follow(event)
        return []

    def _schedule(self, event: Envelope) -> list[Send]:
        case = self.case(UUID(event["aggregate_id"]))
        resolved_at = datetime.fromisoformat(event["occurred_at"])
        due = resolved_at + self.delay
        if self.sla is not None:
            tier = self.case(case.customer_id).tier
            target = self.sla.target(event["aggregate_type"], tier, case.priority, "callback")
            if target is not None:
                due = min(due, target.calendar.add(resolved_at, target.limit))
        data = {"case_id": event["aggregate_id"], "case_type": event["aggregate_type"],
                "customer_id": str(case.customer_id), "due_at": rfc3339(due),
                "max_attempts": self.max_attempts}
        return [Send("callback", "schedule", request(event, "schedule", self.actor, data))]

    def _follow(self, event: Envelope) -> list[Send]:
        outcome = event["data"]
        kind, case_id = outcome["case_type"], outcome["case_id"]
        sends = [Send(kind, "revisit", request(
            event, "revisit", self.actor,
            {"satisfied": outcome["satisfied"], "score": outcome["score"], "comment": outcome["comment"]},
            case_id))]
        if outcome["satisfied"] and not outcome["new_request"]:
            return sends
        original = self.case(UUID(case_id))
        what = outcome["new_request"] or outcome["comment"] or "回访不满意 (not satisfied at the callback)"
        register = request(event, "follow_up", self.actor, FOLLOW_UPS[kind](original, what) | {
            "customer_id": str(original.customer_id), "priority": original.priority, "follows_case_id": case_id})
        follow_up_id = case_id_for(UUID(register["command_id"]))
        return [*sends,
                Send(kind, "register", register),
                Send(kind, "link_follow_up", request(event, "link_follow_up", self.actor,
                                                     {"follow_up_case_id": str(follow_up_id)}, case_id))]


FOLLOW_UPS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    # What a follow-up takes over from the case it follows, by kind.
    "complaint": lambda original, what: {
        "channel": "phone", "category": original.category, "description": what,
        "product": original.product, "region": original.region},
    "repair_job": lambda original, what: {
        "kind": "repair", "product_model": original.product_model, "fault_description": what,
        "in_warranty": original.in_warranty, "site_address": original.site_address,
        "serial_number": original.serial_number},
}
