"""The complaint aggregate, in plain Python: the closed loop and its rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ticketing.case import Context
from ticketing.complaint import Complaint, Registration
from ticketing.errors import Forbidden, InvalidTransition, ValidationFailed
from ticketing.values import Role

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def ctx(role: Role = Role.AGENT, minutes: int = 0) -> Context:
    return Context(actor_id=f"{role.value}-1", role=role, at=T0 + timedelta(minutes=minutes),
                   correlation_id=uuid.uuid4())


def registration(**overrides: object) -> Registration:
    fields: dict[str, object] = dict(customer_id=uuid.uuid4(), channel="phone", category="billing",
                                     priority="normal", description="多收了话费 charged twice")
    fields.update(overrides)
    return Registration(**fields)  # type: ignore[arg-type]


def registered(**overrides: object) -> Complaint:
    return Complaint.register(uuid.uuid4(), registration(**overrides), ctx())


def resolved() -> Complaint:
    case = registered()
    case.acknowledge(ctx(minutes=5))
    case.resolve(ctx(minutes=30), resolution="refunded the double charge", first_contact=True)
    return case


class TestRegister:
    def test_registered_complaint_keeps_what_the_customer_said(self) -> None:
        case = registered(region="华南", product="套餐 58")
        assert case.status == "registered"
        assert case.description == "多收了话费 charged twice"
        assert case.region == "华南" and case.product == "套餐 58"
        assert case.created_on == T0 and case.version == 1

    def test_every_bad_field_is_reported_at_once(self) -> None:
        with pytest.raises(ValidationFailed) as caught:
            Complaint.register(uuid.uuid4(), registration(channel="fax", priority="asap", description="  "),
                               ctx())
        assert {p.field for p in caught.value.problems} == {"channel", "priority", "description"}

    def test_a_complaint_about_the_future_is_refused(self) -> None:
        with pytest.raises(ValidationFailed, match="occurred_at"):
            registered(occurred_at=T0 + timedelta(days=1))

    def test_a_technician_does_not_register_complaints(self) -> None:
        with pytest.raises(Forbidden):
            Complaint.register(uuid.uuid4(), registration(), ctx(Role.TECHNICIAN))


class TestClosedLoop:
    def test_registered_analysed_resolved_revisited(self) -> None:
        case = registered()
        case.acknowledge(ctx(minutes=10), note="called back the customer")
        case.analyse(ctx(minutes=60), root_cause="billing batch ran twice", responsible_party="company",
                     severity="major", plan="refund and fix the batch", department="technical")
        case.resolve(ctx(minutes=120), resolution="refunded", first_contact=False, compensation="20.5")
        case.revisit(ctx(minutes=600), satisfied=True, score=95, comment="谢谢")
        assert case.status == "revisited"
        assert case.acknowledged_at == T0 + timedelta(minutes=10)
        assert case.analysed_at == T0 + timedelta(minutes=60)
        assert case.resolution == {"resolution": "refunded", "first_contact": False,
                                   "compensation": Decimal("20.50")}
        assert case.revisit_outcome == {"satisfied": True, "score": 95, "comment": "谢谢"}
        assert case.version == 5

    def test_first_contact_resolution_needs_no_analysis(self) -> None:
        case = registered()
        case.resolve(ctx(minutes=3), resolution="explained the tariff", first_contact=True)
        assert case.status == "resolved"

    def test_closing_after_the_callback(self) -> None:
        case = resolved()
        case.revisit(ctx(minutes=90), satisfied=True, score=90)
        case.close(ctx(minutes=91))
        assert case.status == "closed" and case.closed_at == T0 + timedelta(minutes=91)


class TestIllegalMoves:
    def test_resolving_a_withdrawn_complaint(self) -> None:
        case = registered()
        case.withdraw(ctx(minutes=1), reason="customer found the parcel")
        with pytest.raises(InvalidTransition, match="withdrawn"):
            case.resolve(ctx(minutes=2), resolution="x", first_contact=True)
        assert case.version == 2

    def test_revisiting_an_unresolved_complaint(self) -> None:
        with pytest.raises(InvalidTransition):
            registered().revisit(ctx(), satisfied=True, score=80)

    def test_acknowledging_twice(self) -> None:
        case = registered()
        case.acknowledge(ctx(minutes=1))
        with pytest.raises(InvalidTransition):
            case.acknowledge(ctx(minutes=2))

    def test_failed_command_records_nothing(self) -> None:
        case = registered()
        before = len(case.pending_events)
        with pytest.raises(ValidationFailed):
            case.resolve(ctx(), resolution="ok", first_contact=True, compensation="-5")
        assert len(case.pending_events) == before and case.status == "registered"


class TestValues:
    @pytest.mark.parametrize("amount", ["abc", "1.234", "-1", "NaN", "Infinity"])
    def test_compensation_must_be_money(self, amount: str) -> None:
        with pytest.raises(ValidationFailed, match="compensation"):
            registered().resolve(ctx(), resolution="ok", first_contact=True, compensation=amount)

    @pytest.mark.parametrize("score", [-1, 101, True])
    def test_score_is_0_to_100(self, score: int) -> None:
        with pytest.raises(ValidationFailed, match="score"):
            resolved().revisit(ctx(), satisfied=False, score=score)


class TestWaitingOnCustomer:
    def test_waiting_case_cannot_be_resolved_until_resumed(self) -> None:
        case = registered()
        case.await_customer(ctx(minutes=1), reason="waiting for the invoice photo")
        with pytest.raises(InvalidTransition, match="waits on the customer"):
            case.resolve(ctx(minutes=2), resolution="x", first_contact=False)
        case.resume(ctx(minutes=30), note="photo received")
        case.resolve(ctx(minutes=31), resolution="refunded", first_contact=False)
        assert case.status == "resolved" and not case.waiting_on_customer

    def test_resume_needs_a_wait(self) -> None:
        with pytest.raises(InvalidTransition):
            registered().resume(ctx())


class TestEscalation:
    def test_agent_escalates_to_supervisor_then_supervisor_to_manager(self) -> None:
        case = registered()
        case.escalate(ctx(), reason="asks for compensation above my authority")
        assert case.escalation == "supervisor"
        case.escalate(ctx(Role.SUPERVISOR), reason="legal threat")
        assert case.escalation == "manager"

    def test_agent_cannot_escalate_to_a_manager(self) -> None:
        case = registered()
        case.escalate(ctx(), reason="needs approval")
        with pytest.raises(Forbidden):
            case.escalate(ctx(), reason="still unhappy")

    def test_nothing_above_a_manager(self) -> None:
        case = registered()
        case.escalate(ctx(Role.SUPERVISOR), reason="serious", to="manager")
        with pytest.raises(InvalidTransition):
            case.escalate(ctx(Role.MANAGER), reason="again")

    def test_escalated_complaint_is_closed_by_a_supervisor_only(self) -> None:
        case = registered()
        case.escalate(ctx(), reason="needs approval")
        case.resolve(ctx(Role.SUPERVISOR), resolution="approved refund", first_contact=False)
        with pytest.raises(Forbidden):
            case.close(ctx())
        case.close(ctx(Role.SUPERVISOR))
        assert case.status == "closed"


class TestReopen:
    def test_reopening_starts_a_new_cycle_and_keeps_the_first(self) -> None:
        case = resolved()
        case.revisit(ctx(minutes=60), satisfied=False, score=30)
        case.reopen(ctx(minutes=61), reason="refund never arrived")
        assert case.status == "reopened" and case.cycle == 2 and case.resolved_at is None
        case.resolve(ctx(minutes=90), resolution="refund re-sent", first_contact=False)
        assert case.status == "resolved"

    def test_reopen_needs_a_reason(self) -> None:
        with pytest.raises(ValidationFailed, match="reason"):
            resolved().reopen(ctx(), reason=" ")

    def test_withdrawn_complaint_stays_withdrawn(self) -> None:
        case = registered()
        case.withdraw(ctx())
        with pytest.raises(InvalidTransition):
            case.reopen(ctx(), reason="changed their mind")


class TestSlaBreach:
    def test_the_system_records_each_breach_once_in_any_status(self) -> None:
        case = resolved()
        case.record_sla_breach(ctx(Role.SYSTEM, 40), metric="first_response", cycle=1,
                               deadline=T0 + timedelta(minutes=30), limit_seconds=1800)
        assert case.sla_breaches == [{"metric": "first_response", "cycle": 1, "deadline": T0 + timedelta(minutes=30),
                                      "limit_seconds": 1800, "recorded_at": T0 + timedelta(minutes=40)}]
        assert case.status == "resolved", "a breach changes no status"
        with pytest.raises(InvalidTransition, match="already recorded"):
            case.record_sla_breach(ctx(Role.SYSTEM, 41), metric="first_response", cycle=1,
                                   deadline=T0 + timedelta(minutes=30), limit_seconds=1800)
        case.record_sla_breach(ctx(Role.SYSTEM, 41), metric="first_response", cycle=2,
                               deadline=T0 + timedelta(minutes=30), limit_seconds=1800)

    def test_only_the_system_records_a_breach_and_checks_its_fields(self) -> None:
        case = registered()
        with pytest.raises(Forbidden):
            case.record_sla_breach(ctx(Role.SUPERVISOR), metric="plan", cycle=1, deadline=T0, limit_seconds=60)
        with pytest.raises(ValidationFailed) as caught:
            case.record_sla_breach(ctx(Role.SYSTEM), metric="lunch", cycle=0, deadline=T0, limit_seconds=0)
        assert {p.field for p in caught.value.problems} == {"metric", "cycle", "limit_seconds"}


class TestCompensationLimit:
    """What an agent grants on one complaint counts together, however often
    it is reopened and resolved again."""

    @staticmethod
    def limited(role: Role = Role.AGENT, minutes: int = 0) -> Context:
        return Context(actor_id=f"{role.value}-1", role=role, at=T0 + timedelta(minutes=minutes),
                       correlation_id=uuid.uuid4(), compensation_limit=Decimal("500.00"))

    def test_the_limit_holds_for_the_complaints_total_across_reopens(self) -> None:
        case = registered()
        case.acknowledge(self.limited(minutes=1))
        case.resolve(self.limited(minutes=2), resolution="赔偿", first_contact=True, compensation="500.00")
        case.reopen(self.limited(minutes=3), reason="客户不满意")
        with pytest.raises(Forbidden, match="would come to 500.01"):
            case.resolve(self.limited(minutes=4), resolution="再赔", first_contact=False, compensation="0.01")
        case.resolve(self.limited(minutes=5), resolution="道歉", first_contact=False)  # no money: no limit
        assert case.compensated == Decimal("500.00")

    def test_a_supervisor_may_grant_beyond_it_and_it_counts_in_the_total(self) -> None:
        case = registered()
        case.acknowledge(self.limited(minutes=1))
        case.resolve(self.limited(Role.SUPERVISOR, 2), resolution="赔偿", first_contact=True,
                     compensation="800.00")
        case.reopen(self.limited(minutes=3), reason="又坏了")
        with pytest.raises(Forbidden):
            case.resolve(self.limited(minutes=4), resolution="再赔", first_contact=False, compensation="1.00")
        assert case.compensated == Decimal("800.00")
