"""The customer aggregate: contact data in its state only for roles that may
read it, marks with reasons, tiers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ticketing.case import Context
from ticketing.customer import Customer
from ticketing.errors import Forbidden, InvalidTransition, ValidationFailed
from ticketing.values import Role

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def ctx(role: Role = Role.AGENT) -> Context:
    return Context("someone", role, AT, uuid.uuid4())


def customer() -> Customer:
    return Customer.register(uuid.uuid4(), ctx(), name=" 赵六 ", phone="13900000000", tier="vip", region="华北")


def test_registration_is_checked_and_nothing_is_created_on_error() -> None:
    with pytest.raises(ValidationFailed) as error:
        Customer.register(uuid.uuid4(), ctx(), name=" ", phone="", tier="gold", region="华北")
    assert {p.field for p in error.value.problems} == {"name", "phone", "tier"}
    with pytest.raises(Forbidden):
        Customer.register(uuid.uuid4(), ctx(Role.TECHNICIAN), name="a", phone="1", tier="basic", region="x")


def test_contact_data_is_in_the_view_of_roles_that_may_read_it_only() -> None:
    c = customer()
    assert "name" not in c.state() and "phone" not in c.state()
    assert c.view(Role.AGENT)["name"] == "赵六" and c.view(Role.MANAGER)["phone"] == "13900000000"
    assert "phone" not in c.view(Role.SYSTEM) and "address" not in c.view(Role.TECHNICIAN)
    assert Customer.Registered.confidential and not Customer.Flagged.confidential


def test_marks_need_a_lead_a_reason_and_can_be_lifted() -> None:
    c = customer()
    with pytest.raises(Forbidden):
        c.flag(ctx(Role.AGENT), "malicious", "反复无理投诉")
    with pytest.raises(ValidationFailed):
        c.flag(ctx(Role.SUPERVISOR), "malicious", "  ")
    c.flag(ctx(Role.SUPERVISOR), "malicious", "反复无理投诉")
    with pytest.raises(InvalidTransition):
        c.flag(ctx(Role.SUPERVISOR), "malicious", "again")
    with pytest.raises(InvalidTransition):
        c.unflag(ctx(Role.SUPERVISOR), "extortion", "not marked")
    c.unflag(ctx(Role.MANAGER), "malicious", "已和解")
    assert c.marks == {} and [m["flagged"] for m in c.mark_history] == [True, False]


def test_tier_changes_need_a_lead_and_a_change() -> None:
    c = customer()
    with pytest.raises(Forbidden):
        c.change_tier(ctx(Role.AGENT), "strategic")
    with pytest.raises(InvalidTransition):
        c.change_tier(ctx(Role.SUPERVISOR), "vip")
    c.change_tier(ctx(Role.SUPERVISOR), "strategic", reason="签订战略合作")
    assert c.tier == "strategic"
