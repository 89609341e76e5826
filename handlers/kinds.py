"""The case kinds the bus serves: for each, its aggregate, the command that
creates one, and how that command's data becomes a new case. Every other
command calls the aggregate method of the same name with the command's data
as keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ticketing.callback import Callback
from ticketing.case import Case, Context
from ticketing.complaint import Complaint, Registration
from ticketing.customer import Customer
from ticketing.repair_job import JobRegistration, RepairJob


@dataclass(frozen=True)
class CaseKind:
    aggregate: type[Case]
    creates: str
    """The command that creates a case of this kind (its id comes from the command id)."""
    create: Callable[[UUID, dict[str, Any], Context], Case]


KINDS: dict[str, CaseKind] = {
    "complaint": CaseKind(
        Complaint, "register",
        lambda case_id, data, ctx: Complaint.register(case_id, Registration(**data), ctx),
    ),
    "repair_job": CaseKind(
        RepairJob, "register",
        lambda job_id, data, ctx: RepairJob.register(job_id, JobRegistration(**data), ctx),
    ),
    "customer": CaseKind(
        Customer, "register", lambda customer_id, data, ctx: Customer.register(customer_id, ctx, **data),
    ),
    "callback": CaseKind(
        Callback, "schedule", lambda callback_id, data, ctx: Callback.schedule(callback_id, ctx, **data),
    ),
}
