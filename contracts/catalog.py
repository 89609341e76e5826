"""Every message of v1, by subject, and their JSON Schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, create_model

from contracts import callback, complaint, customer, repair_job
from contracts.alerts import ALERTS
from contracts.envelope import CommandRequest, ErrorReply, EventEnvelope, OkReply
from contracts.queries import QUERIES
from contracts.types import Command, EventData

PREFIX = "ticketing.v1"
EVENT_STREAM = "TICKETING_EVENTS"
EVENT_SUBJECTS = f"{PREFIX}.events.>"
AUDIT_STREAM = "TICKETING_AUDIT"
AUDIT_SUBJECTS = f"{PREFIX}.audit.>"
"""The hash chain's anchors (`ticketing.v1.audit.checkpoint`)."""
JS_DOMAIN = "ticketing"
"""Users reach their own consumers through `$JS.ticketing.API.>` (nats-py:
`nc.jetstream(domain="ticketing")`, nats CLI: `--js-domain ticketing`): the
streams live in the product's account, each user in an account of its own
that imports just its consumer's API subjects."""
PROJECTIONS_CONSUMER = "projections"
POLICY_CONSUMER_PREFIX = "policy_"
"""The product's own consumers on the event stream: `projections`, and
`policy_<name>` for each policy. A user's consumer is named after the user,
so these names are no user's."""

COMMANDS: dict[str, dict[str, type[Command]]] = {
    "complaint": complaint.COMMANDS, "repair_job": repair_job.COMMANDS, "callback": callback.COMMANDS,
    "customer": customer.COMMANDS}
EVENTS: dict[str, dict[str, type[EventData]]] = {
    "complaint": complaint.EVENTS, "repair_job": repair_job.EVENTS, "callback": callback.EVENTS,
    "customer": customer.EVENTS}
EARLIER_VERSIONS: dict[str, dict[str, dict[int, type[EventData]]]] = {"complaint": complaint.EARLIER_VERSIONS}


def event_versions(aggregate: str, name: str) -> dict[int, type[EventData]]:
    """Every version of an event's data: the earlier ones and the current (the highest)."""
    earlier = EARLIER_VERSIONS.get(aggregate, {}).get(name, {})
    return {**earlier, len(earlier) + 1: EVENTS[aggregate][name]}


def alert_subject(name: str) -> str:
    return f"{PREFIX}.alerts.{name}"


def command_subject(aggregate: str, command: str) -> str:
    return f"{PREFIX}.commands.{aggregate}.{command}"


def event_subject(aggregate: str, event: str) -> str:
    return f"{PREFIX}.events.{aggregate}.{event}"


def query_subject(name: str) -> str:
    return f"{PREFIX}.queries.{name}"


def schemas() -> dict[str, dict[str, Any]]:
    """Relative path under contracts/schemas/ -> JSON Schema."""
    out: dict[str, dict[str, Any]] = {}

    def put(path: str, model: type[BaseModel]) -> None:
        out[path] = model.model_json_schema(mode="serialization" if path.startswith(("events", "alerts")) else "validation")

    put("envelope/event.json", EventEnvelope)
    put("envelope/command.json", CommandRequest)
    put("envelope/reply-ok.json", OkReply)
    put("envelope/reply-error.json", ErrorReply)
    for aggregate, commands in COMMANDS.items():
        for name, model in commands.items():
            put(f"commands/{aggregate}.{name}.json", model)
    for aggregate, events in EVENTS.items():
        for name in events:  # a published schema never changes: a new version gets a file of its own
            for version, model in event_versions(aggregate, name).items():
                put(f"events/{aggregate}.{name}{'' if version == 1 else f'.v{version}'}.json", model)
    for name, model in ALERTS.items():
        put(f"alerts/{name}.json", model)
    for name, (query, reply) in QUERIES.items():
        put(f"queries/{name}.json", query)
        put(f"queries/{name}.reply.json", reply)
    return out


def command_request(aggregate: str, command: str) -> type[CommandRequest]:
    """The whole request of one command: the envelope with its `data` typed."""
    return create_model(f"{aggregate}.{command}.request", __base__=CommandRequest,
                        data=(COMMANDS[aggregate][command], ...))


def bus_payloads() -> dict[str, tuple[type[BaseModel], type[BaseModel] | None]]:
    """Request and reply models by subscriber title (`aggregate.command`, or
    the query name), for the AsyncAPI document."""
    payloads: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
        f"{aggregate}.{command}": (command_request(aggregate, command), None)
        for aggregate, commands in COMMANDS.items() for command in commands
    }
    payloads.update({name: (query, reply) for name, (query, reply) in QUERIES.items()})
    return payloads
