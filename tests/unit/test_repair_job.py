"""The repair job aggregate: who dispatches, what a swap records, what is charged."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from ticketing.case import Context
from ticketing.errors import Forbidden, InvalidTransition, ValidationFailed
from ticketing.repair_job import JobRegistration, RepairJob
from ticketing.values import Role

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def ctx(role: Role, who: str = "someone") -> Context:
    return Context(who, role, AT, uuid.uuid4())


def job(in_warranty: bool = False) -> RepairJob:
    return RepairJob.register(uuid.uuid4(), JobRegistration(
        uuid.uuid4(), "install", "GT06N", "新装 (new install)", "normal", in_warranty, "北京市海淀区中关村 1 号",
        purchase_date=date(2026, 1, 2)), ctx(Role.AGENT))


def test_an_agents_dispatch_waits_for_someone_elses_approval() -> None:
    j = job()
    j.dispatch(ctx(Role.AGENT, "a1"), "李师傅", AT + timedelta(hours=2))
    assert j.status == "dispatch_requested"
    with pytest.raises(Forbidden):
        j.approve_dispatch(ctx(Role.AGENT, "a2"))
    j.approve_dispatch(ctx(Role.SUPERVISOR, "s1"))
    assert j.status == "dispatched" and j.work_order is not None
    assert (j.work_order["requested_by"], j.work_order["approved_by"]) == ("a1", "s1")


def test_a_contractor_needs_a_manager() -> None:
    j = job()
    with pytest.raises(Forbidden):
        j.dispatch(ctx(Role.SUPERVISOR), "外包", AT, contractor=True)
    j.dispatch(ctx(Role.AGENT, "a1"), "外包", AT, contractor=True)
    with pytest.raises(Forbidden):
        j.approve_dispatch(ctx(Role.SUPERVISOR))
    j.approve_dispatch(ctx(Role.MANAGER))
    assert j.status == "dispatched"


def test_swaps_keep_both_numbers_and_only_parts_are_charged() -> None:
    j = job()
    j.dispatch(ctx(Role.SUPERVISOR), "李师傅", AT)
    with pytest.raises(ValidationFailed) as error:
        j.record_parts(ctx(Role.TECHNICIAN, "李师傅"), ["主机"], old_serial="A1")
    assert [p.field for p in error.value.problems] == ["new_serial"]
    with pytest.raises(InvalidTransition):
        j.resolve(ctx(Role.TECHNICIAN, "李师傅"), "安装完成", "50.00")  # no parts: nothing to charge
    j.record_parts(ctx(Role.TECHNICIAN, "李师傅"), ["主机"], old_serial="A1", new_serial="B2")
    assert j.serial_number == "B2" and j.parts[0]["old_serial"] == "A1"
    j.resolve(ctx(Role.TECHNICIAN, "李师傅"), "安装完成", "50.00", payment_taken=True)
    assert j.status == "resolved"


def test_in_warranty_work_is_free_and_agents_do_not_diagnose() -> None:
    j = job(in_warranty=True)
    j.dispatch(ctx(Role.SUPERVISOR), "李师傅", AT)
    with pytest.raises(Forbidden):
        j.diagnose(ctx(Role.AGENT), "x")
    j.record_parts(ctx(Role.TECHNICIAN, "李师傅"), ["电源"])
    with pytest.raises(InvalidTransition):
        j.resolve(ctx(Role.TECHNICIAN, "李师傅"), "换电源", "10.00")
    j.resolve(ctx(Role.TECHNICIAN, "李师傅"), "换电源")
    assert j.resolution is not None and j.resolution["charge"] == 0


def test_the_site_address_is_kept_out_of_the_public_state() -> None:
    j = job()
    assert j.site_address and "site_address" not in j.state()
    assert RepairJob.Registered.confidential


def test_a_supervisor_reprioritises_a_running_case() -> None:
    from ticketing.complaint import Complaint, Registration

    complaint = Complaint.register(uuid.uuid4(), Registration(uuid.uuid4(), "phone", "billing", "low", "多扣费"),
                                   ctx(Role.AGENT))
    for case in (job(), complaint):
        with pytest.raises(Forbidden):
            case.reprioritise(ctx(Role.AGENT), "urgent", "媒体关注")
        with pytest.raises(ValidationFailed):
            case.reprioritise(ctx(Role.SUPERVISOR), "asap", "媒体关注")
        case.reprioritise(ctx(Role.SUPERVISOR), "urgent", "媒体关注")
        assert case.priority == "urgent"
        with pytest.raises(InvalidTransition):
            case.reprioritise(ctx(Role.SUPERVISOR), "urgent", "again")


def test_only_the_technician_sent_works_on_the_job() -> None:
    j = job()
    j.dispatch(ctx(Role.SUPERVISOR), "li-shifu", AT)
    for act in (lambda c: j.diagnose(c, "电源坏了"), lambda c: j.record_parts(c, ["电源"]),
                lambda c: j.resolve(c, "换电源")):
        with pytest.raises(Forbidden, match="dispatched to li-shifu"):
            act(ctx(Role.TECHNICIAN, "wang-shifu"))
    j.record_parts(ctx(Role.TECHNICIAN, "li-shifu"), ["电源"])
    j.resolve(ctx(Role.SUPERVISOR, "s1"), "换电源")  # a supervisor may close anyone's job
    assert j.status == "resolved"
