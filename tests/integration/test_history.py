"""The audit query: a case's events and its state as of any instant, over the
bus and from the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from contracts.queries import CaseHistoryReply
from infra.bootstrap import Runtime
from infra.settings import Settings
from tests.conftest import Client, FakeClock

pytestmark = pytest.mark.anyio


async def resolved_case(client: Client, clock: FakeClock) -> tuple[str, list[str]]:
    """A complaint acknowledged, analysed and resolved an hour apart; returns
    its id and the instant of each step."""
    case_id = (await client.register_complaint(priority="urgent"))["aggregate_id"]
    instants = [clock.now]
    for command, data in [("acknowledge", {"note": "已回电"}),
                          ("analyse", {"root_cause": "运输受潮", "plan": "换货", "responsible_party": "third_party",
                                       "severity": "minor"}),
                          ("resolve", {"resolution": "已换货", "first_contact": False})]:
        instants.append(clock.advance(hours=1))
        assert (await client.command("complaint", command, data, aggregate_id=case_id))["ok"]
    return case_id, [i.isoformat().replace("+00:00", "Z") for i in instants]


async def test_history_as_of_now_and_as_of_past_instants(runtime: Runtime, client: Client,
                                                         clock: FakeClock) -> None:
    case_id, instants = await resolved_case(client, clock)
    clock.advance(days=3)

    now = await client.query("case.history", {"case_id": case_id})
    CaseHistoryReply.model_validate(now)
    assert now["version"] == 4 and now["state"]["status"] == "resolved"
    assert [e["type"] for e in now["events"]] == ["complaint.registered", "complaint.acknowledged",
                                                  "complaint.analysed", "complaint.resolved"]
    assert now["at"] == clock.now.isoformat().replace("+00:00", "Z")

    # Between the acknowledgement and the analysis: two events, that state.
    between = await client.query("case.history", {"case_id": case_id, "at": "2026-11-25T02:30:00Z"})
    assert instants[1] < "2026-11-25T02:30:00" < instants[2]
    assert between["version"] == 2 and len(between["events"]) == 2
    assert between["state"]["status"] == "acknowledged" and between["state"]["analysis"] is None

    # Exactly at a step's instant, the step has happened.
    at_analysis = await client.query("case.history", {"case_id": case_id, "at": instants[2]})
    assert at_analysis["version"] == 3 and at_analysis["state"]["analysis"]["root_cause"] == "运输受潮"

    before = await client.query("case.history", {"case_id": case_id, "at": "2026-11-24T00:00:00Z"})
    assert before["version"] == 0 and before["events"] == [] and before["state"] == {}


async def test_history_errors(runtime: Runtime, client: Client) -> None:
    missing = await client.query("case.history", {"case_id": str(uuid.uuid4())})
    assert missing["error"]["code"] == "not_found"
    bad = await client.query("case.history", {"case_id": "nope", "at": "yesterday"})
    assert bad["error"]["code"] == "validation_error"
    assert {d["field"] for d in bad["error"]["details"]} == {"case_id", "at"}
    not_json = await client.raw("ticketing.v1.queries.case.history", b"{")
    assert not_json["error"]["code"] == "validation_error"


async def test_cli_history_shows_the_state_at_an_instant(runtime: Runtime, client: Client, clock: FakeClock,
                                                         settings: Settings) -> None:
    case_id, instants = await resolved_case(client, clock)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env["TICKETING_DATA_DIR"] = str(settings.data_dir)  # the CLI finds NATS through <data dir>/nats.url
    ticketing = str(Path(sys.executable).parent / "ticketing")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ticketing, "history", *args], env=env, capture_output=True, text=True,
                              timeout=30)

    as_json = await asyncio.to_thread(run, case_id, "--at", instants[1], "--json")
    assert as_json.returncode == 0, as_json.stderr
    reply = orjson.loads(as_json.stdout)
    assert reply["version"] == 2 and reply["state"]["status"] == "acknowledged"

    table = await asyncio.to_thread(run, case_id)
    assert table.returncode == 0, table.stderr
    assert "complaint.resolved" in table.stdout and "state at version 4" in table.stdout

    missing = await asyncio.to_thread(run, str(uuid.uuid4()))
    assert missing.returncode == 1 and "not_found" in missing.stdout


async def test_a_reply_too_large_for_the_bus_is_an_error_never_silence(runtime: Runtime, client: Client) -> None:
    """NATS drops a message over its max_payload: the asker would wait in
    silence. The product answers with an error saying how to ask for less."""
    case_id = (await client.register_complaint(description="很长 " * 1000))["aggregate_id"]
    queries = runtime.queries
    assert queries is not None
    wanted = len(orjson.dumps(await client.query("case.history", {"case_id": case_id}, role="auditor")))
    queries.max_reply = wanted // 2  # as if the case had outgrown the bus's limit
    try:
        reply = await client.query("case.history", {"case_id": case_id}, role="auditor")
    finally:
        queries.max_reply = runtime.nc.max_payload - 4096
    assert reply["error"]["code"] == "validation_error" and "over the bus's limit" in reply["error"]["message"]
