"""Repair job / 售后维修与安装派工: registered -> dispatched -> analysed
(diagnosed on site) -> resolved -> revisited.

A dispatch needs a supervisor: a supervisor dispatches, or an agent asks and
a supervisor approves; sending an outside contractor needs a manager. Parts
swapped keep both numbers. Work in warranty is free; out of warranty only
parts are charged. The site address is contact data: the registration event
is stored encrypted and published without it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ticketing.case import (
    INTAKE,
    LEADS,
    Case,
    Context,
    FollowUp,
    Lifecycle,
    LoopCase,
    PriorityChange,
    SlaBreach,
    Step,
    record_sla_breach_step,
)
from ticketing.errors import Forbidden, InvalidTransition
from ticketing.values import Checks, JobKind, Priority, Role

REGISTERED = "registered"
DISPATCH_REQUESTED = "dispatch_requested"
DISPATCHED = "dispatched"
ANALYSED = "analysed"
RESOLVED = "resolved"
REVISITED = "revisited"
REOPENED = "reopened"
CANCELLED = "cancelled"

ON_SITE = frozenset({Role.TECHNICIAN, Role.SUPERVISOR, Role.MANAGER, Role.SYSTEM})
WAITING = frozenset({REGISTERED, REOPENED})

LIFECYCLE = Lifecycle(
    "repair_job",
    {
        # command            allowed from                              to            who
        "dispatch": Step(WAITING, None),  # an agent's asks, a supervisor's dispatches
        "approve_dispatch": Step(frozenset({DISPATCH_REQUESTED}), DISPATCHED, LEADS),
        "diagnose": Step(frozenset({DISPATCHED}), ANALYSED, ON_SITE),
        "record_parts": Step(frozenset({DISPATCHED, ANALYSED}), None, ON_SITE),
        "resolve": Step(frozenset({DISPATCHED, ANALYSED}), RESOLVED, ON_SITE),
        "revisit": Step(frozenset({RESOLVED}), REVISITED),
        "reopen": Step(frozenset({RESOLVED, REVISITED}), REOPENED),
        "cancel": Step(WAITING | {DISPATCH_REQUESTED, DISPATCHED}, CANCELLED),
        "link_follow_up": Step(frozenset({RESOLVED, REVISITED, REOPENED, CANCELLED}), None, waiting=None),
        "reprioritise": Step(WAITING | {DISPATCH_REQUESTED, DISPATCHED, ANALYSED}, None, LEADS, waiting=None),
        "record_sla_breach": record_sla_breach_step(
            WAITING | {DISPATCH_REQUESTED, DISPATCHED, ANALYSED, RESOLVED, REVISITED, CANCELLED}),
    },
    register_roles=INTAKE,
)


@dataclass(frozen=True)
class JobRegistration:
    customer_id: UUID
    kind: str
    product_model: str
    fault_description: str
    priority: str
    in_warranty: bool
    site_address: str
    serial_number: str | None = None
    purchase_date: date | None = None
    follows_case_id: UUID | None = None


class RepairJob(LoopCase):
    lifecycle = LIFECYCLE
    contact_fields = ("site_address",)

    def __init__(self) -> None:
        self.status = REGISTERED
        self.waiting_on_customer = False
        self.follow_up_case_ids: list[UUID] = []
        self.sla_breaches: list[dict[str, Any]] = []
        self.work_order: dict[str, Any] | None = None
        self.diagnosis: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.resolution: dict[str, Any] | None = None
        self.revisit_outcome: dict[str, Any] | None = None

    # ---- events -------------------------------------------------------------

    class Registered(Aggregate.Created, Case.Event):
        confidential = True  # the site address
        sealed = ("site_address",)
        sealed_for = "customer_id"
        customer_id: UUID
        kind: str
        product_model: str
        fault_description: str
        priority: str
        in_warranty: bool
        site_address: str
        serial_number: str | None
        purchase_date: date | None
        follows_case_id: UUID | None

        def apply(self, aggregate: Any) -> None:
            for name in ("customer_id", "kind", "product_model", "fault_description", "priority", "in_warranty",
                         "site_address", "serial_number", "purchase_date", "follows_case_id"):
                setattr(aggregate, name, getattr(self, name))
            aggregate.status = REGISTERED

    class DispatchRequested(Case.Event):
        technician: str
        scheduled_at: datetime
        contractor: bool

        def evolve(self, aggregate: Any) -> None:
            aggregate.status = DISPATCH_REQUESTED
            aggregate.work_order = {"technician": self.technician, "scheduled_at": self.scheduled_at,
                                  "contractor": self.contractor, "requested_by": self.actor["id"],
                                  "approved_by": None}

    class Dispatched(Case.Event):
        technician: str
        scheduled_at: datetime
        contractor: bool

        def evolve(self, aggregate: Any) -> None:
            requested_by = aggregate.work_order["requested_by"] if aggregate.work_order else self.actor["id"]
            aggregate.status = DISPATCHED
            aggregate.work_order = {"technician": self.technician, "scheduled_at": self.scheduled_at,
                                  "contractor": self.contractor, "requested_by": requested_by,
                                  "approved_by": self.actor["id"]}

    class Analysed(Case.Event):
        step = "diagnose"
        diagnosis: str

        def evolve(self, aggregate: Any) -> None:
            aggregate.diagnosis = self.diagnosis

    class PartsRecorded(Case.Event):
        step = "record_parts"
        parts: list[str]
        old_serial: str | None
        new_serial: str | None
        old_sim: str | None
        new_sim: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.parts = [*aggregate.parts, {
                "parts": self.parts, "old_serial": self.old_serial, "new_serial": self.new_serial,
                "old_sim": self.old_sim, "new_sim": self.new_sim}]
            if self.new_serial:
                aggregate.serial_number = self.new_serial

    class Resolved(Case.Event):
        step = "resolve"
        work_done: str
        charge: Decimal
        payment_taken: bool

        def evolve(self, aggregate: Any) -> None:
            aggregate.resolution = {"work_done": self.work_done, "charge": self.charge,
                                    "payment_taken": self.payment_taken}

    class Revisited(Case.Event):
        step = "revisit"
        satisfied: bool
        score: int
        comment: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.revisit_outcome = {"satisfied": self.satisfied, "score": self.score, "comment": self.comment}

    class Reopened(Case.Event):
        step = "reopen"
        reason: str

        def evolve(self, aggregate: Any) -> None:
            aggregate.resolution = aggregate.revisit_outcome = aggregate.work_order = None

    class Cancelled(Case.Event):
        step = "cancel"
        reason: str

    class FollowUpOpened(FollowUp):
        pass

    class SlaBreached(SlaBreach):
        pass

    class PriorityChanged(PriorityChange):
        pass

    # ---- commands -----------------------------------------------------------

    @classmethod
    def register(cls, job_id: UUID, registration: JobRegistration, ctx: Context) -> RepairJob:
        LIFECYCLE.check_register(ctx.role)
        r = registration
        checks = Checks()
        checks.choice("kind", r.kind, JobKind)
        checks.choice("priority", r.priority, Priority)
        model = checks.text("product_model", r.product_model, max_length=200)
        fault = checks.text("fault_description", r.fault_description)
        address = checks.text("site_address", r.site_address, max_length=500)
        serial = checks.text("serial_number", r.serial_number, required=False, max_length=100)
        if r.purchase_date is not None and r.purchase_date > ctx.at.date():
            checks.fail("purchase_date", "must not be in the future")
        checks.done()
        return cls._create(cls.Registered, id=job_id, **ctx.event_fields(), customer_id=r.customer_id,
                           kind=r.kind, product_model=model, fault_description=fault, priority=r.priority,
                           in_warranty=r.in_warranty, site_address=address, serial_number=serial,
                           purchase_date=r.purchase_date, follows_case_id=r.follows_case_id)

    def dispatch(self, ctx: Context, technician: str, scheduled_at: datetime, contractor: bool = False) -> None:
        """A supervisor's dispatch is the approved work order (派工单); an
        agent's is a request waiting for a supervisor. A contractor needs a
        manager either way."""
        self._step("dispatch", ctx)
        technician_ = self._check_order(technician, scheduled_at, ctx)
        if ctx.role in LEADS:
            self._check_contractor(contractor, ctx)
            self._record(self.Dispatched, ctx, technician=technician_, scheduled_at=scheduled_at,
                         contractor=contractor)
        else:
            self._record(self.DispatchRequested, ctx, technician=technician_, scheduled_at=scheduled_at,
                         contractor=contractor)

    def approve_dispatch(self, ctx: Context) -> None:
        self._step("approve_dispatch", ctx)
        assert self.work_order is not None
        self._check_contractor(self.work_order["contractor"], ctx)
        if self.work_order["requested_by"] == ctx.actor_id:
            raise Forbidden("a dispatch is approved by someone other than who asked for it")
        self._record(self.Dispatched, ctx, technician=self.work_order["technician"],
                     scheduled_at=self.work_order["scheduled_at"], contractor=self.work_order["contractor"])

    @staticmethod
    def _check_order(technician: str, scheduled_at: datetime, ctx: Context) -> str:
        checks = Checks()
        name = checks.text("technician", technician, max_length=200)
        if scheduled_at.tzinfo is None:
            checks.fail("scheduled_at", "must carry a time zone")
        checks.done()
        return str(name)

    @staticmethod
    def _check_contractor(contractor: bool, ctx: Context) -> None:
        if contractor and ctx.role not in (Role.MANAGER, Role.SYSTEM):
            raise Forbidden("sending an outside contractor needs a manager")

    def _step(self, command: str, ctx: Context) -> Step:
        """On site, a technician acts on the jobs dispatched to them only
        (a supervisor and above on any): a technician never closes a
        colleague's job."""
        step = super()._step(command, ctx)
        sent = self.work_order["technician"] if self.work_order else None
        if ctx.role is Role.TECHNICIAN and sent != ctx.actor_id:
            raise Forbidden(f"this job was dispatched to {sent}: only they, or a supervisor, may {command} it")
        return step

    def diagnose(self, ctx: Context, diagnosis: str) -> None:
        self._step("diagnose", ctx)
        checks = Checks()
        diagnosis_ = checks.text("diagnosis", diagnosis)
        checks.done()
        self._record(self.Analysed, ctx, diagnosis=diagnosis_)

    def record_parts(self, ctx: Context, parts: list[str], old_serial: str | None = None,
                     new_serial: str | None = None, old_sim: str | None = None, new_sim: str | None = None) -> None:
        """A swapped device or SIM keeps both its old and its new number."""
        self._step("record_parts", ctx)
        checks = Checks()
        if not parts or any(not isinstance(p, str) or not p.strip() for p in parts):
            checks.fail("parts", "must list at least one part, none blank")
        given = {"old_serial": old_serial, "new_serial": new_serial, "old_sim": old_sim, "new_sim": new_sim}
        numbers = {field: checks.text(field, value, required=False, max_length=100)
                   for field, value in given.items()}
        for old, new in (("old_serial", "new_serial"), ("old_sim", "new_sim")):
            if (numbers[old] is None) != (numbers[new] is None):
                checks.fail(new if numbers[new] is None else old, f"a swap records both {old} and {new}")
        checks.done()
        self._record(self.PartsRecorded, ctx, parts=[p.strip() for p in parts], **numbers)

    def resolve(self, ctx: Context, work_done: str, charge: str | Decimal = "0", payment_taken: bool = False) -> None:
        """In warranty the work is free; out of warranty only parts are
        charged, so a charge needs parts recorded."""
        self._step("resolve", ctx)
        checks = Checks()
        work = checks.text("work_done", work_done)
        amount = checks.money("charge", charge)
        checks.done()
        amount = amount or Decimal("0.00")
        if amount and self.in_warranty:
            raise InvalidTransition("the job is in warranty: the charge must be 0")
        if amount and not self.parts:
            raise InvalidTransition("only parts are charged, and none were recorded")
        self._record(self.Resolved, ctx, work_done=work, charge=amount, payment_taken=payment_taken)

    def cancel(self, ctx: Context, reason: str) -> None:
        self._step("cancel", ctx)
        checks = Checks()
        reason_ = checks.text("reason", reason)
        checks.done()
        self._record(self.Cancelled, ctx, reason=reason_)
