"""The health report, the metrics and the endpoints beside them, from a
running product."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from typing import Any

import orjson
import pytest

from infra.bootstrap import Runtime, start
from infra.bus.nats_server import free_port
from infra.settings import Settings
from tests.conftest import Client, FakeClock, customer_data, refused_by_nats, wait_for

pytestmark = pytest.mark.anyio


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def test_health_names_every_part_and_how_far_behind_it_is(runtime: Runtime, client: Client) -> None:
    await client.command("customer", "register", customer_data())

    async def caught_up() -> Any:
        reply = await client.query("health", {})
        behind = [p for p in reply["parts"] if p["lag_events"]]
        return reply if reply["healthy"] and reply["head"] == 1 and not behind else None
    reply = await wait_for(caught_up)
    names = {p["name"] for p in reply["parts"]}
    assert {"store", "nats", "worker", "relay", "projection:case_summary", "projection:sla",
            "projection:activity", "projection:danger", "projection:staff", "monitor:sla_monitor", "monitor:danger_monitor",
            "policy:callbacks"} <= names, names
    parts = {p["name"]: p for p in reply["parts"]}
    assert parts["store"]["position"] == 1 and parts["relay"]["position"] == 1
    assert parts["projection:case_summary"]["parked"] == 0

    # The projections stopped: their lag shows, in events and in seconds.
    runtime.projector.stop()
    await asyncio.sleep(0.5)  # its last fetch ends
    for _ in range(3):
        await client.command("customer", "register", customer_data())
    async def behind() -> Any:
        part = next(p for p in (await client.query("health", {}))["parts"] if p["name"] == "projection:case_summary")
        return part if part["lag_events"] == 3 else None
    part = await wait_for(behind)
    assert part["lag_seconds"] is not None and part["lag_seconds"] >= 0
    assert refused_by_nats(await client.query("health", {}, role="agent"))


async def test_metrics_readiness_and_liveness_over_http(settings: Settings, clock: FakeClock,
                                                        client: Client) -> None:
    settings.metrics_port = free_port()
    runtime = await start(settings, clock)
    try:
        agent = await client.as_role("agent")
        for data in (customer_data(), customer_data(tier="gold")):
            body = orjson.dumps({"command_id": str(uuid.uuid4()), "data": data})
            await agent.request("ticketing.v1.commands.customer.register", body, timeout=10)
        status, text = get(settings.metrics_port, "/metrics")
        assert status == 200
        assert b'ticketing_commands_total{command="customer.register",outcome="ok"} 1.0' in text
        assert b'ticketing_commands_total{command="customer.register",outcome="validation_error"} 1.0' in text
        assert b'ticketing_command_seconds_count{command="customer.register"} 2.0' in text
        await wait_for(lambda: get(settings.metrics_port, "/ready")[0] == 200)
        assert get(settings.metrics_port, "/live")[0] == 200
        _, metrics = get(settings.metrics_port, "/metrics")
        assert b'ticketing_part_up{part="store"} 1.0' in metrics
        assert get(settings.metrics_port, "/nothing")[0] == 404
    finally:
        await runtime.stop()
