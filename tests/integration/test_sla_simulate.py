"""What-if: a seeded quarter of real history replayed against a stricter
candidate policy gives the breaches the test computes by hand, beside what
happened under the policy of then; nothing live is touched."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from infra.bootstrap import Runtime
from infra.cli import main
from infra.settings import Settings
from tests.conftest import Client, FakeClock
from tests.integration.test_projections import settled

pytestmark = pytest.mark.anyio

QUARTER = (datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
CANDIDATE = '# stricter\n[[limit]]\nfirst_response = "20m"\nresolution = "12h"\n'


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The SLA policy shipped with the product: first response 30m, resolution 24h."""
    return settings.model_copy(update={"sla_policy": None})


async def seed(client: Client, clock: FakeClock) -> dict[str, tuple[int, int]]:
    """Complaints spread over the quarter (and one on each side of it):
    case id -> (minutes to the first response, minutes to the resolution)."""
    draw = random.Random(20260701)
    cases = {}
    for n in range(-1, 26):
        registered = QUARTER[0] + timedelta(days=3.6 * n)
        ack, resolve = draw.randint(5, 45), draw.randint(120, 40 * 60)
        clock.now = registered
        case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
        clock.now = registered + timedelta(minutes=ack)
        assert (await client.command("complaint", "acknowledge", {}, aggregate_id=case_id))["ok"]
        clock.now = registered + timedelta(minutes=resolve)
        assert (await client.command("complaint", "resolve", {"resolution": "fixed", "first_contact": False},
                                     aggregate_id=case_id))["ok"]
        if QUARTER[0] <= registered < QUARTER[1]:
            cases[case_id] = (ack, resolve)
    return cases


def figure(reply: dict[str, Any], metric: str) -> tuple[int, int, int, int]:
    [row] = [f for f in reply["figures"] if f["dimension"] == "metric" and f["value"] == metric]
    return row["then_met"], row["then_breached"], row["candidate_met"], row["candidate_breached"]


async def test_a_stricter_policy_on_a_seeded_quarter(runtime: Runtime, client: Client, clock: FakeClock,
                                                      settings: Settings) -> None:
    cases = await seed(client, clock)
    await settled(runtime)  # the callback policy has scheduled the resolved complaints' callbacks (late ones breach)
    await runtime.worker.sla.tick()  # the live monitor has raised what it will at this instant
    alerts_before = await runtime.js.stream_info("TICKETING_ALERTS")
    reply = await client.query("sla.simulate", {"policy": CANDIDATE, "since": QUARTER[0].isoformat(),
                                                "until": QUARTER[1].isoformat(), "kind": "complaint"})
    assert reply["ok"], reply
    assert reply["cases"] == len(cases) == 26, "the callbacks the loop scheduled are left out"

    def counted(limit_then: int, limit_candidate: int, index: int) -> tuple[int, int, int, int]:
        took = [minutes[index] for minutes in cases.values()]
        return (sum(t <= limit_then for t in took), sum(t > limit_then for t in took),
                sum(t <= limit_candidate for t in took), sum(t > limit_candidate for t in took))

    assert figure(reply, "first_response") == counted(30, 20, 0)
    assert figure(reply, "resolution") == counted(24 * 60, 12 * 60, 1)
    expected = {(case_id, "first_response", "met" if ack <= 30 else "breached", "met" if ack <= 20 else "breached")
                for case_id, (ack, _) in cases.items() if (ack <= 30) != (ack <= 20)}
    expected |= {(case_id, "resolution", "met" if r <= 1440 else "breached", "met" if r <= 720 else "breached")
                 for case_id, (_, r) in cases.items() if (r <= 1440) != (r <= 720)}
    changed = reply["changed"]
    assert {(c["case_id"], c["metric"], c["then"], c["candidate"]) for c in changed
            if c["metric"] in ("first_response", "resolution")} == expected
    assert {c["candidate"] for c in changed if c["metric"] not in ("first_response", "resolution")} == {"none"}, \
        "the candidate sets no plan, loop or callback limit"
    assert reply["changed_total"] == len(changed)

    await runtime.worker.sla.tick()
    after = await runtime.js.stream_info("TICKETING_ALERTS")
    assert after.state.messages == alerts_before.state.messages, "no alert sent"

    bad = await client.query("sla.simulate", {"policy": '[[limit]]\nplan = "soon"\n', "since": "2026-07-01T00:00:00Z"})
    assert bad["error"]["code"] == "validation_error" and "line 2" in bad["error"]["details"][0]["reason"]
    refused = await client.query("sla.simulate", {"policy": CANDIDATE, "since": "2026-07-01T00:00:00Z"},
                                 role="agent")
    assert "error" in refused or "refused_by_nats" in refused

    candidate = Path(settings.data_dir) / "candidate.toml"
    candidate.write_text(CANDIDATE)
    shown = CliRunner().invoke(main, ["sla", "simulate", "--policy", str(candidate), "--since", "2026-07-01",
                                      "--until", "2026-10-01", "--kind", "complaint", "--json"], env=settings.as_env())
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.output)["figures"] == reply["figures"], "the CLI replays the same"
