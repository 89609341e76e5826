"""The NATS configuration that gives every identity its account and
permissions, written from the user directory.

Two accounts. TICKETING holds the streams and every user; TICKETING_API holds
only the product's responders and exports the command and query subjects as
services, which TICKETING imports with `share: true`: each request crosses
the import, and the server stamps it with the sender's identity
(`Nats-Request-Info`). That header is how the responders know who speaks;
permissions per user keep each one to its role's subjects and its own inbox."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from infra.auth.directory import UserDirectory
from infra.auth.keys import write_secret
from infra.auth.permissions import permissions

DATA_ACCOUNT = "TICKETING"
API_ACCOUNT = "TICKETING_API"
SERVICES = ("ticketing.v1.commands.>", "ticketing.v1.queries.>")


def accounts_block(directory: UserDirectory) -> str:
    users: list[dict[str, object]] = [{"nkey": directory.product.system}]
    for user in directory.users():
        granted = permissions(user.name, user.role, user.grants)
        users.append({"nkey": user.nkey, "permissions": {"publish": {"allow": granted.publish},
                                                           "subscribe": {"allow": granted.subscribe}}})
    accounts = {
        DATA_ACCOUNT: {
            "jetstream": "enabled",
            "users": users,
            "imports": [{"service": {"account": API_ACCOUNT, "subject": s}, "share": True} for s in SERVICES],
        },
        API_ACCOUNT: {
            "users": [{"nkey": directory.product.responder}],
            "exports": [{"service": s} for s in SERVICES],
        },
    }
    body = json.dumps(accounts, indent=2, ensure_ascii=False)
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
