"""Repair job commands (`ticketing.v1.commands.repair_job.<name>`) and events
(`ticketing.v1.events.repair_job.<name>`). The site address is contact data:
it goes in with `register` and is in no event."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from uuid import UUID

from pydantic import Field, StrictStr

from contracts.complaint import (
    FollowUpOpened,
    LinkFollowUp,
    PriorityChanged,
    RecordSlaBreach,
    Reopen,
    Reopened,
    Reprioritise,
    Revisit,
    Revisited,
    SlaBreached,
)
from contracts.types import (
    Command,
    Day,
    EventData,
    Flag,
    Instant,
    JobKind,
    Money,
    Priority,
    ShortText,
    Text,
    Time,
)

Number = Annotated[StrictStr, Field(min_length=1, max_length=100)]

# ---- commands ---------------------------------------------------------------


class RegisterRepairJob(Command):
    customer_id: UUID
    kind: JobKind
    product_model: ShortText
    fault_description: Text
    priority: Priority
    in_warranty: Flag
    site_address: Annotated[StrictStr, Field(max_length=500)]
    serial_number: Number | None = None
    purchase_date: Day | None = None
    follows_case_id: UUID | None = None


class Dispatch(Command):
    """From a supervisor, the work order; from an agent, a request a
    supervisor approves. `contractor` needs a manager."""

    technician: ShortText
    scheduled_at: Instant
    contractor: Flag = False


class ApproveDispatch(Command):
    pass


class Diagnose(Command):
    diagnosis: Text


class RecordParts(Command):
    """A swap gives both numbers: old_serial with new_serial, old_sim with new_sim."""

    parts: list[ShortText] = Field(min_length=1)
    old_serial: Number | None = None
    new_serial: Number | None = None
    old_sim: Number | None = None
    new_sim: Number | None = None


class ResolveRepairJob(Command):
    """Out of warranty, parts only are charged; in warranty, nothing."""

    work_done: Text
    charge: Money = "0"
    payment_taken: Flag = False


class Cancel(Command):
    reason: Text


COMMANDS: dict[str, type[Command]] = {
    "register": RegisterRepairJob,
    "dispatch": Dispatch,
    "approve_dispatch": ApproveDispatch,
    "diagnose": Diagnose,
    "record_parts": RecordParts,
    "resolve": ResolveRepairJob,
    "revisit": Revisit,
    "reopen": Reopen,
    "cancel": Cancel,
    "link_follow_up": LinkFollowUp,
    "reprioritise": Reprioritise,
    "record_sla_breach": RecordSlaBreach,
}

# ---- events -----------------------------------------------------------------


class RepairJobRegistered(EventData):
    customer_id: UUID
    kind: JobKind
    product_model: str
    fault_description: str
    priority: Priority
    in_warranty: bool
    serial_number: str | None = None
    purchase_date: dt.date | None = None
    follows_case_id: UUID | None = None


class WorkOrder(EventData):
    technician: str
    scheduled_at: Time
    contractor: bool


class DispatchRequested(WorkOrder):
    pass


class Dispatched(WorkOrder):
    pass


class Diagnosed(EventData):
    diagnosis: str


class PartsRecorded(EventData):
    parts: list[str]
    old_serial: str | None = None
    new_serial: str | None = None
    old_sim: str | None = None
    new_sim: str | None = None


class RepairJobResolved(EventData):
    work_done: str
    charge: Money
    payment_taken: bool


class Cancelled(EventData):
    reason: str


EVENTS: dict[str, type[EventData]] = {
    "registered": RepairJobRegistered,
    "dispatch_requested": DispatchRequested,
    "dispatched": Dispatched,
    "analysed": Diagnosed,
    "parts_recorded": PartsRecorded,
    "resolved": RepairJobResolved,
    "revisited": Revisited,
    "reopened": Reopened,
    "cancelled": Cancelled,
    "follow_up_opened": FollowUpOpened,
    "priority_changed": PriorityChanged,
    "sla_breached": SlaBreached,
}
