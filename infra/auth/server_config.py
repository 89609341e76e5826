"""The NATS configuration that gives every identity its account and
permissions, written from the user directory.

An account per user, and two of the product's own:
- TICKETING holds the streams and the product's `system` identity. No user
  is in it, so nothing a user can make JetStream do lands on a stream's
  subjects: a pull request's reply subject, say, is one of the user's own
  account (a consumer in the streams' account would deliver wherever its
  maker said, with the server's rights, not the user's).
- TICKETING_API holds only the product's responders and exports the command
  and query subjects as services, which every other account imports with
  `share: true`: each request crosses the import, and the server stamps it
  with the sender's identity (`Nats-Request-Info`), which is how the
  responders know who speaks.
- `USER_<name>`, one per user, imports what its role may have: the services
  above; the event, alert and audit subjects as streams; and for a user
  who keeps a consumer, the JetStream API subjects of that one consumer
  (under `$JS.ticketing.API`), which the product creates and configures. A
  reply, a subscription, a consumer's delivery: all stay within the user's
  own account, so no user reads or answers into another's inbox.
Permissions per user keep each one to its role's subjects and its own inbox
inside its account too."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from contracts.alerts import ALERT_STREAM
from contracts.catalog import AUDIT_STREAM, EVENT_STREAM
from infra.auth.directory import User, UserDirectory
from infra.auth.keys import write_secret
from infra.auth.permissions import ALERTS, AUDIT, EVENTS, USER_JS_API, permissions
from ticketing.access import ALERT_READERS, AUDIT_READERS, CONSUMER_KEEPERS, EVENT_READERS

DATA_ACCOUNT = "TICKETING"
API_ACCOUNT = "TICKETING_API"
SERVICES = ("ticketing.v1.commands.>", "ticketing.v1.queries.>")
JS_API = "$JS.API"
CONSUMER_STREAMS = (EVENT_STREAM, ALERT_STREAM)
"""The streams a user may keep its own consumer on."""


def user_account(name: str) -> str:
    return f"USER_{name}"


def _data_exports() -> list[dict[str, Any]]:
    """A pull request is answered with a batch of messages: its export streams its responses (a service
    import lets one response through by default, and the rest of the batch was lost on the way)."""
    exports: list[dict[str, Any]] = [{"stream": subject} for subject in (EVENTS, ALERTS, AUDIT)]
    for stream in CONSUMER_STREAMS:
        exports += [{"service": f"{JS_API}.CONSUMER.INFO.{stream}.*"},
                    {"service": f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.*", "response_type": "Stream"},
                    {"service": f"$JS.ACK.{stream}.*.>"}]
    exports += [{"service": f"{JS_API}.STREAM.INFO.{stream}"} for stream in (*CONSUMER_STREAMS, AUDIT_STREAM)]
    exports += [{"service": f"{JS_API}.STREAM.MSG.GET.{stream}"} for stream in (*CONSUMER_STREAMS, AUDIT_STREAM)]
    return exports


def _js(api: str) -> dict[str, Any]:
    """A JetStream API subject of the streams' account, imported under the users' prefix."""
    return {"service": {"account": DATA_ACCOUNT, "subject": f"{JS_API}.{api}"}, "to": f"{USER_JS_API}.{api}"}


def _user_imports(user: User) -> list[dict[str, Any]]:
    imports: list[dict[str, Any]] = [{"service": {"account": API_ACCOUNT, "subject": s}, "share": True}
                                     for s in SERVICES]
    readable = [(EVENTS, EVENT_READERS), (ALERTS, ALERT_READERS), (AUDIT, AUDIT_READERS)]
    imports += [{"stream": {"account": DATA_ACCOUNT, "subject": subject}}
                for subject, readers in readable if user.role in readers]
    if user.role in CONSUMER_KEEPERS:
        for stream in CONSUMER_STREAMS:
            imports += [_js(f"CONSUMER.INFO.{stream}.{user.name}"), _js(f"CONSUMER.MSG.NEXT.{stream}.{user.name}"),
                        _js(f"STREAM.INFO.{stream}"), _js(f"STREAM.MSG.GET.{stream}"),
                        {"service": {"account": DATA_ACCOUNT, "subject": f"$JS.ACK.{stream}.{user.name}.>"}}]
    if user.role in AUDIT_READERS:
        imports += [_js(f"STREAM.INFO.{AUDIT_STREAM}"), _js(f"STREAM.MSG.GET.{AUDIT_STREAM}")]
    return imports


def accounts(directory: UserDirectory) -> dict[str, Any]:
    """Every account of the configuration, as nats-server takes them."""
    found: dict[str, Any] = {
        DATA_ACCOUNT: {
            "jetstream": "enabled",
            "users": [{"nkey": directory.product.system}],
            "imports": [{"service": {"account": API_ACCOUNT, "subject": s}, "share": True} for s in SERVICES],
            "exports": _data_exports(),
        },
        API_ACCOUNT: {
            "users": [{"nkey": directory.product.responder}],
            "exports": [{"service": s} for s in SERVICES],
        },
    }
    for user in directory.users():
        granted = permissions(user.name, user.role, user.grants)
        found[user_account(user.name)] = {
            "users": [{"nkey": user.nkey, "permissions": {"publish": {"allow": granted.publish},
                                                          "subscribe": {"allow": granted.subscribe}}}],
            "imports": _user_imports(user),
        }
    return found


def accounts_block(directory: UserDirectory) -> str:
    body = json.dumps(accounts(directory), indent=2, ensure_ascii=False)
    names = "\n".join(f"#   {u.name:<24} {u.role.value:<11} {u.nkey}" for u in directory.users())
    return (f"# Written by `ticketing` from {directory.path}; do not edit (`ticketing users` changes it).\n"
            f"# Include it in a nats-server configuration that runs JetStream (jetstream {{ store_dir: ... }});\n"
            f"# apply a change with `nats-server --signal reload`.\n"
            f"# Users:\n{names}\n"
            f"accounts: {body}\n")


def write_accounts(directory: UserDirectory) -> Path:
    path = directory.auth_dir / "accounts.conf"
    write_secret(path, accounts_block(directory).encode())
    return path


def size_in_bytes(size: str) -> int:
    """`10GB`, `512MB`, `64K`, `1000000` as bytes (ValueError otherwise)."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", size.upper())
    if not found:
        raise ValueError(f"{size!r} is not a size such as 10GB or 512MB")
    return int(found.group(1)) * 1024 ** " KMGT".index(found.group(2) or " ")


def embedded_config(directory: UserDirectory, store_dir: Path, port: int, extra: str = "",
                    max_file_store: str | None = None) -> Path:
    """The embedded server's whole configuration: it listens on 127.0.0.1
    only, keeps its JetStream store in `store_dir`, and includes the accounts."""
    accounts = write_accounts(directory)
    path = store_dir / "nats-server.conf"
    include = os.path.relpath(accounts, path.parent)
    limit = f", max_file_store: {size_in_bytes(max_file_store)}" if max_file_store else ""
    path.write_text(
        "# Written by `ticketing serve`; the accounts come from the user directory.\n"
        f"listen: \"127.0.0.1:{port}\"\n"
        f"jetstream: {{ store_dir: {json.dumps(str(store_dir.resolve()))}{limit} }}\n"
        f"pid_file: {json.dumps(str((store_dir / 'nats-server.pid').resolve()))}\n"
        f"include \"{include}\"\n{extra}")
    return path
