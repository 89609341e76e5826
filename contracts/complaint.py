"""Complaint commands (`ticketing.v1.commands.complaint.<name>`) and events
(`ticketing.v1.events.complaint.<name>`)."""

from __future__ import annotations

from uuid import UUID

from pydantic import ConfigDict

from contracts.types import (
    Category,
    Channel,
    Command,
    Cycle,
    Department,
    EscalationLevel,
    EventData,
    Flag,
    Instant,
    Metric,
    Money,
    Priority,
    ResponsibleParty,
    Score,
    Seconds,
    Severity,
    ShortText,
    Text,
    Time,
)

# ---- commands ---------------------------------------------------------------


class Register(Command):
    customer_id: UUID
    channel: Channel
    category: Category
    priority: Priority
    description: Text
    product: ShortText | None = None
    region: ShortText | None = None
    occurred_at: Instant | None = None
    follows_case_id: UUID | None = None
    """Set on a follow-up case: the case it follows."""
    channel_detail: ShortText | None = None
    """Which line of the channel: the hotline number dialled, the WeChat
    account, the branch visited (new in `complaint.registered` v2)."""
    about_staff: ShortText | None = None
    """The member of staff the complaint is about (a customer dispute, counted
    in their assessment): their user id (new in `complaint.registered` v3)."""


class Acknowledge(Command):
    note: Text | None = None


class Assign(Command):
    assignee: ShortText
    department: Department | None = None


class Analyse(Command):
    root_cause: Text
    responsible_party: ResponsibleParty
    severity: Severity
    plan: Text
    department: Department | None = None


class Escalate(Command):
    reason: Text
    to: EscalationLevel | None = None


class AwaitCustomer(Command):
    reason: Text


class Resume(Command):
    note: Text | None = None


class Resolve(Command):
    resolution: Text
    first_contact: Flag
    compensation: Money | None = None


class Revisit(Command):
    satisfied: Flag
    score: Score
    comment: Text | None = None


class Reopen(Command):
    reason: Text


class Withdraw(Command):
    reason: Text | None = None


class Close(Command):
    note: Text | None = None


class LinkFollowUp(Command):
    follow_up_case_id: UUID


class Reprioritise(Command):
    """Supervisor or above; the case's service limits follow."""

    priority: Priority
    reason: Text


class RecordSlaBreach(Command):
    """Sent by the SLA monitor (role system), once per limit and cycle."""

    metric: Metric
    cycle: Cycle
    deadline: Instant
    limit_seconds: Seconds


COMMANDS: dict[str, type[Command]] = {
    "register": Register,
    "acknowledge": Acknowledge,
    "assign": Assign,
    "analyse": Analyse,
    "escalate": Escalate,
    "await_customer": AwaitCustomer,
    "resume": Resume,
    "resolve": Resolve,
    "revisit": Revisit,
    "reopen": Reopen,
    "withdraw": Withdraw,
    "close": Close,
    "link_follow_up": LinkFollowUp,
    "reprioritise": Reprioritise,
    "record_sla_breach": RecordSlaBreach,
}

# ---- events -----------------------------------------------------------------


# `complaint.registered` as version 1 published it (its schema file,
# complaint.registered.json, stays byte for byte; the events stored then read as v2).
class RegisteredV1(EventData):
    model_config = ConfigDict(title="Registered")

    customer_id: UUID
    channel: Channel
    category: Category
    priority: Priority
    description: str
    product: str | None = None
    region: str | None = None
    occurred_at: Time | None = None
    follows_case_id: UUID | None = None


class RegisteredV2(RegisteredV1):
    """Version 2 (`complaint.registered.v2.json`): `channel_detail` added;
    null on the events stored before it existed."""

    model_config = ConfigDict(title="Registered")

    channel_detail: str | None = None


class Registered(RegisteredV2):
    """Version 3 (`complaint.registered.v3.json`): `about_staff` added (the
    member of staff a customer dispute is about); null on earlier events."""

    about_staff: str | None = None


class Acknowledged(EventData):
    note: str | None = None


class Assigned(EventData):
    assignee: str
    department: Department | None = None


class Analysed(EventData):
    root_cause: str
    responsible_party: ResponsibleParty
    severity: Severity
    plan: str
    department: Department | None = None


class Escalated(EventData):
    level: EscalationLevel
    reason: str


class CustomerAwaited(EventData):
    reason: str


class Resumed(EventData):
    note: str | None = None


class Resolved(EventData):
    resolution: str
    first_contact: bool
    compensation: Money | None = None


class Revisited(EventData):
    satisfied: bool
    score: Score
    comment: str | None = None


class Reopened(EventData):
    reason: str


class Withdrawn(EventData):
    reason: str | None = None


class Closed(EventData):
    note: str | None = None


class FollowUpOpened(EventData):
    follow_up_case_id: UUID


class PriorityChanged(EventData):
    priority: Priority
    reason: str


class SlaBreached(EventData):
    metric: Metric
    cycle: int
    deadline: Time
    limit_seconds: int


EARLIER_VERSIONS: dict[str, dict[int, type[EventData]]] = {"registered": {1: RegisteredV1, 2: RegisteredV2}}
"""Every event's earlier versions, kept so their schemas stay published."""

EVENTS: dict[str, type[EventData]] = {
    "registered": Registered,
    "acknowledged": Acknowledged,
    "assigned": Assigned,
    "analysed": Analysed,
    "escalated": Escalated,
    "customer_awaited": CustomerAwaited,
    "resumed": Resumed,
    "resolved": Resolved,
    "revisited": Revisited,
    "reopened": Reopened,
    "withdrawn": Withdrawn,
    "closed": Closed,
    "follow_up_opened": FollowUpOpened,
    "priority_changed": PriorityChanged,
    "sla_breached": SlaBreached,
}
