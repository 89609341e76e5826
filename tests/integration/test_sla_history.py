"""SLA as of any instant: `case.history` with `at` gives the case's limits as
they stood then, counted under the policy in force then (its hash and the
line of the rule), however the policy changed since."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.bootstrap import Runtime, start
from infra.config_files import DEFAULT_POLICY
from infra.settings import Settings
from infra.store.policies import adopted_policies
from infra.store.verify import verify
from tests.conftest import Client, FakeClock
from ticketing.sla.policy import policy_digest

pytestmark = pytest.mark.anyio

HOUR = 3600.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The SLA policy shipped with the product."""
    return settings.model_copy(update={"sla_policy": None})


def rule_lines(text: str) -> list[int]:
    """The line of each `[[limit]]` in a policy file."""
    return [n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith("[[limit]]")]


async def limits_at(client: Client, case_id: str, at: datetime) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    reply = await client.query("case.history", {"case_id": case_id, "at": at.isoformat()}, role="auditor")
    assert reply["ok"], reply
    return {limit["metric"]: limit for limit in reply["sla"]}, reply["sla_policy"]


async def test_running_paused_met_and_breached_as_of_past_instants(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    text = DEFAULT_POLICY.read_text()
    first_rule = rule_lines(text)[0]  # kind "*": first_response 30m, plan 4h, resolution 24h
    registered = clock.now
    case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
    clock.advance(minutes=10)
    assert (await client.command("complaint", "acknowledge", {}, aggregate_id=case_id))["ok"]
    clock.now = registered + timedelta(hours=1)
    assert (await client.command("complaint", "await_customer", {"reason": "photos"}, aggregate_id=case_id))["ok"]
    clock.now = registered + timedelta(hours=3)
    assert (await client.command("complaint", "resume", {}, aggregate_id=case_id))["ok"]

    before, policy = await limits_at(client, case_id, registered + timedelta(minutes=5))
    assert policy["digest"] == policy_digest(text)
    assert before["first_response"]["state"] == "running"
    assert before["first_response"]["time_left_seconds"] == pytest.approx(25 * 60, abs=1)
    assert before["first_response"]["rule_line"] == first_rule
    assert before["first_response"]["policy"] == policy_digest(text)

    waiting, _ = await limits_at(client, case_id, registered + timedelta(hours=2))
    assert waiting["first_response"]["state"] == "met"
    assert waiting["first_response"]["elapsed_seconds"] == pytest.approx(600, abs=1)
    assert waiting["plan"]["state"] == "paused" and waiting["plan"]["deadline"] is None
    assert waiting["plan"]["elapsed_seconds"] == pytest.approx(HOUR, abs=1)

    resumed, _ = await limits_at(client, case_id, registered + timedelta(hours=4))
    assert resumed["plan"]["state"] == "running"
    assert resumed["plan"]["elapsed_seconds"] == pytest.approx(2 * HOUR, abs=1)  # 1 h before the wait, 1 h after
    assert resumed["plan"]["time_left_seconds"] == pytest.approx(2 * HOUR, abs=1)
    deadline = registered + timedelta(hours=6)  # 4 h plus the 2 h waited
    assert datetime.fromisoformat(resumed["plan"]["deadline"]) == deadline

    late, _ = await limits_at(client, case_id, registered + timedelta(hours=7))
    assert late["plan"]["state"] == "breached"
    assert late["plan"]["time_left_seconds"] == pytest.approx(-HOUR, abs=1)
    assert late["loop"]["rule_line"] == rule_lines(text)[1]  # the complaint's own loop rule


async def test_a_policy_changed_between_two_instants_counts_each_under_its_own(
        settings: Settings, clock: FakeClock, client: Client, tmp_path: Path) -> None:
    old = DEFAULT_POLICY.read_text()
    first = await start(settings, clock)
    try:
        registered = clock.now
        case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
    finally:
        await first.stop()
    changed_at = clock.advance(hours=1)
    tighter = tmp_path / "tighter.toml"
    tighter.write_text('# stricter from today\n[[limit]]\nfirst_response = "5m"\nplan = "90m"\n')
    second = await start(settings.model_copy(update={"sla_policy": tighter}), clock)
    try:
        then, policy_then = await limits_at(client, case_id, registered + timedelta(minutes=30))
        assert policy_then == {"digest": policy_digest(old), "adopted_at": policy_then["adopted_at"]}
        assert then["plan"]["limit_seconds"] == 4 * HOUR and then["plan"]["policy"] == policy_digest(old)
        assert then["plan"]["time_left_seconds"] == pytest.approx(3.5 * HOUR, abs=1)
        assert then["first_response"]["state"] == "running", "due this very instant"
        assert then["first_response"]["time_left_seconds"] == pytest.approx(0, abs=1)

        now, policy_now = await limits_at(client, case_id, registered + timedelta(hours=2))
        assert policy_now["digest"] == policy_digest(tighter.read_text())
        assert datetime.fromisoformat(policy_now["adopted_at"]) == changed_at
        assert set(now) == {"first_response", "plan"}, "the new policy limits no resolution and no loop"
        assert now["plan"]["limit_seconds"] == 90 * 60 and now["plan"]["rule_line"] == 2
        assert now["plan"]["state"] == "breached"
        assert now["plan"]["time_left_seconds"] == pytest.approx(-0.5 * HOUR, abs=1)
        assert now["first_response"]["state"] == "breached"

        with second.store.engine.begin() as conn:  # someone softens the old policy after the fact
            conn.execute(adopted_policies.update().where(adopted_policies.c.digest == policy_digest(old))
                         .values(text=old.replace('plan = "4h"', 'plan = "40h"')))
        verdict = verify(second.store, [])
        assert not verdict.intact and "the record was altered" in verdict.summary()
    finally:
        await second.stop()
