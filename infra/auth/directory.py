"""The user directory: who may connect, with which role, kept in
`<data dir>/auth/users.json` beside the product's own keys.

Each user is an nkey: `users add` writes the seed to the user's file (we keep
only the public key) and the NATS configuration is written again from the
directory, so the server knows the key and its permissions. The responders
look the key NATS vouches for up here (`identify`), reading the file again
whenever it changed, so a user added or removed counts on the next request."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from contracts.catalog import POLICY_CONSUMER_PREFIX, PROJECTIONS_CONSUMER
from handlers.identity import Identity
from infra.auth.keys import new_user_seed, public_key, seed_file, write_once, write_secret
from ticketing.access import GRANTABLE, SIGNED_IN
from ticketing.values import Role

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""A user name is also a NATS subject token (its inbox) and a consumer name."""
CONSOLE = "console"
"""The web console's own identity: a gateway that signs people in and names them."""
RESERVED = frozenset({"system", "responder", CONSOLE, PROJECTIONS_CONSUMER, "relay", "anchors", "monitors", "worker",
                      "sla-monitor", "danger-monitor", "ticketing"})
"""Names the product uses for itself: its identities, its parts, its consumers
on the streams (a user's consumer is named after the user: a user called
`projections` would have been given the product's own), and every
`policy_...` (`reserved`)."""


def reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(POLICY_CONSUMER_PREFIX)
OPERATOR = "operator"
OPERATOR_ROLE = Role.MANAGER
"""The local operator: the person running `serve`, whose credentials the CLI uses by default."""


class DirectoryError(Exception):
    pass


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    nkey: str
    grants: tuple[str, ...] = ()
    added_at: str = ""
    password: str = ""
    """An Argon2id hash (`infra.auth.passwords`) when the person signs in to the console; empty otherwise."""

    def identity(self) -> Identity:
        grants = frozenset(self.grants) if self.role is Role.SERVICE else None
        return Identity(self.name, self.role, grants)


@dataclass(frozen=True)
class ProductKeys:
    """The product's own two identities: `system` (streams, events, alerts,
    the worker, the policies' commands) in the TICKETING account, and the
    responders in TICKETING_API, whose service exports the TICKETING account
    and every user's account import with the requester's identity shared."""

    system: str
    responder: str


class UserDirectory:
    def __init__(self, auth_dir: Path, product: ProductKeys) -> None:
        self.auth_dir = auth_dir
        self.path = auth_dir / "users.json"
        self.product = product
        self._stamp: tuple[int, int] | None = None
        self._by_key: dict[str, Identity] = {}

    # -- reading -----------------------------------------------------------

    def users(self) -> list[User]:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        return [User(name, Role(u["role"]), u["nkey"], tuple(u.get("grants") or ()), u.get("added_at", ""),
                     u.get("password", "")) for name, u in sorted(raw.get("users", {}).items())]

    def get(self, name: str) -> User | None:
        return next((u for u in self.users() if u.name == name), None)

    def identify(self, user_key: str) -> Identity | None:
        """The identity behind an authenticated nkey (None: not ours)."""
        if user_key == self.product.system:
            return Identity("system", Role.SYSTEM)
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            self._by_key = {u.nkey: u.identity() for u in self.users()}
            self._stamp = stamp
        return self._by_key.get(user_key)

    # -- changing ----------------------------------------------------------

    def add(self, name: str, role: str, grants: tuple[str, ...] = (), seed: bytes | None = None,
            password: str = "", *, own: bool = False) -> tuple[User, bytes]:
        """A new user and its seed (the only copy: it is not kept here); `own`:
        one of the product's identities (the console), whose name is reserved."""
        if not NAME.match(name):
            raise DirectoryError(f"bad user name {name!r}: lowercase letters, digits, '-' and '_' "
                                 f"(at most 63), starting with a letter or digit")
        if reserved(name) and not own:
            raise DirectoryError(f"{name!r} is a name the product uses for itself (its identities, parts and "
                                 f"consumers: {', '.join(sorted(RESERVED))}, policy_...): choose another")
        try:
            given = Role(role)
        except ValueError:
            given = None
        if given not in GRANTABLE:
            raise DirectoryError(f"no role {role!r} to give; one of: {', '.join(sorted(GRANTABLE))}")
        if grants and given is not Role.SERVICE:
            raise DirectoryError("only a service is granted commands one by one; the other roles may run "
                                 "what their role may")
        seed = seed or new_user_seed()
        user = User(name, given, public_key(seed), tuple(sorted(set(grants))),
                    datetime.now(UTC).isoformat(timespec="seconds"), password)
        with self._changing() as users:
            if name in users:
                raise DirectoryError(f"there is already a user {name!r} (remove it first)")
            users[name] = {"role": user.role.value, "nkey": user.nkey, "grants": list(user.grants),
                           "added_at": user.added_at} | ({"password": password} if password else {})
        return user, seed

    def set_password(self, name: str, password: str) -> None:
        """The person's console password (an Argon2id hash) replaced: their sessions end."""
        with self._changing() as users:
            if name not in users:
                raise DirectoryError(f"no user {name!r}")
            if Role(str(users[name]["role"])) not in SIGNED_IN:
                raise DirectoryError(f"{name} is a {users[name]['role']}: only people and auditors sign in to the "
                                     f"console")
            users[name]["password"] = password

    def remove(self, name: str) -> User:
        with self._changing() as users:
            if name not in users:
                raise DirectoryError(f"no user {name!r}")
            gone = users.pop(name)
        return User(name, Role(gone["role"]), gone["nkey"], tuple(gone.get("grants") or ()))

    @contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, object]]]:
        """The users, changed by one writer at a time and saved whole."""
        self.auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with os.fdopen(os.open(self.auth_dir / ".users.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                users = dict(orjson.loads(self.path.read_bytes()).get("users", {}))
            except FileNotFoundError:
                users = {}
            yield users
            write_secret(self.path, orjson.dumps({"users": users}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def ensure_local(auth_dir: Path) -> tuple[UserDirectory, bool]:
    """The data directory's keys and directory, created on first start: the
    product's two keys and the local operator (returns whether it was made now)."""
    product = ProductKeys(system=seed_file(auth_dir / "system.nk"), responder=seed_file(auth_dir / "responder.nk"))
    directory = UserDirectory(auth_dir, product)
    operator_file = auth_dir / f"{OPERATOR}.nk"
    made = False
    if directory.get(OPERATOR) is None:
        seed = new_user_seed()
        directory.add(OPERATOR, OPERATOR_ROLE.value, seed=seed)
        write_secret(operator_file, seed + b"\n")
        made = True
    ensure_console(directory, auth_dir)  # in the server's configuration from its first start
    return directory, made


def ensure_console(directory: UserDirectory, auth_dir: Path) -> Path:
    """The console's gateway identity, made on first use (by whichever
    instance comes first: the seed file is written once and the directory
    follows it): its seed file."""
    path = auth_dir / f"{CONSOLE}.nk"
    seed = write_once(path, new_user_seed() + b"\n").strip()
    known = directory.get(CONSOLE)
    if known is not None and known.nkey == public_key(seed):
        return path
    with contextlib.suppress(DirectoryError):
        if known is not None:  # the file is what the console connects with: the directory follows it
            directory.remove(CONSOLE)
        directory.add(CONSOLE, Role.GATEWAY.value, seed=seed, own=True)
    return path
