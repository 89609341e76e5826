"""The AsyncAPI document, generated from the FastStream subscribers the
product serves the queries with, and the commands declared alike (served on
nats-py: `handlers.bus.CommandResponders`). `faststream docs gen infra.docs:docs_app --factory` works too."""

from __future__ import annotations

from typing import Any

import orjson
from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.v2_6_0.schema.servers import ServerVariable
from faststream.specification.asyncapi.v2_6_0.schema.utils import Reference

from contracts.catalog import bus_payloads
from handlers.bus import describe_commands, describe_events, include_handlers
from handlers.commands import CommandService
from handlers.queries import QueryService
from infra.runtime.clock import utc_now

DESCRIPTION = (
    "Commands (request/reply) on ticketing.v1.commands.<aggregate>.<command>, queries on "
    "ticketing.v1.queries.<name>, events on ticketing.v1.events.<aggregate>.<event> in the JetStream "
    "stream TICKETING_EVENTS, alerts on ticketing.v1.alerts.<kind> in TICKETING_ALERTS (signed: headers "
    "Ticketing-Key and Ticketing-Signature, the product's audit key). JSON Schemas of every payload: "
    "contracts/schemas/, also served by the web console at /contracts/."
)


SECURITY_SCHEME = {
    "type": "asymmetricEncryption",
    "description": (
        "NATS nkey authentication: every connection signs the server's nonce with its user's nkey (a seed "
        "file or a .creds file made by `ticketing users add NAME --role ROLE --out FILE`). Anonymous "
        "connections are refused. Requests reach the product through a service import with `share: true`, "
        "so the server stamps each with the sender's identity (Nats-Request-Info): the actor recorded is "
        "that user and its role, never what the body says. Each role may publish and subscribe only where "
        "its work needs (README: Identities and permissions); replies come to the user's own inbox "
        "`_INBOX.<user>.>`, so connect with that inbox prefix."),
}


def docs_app() -> FastStream:
    broker = NatsBroker()
    unused: Any = None
    describe_commands(broker, CommandService(unused, unused, utc_now, unused))
    include_handlers(broker, QueryService(unused, utc_now, unused, unused, unused, unused, unused))
    describe_events(broker)
    return FastStream(broker, specification=AsyncAPI(title="ticketing bus", version="v1",
                                                      description=DESCRIPTION))


def specification() -> Any:
    """The document, with each command's and query's request schema in place
    of the raw bytes its handler takes (handlers parse requests themselves,
    to answer `validation_error` with a detail per field)."""
    spec = docs_app().schema.to_specification()
    schemas = spec.components.schemas
    template = "#/components/schemas/{model}"
    for title, (request, _reply) in bus_payloads().items():
        schema = request.model_json_schema(ref_template=template)
        for name, definition in schema.pop("$defs", {}).items():
            if schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas named {name!r}: rename one of the models")
        schemas[f"{title}:Message:Payload"] = schema
    spec.components.securitySchemes = {"nkey": SECURITY_SCHEME}
    server = next(iter(spec.servers.values()))
    server.host = "{host}:{port}"
    server.protocolVersion = None
    server.description = ("The deployment's NATS (with JetStream): `ticketing serve` writes the URL it uses to "
                          "<data dir>/nats.url; a cluster has several, any of which serves.")
    server.variables = {
        "host": ServerVariable(default="127.0.0.1", description="a NATS server of the deployment",
                               examples=["nats-1.service.internal"]),
        "port": ServerVariable(default="4222", description="its client port"),
    }
    server.security = [Reference.model_validate({"$ref": "#/components/securitySchemes/nkey"})]
    return spec


def document() -> bytes:
    """The document as `make asyncapi` writes it: keys sorted, indented, so
    that it is the same bytes from every run (FastStream lists channels in
    the order the handlers happened to be registered)."""
    spec = orjson.loads(specification().to_json())
    (name, server), = spec.pop("servers").items()
    spec["servers"] = {"ticketing": server}
    for channel in spec["channels"].values():
        channel["servers"] = [{"$ref": "#/servers/ticketing"} for ref in channel.get("servers", [])
                              if ref == {"$ref": f"#/servers/{name}"}]
    return orjson.dumps(spec, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
