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
