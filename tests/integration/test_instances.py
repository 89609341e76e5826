"""Several instances on one store (PostgreSQL): commands on one case at two
instances both succeed when neither names `expected_version`, the same
`command_id` at two instances is one record with one reply, and only a
stale `expected_version` is a conflict. Several instances on one SQLite
data directory are refused at start."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from handlers.batch import CommandBatches
from handlers.commands import CommandService
from infra.bootstrap import Runtime, start
from infra.settings import Settings
from infra.store.event_store import EventStore
from infra.store.secrets import cipher_key
from infra.store.writer import GroupCommitWriter
from tests.conftest import Client, FakeClock, complaint_data
from ticketing.errors import DomainError

pytestmark = pytest.mark.anyio


@pytest.fixture
async def other(runtime: Runtime, clock: FakeClock) -> AsyncIterator[CommandService]:
    """A second instance's command side: its own store connection, group-commit writer and case cache."""
    if not runtime.settings.database_url:
        pytest.skip("several instances share a store on PostgreSQL only")
    store = EventStore(runtime.settings.event_store_url, cipher_key(runtime.settings))
    writer: GroupCommitWriter[Any] = GroupCommitWriter(CommandBatches(store), expected_errors=(DomainError,))
    writer.start()
    yield CommandService(store, writer, clock, runtime.directory,
                         compensation_limit=runtime.settings.compensation_limit)
    writer.stop()
    store.engine.dispose()


def as_user(runtime: Runtime, name: str) -> str:
    """The request info the server stamps on a request of `name`."""
    return orjson.dumps({"user": runtime.directory.get(name).nkey}).decode()  # type: ignore[union-attr]


def body(case_id: str | None, data: dict[str, Any], command_id: str | None = None,
         expected_version: int | None = None) -> bytes:
    request: dict[str, Any] = {"command_id": command_id or str(uuid.uuid4()), "data": data}
    if case_id:
        request["aggregate_id"] = case_id
    if expected_version is not None:
        request["expected_version"] = expected_version
    return orjson.dumps(request)


async def test_commands_on_one_case_at_two_instances_all_succeed_without_expected_version(
        runtime: Runtime, client: Client, other: CommandService) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    here, there = runtime.responders.service, other  # type: ignore[union-attr]
    who = as_user(runtime, "supervisor-1")
    await there.handle("complaint", "assign", body(case_id, {"assignee": "warm-up"}), who)  # its cache holds v2
    replies = await asyncio.gather(*(
        (here if n % 2 else there).handle("complaint", "assign", body(case_id, {"assignee": f"agent-{n}"}), who)
        for n in range(16)))
    decoded = [orjson.loads(r) for r in replies]
    assert all(r["ok"] for r in decoded), decoded
    assert sorted(r["version"] for r in decoded) == list(range(3, 19)), "each on the version the other left"


async def test_the_same_command_id_at_two_instances_is_one_record_with_one_reply(
        runtime: Runtime, client: Client, other: CommandService) -> None:
    customer = await client.known_customer()
    here, there = runtime.responders.service, other  # type: ignore[union-attr]
    who = as_user(runtime, "agent-1")
    same = body(None, complaint_data(customer_id=customer), command_id=str(uuid.uuid4()))
    before = runtime.store.max_position()
    first, second = await asyncio.gather(here.handle("complaint", "register", same, who),  # type: ignore[union-attr]
                                         there.handle("complaint", "register", same, who))
    assert orjson.loads(first) == orjson.loads(second) and orjson.loads(first)["ok"]
    assert runtime.store.max_position() == before + 1


async def test_only_a_stale_expected_version_is_a_conflict(
        runtime: Runtime, client: Client, other: CommandService) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    here, there = runtime.responders.service, other  # type: ignore[union-attr]
    who = as_user(runtime, "supervisor-1")
    assert orjson.loads(await there.handle("complaint", "assign", body(case_id, {"assignee": "a"}), who))["ok"]
    moved = orjson.loads(await here.handle("complaint", "assign", body(case_id, {"assignee": "b"}), who))  # type: ignore[union-attr]
    assert moved["version"] == 3
    right = await there.handle("complaint", "assign", body(case_id, {"assignee": "c"}, expected_version=3), who)
    assert orjson.loads(right)["ok"], "its cached copy (v2) is older than the version named: read anew"
    stale = await here.handle("complaint", "assign", body(case_id, {"assignee": "d"}, expected_version=3), who)  # type: ignore[union-attr]
    assert orjson.loads(stale)["error"]["code"] == "conflict"


async def test_a_second_instance_on_one_sqlite_data_directory_is_refused_in_one_line(
        settings: Settings, clock: FakeClock) -> None:
    if settings.database_url:
        pytest.skip("SQLite only")
    first = await start(settings, clock)
    try:
        with pytest.raises(SystemExit, match="one writer") as refused:
            await start(settings, clock)
        assert "\n" not in str(refused.value)
    finally:
        await first.stop()
    again = await start(settings, clock)  # once the first has stopped, another may
    await again.stop()
