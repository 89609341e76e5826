"""The case kinds the bus serves: for each, its aggregate and how a register
command's data becomes a new case. Every other command calls the aggregate
method of the same name with the command's data as keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ticketing.case import Case, Context
from ticketing.complaint import Complaint, Registration


@dataclass(frozen=True)
class CaseKind:
    aggregate: type[Case]
    register: Callable[[UUID, dict[str, Any], Context], Case]


KINDS: dict[str, CaseKind] = {
    "complaint": CaseKind(
        Complaint, lambda case_id, data, ctx: Complaint.register(case_id, Registration(**data), ctx)
    ),
}
