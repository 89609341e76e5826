"""`ticketing cluster up` under load from clients connected to every node:
the instance holding the relay killed (-9), then the NATS node leading the
event stream. Every command answered `ok` has its event exactly once in the
store and once in the stream, in store order, and in the read models; the
failover times are printed. PostgreSQL needed (skipped, and said, without)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import ProgrammingError

from contracts.catalog import EVENT_STREAM
from infra.cluster.leases import leases
from projections.case_summary import customers
from tests.conftest import POSTGRES_URL, _postgres_schema_url, customer_data

pytestmark = pytest.mark.anyio
TICKETING = str(Path(sys.executable).parent / "ticketing")


@pytest.fixture
def database() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("the cluster shares a PostgreSQL store: set TICKETING_TEST_POSTGRES_URL (CI does)")
    yield from _postgres_schema_url()


def holder(engine: Any, part: str) -> str | None:
    """`instance/part@epoch` of the lease's live holder: a new epoch is a takeover, even by an instance of
    the same name started again (cluster up restarts the one killed, which may win the lease back)."""
    try:
        with engine.connect() as conn:
            row = conn.execute(select(leases.c.holder, leases.c.epoch, leases.c.expires_at,
                                      text("extract(epoch from clock_timestamp()) AS now"))
                               .where(leases.c.name == part)).first()
    except ProgrammingError:  # no lease table yet: nobody holds anything
        return None
    return f"{row.holder}@{row.epoch}" if row and row.expires_at > row.now else None


def pid_of(*words: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if all(w.encode() in line for w in words):
                return int(entry.name)
    raise AssertionError(f"no process running {words}")


async def test_a_killed_instance_and_a_killed_nats_node_lose_and_double_nothing(
        tmp_path: Path, database: str) -> None:
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"TICKETING_DATA_DIR": str(data), "TICKETING_DATABASE_URL": database, "TICKETING_LEASE_SECONDS": "2"}
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([TICKETING, "cluster", "up", "--nodes", "3", "--instances", "2"], env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    engine = create_engine(database)
    try:
        deadline = time.monotonic() + 90
        while holder(engine, "relay") is None or holder(engine, "projections") is None:
            assert up.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            await asyncio.sleep(0.2)
        urls = (data / "nats.url").read_text().strip().split(",")
        assert len(urls) == 3
        clients = [await nats.connect([url], nkeys_seed=str(data / "auth" / "operator.nk"),
                                      inbox_prefix="_INBOX.operator", max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.2) for url in urls]
        system = await nats.connect(urls, nkeys_seed=str(data / "auth" / "system.nk"), max_reconnect_attempts=-1)
        answered: list[str] = []
        sending = True

        async def sender(nc: Any) -> None:
            while sending:
                body = {"command_id": str(uuid.uuid4()), "data": customer_data()}
                try:
                    reply = orjson.loads((await nc.request("ticketing.v1.commands.customer.register",
                                                           orjson.dumps(body), timeout=5)).data)
                except Exception:  # noqa: BLE001 - a node or an instance going down: not answered
                    await asyncio.sleep(0.05)
                    continue
                if reply.get("ok"):
                    answered.append(reply["aggregate_id"])

        senders = [asyncio.create_task(sender(nc)) for nc in clients for _ in range(2)]
        try:
            await asyncio.sleep(2)
            relay_holder = holder(engine, "relay")
            assert relay_holder is not None
            instance = relay_holder.split("/", 1)[0]
            killed_at = time.monotonic()
            os.kill(_serve_of(engine, instance), signal.SIGKILL)
            while (now := holder(engine, "relay")) is None or now == relay_holder:
                assert time.monotonic() - killed_at < 15, "the relay was not taken over"
                await asyncio.sleep(0.05)
            relay_failover = time.monotonic() - killed_at
            await asyncio.sleep(2)
            projections_holder = holder(engine, "projections")
            assert projections_holder is not None
            killed_at = time.monotonic()
            os.kill(_serve_of(engine, projections_holder.split("/", 1)[0]), signal.SIGKILL)
            while (now := holder(engine, "projections")) is None or now == projections_holder:
                assert time.monotonic() - killed_at < 15, "the projections were not taken over"
                await asyncio.sleep(0.05)
            projections_failover = time.monotonic() - killed_at
            await asyncio.sleep(2)
            js = system.jetstream()
            leader = (await js.stream_info(EVENT_STREAM)).cluster.leader
            before = (await js.stream_info(EVENT_STREAM)).state.last_seq
            node_killed_at = time.monotonic()
            os.kill(pid_of("nats-server", f"{leader}.conf"), signal.SIGKILL)
            while True:  # until the relay publishes again: the stream has a leader, whichever
                try:
                    if (await js.stream_info(EVENT_STREAM)).state.last_seq > before + 10:
                        break
                except Exception:  # noqa: BLE001 - the election under way
                    pass
                assert time.monotonic() - node_killed_at < 45, "the stream took nothing after the kill"
                await asyncio.sleep(0.1)
            election = time.monotonic() - node_killed_at
            await asyncio.sleep(2)
        finally:
            sending = False
            await asyncio.gather(*senders)
        print(f"\nrelay failover {relay_failover:.2f}s, projections failover {projections_failover:.2f}s; events "
              f"published again {election:.2f}s after the stream's leader was killed; "
              f"{len(answered)} commands answered ok")
        assert relay_failover < 2 + 2 / 3 + 2.0

        with engine.connect() as conn:
            stored = conn.execute(text("select count(*), count(distinct originator_id) from ticketing_events "
                                       "where topic like '%Customer.Registered'")).one()
        assert stored[0] == stored[1] >= len(set(answered)) == len(answered)
        head = int(engine.connect().execute(text("select max(id) from ticketing_events")).scalar_one())
        deadline = time.monotonic() + 60
        while True:
            try:
                info = await js.stream_info(EVENT_STREAM)
                if info.state.messages >= head:
                    break
            except Exception:  # noqa: BLE001
                pass
            assert time.monotonic() < deadline, "the stream did not catch up with the store"
            await asyncio.sleep(0.5)
        positions = [orjson.loads((await js.get_msg(EVENT_STREAM, seq=seq)).data)["position"]
                     for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        assert positions == list(range(1, head + 1)), "each event once, in store order"
        while True:
            with engine.connect() as conn:
                projected = conn.execute(select(func.count()).select_from(customers)
                                         .where(customers.c.customer_id.in_(answered))).scalar_one()
            if projected == len(answered):
                break
            assert time.monotonic() < deadline, (projected, len(answered))
            await asyncio.sleep(0.5)
        assert _rebuilt(database, data, "customer_summary") == _rows(engine, "customer_summary"), \
            "the read models equal a rebuild from the store"
        for nc in [*clients, system]:
            await nc.close()
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(60) == 0, (tmp_path / "up.log").read_text()[-3000:]

        # Everything restarted, from the same files: the history where it was, and served again.
        up = subprocess.Popen([TICKETING, "cluster", "up", "--nodes", "3", "--instances", "2"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
        nc = await nats.connect(urls, nkeys_seed=str(data / "auth" / "operator.nk"), inbox_prefix="_INBOX.operator",
                                max_reconnect_attempts=-1)
        deadline = time.monotonic() + 90
        while True:
            try:
                body = {"command_id": str(uuid.uuid4()), "data": customer_data()}
                if orjson.loads((await nc.request("ticketing.v1.commands.customer.register", orjson.dumps(body),
                                                  timeout=5)).data)["ok"]:
                    break
            except Exception:  # noqa: BLE001 - starting
                pass
            assert time.monotonic() < deadline, "not served again after a restart of everything"
            await asyncio.sleep(0.5)
        await nc.close()
        with engine.connect() as conn:
            assert int(conn.execute(text("select max(id) from ticketing_events")).scalar_one()) == head + 1
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        log.close()
        engine.dispose()


def _serve_of(engine: Any, instance: str) -> int:
    """Its serve's process, as the instance says in `ticketing_instances`."""
    with engine.connect() as conn:
        return int(conn.execute(text("select pid from ticketing_instances where name = :n"),
                                {"n": instance}).scalar_one())


def _rows(engine: Any, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(text(f"select * from {table}")))


def _rebuilt(database: str, data: Path, table: str) -> list[tuple[Any, ...]]:
    """The table as a rebuild from the store makes it, in a schema of its own."""
    from infra.config_files import DEFAULT_POLICY
    from infra.runtime.worker import projections
    from infra.store.event_store import EventStore
    from infra.store.rebuild import rebuild_projections
    from ticketing.sla.policy import SlaPolicy

    store = EventStore(database.replace("postgresql://", "postgresql+psycopg://", 1),
                       (data / "cipher.key").read_text().strip())
    try:
        for target in _postgres_schema_url():
            rebuilt = create_engine(target)
            rebuild_projections(store, rebuilt, projections(SlaPolicy.parse(DEFAULT_POLICY.read_text())))
            found = _rows(rebuilt, table)
            rebuilt.dispose()
        return found
    finally:
        store.engine.dispose()
