"""`ticketing serve` (what `make run` runs) as a user runs it: a real
process, its own nats-server and SQLite files in a data directory; stopped
with Ctrl-C, or killed outright in the middle of a load and started again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from contracts.alerts import ALERT_STREAM
from infra.bus.nats_server import EmbeddedNats, free_port
from infra.runtime.parts import PARTS
from infra.store.database import ReadModelFiles
from tests.conftest import complaint_data, customer_data, stream_messages, wait_for
from tests.processes import (
    TICKETING,
    Serve,
    alive,
    child_running,
    children_of,
    cli,
    connect,
    processes_using,
    query,
    register,
    send,
    stream_positions,
)

pytestmark = pytest.mark.anyio


async def test_serve_with_no_configuration_runs_everything_and_stops_on_ctrl_c(
        tmp_path: Path, serves: list[Serve]) -> None:
    data = tmp_path / "var"
    serves.append(serve := Serve(tmp_path, {}))
    url = serve.wait_ready(data)
    assert "embedded nats-server" in serve.output()
    assert (data / "events.db").exists() and (data / "nats").is_dir()
    reply = await register(url, data)
    assert reply["ok"], reply

    async def projected() -> bool:
        return query(data / "readmodels.db", "select count(*) from case_summary") == [(1,)]
    await wait_for(projected, timeout=30)
    assert processes_using(data / "nats"), "the embedded nats-server runs with its store in the data dir"
    children = children_of(serve.process.pid)
    assert len(children) == 1 + len(PARTS), "nats-server and one process for each of the worker's parts"
    assert {child_running(serve.process.pid, "worker", "--part", part) for part in PARTS} < set(children)

    assert serve.interrupt() == 0, serve.output()
    assert "stopped" in serve.output()
    assert processes_using(data / "nats") == [], "the child nats-server must stop with serve"
    assert not [pid for pid in children if alive(pid)], "every child stops with serve"

    # Started again on the same directory: resumes with what it had.
    serves.append(again := Serve(tmp_path, {}))
    url = again.wait_ready(data)
    second = await register(url, data)
    assert second["ok"]
    
    async def both_relayed() -> bool:
        return await stream_positions(url, data) == [1, 2, 3, 4]
    await wait_for(both_relayed, timeout=30)

    async def both_projected() -> bool:
        return query(data / "readmodels.db", "select count(*) from case_summary") == [(2,)]
    await wait_for(both_projected, timeout=30)
    assert again.interrupt() == 0


async def test_ctrl_c_in_a_terminal_stops_everything_about_as_fast_as_sigterm_and_quietly(
        tmp_path: Path, serves: list[Serve]) -> None:
    """A terminal sends SIGINT to its whole foreground group: the children
    (nats-server, the worker's parts) must not take it for themselves and
    die under serve's supervisors, who would start them again on the way
    down (an ERROR line, restarts, a stop of seconds)."""
    data = tmp_path / "var"
    took = {}
    for how in ("sigterm", "ctrl-c"):
        serves.append(serve := Serve(tmp_path, {"TICKETING_METRICS_PORT": "0",
                                                "TICKETING_CONSOLE_PORT": str(free_port())}, terminal=True))
        url = serve.wait_ready(data)
        assert (await register(url, data))["ok"]
        await asyncio.sleep(1)  # every part at work
        children = children_of(serve.process.pid)
        began = time.monotonic()
        if how == "ctrl-c":
            serve.ctrl_c()
        else:
            serve.process.terminate()
        assert serve.process.wait(30) == 0, serve.output()
        took[how] = time.monotonic() - began
        said = serve.output().split("stopping...", 1)[1]  # the way down
        for noise in ("ERROR", "WARNING", "again", "restart", "lost NATS", "socket.send", "Traceback"):
            assert noise not in said, f"{how}: {noise!r} in\n{said}"
        assert not [pid for pid in children if alive(pid)], "every child stops with serve"
    assert took["ctrl-c"] < max(3.0, 3 * took["sigterm"]), took


async def test_ctrl_c_while_the_worker_cannot_start_stops_serve_at_once(tmp_path: Path, serves: list[Serve],
                                                                        ) -> None:
    """serve waits for its worker before it answers (up to a minute); a stop
    meanwhile ends the wait, and everything started so far stops."""
    data = tmp_path / "var"
    serves.append(serve := Serve(tmp_path, {  # read models nobody can reach: the worker never gets ready
        "TICKETING_READMODEL_URL": "postgresql+psycopg://ticketing@127.0.0.1:1/nowhere"}))

    async def worker_failed() -> bool:
        return "starting it again" in serve.output()
    await wait_for(worker_failed, timeout=30)
    assert "Ctrl-C to stop" not in serve.output()
    children = children_of(serve.process.pid)
    assert serve.interrupt(timeout=20) == 0, serve.output()
    assert "stopped" in serve.output() and "Ctrl-C to stop" not in serve.output()
    assert processes_using(data / "nats") == [], "the child nats-server stops with serve"
    assert not [pid for pid in children if alive(pid)], "every child stops with serve"


async def test_serve_killed_in_the_middle_of_a_load_loses_and_doubles_nothing(
        tmp_path: Path, nats_server: EmbeddedNats, serves: list[Serve]) -> None:
    data = tmp_path / "data"
    env = {"TICKETING_NATS_URL": nats_server.url, "TICKETING_DATA_DIR": str(data)}
    serves.append(first := Serve(tmp_path, env))
    first.wait_ready(data)

    nc = await connect(nats_server.url, data, "agent-1")
    customer = await send(nc, "ticketing.v1.commands.customer.register", customer_data())
    answered: list[dict[str, Any]] = []

    async def sender() -> None:
        while True:
            try:
                reply = await send(nc, "ticketing.v1.commands.complaint.register",
                                   complaint_data(customer_id=customer["aggregate_id"]), timeout=2)
            except Exception:  # noqa: BLE001 - the server is being killed under us
                return
            answered.append(reply)

    senders = [asyncio.create_task(sender()) for _ in range(16)]
    while len(answered) < 300:
        await asyncio.sleep(0.01)
    first.kill()
    await asyncio.gather(*senders)
    await nc.close()
    assert all(reply["ok"] for reply in answered)

    serves.append(second := Serve(tmp_path, env))
    second.wait_ready(data)
    recorded = query(data / "events.db", "select max(id) from ticketing_events")[0][0]
    assert recorded >= len(answered)

    async def relayed() -> bool:
        return len(await stream_positions(nats_server.url, data)) >= recorded
    await wait_for(relayed, timeout=30)
    positions = await stream_positions(nats_server.url, data)
    assert positions == list(range(1, recorded + 1)), "every event once, in store order"

    async def projected() -> bool:
        return query(data / "readmodels.db", "select name, position from projection_tracking order by name") \
            == [(name, recorded) for name in ("activity", "case_summary", "danger", "sla", "staff")]
    await wait_for(projected, timeout=30)
    assert query(data / "readmodels.db", "select count(*) from case_summary") == [(recorded - 1,)]
    assert query(data / "readmodels.db", "select count(*) from customer_summary") == [(1,)]
    answered_ids = {reply["aggregate_id"] for reply in answered}
    stored_ids = {row[0] for row in query(data / "readmodels.db", "select case_id from case_summary")}
    assert answered_ids <= stored_ids
    assert second.interrupt() == 0


def test_serve_refuses_a_bad_sla_policy_with_the_line_and_the_reason(tmp_path: Path) -> None:
    policy = tmp_path / "sla.toml"
    policy.write_text('[[limit]]\nkind = "complaint"\nfirst_response = "half an hour"\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    done = subprocess.run([TICKETING, "serve"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=clean | {"TICKETING_SLA_POLICY": str(policy)})
    assert done.returncode != 0
    assert f"SLA policy {policy}, line 3: 'half an hour' is not a duration" in done.stderr
    assert not (tmp_path / "var" / "nats").exists(), "nothing was started"


@pytest.mark.parametrize("part", PARTS)
async def test_a_worker_process_that_dies_is_started_again_and_catches_up(
        tmp_path: Path, nats_server: EmbeddedNats, serves: list[Serve], part: str) -> None:
    data = tmp_path / "data"
    serves.append(serve := Serve(tmp_path, {"TICKETING_NATS_URL": nats_server.url,
                                            "TICKETING_DATA_DIR": str(data)}))
    serve.wait_ready(data)
    others = {child_running(serve.process.pid, "worker", "--part", other) for other in PARTS if other != part}
    killed = child_running(serve.process.pid, "worker", "--part", part)
    os.kill(killed, signal.SIGKILL)
    reply = await register(nats_server.url, data)  # recorded while the part does not run
    assert reply["ok"], reply

    def started_again() -> bool:
        with contextlib.suppress(StopIteration):
            return child_running(serve.process.pid, "worker", "--part", part) != killed
        return False

    async def relayed_and_projected() -> bool:
        return (started_again() and await stream_positions(nats_server.url, data) == [1, 2]
                and query(data / "readmodels.db", "select count(*) from case_summary") == [(1,)])
    await wait_for(relayed_and_projected, timeout=30)
    assert {child_running(serve.process.pid, "worker", "--part", other) for other in PARTS if other != part} == others
    assert serve.interrupt() == 0


async def test_serve_killed_while_limits_fall_due_raises_each_breach_once(
        tmp_path: Path, nats_server: EmbeddedNats, serves: list[Serve]) -> None:
    data = tmp_path / "data"
    policy = tmp_path / "sla.toml"
    policy.write_text('[[limit]]\nfirst_response = "2s"\n')
    env = {"TICKETING_NATS_URL": nats_server.url, "TICKETING_DATA_DIR": str(data),
           "TICKETING_SLA_POLICY": str(policy)}
    serves.append(first := Serve(tmp_path, env))
    first.wait_ready(data)
    nc = await connect(nats_server.url, data, "system")
    try:
        customer = await send(nc, "ticketing.v1.commands.customer.register", customer_data())
        cases = []
        for _ in range(8):  # deadlines 0.25 s apart, the kill in the middle of them
            reply = await send(nc, "ticketing.v1.commands.complaint.register",
                               complaint_data(customer_id=customer["aggregate_id"]))
            cases.append(reply["aggregate_id"])
            await asyncio.sleep(0.25)
        first.kill()
        serves.append(second := Serve(tmp_path, env))
        second.wait_ready(data)
        js = nc.jetstream()

        async def breaches() -> dict[str, int]:
            return dict(Counter(alert["case_id"] for alert in await stream_messages(js, ALERT_STREAM)
                                if alert["type"] == "sla.breached"))

        async def all_breached() -> bool:
            return set(cases) <= (await breaches()).keys()
        await wait_for(all_breached, timeout=30)
        await asyncio.sleep(1.0)  # a few more ticks
        assert await breaches() == dict.fromkeys(cases, 1)

        async def recorded(case_id: str) -> int:
            msg = await nc.request("ticketing.v1.queries.case.history", orjson.dumps({"case_id": case_id}),
                                   timeout=10)
            reply = orjson.loads(msg.data)
            return sum(e["type"] == "complaint.sla_breached" for e in reply["events"])
        for case_id in cases:
            await wait_for(lambda case_id=case_id: recorded(case_id), timeout=10)
            assert await recorded(case_id) == 1
    finally:
        await nc.close()
    assert second.interrupt() == 0


async def test_users_added_and_removed_on_a_running_serve_take_effect_at_once(
        tmp_path: Path, serves: list[Serve]) -> None:
    data = tmp_path / "var"
    serves.append(serve := Serve(tmp_path, {}))
    url = serve.wait_ready(data)
    assert str((data / "auth" / "operator.nk").resolve()) in serve.output(), "serve says where they are"
    for secret in (data / "auth").iterdir():
        if secret.is_file():
            assert secret.stat().st_mode & 0o077 == 0, f"{secret} is readable by others"
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)

    added = await asyncio.to_thread(cli, tmp_path, "users", "add", "li-na", "--role", "agent", "--out", "li-na.nk")
    assert added.returncode == 0, added.stderr
    assert "applied to the running embedded nats-server" in added.stdout
    assert (tmp_path / "li-na.nk").stat().st_mode & 0o077 == 0
    nc = await nats.connect(url, nkeys_seed=str(tmp_path / "li-na.nk"), inbox_prefix="_INBOX.li-na",
                            allow_reconnect=False)
    customer = await send(nc, "ticketing.v1.commands.customer.register", customer_data())
    assert customer["ok"], customer
    history = orjson.loads((await nc.request("ticketing.v1.queries.case.history",
                                             orjson.dumps({"case_id": customer["aggregate_id"]}), timeout=10)).data)
    assert history["events"][0]["actor"] == {"id": "li-na", "role": "agent"}

    as_her = await asyncio.to_thread(cli, tmp_path, "send", "customer", "flag",
                                     '{"mark": "malicious", "reason": "x"}', "--id", customer["aggregate_id"],
                                     "--credentials", "li-na.nk")
    assert as_her.returncode == 1 and "Traceback" not in as_her.stderr
    assert "NATS refused" in as_her.stderr and "customer.flag" in as_her.stderr
    as_operator = await asyncio.to_thread(cli, tmp_path, "send", "customer", "flag",
                                          '{"mark": "malicious", "reason": "恶意投诉"}', "--id", customer["aggregate_id"])
    assert as_operator.returncode == 0, as_operator.stderr + as_operator.stdout
    listed = await asyncio.to_thread(cli, tmp_path, "users", "list")
    assert "li-na" in listed.stdout and "operator" in listed.stdout
    crm = await asyncio.to_thread(cli, tmp_path, "users", "add", "crm", "--role", "service", "--out", "crm.nk")
    assert crm.returncode == 0, crm.stdout + crm.stderr
    service = await nats.connect(url, nkeys_seed=str(tmp_path / "crm.nk"), inbox_prefix="_INBOX.crm",
                                 allow_reconnect=False)
    events = await service.jetstream(domain="ticketing").pull_subscribe(
        "ticketing.v1.events.>", durable="crm", stream="TICKETING_EVENTS")
    first = await events.fetch(1, timeout=10)
    assert orjson.loads(first[0].data)["type"] == "customer.registered", "its own consumer, at once"
    await service.close()
    for name in ("events.db", "readmodels.db"):
        assert (data / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"

    removed = await asyncio.to_thread(cli, tmp_path, "users", "remove", "li-na")
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(Exception):  # noqa: B017 - cut off by the reload, or refused: either way no reply
        reply = await send(nc, "ticketing.v1.commands.customer.register", customer_data(), timeout=2)
        assert reply["error"]["code"] == "forbidden"
        raise RuntimeError("refused")
    refused = await asyncio.to_thread(cli, tmp_path, "dashboard", "--credentials", "li-na.nk")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "refused the credentials" in refused.stderr
    missing = await asyncio.to_thread(cli, tmp_path, "dashboard", "--credentials", "nobody.nk")
    assert missing.returncode == 1 and "no credentials file" in missing.stderr and "Traceback" not in missing.stderr
    system = await asyncio.to_thread(cli, tmp_path, "users", "add", "root", "--role", "system", "--out", "r.nk")
    assert system.returncode == 1 and "no role 'system' to give" in system.stderr
    await nc.close()
    assert serve.interrupt() == 0


async def test_a_killed_embedded_nats_server_is_started_again_on_its_port_without_a_log_flood(
        tmp_path: Path, serves: list[Serve]) -> None:
    data = tmp_path / "var"
    serves.append(serve := Serve(tmp_path, {}))
    url = serve.wait_ready(data)
    assert (await register(url, data))["ok"]
    [nats_pid] = [pid for pid in children_of(serve.process.pid) if b"nats-server" in
                  (Path("/proc") / str(pid) / "cmdline").read_bytes()]
    before = serve.output().count("\n")
    os.kill(nats_pid, signal.SIGKILL)

    async def answered() -> Any:
        try:
            return (await register(url, data))["ok"]
        except Exception:  # noqa: BLE001 - still away
            return False
    await wait_for(answered, timeout=30)
    assert not alive(nats_pid), "the dead server was reaped, not left a zombie"
    await asyncio.sleep(2)  # a while back up: nothing more to say
    during = serve.output().splitlines()[before:]
    assert "Traceback" not in "\n".join(during)
    assert len(during) < 40, "\n".join(during)
    assert any("died" in line for line in during) and any("is back" in line for line in during)

    def healthy() -> bool:
        shown = cli(tmp_path, "status")
        return shown.returncode == 0 and "healthy" in shown.stdout and "projection:case_summary" in shown.stdout
    await wait_for(healthy, timeout=30)

    assert serve.interrupt() == 0, serve.output()
    assert "Traceback" not in serve.output()
    assert not (data / "nats.url").exists(), "nobody serves there any more"

    serves.append(again := Serve(tmp_path, {}))
    assert again.wait_ready(data) == url, "the data directory keeps its port"
    assert again.interrupt() == 0


async def test_a_rebuild_beside_a_running_serve_keeps_every_event_applied_meanwhile(
        tmp_path: Path, serves: list[Serve]) -> None:
    """`ticketing projections rebuild`, a process of its own, twice (the
    second, of one projection, builds them all: the swap replaces the file;
    it removes the file the first swap replaced) while senders keep
    registering complaints: the read models in use afterwards hold each of
    them once, none left behind in a replaced file."""
    data = tmp_path / "var"
    serves.append(serve := Serve(tmp_path, {}))
    url = serve.wait_ready(data)
    nc = await connect(url, data)
    customer = await send(nc, "ticketing.v1.commands.customer.register", customer_data())
    answered: list[dict[str, Any]] = []
    sending = True

    async def sender() -> None:
        while sending:
            answered.append(await send(nc, "ticketing.v1.commands.complaint.register",
                                       complaint_data(customer_id=customer["aggregate_id"])))

    senders = [asyncio.create_task(sender()) for _ in range(8)]
    try:
        for chosen in ((), ("danger",)):
            done = await asyncio.to_thread(cli, tmp_path, "projections", "rebuild", *chosen)
            assert done.returncode == 0, done.stderr
            assert "swapped in" in done.stdout, done.stdout
        assert "every projection is built into it (danger among them)" in done.stdout, done.stdout
    finally:
        sending = False
        await asyncio.gather(*senders)
    await nc.close()
    assert answered and all(reply["ok"] for reply in answered)
    in_use = ReadModelFiles(data / "readmodels.db").current()
    assert in_use.name == "readmodels.db.gen3" and not (data / "readmodels.db").exists()
    recorded = query(data / "events.db", "select max(id) from ticketing_events")[0][0]

    async def projected() -> bool:
        return query(in_use, "select name, position from projection_tracking order by name") \
            == [(name, recorded) for name in ("activity", "case_summary", "danger", "sla", "staff")]
    await wait_for(projected, timeout=30)
    cases = [row[0] for row in query(in_use, "select case_id from case_summary")]
    assert sorted(cases) == sorted(reply["aggregate_id"] for reply in answered)
    assert serve.interrupt() == 0
