"""The callback aggregate and the callback policy, in plain Python."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.policies import CallbackPolicy
from handlers.translate import case_id_for
from ticketing.callback import Callback
from ticketing.case import Context
from ticketing.complaint import Complaint, Registration
from ticketing.errors import Forbidden, InvalidTransition, ValidationFailed
from ticketing.values import Role

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def ctx(role: Role = Role.AGENT) -> Context:
    return Context("someone", role, AT, uuid.uuid4())


def callback(max_attempts: int = 3) -> Callback:
    return Callback.schedule(uuid.uuid4(), ctx(Role.SYSTEM), case_id=uuid.uuid4(), case_type="complaint",
                             customer_id=uuid.uuid4(), due_at=AT + timedelta(hours=24), max_attempts=max_attempts)


def test_failed_attempts_up_to_the_limit_miss_the_callback() -> None:
    cb = callback(max_attempts=2)
    cb.attempt(ctx(), "busy")
    assert cb.status == "scheduled"
    cb.attempt(ctx(), "call_later", note="晚上再打")
    assert cb.status == "missed"
    assert [type(e).__name__ for e in cb.pending_events] == ["Scheduled", "Attempted", "Attempted", "Missed"]
    assert all(e.case_id == cb.case_id and e.case_type == "complaint" for e in cb.pending_events)
    with pytest.raises(InvalidTransition):
        cb.complete(ctx(), satisfied=True, score=90)
    with pytest.raises(InvalidTransition):
        cb.attempt(ctx(), "busy")


def test_completing_records_the_verdict_once() -> None:
    cb = callback()
    cb.complete(ctx(), satisfied=False, score=20, comment=" 不满意 ", new_request="换新")
    assert cb.status == "completed"
    assert cb.outcome == {"satisfied": False, "score": 20, "comment": "不满意", "new_request": "换新"}
    with pytest.raises(InvalidTransition):
        cb.complete(ctx(), satisfied=True, score=100)


@pytest.mark.parametrize("kwargs, field", [
    ({"satisfied": True, "score": 101}, "score"),
    ({"satisfied": True, "score": 50, "comment": "  "}, None),
])
def test_completion_fields_are_checked(kwargs: dict[str, Any], field: str | None) -> None:
    cb = callback()
    if field is None:
        cb.complete(ctx(), **kwargs)  # a blank optional comment is no comment
        assert cb.outcome is not None and cb.outcome["comment"] is None
        return
    with pytest.raises(ValidationFailed) as error:
        cb.complete(ctx(), **kwargs)
    assert [p.field for p in error.value.problems] == [field]
    assert len(cb.pending_events) == 1


def test_scheduling_is_checked() -> None:
    with pytest.raises(ValidationFailed) as error:
        Callback.schedule(uuid.uuid4(), ctx(Role.SYSTEM), case_id=uuid.uuid4(), case_type="invoice",
                          customer_id=uuid.uuid4(), due_at=AT, max_attempts=0)
    assert {p.field for p in error.value.problems} == {"case_type", "max_attempts"}
    with pytest.raises(Forbidden):
        Callback.schedule(uuid.uuid4(), ctx(Role.TECHNICIAN), case_id=uuid.uuid4(), case_type="complaint",
                          customer_id=uuid.uuid4(), due_at=AT)


def test_a_complaint_links_its_follow_ups_once() -> None:
    case = Complaint.register(uuid.uuid4(), Registration(uuid.uuid4(), "phone", "billing", "low", "多扣费"), ctx())
    follow_up = uuid.uuid4()
    case.link_follow_up(ctx(Role.SYSTEM), follow_up)
    assert case.follow_up_case_ids == [follow_up]
    with pytest.raises(InvalidTransition):
        case.link_follow_up(ctx(Role.SYSTEM), follow_up)
    with pytest.raises(InvalidTransition):
        case.link_follow_up(ctx(Role.SYSTEM), case.id)


def envelope(type_: str, aggregate_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": type_, "aggregate_type": type_.split(".")[0],
            "aggregate_id": aggregate_id, "occurred_at": "2026-11-25T09:00:00.000000Z",
            "correlation_id": str(uuid.uuid4()), "data": data}


def test_the_policy_derives_every_command_from_the_event() -> None:
    original = Complaint.register(uuid.uuid4(), Registration(uuid.uuid4(), "wechat", "delivery", "high", "晚到",
                                                             product="A3", region="华东"), ctx())
    policy = CallbackPolicy({original.id: original}.__getitem__, delay=timedelta(hours=8), max_attempts=4)
    resolved = envelope("complaint.resolved", str(original.id), {})
    [schedule] = policy.react(resolved)
    assert schedule.subject == "ticketing.v1.commands.callback.schedule"
    assert schedule.body["data"]["due_at"] == "2026-11-25T17:00:00.000000Z"
    assert schedule.body["data"]["customer_id"] == str(original.customer_id)
    assert policy.react(resolved) == [schedule], "the same event, the same commands (same ids)"

    completed = envelope("callback.completed", str(uuid.uuid4()), {
        "case_id": str(original.id), "case_type": "complaint", "satisfied": False, "score": 30,
        "comment": None, "new_request": None})
    revisit, register, link = policy.react(completed)
    assert revisit.subject.endswith("complaint.revisit") and revisit.body["aggregate_id"] == str(original.id)
    assert register.body["data"]["follows_case_id"] == str(original.id)
    assert register.body["data"]["region"] == "华东" and register.body["data"]["category"] == "delivery"
    follow_up = str(case_id_for(uuid.UUID(register.body["command_id"])))
    assert link.body["data"] == {"follow_up_case_id": follow_up}
    assert {s.body["causation_id"] for s in (revisit, register, link)} == {completed["id"]}

    satisfied = envelope("callback.completed", str(uuid.uuid4()), {
        "case_id": str(original.id), "case_type": "complaint", "satisfied": True, "score": 95,
        "comment": "好", "new_request": None})
    assert [s.command for s in policy.react(satisfied)] == ["revisit"]
    assert policy.react(envelope("complaint.acknowledged", str(original.id), {})) == []


def test_a_vips_callback_is_due_when_their_shorter_callback_limit_runs_out() -> None:
    from ticketing.customer import Customer
    from ticketing.sla.policy import SlaPolicy

    policy_text = '[[limit]]\nkind = "*"\ncallback = "24h"\n[[limit]]\ntier = "vip"\ncallback = "12h"\n'
    customers = {tier: Customer.register(uuid.uuid4(), ctx(), name="n", phone="123", tier=tier, region="华东")
                 for tier in ("basic", "vip")}
    cases = {tier: Complaint.register(uuid.uuid4(), Registration(customer.id, "phone", "delivery", "normal", "晚到"),
                                      ctx()) for tier, customer in customers.items()}
    known = {a.id: a for a in [*customers.values(), *cases.values()]}
    policy = CallbackPolicy(known.__getitem__, delay=timedelta(hours=24), max_attempts=3,
                            sla=SlaPolicy.parse(policy_text))
    due = {tier: policy.react(envelope("complaint.resolved", str(case.id), {}))[0].body["data"]["due_at"]
           for tier, case in cases.items()}
    assert due == {"basic": "2026-11-26T09:00:00.000000Z", "vip": "2026-11-25T21:00:00.000000Z"}
