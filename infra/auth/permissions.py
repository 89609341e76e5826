"""Each role's NATS permissions, derived from the domain's tables: the state
table of every case kind says who may run each command, `ticketing.access`
who may ask each query and read events and alerts. One source, so a new
command or query gets its permissions with it; `ticketing roles --bus`
prints the same table, and the README's is generated from it."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.alerts import ALERT_STREAM
from contracts.catalog import (
    AUDIT_STREAM,
    AUDIT_SUBJECTS,
    EVENT_STREAM,
    JS_DOMAIN,
    command_subject,
    query_subject,
)
from handlers.kinds import KINDS
from ticketing.access import (
    ALERT_READERS,
    AUDIT_READERS,
    CONSUMER_KEEPERS,
    EVENT_READERS,
    PEOPLE,
    QUERIES,
    may_ask,
)
from ticketing.values import Role

EVENTS = "ticketing.v1.events.>"
AUDIT = AUDIT_SUBJECTS
ALERTS = "ticketing.v1.alerts.>"
USER_JS_API = f"$JS.{JS_DOMAIN}.API"
"""Where a user's account reaches the JetStream API of its own consumers."""


def command_roles() -> dict[str, frozenset[Role]]:
    """`aggregate.command` -> the roles the state tables let run it."""
    table: dict[str, frozenset[Role]] = {}
    for aggregate, kind in KINDS.items():
        lifecycle = kind.aggregate.lifecycle
        table[f"{aggregate}.{kind.creates}"] = lifecycle.register_roles
        for command, step in lifecycle.steps.items():
            table[f"{aggregate}.{command}"] = step.roles
    return table


def commands_for(role: Role, grants: tuple[str, ...] | None = None) -> list[str]:
    """The commands a role may ever send (a gateway: what its people may; a
    service: those of its grants the tables let a service run)."""
    speaking = PEOPLE if role is Role.GATEWAY else frozenset({role})
    allowed = [name for name, roles in command_roles().items() if roles & speaking]
    if role is Role.SERVICE:
        allowed = [name for name in allowed if name in (grants or ())]
    return allowed


def grantable_to_services() -> list[str]:
    return commands_for(Role.SERVICE, tuple(command_roles()))


@dataclass(frozen=True)
class Permissions:
    publish: list[str]
    subscribe: list[str]


def inbox_prefix(user: str) -> str:
    """Where a user's replies come: its own, so nobody else may subscribe there."""
    return f"_INBOX.{user}"


def permissions(user: str, role: Role, grants: tuple[str, ...] = ()) -> Permissions:
    publish = [command_subject(*name.split(".", 1)) for name in commands_for(role, grants)]
    publish += [query_subject(name) for name in QUERIES if may_ask(role, name)]
    subscribe = [f"{inbox_prefix(user)}.>"]
    if role in EVENT_READERS:
        subscribe.append(EVENTS)
    if role in ALERT_READERS:
        subscribe.append(ALERTS)
    if role in CONSUMER_KEEPERS:
        publish += jetstream_reader(user)
    if role in AUDIT_READERS:
        subscribe.append(AUDIT)
        publish += [f"{USER_JS_API}.STREAM.INFO.{AUDIT_STREAM}", f"{USER_JS_API}.STREAM.MSG.GET.{AUDIT_STREAM}"]
    return Permissions(publish, subscribe)


def jetstream_reader(user: str) -> list[str]:
    """Reading its own durable pull consumer (named after the user, made and
    configured by the product) on the event and alert streams, and their
    messages; no consumer is created, changed or deleted by a user, and no
    stream touched."""
    subjects = []
    for stream in (EVENT_STREAM, ALERT_STREAM):
        subjects += [
            f"{USER_JS_API}.STREAM.INFO.{stream}", f"{USER_JS_API}.STREAM.MSG.GET.{stream}",
            f"{USER_JS_API}.CONSUMER.INFO.{stream}.{user}", f"{USER_JS_API}.CONSUMER.MSG.NEXT.{stream}.{user}",
            f"$JS.ACK.{stream}.{user}.>",
        ]
    return subjects


def role_table() -> list[tuple[str, str, str]]:
    """(role, may publish, may subscribe) for people to read: the same rules as `permissions`."""
    rows = []
    for role in [*sorted(PEOPLE), Role.AUDITOR, Role.SERVICE, Role.GATEWAY]:
        commands = commands_for(role, tuple(command_roles()) if role is Role.SERVICE else ())
        queries = [name for name in QUERIES if may_ask(role, name)]
        publish = []
        if commands:
            publish.append(("commands (granted one by one): " if role is Role.SERVICE else "commands: ")
                           + ", ".join(commands))
        publish.append("queries: " + (", ".join(queries) or "none"))
        if role in CONSUMER_KEEPERS:
            publish.append(f"JetStream (domain `{JS_DOMAIN}`): its own durable pull consumer, named after the "
                           f"user and made by the product, on {EVENT_STREAM} and {ALERT_STREAM}")
        subscribe = ["its own inbox `_INBOX.<user>.>`"]
        if role in EVENT_READERS:
            subscribe.append(f"`{EVENTS}`")
        if role in ALERT_READERS:
            subscribe.append(f"`{ALERTS}`")
        if role in AUDIT_READERS:
            subscribe.append(f"`{AUDIT}` (and reading {AUDIT_STREAM}: the chain's anchors)")
        rows.append((role.value, "; ".join(publish), ", ".join(subscribe)))
    rows.append(("system", "everything (the product itself: events, alerts, streams, commands as `system`)",
                 "everything"))
    return rows


def markdown_table() -> str:
    lines = ["| role | may publish to | may subscribe to |", "| --- | --- | --- |"]
    lines += [f"| `{role}` | {publish} | {subscribe} |" for role, publish, subscribe in role_table()]
    return "\n".join(lines) + "\n"
