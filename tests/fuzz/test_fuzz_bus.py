"""Fuzzing the bus from its own JSON Schemas: valid and near-valid requests
for every command and query subject, sent over a real nats-server to a real
product (SQLite store), as the product's own identity (so no subject is
refused before it reaches the handlers). Every request gets a typed reply;
no refused command leaves an event; nothing is logged with a traceback; the
service still answers afterwards.

`make fuzz` runs 10,000 requests and prints the counts; the test suite runs
TICKETING_FUZZ_EXAMPLES (default 300). A failure prints the Hypothesis seed
and the shrunk request, to replay it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.catalog import COMMANDS, command_subject, query_subject
from contracts.queries import QUERIES
from infra.bootstrap import Runtime, start
from infra.bus.nats_server import EmbeddedNats
from infra.settings import Settings
from tests.conftest import (
    RELAXED_SLA_POLICY,
    complaint_data,
    connect_as,
    customer_data,
    directory_with_test_users,
)
from tests.fuzz.schemas import NASTY, load, near_valid

EXAMPLES = int(os.environ.get("TICKETING_FUZZ_EXAMPLES", "300"))
CODES = {"validation_error", "not_found", "invalid_transition", "conflict", "forbidden", "unavailable"}
GARBAGE = [b"", b"\xff\xfe\x00", b"[]", b"null", b"{", b"1", b'"text"', b'{"data": 1}', b'{"command_id": null}']


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Bus:
    run: Callable[..., Any]
    nc: Any
    runtime: Runtime
    known: list[str]
    refused: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)

    def request(self, subject: str, payload: bytes) -> dict[str, Any]:
        reply = self.run(self.nc.request(subject, payload, timeout=15))
        return dict(orjson.loads(reply.data))


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    root = tmp_path_factory.mktemp("fuzz")
    server = EmbeddedNats.start(root / "nats", directory_with_test_users(root / "data"), preferred_port=0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-product", daemon=True)
    thread.start()

    def run(work: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout)

    capture = Capture()
    logging.getLogger().addHandler(capture)
    runtime = run(start(Settings(data_dir=root / "data", nats_url=server.url, sla_policy=RELAXED_SLA_POLICY,
                                 metrics_port=0)))
    nc = run(connect_as(server.url, server.directory.auth_dir, "system"))
    bus = Bus(run, nc, runtime, [])
    customer = bus.request(command_subject("customer", "register"), _body(customer_data()))["aggregate_id"]
    case = bus.request(command_subject("complaint", "register"), _body(complaint_data(customer_id=customer)))
    bus.known += [customer, case["aggregate_id"]]
    bus.capture = capture  # type: ignore[attr-defined]
    try:
        yield bus
    finally:
        logging.getLogger().removeHandler(capture)
        print(f"\nfuzz: {sum(bus.outcomes.values())} requests, outcomes: {dict(sorted(bus.outcomes.items()))}")
        run(nc.close())
        run(runtime.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.stop()


def _body(data: dict[str, Any]) -> bytes:
    return orjson.dumps({"command_id": str(uuid.uuid4()), "data": data})


SUBJECTS = [("command", f"{a}.{c}") for a, commands in COMMANDS.items() for c in commands] + \
           [("query", name) for name in QUERIES]


@st.composite
def requests(draw: st.DrawFn, known: list[str]) -> tuple[str, str | None, bytes]:
    """(subject, command id or None, payload)."""
    kind, name = draw(st.sampled_from(SUBJECTS))
    if draw(st.integers(0, 19)) == 0:
        subject = command_subject(*name.split(".", 1)) if kind == "command" else query_subject(name)
        return subject, None, draw(st.sampled_from(GARBAGE))
    if kind == "query":
        body = draw(near_valid(load("queries", name)))
        if isinstance(body, dict) and "case_id" in body and draw(st.booleans()) and known:
            body["case_id"] = draw(st.sampled_from(known))
        return query_subject(name), None, json.dumps(body, ensure_ascii=False).encode()
    command_id = draw(st.one_of(st.uuids().map(str), st.uuids().map(str), st.sampled_from(NASTY)))
    body: dict[str, Any] = {"command_id": command_id, "data": draw(near_valid(load("commands", name)))}
    aggregate_id = draw(st.one_of(st.none(), st.sampled_from(known), st.uuids().map(str), st.sampled_from(NASTY)))
    if aggregate_id is not None:
        body["aggregate_id"] = aggregate_id
    if draw(st.integers(0, 3)) == 0:
        body["expected_version"] = draw(st.one_of(st.integers(-5, 2**70), st.sampled_from(NASTY)))
    if draw(st.integers(0, 5)) == 0:
        body["actor"] = draw(st.one_of(st.just({"id": "system", "role": "system"}), st.sampled_from(NASTY),
                                       st.just({"id": "x", "role": "agent"})))
    return command_subject(*name.split(".", 1)), str(command_id), json.dumps(body, ensure_ascii=False).encode()


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_request_gets_a_typed_reply(bus: Bus, data: st.DataObject) -> None:
    subject, command_id, payload = data.draw(requests(bus.known))
    reply = bus.request(subject, payload)
    outcome = "ok" if reply.get("ok") is True else reply.get("error", {}).get("code")
    assert outcome == "ok" or outcome in CODES, reply
    assert outcome == "ok" or reply["error"]["message"], reply
    bus.outcomes[outcome] += 1
    if command_id is not None:
        (bus.accepted if outcome == "ok" else bus.refused).add(command_id)


def test_no_refused_command_left_an_event_and_nothing_was_logged_as_a_crash(bus: Bus) -> None:
    refused = bus.refused - bus.accepted
    store = bus.runtime.store
    correlations = {str(store.mapper.to_domain_event(n).correlation_id) for n in store.notifications(0, 10**7)}
    assert not refused & correlations
    crashes = [r for r in bus.capture.records if r.exc_info]  # type: ignore[attr-defined]
    assert not crashes, [r.getMessage() for r in crashes]
    again = bus.request(command_subject("customer", "register"), _body(customer_data()))
    assert again["ok"], again
    assert bus.request(query_subject("dashboard"), b"{}")["ok"]
