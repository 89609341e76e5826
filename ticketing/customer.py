"""Customer / 客户: service tier, region, contact data, and the marks a
supervisor puts on a customer (malicious complainant, extortion attempt).

Contact data (name, phone, address) is confidential (客户资料保密制度): it is
in this aggregate's events, which the store keeps encrypted, and nowhere
else; the published events and the case read models carry the customer id,
tier and region only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ticketing.case import INTAKE, LEADS, Case, Context, Lifecycle, Step
from ticketing.errors import InvalidTransition
from ticketing.values import FORGOTTEN, Checks, Mark, Role, Tier

ACTIVE = "active"
FORGOTTEN_STATUS = "forgotten"

LIFECYCLE = Lifecycle(
    "customer",
    {
        # command          allowed from        to    who
        "change_tier": Step(frozenset({ACTIVE}), None, LEADS),
        "flag": Step(frozenset({ACTIVE}), None, LEADS),
        "unflag": Step(frozenset({ACTIVE}), None, LEADS),
        "clear_danger": Step(frozenset({ACTIVE}), None, LEADS),
        "forget": Step(frozenset({ACTIVE}), FORGOTTEN_STATUS, frozenset({Role.MANAGER})),
    },
    register_roles=INTAKE,
)

CONTACT_FIELDS = ("name", "phone", "address")
CONTACT_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR, Role.MANAGER})
"""Who may read a customer's contact data: the people who call them back.
Other services (`system`) and technicians (who get a job's site address with
the job) see the customer without it."""


class Customer(Case):
    lifecycle = LIFECYCLE
    contact_fields = CONTACT_FIELDS

    def __init__(self) -> None:
        self.status = ACTIVE
        self.waiting_on_customer = False
        self.marks: dict[str, dict[str, Any]] = {}
        self.mark_history: list[dict[str, Any]] = []
        self.danger_clearances: list[dict[str, Any]] = []
        self.forgotten: dict[str, Any] | None = None

    class Registered(Aggregate.Created, Case.Event):
        confidential = True
        sealed = CONTACT_FIELDS
        name: str
        phone: str
        address: str | None
        tier: str
        region: str

        def apply(self, aggregate: Any) -> None:
            for field in ("name", "phone", "address", "tier", "region"):
                setattr(aggregate, field, getattr(self, field))
            aggregate.status = ACTIVE

    class TierChanged(Case.Event):
        step = "change_tier"
        tier: str
        reason: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.tier = self.tier

    class Flagged(Case.Event):
        step = "flag"
        mark: str
        reason: str
        case_id: UUID | None

        def evolve(self, aggregate: Any) -> None:
            entry = {"mark": self.mark, "reason": self.reason, "case_id": self.case_id, "at": self.timestamp,
                     "by": self.actor["id"]}
            aggregate.marks = {**aggregate.marks, self.mark: entry}
            aggregate.mark_history = [*aggregate.mark_history, {"flagged": True, **entry}]

    class Unflagged(Case.Event):
        step = "unflag"
        mark: str
        reason: str

        def evolve(self, aggregate: Any) -> None:
            aggregate.marks = {k: v for k, v in aggregate.marks.items() if k != self.mark}
            aggregate.mark_history = [*aggregate.mark_history, {
                "flagged": False, "mark": self.mark, "reason": self.reason, "at": self.timestamp,
                "by": self.actor["id"]}]

    class DangerCleared(Case.Event):
        step = "clear_danger"
        reason: str

        def evolve(self, aggregate: Any) -> None:
            aggregate.danger_clearances = [*aggregate.danger_clearances, {
                "reason": self.reason, "at": self.timestamp, "by": self.actor["id"]}]

    class Forgotten(Case.Event):
        """The customer's contact data is destroyed (their key: see the store);
        their cases, figures and marks stay."""

        step = "forget"
        reason: str

        def evolve(self, aggregate: Any) -> None:
            for field in CONTACT_FIELDS:
                setattr(aggregate, field, FORGOTTEN)
            aggregate.forgotten = {"reason": self.reason, "at": self.timestamp, "by": self.actor["id"]}

    @classmethod
    def register(cls, customer_id: UUID, ctx: Context, *, name: str, phone: str, tier: str, region: str,
                 address: str | None = None) -> Customer:
        LIFECYCLE.check_register(ctx.role)
        checks = Checks()
        name_ = checks.text("name", name, max_length=200)
        phone_ = checks.text("phone", phone, max_length=50)
        address_ = checks.text("address", address, required=False, max_length=500)
        checks.choice("tier", tier, Tier)
        region_ = checks.text("region", region, max_length=200)
        checks.done()
        return cls._create(cls.Registered, id=customer_id, **ctx.event_fields(), name=name_, phone=phone_,
                           address=address_, tier=tier, region=region_)

    def change_tier(self, ctx: Context, tier: str, reason: str | None = None) -> None:
        self._step("change_tier", ctx)
        checks = Checks()
        checks.choice("tier", tier, Tier)
        reason = checks.text("reason", reason, required=False)
        checks.done()
        if tier == self.tier:
            raise InvalidTransition(f"the customer is already {tier}")
        self._record(self.TierChanged, ctx, tier=tier, reason=reason)

    def flag(self, ctx: Context, mark: str, reason: str, case_id: UUID | None = None) -> None:
        """Always with a reason, and the case where it happened if there is one."""
        self._step("flag", ctx)
        checks = Checks()
        checks.choice("mark", mark, Mark)
        reason_ = checks.text("reason", reason)
        checks.done()
        if mark in self.marks:
            raise InvalidTransition(f"the customer is already marked {mark}")
        self._record(self.Flagged, ctx, mark=mark, reason=reason_, case_id=case_id)

    def unflag(self, ctx: Context, mark: str, reason: str) -> None:
        self._step("unflag", ctx)
        checks = Checks()
        checks.choice("mark", mark, Mark)
        reason_ = checks.text("reason", reason)
        checks.done()
        if mark not in self.marks:
            raise InvalidTransition(f"the customer is not marked {mark}")
        self._record(self.Unflagged, ctx, mark=mark, reason=reason_)

    def clear_danger(self, ctx: Context, reason: str) -> None:
        """A supervisor takes the customer off the dangerous-customer list:
        what put them there no longer counts (new reasons do). Marks stay."""
        self._step("clear_danger", ctx)
        checks = Checks()
        reason_ = checks.text("reason", reason)
        checks.done()
        self._record(self.DangerCleared, ctx, reason=reason_)

    def forget(self, ctx: Context, reason: str) -> None:
        """A manager forgets the customer (a request to erase their data):
        with a reason, kept in history."""
        self._step("forget", ctx)
        checks = Checks()
        reason_ = checks.text("reason", reason)
        checks.done()
        self._record(self.Forgotten, ctx, reason=reason_)

    def view(self, role: Role) -> dict[str, Any]:
        """The customer as `role` may see it: with contact data only for the
        roles that may read it."""
        if role in CONTACT_ROLES:
            return {**self.state(), **{field: getattr(self, field) for field in CONTACT_FIELDS}}
        return self.state()
