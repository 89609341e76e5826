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

from infra.auth.directory import UserDirectory, ensure_local
from infra.auth.keys import write_secret
from infra.auth.permissions import grantable_to_services, inbox_prefix
from infra.bootstrap import Runtime, start
from infra.bus.nats_server import EmbeddedNats
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


TEST_ROLES = ("agent", "technician", "supervisor", "manager", "auditor", "service", "gateway")
"""A user `<role>-1` of each role is in every test's directory; its seed is in <auth>/test-users/."""


def add_user(directory: UserDirectory, name: str, role: str, grants: tuple[str, ...] = ()) -> Path:
    """A user in the directory, its seed written where tests find it."""
    _, seed = directory.add(name, role, grants)
    path = directory.auth_dir / "test-users" / f"{name}.nk"
    write_secret(path, seed + b"\n")
    return path


def directory_with_test_users(data_dir: Path) -> UserDirectory:
    directory, _ = ensure_local(data_dir / "auth")
    for role in TEST_ROLES:
        if directory.get(f"{role}-1") is None:
            add_user(directory, f"{role}-1", role, tuple(grantable_to_services()) if role == "service" else ())
    return directory


async def connect_as(url: str, auth_dir: Path, name: str, **options: Any) -> Any:
    """A plain nats-py connection holding a seed file of the data directory's
    `auth_dir`: the product's own (`system`, admin rights), the local
    operator's, or a test user's; every user with its own inbox."""
    own = name in ("system", "operator")
    seed = auth_dir / f"{name}.nk" if own else auth_dir / "test-users" / f"{name}.nk"
    if name != "system":
        options.setdefault("inbox_prefix", inbox_prefix(name))
    return await nats.connect(url, nkeys_seed=str(seed), **options)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats.start(tmp_path / "nats", directory_with_test_users(tmp_path / "data"),
                                preferred_port=0)
    yield server
    server.stop()


def _postgres_schema_url() -> Iterator[str]:
    assert POSTGRES_URL is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
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
                    relay_poll_seconds=5.0, sla_policy=RELAXED_SLA_POLICY, metrics_port=0,
                    console_port=0)


@pytest.fixture
async def runtime(settings: Settings, clock: FakeClock) -> AsyncIterator[Runtime]:
    rt = await start(settings, clock)
    yield rt
    await rt.stop()


@pytest.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    nc = await connect_as(nats_server.url, nats_server.directory.auth_dir, "system")
    client = Client(nc, nats_server)
    yield client
    await client.close()


class Client:
    """Plain nats-py clients speaking the bus API, as another service would:
    one connection per role (the user `<role>-1` holding its seed file), and
    `nc`, the product's own identity, for watching what the wire carries."""

    def __init__(self, nc: Any, server: EmbeddedNats) -> None:
        self.nc = nc
        self.server = server
        self._as: dict[str, Any] = {}
        self.errors: dict[str, list[str]] = {}
        self._told: dict[str, asyncio.Event] = {}
        """What the server said to each role's connection (permission violations)."""
        self._customer: str | None = None
        self._registering = asyncio.Lock()

    async def as_role(self, role: str) -> Any:
        if role == "system":
            return self.nc
        if role not in self._as:
            errors = self.errors.setdefault(role, [])
            told = self._told.setdefault(role, asyncio.Event())

            async def collect(error: Exception) -> None:
                errors.append(str(error))
                told.set()
            user = role if role[-1].isdigit() else f"{role}-1"  # a role's first user, or a user by name
            self._as[role] = await connect_as(self.server.url, self.server.directory.auth_dir, user,
                                              error_cb=collect)
        return self._as[role]

    async def close(self) -> None:
        for nc in [self.nc, *self._as.values()]:
            await nc.close()

    async def known_customer(self) -> str:
        """A customer registered once for this client (cases need one)."""
        async with self._registering:
            if self._customer is None:
                reply = await self.command("customer", "register", customer_data())
                assert reply["ok"], reply
                self._customer = reply["aggregate_id"]
        return self._customer

    async def raw(self, subject: str, payload: bytes, role: str = "agent") -> dict[str, Any]:
        """The reply, or `{"ok": False, "refused_by_nats": ...}` when the
        server refused the publish (a permission violation comes to the
        connection's error callback; the request itself would only time out)."""
        nc = await self.as_role(role)
        violation = f'permissions violation for publish to "{subject}"'
        seen = len(self.errors.get(role, []))
        request = asyncio.ensure_future(nc.request(subject, payload, timeout=10))
        while True:
            told = asyncio.ensure_future(self._told[role].wait()) if role in self._told else None
            await asyncio.wait([f for f in (request, told) if f is not None], return_when=asyncio.FIRST_COMPLETED)
            if told is not None:
                told.cancel()
            if request.done():
                return dict(orjson.loads(request.result().data))
            self._told[role].clear()
            refusals = [e for e in self.errors.get(role, [])[seen:] if violation in e.lower()]
            if refusals:
                request.cancel()
                return {"ok": False, "refused_by_nats": refusals[0]}

    async def command(self, aggregate: str, command: str, data: dict[str, Any], *,
                      aggregate_id: str | None = None, expected_version: int | None = None,
                      role: str = "agent", command_id: str | None = None) -> dict[str, Any]:
        if (aggregate, command) == ("complaint", "register") and "customer_id" not in data:
            data = data | {"customer_id": await self.known_customer()}
        body: dict[str, Any] = {"command_id": command_id or str(uuid.uuid4()), "data": data}
        if aggregate_id is not None:
            body["aggregate_id"] = aggregate_id
        if expected_version is not None:
            body["expected_version"] = expected_version
        return await self.raw(f"ticketing.v1.commands.{aggregate}.{command}", orjson.dumps(body), role)

    async def register_complaint(self, **overrides: Any) -> dict[str, Any]:
        data = complaint_data() | overrides
        reply = await self.command("complaint", "register", data)
        assert reply["ok"], reply
        return reply

    async def query(self, name: str, body: dict[str, Any], role: str = "supervisor") -> dict[str, Any]:
        return await self.raw(f"ticketing.v1.queries.{name}", orjson.dumps(body), role)


class Watched:
    """A role's connection, with what the server said to it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None

    async def connect(self, server: EmbeddedNats, name: str) -> Watched:
        async def collect(error: Exception) -> None:
            self.errors.append(str(error).lower())
        self.nc = await connect_as(server.url, server.directory.auth_dir, name, error_cb=collect)
        return self

    async def settle(self) -> None:
        await self.nc.flush()
        await asyncio.sleep(0.05)  # a violation comes as its own -ERR, after the PONG
        await self.nc.flush()

    def refused(self, kind: str, subject: str) -> bool:
        return f'permissions violation for {kind} to "{subject.lower()}"' in " ".join(self.errors)


def refused_by_nats(reply: dict[str, Any]) -> bool:
    return "refused_by_nats" in reply


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
        if asyncio.iscoroutine(result):  # a lambda around a coroutine function
            result = await result
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
