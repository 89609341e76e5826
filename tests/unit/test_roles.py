"""The roles table the CLI prints is the domain's own state tables."""

from __future__ import annotations

from click.testing import CliRunner

from infra.cli import main


def test_the_roles_table_comes_from_the_state_tables() -> None:
    result = CliRunner().invoke(main, ["roles"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.output.splitlines()
            if line.startswith("│")]
    by_command = {(row[0], row[1]): row for row in rows}
    assert by_command[("repair_job", "approve_dispatch")][4] == "manager, supervisor, system"
    assert by_command[("customer", "flag")][4] == "manager, supervisor, system"
    assert by_command[("complaint", "revisit")][2:4] == ["resolved", "revisited"]
    assert "technician" in by_command[("repair_job", "diagnose")][4]


def test_the_documented_permission_table_is_the_one_the_permissions_come_from() -> None:
    from pathlib import Path

    result = CliRunner().invoke(main, ["roles", "--bus", "--markdown"])
    assert result.exit_code == 0, result.output
    page = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    between = page.split("<!-- roles:begin -->\n", 1)[1].split("<!-- roles:end -->", 1)[0]
    assert between == result.output, "docs/security.md's table is stale: paste `ticketing roles --bus --markdown`"


def test_only_a_gateway_may_name_a_person_and_only_a_person_or_an_auditor() -> None:
    import pytest

    from ticketing.access import acting
    from ticketing.errors import Forbidden
    from ticketing.values import Role

    assert acting("li-na", Role.AGENT, None, None) == ("li-na", Role.AGENT, None)
    assert acting("li-na", Role.AGENT, "li-na", "agent") == ("li-na", Role.AGENT, None)
    assert acting("desk", Role.GATEWAY, "wang", "supervisor") == ("wang", Role.SUPERVISOR, "desk")
    # the web console signs auditors in too: they ask (a gateway may ask as them) and act on nothing
    assert acting("console", Role.GATEWAY, "zhao", "auditor") == ("zhao", Role.AUDITOR, "console")
    assert acting("system", Role.SYSTEM, "sla-monitor", "system") == ("sla-monitor", Role.SYSTEM, None)
    for user, role, claimed in [("li-na", Role.AGENT, ("li-na", "supervisor")), ("li-na", Role.AGENT, ("x", "agent")),
                                ("desk", Role.GATEWAY, ("x", "system")), ("desk", Role.GATEWAY, ("x", "gateway")),
                                ("desk", Role.GATEWAY, ("x", "service")), ("crm", Role.SERVICE, ("x", "agent")),
                                ("system", Role.SYSTEM, ("x", "manager")), ("desk", Role.GATEWAY, ("x", "boss"))]:
        with pytest.raises(Forbidden):
            acting(user, role, *claimed)
