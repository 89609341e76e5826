"""Who is speaking on the bus.

Requests reach the product's responders through a NATS service import with
`share: true`, so the server itself stamps each request with a
`Nats-Request-Info` header naming the authenticated connection's user (its
nkey); a header a client sets is replaced by the server on the way. That key
is looked up in the user directory for a name and a role. Nothing in the
request body can change who the sender is: a body's `actor` is only checked
against it (`ticketing.access.acting`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson

from ticketing.values import Role

REQUEST_INFO = "Nats-Request-Info"


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    grants: frozenset[str] | None = None
    """For a service: the commands (`aggregate.command`) granted to it; None: whatever the role may."""

    def may_send(self, command: str) -> bool:
        return self.grants is None or command in self.grants


class Directory(Protocol):
    def identify(self, user_key: str) -> Identity | None: ...


def user_key(request_info: str | bytes | None) -> str | None:
    """The authenticated user's key from the server's request info, if any."""
    if not request_info:
        return None
    try:
        info = orjson.loads(request_info)
    except orjson.JSONDecodeError:
        return None
    user = info.get("user") if isinstance(info, dict) else None
    return user if isinstance(user, str) and user else None


def identify(directory: Directory, request_info: str | bytes | None) -> Identity | None:
    key = user_key(request_info)
    return directory.identify(key) if key else None
