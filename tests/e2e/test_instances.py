"""Two instances of `ticketing serve` on one PostgreSQL store and one NATS,
as real processes: each part of the worker runs on one of them at a time,
under a lease; the holder of the projections stopped (SIGSTOP) past its
lease is taken over by the other, and once it wakes (SIGCONT) under load
it changes nothing: every complaint answered `ok` is in the read models
exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import ProgrammingError

from infra.bus.nats_server import EmbeddedNats
from infra.cluster.leases import leases
from projections.case_summary import case_summary
from tests.conftest import (
    POSTGRES_URL,
    _postgres_schema_url,
    complaint_data,
    customer_data,
    directory_with_test_users,
)
from tests.processes import Serve, child_running, connect, send

pytestmark = pytest.mark.anyio

LEASE_SECONDS = 2.0


@pytest.fixture
def database() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("several instances share a PostgreSQL store: set TICKETING_TEST_POSTGRES_URL (CI does)")
    yield from _postgres_schema_url()


def holder(engine: Any, part: str) -> tuple[str, int] | None:
    try:
        with engine.connect() as conn:
            row = conn.execute(select(leases.c.holder, leases.c.epoch, leases.c.expires_at,
                                      text("extract(epoch from clock_timestamp()) AS now"))
                               .where(leases.c.name == part)).first()
    except ProgrammingError:  # no lease table yet: nobody holds anything
        return None
    return (row.holder, int(row.epoch)) if row and row.expires_at > row.now else None


async def test_a_stalled_holder_is_taken_over_and_changes_nothing_when_it_wakes(
        tmp_path: Path, database: str, serves: list[Serve]) -> None:
    data = tmp_path / "data"
    server = EmbeddedNats.start(tmp_path / "nats", directory_with_test_users(data), preferred_port=0)
    engine = create_engine(database)
    try:
        env = {"TICKETING_DATA_DIR": str(data), "TICKETING_NATS_URL": server.url, "TICKETING_DATABASE_URL": database,
               "TICKETING_LEASE_SECONDS": str(LEASE_SECONDS), "TICKETING_METRICS_PORT": "0"}
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            serves.append(Serve(tmp_path / name, env | {"TICKETING_INSTANCE": name}))
            serves[-1].wait_ready(data, timeout=60)
        first, second = serves
        deadline = time.monotonic() + 30
        while (held := holder(engine, "projections")) is None:
            assert time.monotonic() < deadline, "nobody took the projections' lease"
            await asyncio.sleep(0.1)
        owner = first if held[0].startswith("a/") else second
        other = second if owner is first else first

        nc = await connect(server.url, data, "agent-1")
        customer = await send(nc, "ticketing.v1.commands.customer.register", customer_data())
        answered: list[str] = []
        sending = True

        async def sender() -> None:
            while sending:
                try:
                    reply = await send(nc, "ticketing.v1.commands.complaint.register",
                                       complaint_data(customer_id=customer["aggregate_id"]), timeout=5)
                except Exception:  # noqa: BLE001 - a timeout: not answered, not counted
                    continue
                if reply.get("ok"):
                    answered.append(reply["aggregate_id"])
                await asyncio.sleep(0.02)

        senders = [asyncio.create_task(sender()) for _ in range(4)]
        try:
            await asyncio.sleep(1.0)
            stalled = child_running(owner.process.pid, "worker", "--part", "projections")
            os.kill(stalled, signal.SIGSTOP)
            stopped_at = time.monotonic()
            while (now := holder(engine, "projections")) is None or now[0] == held[0]:
                assert time.monotonic() - stopped_at < LEASE_SECONDS * 4, "no takeover"
                await asyncio.sleep(0.05)
            took_over = time.monotonic() - stopped_at
            assert now[1] > held[1], "a new holder, a higher epoch"
            await asyncio.sleep(1.5)  # the new holder projects under load
            os.kill(stalled, signal.SIGCONT)  # the old one wakes up, believing it holds the lease
            await asyncio.sleep(3.0)
        finally:
            sending = False
            await asyncio.gather(*senders)
        assert holder(engine, "projections") == now, "the woken holder took nothing back"
        assert took_over < LEASE_SECONDS + LEASE_SECONDS / 3 + 1.0, took_over

        def projected() -> int:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(case_summary)
                                        .where(case_summary.c.case_id.in_(answered))).scalar_one())
        deadline = time.monotonic() + 20
        while projected() < len(set(answered)):
            assert time.monotonic() < deadline, (projected(), len(set(answered)))
            await asyncio.sleep(0.2)
        with engine.connect() as conn:
            rows = conn.execute(select(case_summary.c.case_id)).scalars().all()
        assert len(rows) == len(set(rows)), "each case once"
        assert "standing by" in owner.output() or "stopping" in owner.output(), owner.output()[-3000:]
        status = await asyncio.to_thread(_status, tmp_path / "a", data)
        assert "instances" in status and "epoch" in status, status
        await nc.close()
        assert other.interrupt() == 0
        assert owner.interrupt() == 0
    finally:
        engine.dispose()
        server.stop()


def _status(cwd: Path, data: Path) -> str:
    import subprocess

    from tests.processes import TICKETING
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    done = subprocess.run([TICKETING, "status"], cwd=cwd, env=clean | {"TICKETING_DATA_DIR": str(data),
                                                                       "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


async def test_limits_falling_due_while_the_monitors_holder_is_stalled_alert_once_each(
        tmp_path: Path, database: str, serves: list[Serve]) -> None:
    data = tmp_path / "data"
    policy = tmp_path / "fast.toml"
    policy.write_text('[[limit]]\nfirst_response = "6s"\nplan = "1000d"\nresolution = "1000d"\ncallback = "1000d"\n'
                      'loop = "1000d"\n')
    server = EmbeddedNats.start(tmp_path / "nats", directory_with_test_users(data), preferred_port=0)
    engine = create_engine(database)
    try:
        env = {"TICKETING_DATA_DIR": str(data), "TICKETING_NATS_URL": server.url, "TICKETING_DATABASE_URL": database,
               "TICKETING_LEASE_SECONDS": str(LEASE_SECONDS), "TICKETING_METRICS_PORT": "0",
               "TICKETING_SLA_POLICY": str(policy)}
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            serves.append(Serve(tmp_path / name, env | {"TICKETING_INSTANCE": name}))
            serves[-1].wait_ready(data, timeout=60)
        deadline = time.monotonic() + 30
        while (held := holder(engine, "monitors")) is None:
            assert time.monotonic() < deadline, "nobody took the monitors' lease"
            await asyncio.sleep(0.1)
        owner = serves[0] if held[0].startswith("a/") else serves[1]
        nc = await connect(server.url, data, "agent-1")
        customer = await send(nc, "ticketing.v1.commands.customer.register", customer_data())
        cases = []
        for _ in range(6):
            cases.append((await send(nc, "ticketing.v1.commands.complaint.register",
                                     complaint_data(customer_id=customer["aggregate_id"])))["aggregate_id"])
            await asyncio.sleep(0.5)
        stalled = child_running(owner.process.pid, "worker", "--part", "monitors")
        os.kill(stalled, signal.SIGSTOP)  # limits fall due while it sleeps, and after
        for _ in range(4):
            cases.append((await send(nc, "ticketing.v1.commands.complaint.register",
                                     complaint_data(customer_id=customer["aggregate_id"])))["aggregate_id"])
            await asyncio.sleep(0.5)
        await asyncio.sleep(8)
        os.kill(stalled, signal.SIGCONT)
        await asyncio.sleep(4)
        system = await connect(server.url, data, "system")
        js = system.jetstream()
        info = await js.stream_info("TICKETING_ALERTS")
        breached: dict[str, int] = {}
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            alert = orjson.loads((await js.get_msg("TICKETING_ALERTS", seq=seq)).data)
            if alert["type"] == "sla.breached" and alert["metric"] == "first_response":
                breached[alert["case_id"]] = breached.get(alert["case_id"], 0) + 1
        assert breached == dict.fromkeys(cases, 1), breached
        assert holder(engine, "monitors") != held, "taken over while it slept"
        await system.close()
        await nc.close()
    finally:
        engine.dispose()
        server.stop()
