"""Customer commands (`ticketing.v1.commands.customer.<name>`) and events
(`ticketing.v1.events.customer.<name>`). Contact data (name, phone, address)
goes in with `register` and never comes out in an event: other services get
the customer id, tier and region."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field, StrictStr

from contracts.types import Command, EventData, Mark, ShortText, Text, Tier

Phone = Annotated[StrictStr, Field(min_length=3, max_length=50)]
Address = Annotated[StrictStr, Field(max_length=500)]

# ---- commands ---------------------------------------------------------------


class RegisterCustomer(Command):
    name: ShortText
    phone: Phone
    tier: Tier
    region: ShortText
    address: Address | None = None


class ChangeTier(Command):
    tier: Tier
    reason: Text | None = None


class Flag(Command):
    """Supervisor or above; always with a reason."""

    mark: Mark
    reason: Text
    case_id: UUID | None = None


class Unflag(Command):
    mark: Mark
    reason: Text


class ClearDanger(Command):
    """Supervisor or above: off the dangerous-customer list, with a reason (kept in history)."""

    reason: Text


class ForgetCustomer(Command):
    """Manager only: destroys the customer's contact data everywhere (their
    key), keeping their cases and figures; with a reason, kept in history."""

    reason: Text


COMMANDS: dict[str, type[Command]] = {
    "register": RegisterCustomer,
    "change_tier": ChangeTier,
    "flag": Flag,
    "unflag": Unflag,
    "clear_danger": ClearDanger,
    "forget": ForgetCustomer,
}

# ---- events -----------------------------------------------------------------


class CustomerRegistered(EventData):
    tier: Tier
    region: str


class TierChanged(EventData):
    tier: Tier
    reason: str | None = None


class Flagged(EventData):
    mark: Mark
    reason: str
    case_id: UUID | None = None


class Unflagged(EventData):
    mark: Mark
    reason: str


class DangerCleared(EventData):
    reason: str


class Forgotten(EventData):
    """The customer's contact data was destroyed; the reason is the manager's."""

    reason: str


EVENTS: dict[str, type[EventData]] = {
    "registered": CustomerRegistered,
    "tier_changed": TierChanged,
    "flagged": Flagged,
    "unflagged": Unflagged,
    "danger_cleared": DangerCleared,
    "forgotten": Forgotten,
}
