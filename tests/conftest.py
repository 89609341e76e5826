"""Real parts: a nats-server on a free port with a temporary store, a
temporary SQLite file, and PostgreSQL when TICKETING_TEST_POSTGRES_URL is set
(a fresh schema per test)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from sqlalchemy import create_engine, select, text

from infra.bootstrap import Runtime, start
from infra.nats_server import EmbeddedNats
from infra.settings import Settings
from projections.case_summary import case_summary
from projections.case_summary import customers as customer_summary

POSTGRES_URL = os.environ.get("TICKETING_TEST_POSTGRES_URL")
RELAXED_SLA_POLICY = Path(__file__).with_name("sla_relaxed.toml")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 1, 0, 0, 123456, tzinfo=UTC))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats.start(tmp_path / "nats", preferred_port=0)
    yield server
    server.stop()


def _postgres_schema_url() -> Iterator[str]:
    assert POSTGRES_URL is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None means the default: SQLite files in the data directory."""
    if request.param == "sqlite":
        yield None
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TICKETING_TEST_POSTGRES_URL (CI sets it)")
    yield from _postgres_schema_url()


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", nats_url=nats_server.url, database_url=database_url,
                    relay_poll_seconds=5.0, sla_policy=RELAXED_SLA_POLICY)


@pytest.fixture
async def runtime(settings: Settings, clock: FakeClock) -> AsyncIterator[Runtime]:
    rt = await start(settings, clock)
    yield rt
    await rt.stop()


@pytest.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield Client(nc)
    await nc.close()


class Client:
    """A plain nats-py client speaking the bus API, as another service would."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self._customer: str | None = None
        self._registering = asyncio.Lock()

    async def known_customer(self) -> str:
        """A customer registered once for this client (cases need one)."""
        async with self._registering:
            if self._customer is None:
                reply = await self.command("customer", "register", customer_data())
                assert reply["ok"], reply
                self._customer = reply["aggregate_id"]
        return self._customer

    async def raw(self, subject: str, payload: bytes) -> dict[str, Any]:
        reply = await self.nc.request(subject, payload, timeout=10)
        return dict(orjson.loads(reply.data))

    async def command(self, aggregate: str, command: str, data: dict[str, Any], *,
                      aggregate_id: str | None = None, expected_version: int | None = None,
                      role: str = "agent", command_id: str | None = None) -> dict[str, Any]:
        if (aggregate, command) == ("complaint", "register") and "customer_id" not in data:
            data = data | {"customer_id": await self.known_customer()}
        body: dict[str, Any] = {"command_id": command_id or str(uuid.uuid4()),
                                "actor": {"id": f"{role}-1", "role": role}, "data": data}
        if aggregate_id is not None:
            body["aggregate_id"] = aggregate_id
        if expected_version is not None:
            body["expected_version"] = expected_version
        return await self.raw(f"ticketing.v1.commands.{aggregate}.{command}", orjson.dumps(body))

    async def register_complaint(self, **overrides: Any) -> dict[str, Any]:
        data = complaint_data() | overrides
        reply = await self.command("complaint", "register", data)
        assert reply["ok"], reply
        return reply

    async def query(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.raw(f"ticketing.v1.queries.{name}", orjson.dumps(body))


def customer_data(**overrides: Any) -> dict[str, Any]:
    return {"name": "王小明", "phone": "+86 138 0013 8000", "tier": "basic", "region": "华东",
            "address": "上海市浦东新区世纪大道 100 号"} | overrides


def complaint_data(**overrides: Any) -> dict[str, Any]:
    """A complaint's data; without `customer_id`, the test client adds its customer's."""
    return {"channel": "wechat", "category": "product_quality",
            "priority": "high", "description": "饲料结块，牛不吃 (feed caked, cattle refuse it)",
            "product": "育肥牛饲料 A3", "region": "华东"} | overrides


async def stream_messages(js: Any, stream: str) -> list[dict[str, Any]]:
    """Every message a JetStream stream holds, decoded, in stream order."""
    info = await js.stream_info(stream)
    if not info.state.messages:
        return []
    return [orjson.loads((await js.get_msg(stream, seq=seq)).data)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)]


class Received:
    """What a plain nats-py (core) subscriber receives, decoded."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def handle(self, msg: Any) -> None:
        self.received.append(orjson.loads(msg.data))

    async def listen(self, client: Client, subject: str) -> Any:
        """Subscribed (and known to the server) when this returns; the subscription."""
        sub = await client.nc.subscribe(subject, cb=self.handle)
        await client.nc.flush()
        return sub


async def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    """Poll `predicate` (sync, run in a thread, or async) until it returns
    something truthy; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await predicate() if asyncio.iscoroutinefunction(predicate) \
            else await asyncio.to_thread(predicate)
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def at_rest(runtime: Runtime) -> bytes:
    """What the databases hold: the raw SQLite files (with their write-ahead
    logs), or on PostgreSQL every stored event's state and every read-model row."""
    if not runtime.settings.database_url:
        files = [runtime.settings.data_dir / name for name in
                 ("events.db", "events.db-wal", "readmodels.db", "readmodels.db-wal")]
        return b"".join(path.read_bytes() for path in files if path.exists())
    with runtime.store.engine.connect() as conn:
        states = [bytes(row[0]) for row in conn.execute(text("select state from ticketing_events"))]
    with runtime.readmodels.connect() as conn:
        rows = [repr(tuple(row)).encode() for table in (case_summary, customer_summary)
                for row in conn.execute(select(table))]
    return b"".join(states + rows)
