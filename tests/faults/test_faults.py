"""Faults under load, on real processes: `ticketing serve` with its embedded
nats-server, concurrent clients sending commands all along, and one fault
at a random moment: serve, one of the worker's processes or the nats-server killed with
SIGKILL, or JetStream's store filled up and freed again. Nobody steps in:
the product must mend itself. Afterwards, every command answered `ok` has
its events in the store and in the stream exactly once, in store order; no
refused command left an event; every read model equals a rebuild from the
store; every limit that fell due raised its breach alert once.

The random choices come from TICKETING_FAULT_SEED (printed; set it to
replay a run)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine

from contracts.alerts import ALERT_STREAM
from contracts.catalog import EVENT_STREAM
from handlers.translate import event_id
from infra.config_files import load_sla_policy
from infra.runtime.worker import projections
from infra.settings import Settings
from infra.store.event_store import EventStore
from infra.store.rebuild import rebuild_projection
from tests.conftest import (
    POSTGRES_URL,
    _postgres_schema_url,
    complaint_data,
    customer_data,
    directory_with_test_users,
    stream_messages,
    wait_for,
)
from tests.integration.test_rebuild_property import tables
from tests.processes import Serve, child_running, connect, send

pytestmark = pytest.mark.anyio

SEED = int(os.environ.get("TICKETING_FAULT_SEED") or random.SystemRandom().randrange(2**32))
LIMIT_SECONDS = 3
CLIENTS = 8


@dataclass
class Load:
    """Concurrent agents registering complaints (every other one acknowledged
    at once) until stopped; what each request was answered, if anything."""

    url: str
    data: Path
    customer: str = ""
    answered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unanswered: int = 0
    _running: bool = True

    async def start(self) -> list[asyncio.Task[None]]:
        nc = await connect(self.url, self.data, "agent-1")
        self.customer = (await send(nc, "ticketing.v1.commands.customer.register", customer_data()))["aggregate_id"]
        await nc.close()
        return [asyncio.create_task(self._client(n)) for n in range(CLIENTS)]

    async def _client(self, n: int) -> None:
        async def quiet(_error: Exception) -> None:  # the fault, seen from a client: counted, not logged
            return

        nc = await connect(self.url, self.data, "agent-1", max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                           error_cb=quiet)
        try:
            i = 0
            while self._running:
                i += 1
                case = await self._send(nc, "complaint", "register", complaint_data(customer_id=self.customer))
                if case and case.get("ok") and (n + i) % 2:
                    await self._send(nc, "complaint", "acknowledge", {}, aggregate_id=case["aggregate_id"])
        finally:
            await nc.close()

    async def _send(self, nc: Any, aggregate: str, command: str, data: dict[str, Any],
                    aggregate_id: str | None = None) -> dict[str, Any] | None:
        command_id = str(uuid.uuid4())
        body: dict[str, Any] = {"command_id": command_id, "data": data}
        if aggregate_id:
            body["aggregate_id"] = aggregate_id
        try:
            reply = orjson.loads((await nc.request(f"ticketing.v1.commands.{aggregate}.{command}",
                                                   orjson.dumps(body), timeout=3)).data)
        except Exception:  # noqa: BLE001 - the fault: not answered, may or may not be recorded
            self.unanswered += 1
            await asyncio.sleep(0.1)
            return None
        self.answered.append((command_id, reply))
        return dict(reply)

    def stop(self) -> None:
        self._running = False


def settings_of(data: Path, policy: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=data, sla_policy=policy, database_url=database_url)


async def settled(url: str, data: Path, store: EventStore, settings: Settings) -> None:
    """The stream holds the whole store, and every projection has applied it."""
    engine = create_engine(settings.read_model_url)
    head = store.max_position()
    every = len(projections(load_sla_policy(settings)))
    nc = await connect(url, data, "system", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()

        async def caught_up() -> bool:
            try:
                info = await js.stream_info(EVENT_STREAM)
            except Exception:  # noqa: BLE001 - the server is being mended: not yet
                return False
            with engine.connect() as conn:
                tracked = [row[0] for row in conn.exec_driver_sql("select position from projection_tracking")]
            return info.state.messages >= head and len(tracked) == every and min(tracked) >= head
        await wait_for(caught_up, timeout=90)
    finally:
        await nc.close()
        engine.dispose()


async def verify(url: str, data: Path, load: Load, policy: Path, database_url: str | None,
                 rebuilt_url: str | None) -> None:
    settings = settings_of(data, policy, database_url)
    store = EventStore(settings.event_store_url, (data / "cipher.key").read_text().strip())
    try:
        await asyncio.sleep(1.0)  # the monitor records the last breaches
        await settled(url, data, store, settings)
        notifications = store.notifications(0, 10**7)
        events = [store.mapper.to_domain_event(n) for n in notifications]
        ids = [str(event_id(e.originator_id, e.originator_version)) for e in events]
        assert len(set(ids)) == len(ids), "an event recorded twice"

        # Every ok command's events in the store; no refused command's.
        ok = [reply for _, reply in load.answered if reply.get("ok")]
        assert ok, "the load got nothing done"
        assert {e for reply in ok for e in reply["events"]} <= set(ids)
        refused = {command_id for command_id, reply in load.answered if not reply.get("ok")}
        assert not refused & {str(e.correlation_id) for e in events}

        # The stream: the store exactly, once each, in store order.
        nc = await connect(url, data, "system", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            js = nc.jetstream()

            async def stream() -> list[Any] | None:
                try:
                    info = await js.stream_info(EVENT_STREAM)
                    return [await js.get_msg(EVENT_STREAM, seq=seq) for seq in
                            range(info.state.first_seq, info.state.last_seq + 1)]
                except Exception:  # noqa: BLE001 - serve is restarting a stuck JetStream (a full disk): not yet
                    return None
            on_stream = await wait_for(stream, timeout=60)
            # (anything recorded since the store was read is on the stream's tail)
            assert [m.headers["Nats-Msg-Id"] for m in on_stream][:len(ids)] == ids
            assert [orjson.loads(m.data)["position"] for m in on_stream] == list(range(1, len(on_stream) + 1))

            # Every limit that fell due: alerted once (the monitor may still be at it).
            acknowledged = {str(e.originator_id) for e in events if type(e).__name__ == "Acknowledged"}
            due_before = datetime.now(UTC) - timedelta(seconds=LIMIT_SECONDS + 3)
            due = {str(e.originator_id) for e in events if type(e).__qualname__ == "Complaint.Registered"
                   and str(e.originator_id) not in acknowledged and e.timestamp < due_before}
            assert due, "no limit fell due: the check would prove nothing"

            async def sla_alerts() -> list[dict[str, Any]]:
                info = await js.stream_info(ALERT_STREAM)
                if not info.state.messages:
                    return []
                found = [orjson.loads((await js.get_msg(ALERT_STREAM, seq=seq)).data)
                         for seq in range(info.state.first_seq, info.state.last_seq + 1)]
                return [a for a in found if a["type"].startswith("sla.")]

            async def all_alerted() -> list[dict[str, Any]] | None:
                try:
                    alerts = await sla_alerts()
                except Exception:  # noqa: BLE001 - serve is restarting a stuck JetStream (a full disk): not yet
                    return None
                breached = {a["case_id"] for a in alerts if a["type"] == "sla.breached"}
                return alerts if due <= breached else None
            try:
                alerts = await wait_for(all_alerted, timeout=60)
            except AssertionError:
                breached = {a["case_id"] for a in await sla_alerts() if a["type"] == "sla.breached"}
                raise AssertionError(f"{len(due - breached)} of {len(due)} limits fell due without an alert") from None
        finally:
            await nc.close()
        assert len({a["id"] for a in alerts}) == len(alerts), "an alert raised twice"
        counted = Counter((a["case_id"], a["metric"], a["cycle"], a["type"]) for a in alerts)
        assert all(n == 1 for n in counted.values()), [k for k, n in counted.items() if n > 1]

        # Every read model equals a rebuild from the store.
        live = create_engine(settings.read_model_url)
        rebuilt = create_engine(rebuilt_url or f"sqlite:///{data / 'rebuilt.db'}")
        try:
            for projection in projections(load_sla_policy(settings)):
                rebuild_projection(store, rebuilt, projection)
                assert tables(live, projection) == tables(rebuilt, projection), projection.name
        finally:
            live.dispose()
            rebuilt.dispose()
    finally:
        store.engine.dispose()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system of its own (tmpfs, 128 MB), to be filled; skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system to fill here ({mounted.stderr.strip() or 'mount failed'}): "
                    f"the disk-full fault needs root (CI runs as root)")
    try:
        yield disk
    finally:
        for log in (disk / "var" / "nats").glob("nats-server.*"):  # kept for a post-mortem
            shutil.copy(log, tmp_path / log.name)
        subprocess.run(["umount", "-l", str(disk)], check=False)


FAULTS = ["serve", "worker:projections", "worker:relay", "worker:monitors", "nats-server", "jetstream-full", "disk-full", "postgres-connections"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_the_product_mends_itself_and_loses_and_doubles_nothing(
        tmp_path: Path, serves: list[Serve], fault: str, request: pytest.FixtureRequest) -> None:
    chance = random.Random(f"{SEED}-{fault}")
    print(f"fault {fault}: TICKETING_FAULT_SEED={SEED}")
    data = (request.getfixturevalue("small_disk") if fault == "disk-full" else tmp_path) / "var"
    database_url = rebuilt_url = None
    if fault == "postgres-connections":
        if not POSTGRES_URL:
            pytest.skip("the PostgreSQL fault needs TICKETING_TEST_POSTGRES_URL (CI sets it)")
        database_url, rebuilt_url = (request.getfixturevalue("postgres_schema"),
                                     request.getfixturevalue("another_postgres_schema"))
    directory_with_test_users(data)
    policy = tmp_path / "sla.toml"
    policy.write_text(f'[[limit]]\nkind = "complaint"\nfirst_response = "{LIMIT_SECONDS}s"\n')
    env = {"TICKETING_SLA_POLICY": str(policy), "TICKETING_METRICS_PORT": "0", "TICKETING_DATA_DIR": str(data)}
    if database_url:
        env["TICKETING_DATABASE_URL"] = database_url
    if fault == "jetstream-full":
        env["TICKETING_NATS_MAX_FILE_STORE"] = "24MB"
    serves.append(serve := Serve(tmp_path, env))
    url = serve.wait_ready(data)
    load = Load(url, data)
    clients = await load.start()
    try:
        await asyncio.sleep(chance.uniform(0.5, 2.0))
        if fault == "serve":
            serve.kill()
            await asyncio.sleep(chance.uniform(0.0, 1.0))
            serves.append(serve := Serve(tmp_path, env))
            assert serve.wait_ready(data) == url
        elif fault.startswith("worker:"):
            os.kill(child_running(serve.process.pid, "worker", "--part", fault.split(":")[1]), signal.SIGKILL)
        elif fault == "nats-server":
            os.kill(child_running(serve.process.pid, "nats-server"), signal.SIGKILL)
        elif fault == "jetstream-full":
            await fill_jetstream(url, data, chance)
        elif fault == "disk-full":
            await fill_disk(data.parent, chance)
        else:
            await cut_postgres_connections(chance)
        answered_before = len(load.answered)
        await wait_for(lambda: len(load.answered) > answered_before + 50, timeout=60)
    finally:
        load.stop()
        await asyncio.gather(*clients, return_exceptions=True)
    print(f"fault {fault}: {len(load.answered)} answered ({sum(bool(r.get('ok')) for _, r in load.answered)} ok), "
          f"{load.unanswered} unanswered")
    await asyncio.sleep(LIMIT_SECONDS + 3.5)  # every limit left running falls due
    await verify(url, data, load, policy, database_url, rebuilt_url)
    assert "Traceback" not in serve.output(), serve.output()[-3000:]
    assert serve.interrupt() == 0


async def cut_postgres_connections(chance: random.Random) -> None:
    """Every other connection to the database terminated, twice."""
    admin = create_engine(str(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        for _ in range(2):
            with admin.connect() as conn:
                cut = conn.exec_driver_sql("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                                           "where datname = current_database() and pid <> pg_backend_pid()").scalar()
            assert cut, "no connection of the product's to cut"
            await asyncio.sleep(chance.uniform(0.2, 1.0))
    finally:
        admin.dispose()


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    yield from _postgres_schema_url()


@pytest.fixture
def another_postgres_schema() -> Iterator[str]:
    yield from _postgres_schema_url()


async def fill_disk(disk: Path, chance: random.Random) -> None:
    """The data directory's disk full for a while, then freed."""
    junk = disk / "junk"
    with junk.open("wb") as file:
        with pytest.raises(OSError):  # ENOSPC: full
            while True:
                file.write(b"\0" * (1 << 20))
                file.flush()
    await asyncio.sleep(chance.uniform(1.0, 3.0))  # commands are refused meanwhile, nothing half-written
    junk.unlink()


async def fill_jetstream(url: str, data: Path, chance: random.Random) -> None:
    """An admin's junk stream takes all of JetStream's store for a while
    (the relay's publishes are refused meanwhile), then is deleted."""
    from nats.js.api import StreamConfig

    nc = await connect(url, data, "system")
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="JUNK", subjects=["junk.>"]))
        chunk = os.urandom(512 * 1024)
        with pytest.raises(Exception):  # noqa: B017 - the store is full: the server refuses
            for _ in range(200):
                await js.publish("junk.fill", chunk, timeout=5)
        await asyncio.sleep(chance.uniform(1.0, 3.0))  # commands go on meanwhile: the store is the truth
        await js.delete_stream("JUNK")
    finally:
        await nc.close()


async def test_alerts_go_out_after_the_disk_filled_while_only_alerts_were_written(
        tmp_path: Path, serves: list[Serve], small_disk: Path) -> None:
    """The disk full just when limits fall due and nobody sends commands:
    the alerts stream is the one JetStream write that hits it (nats-server
    then refuses every write to that stream until it restarts, space or
    not). Serve restarts the server; every breach is alerted once, and the
    monitors say their trouble once, not per alert and tick."""
    data = small_disk / "var"
    directory_with_test_users(data)
    policy = tmp_path / "sla.toml"
    policy.write_text(f'[[limit]]\nkind = "complaint"\nfirst_response = "{LIMIT_SECONDS}s"\n')
    serves.append(serve := Serve(tmp_path, {"TICKETING_SLA_POLICY": str(policy), "TICKETING_METRICS_PORT": "0",
                                            "TICKETING_DATA_DIR": str(data)}))
    url = serve.wait_ready(data)
    nc = await connect(url, data, "agent-1")
    try:
        customer = (await send(nc, "ticketing.v1.commands.customer.register", customer_data()))["aggregate_id"]
        cases = set()
        for _ in range(5):
            reply = await send(nc, "ticketing.v1.commands.complaint.register", complaint_data(customer_id=customer))
            cases.add(reply["aggregate_id"])
        junk = small_disk / "junk"
        with junk.open("wb") as file:  # full before the limits fall due, until after
            with pytest.raises(OSError):
                while True:
                    file.write(b"\0" * (1 << 20))
                    file.flush()
        await asyncio.sleep(LIMIT_SECONDS + 1.5)
        junk.unlink()

        await nc.close()
        nc = await connect(url, data, "system", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream()

        async def breached() -> set[str] | None:
            try:
                alerts = await stream_messages(js, ALERT_STREAM)
            except Exception:  # noqa: BLE001 - the server is being restarted: not yet
                return None
            found = {a["case_id"] for a in alerts if a["type"] == "sla.breached"}
            return found if cases <= found else None
        await wait_for(breached, timeout=60)
        alerts = [a for a in await stream_messages(js, ALERT_STREAM) if a["type"] == "sla.breached"]
        assert sorted(a["case_id"] for a in alerts) == sorted(cases), "each breach alerted once"
    finally:
        await nc.close()
    log = serve.output()
    assert "refused every publish of" in log, log[-3000:]
    assert log.count("sla_monitor: publishing alert") == 1, log[-3000:]
    assert log.count("danger_monitor: publishing alert") <= 1, log[-3000:]
