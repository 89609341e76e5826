"""Who is signed in: a signed, HttpOnly, SameSite=Strict cookie naming the
person and a session id, re-signed at every request (idle timeout); the
person is looked up in the user directory each time, so a removed user, a
changed role or a new password ends the session at once. CSRF tokens are
bound to the session; failed sign-ins are throttled per name."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from infra.auth.directory import User, UserDirectory
from infra.auth.keys import write_once
from ticketing.access import SIGNED_IN
from ticketing.values import Role

COOKIE = "ticketing_session"
LOGIN_COOKIE = "ticketing_login"
"""Before sign-in: the token the sign-in form must send back (double submit)."""


@dataclass(frozen=True)
class Person:
    name: str
    role: Role
    sid: str

    @property
    def actor(self) -> dict[str, str]:
        """Who the console names on the bus."""
        return {"id": self.name, "role": self.role.value}


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Sessions:
    def __init__(self, key_file: Path, directory: UserDirectory, idle_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.secret = write_once(key_file, secrets.token_bytes(32))
        self.directory = directory
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._cookies = URLSafeTimedSerializer(self.secret, salt="console-session")
        self._ended: dict[str, float] = {}
        """Sessions signed out, until their cookies would have expired anyway."""

    def sign_in(self, name: str) -> tuple[Person, str]:
        """A new session for a person whose password was checked: (person, cookie)."""
        user = self.directory.get(name)
        assert user is not None and user.password
        person = Person(user.name, user.role, secrets.token_urlsafe(16))
        return person, self.cookie(person, user.password)

    def cookie(self, person: Person, password_hash: str) -> str:
        return self._cookies.dumps([person.name, person.sid, _fingerprint(password_hash)])

    def read(self, cookie: str | None) -> tuple[Person, str] | None:
        """The person signed in by this cookie, and the cookie re-signed (None: nobody)."""
        if not cookie:
            return None
        try:
            name, sid, fingerprint = self._cookies.loads(cookie, max_age=self.idle_seconds)
        except (BadSignature, ValueError, TypeError):
            return None
        user = self.directory.get(name)
        if (user is None or not user.password or user.role not in SIGNED_IN
                or not hmac.compare_digest(fingerprint, _fingerprint(user.password)) or sid in self._ended):
            return None
        person = Person(user.name, user.role, sid)
        return person, self.cookie(person, user.password)

    @staticmethod
    def read_role(user: User) -> Role | None:
        """The role a directory user signs in with (None: one that does not sign in)."""
        return user.role if user.password and user.role in SIGNED_IN else None

    def login_token(self) -> str:
        """The sign-in form's token, also set as a short-lived cookie (double submit)."""
        return self._cookies.dumps(["login", secrets.token_urlsafe(16)])

    def login_token_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or not hmac.compare_digest(cookie, token):
            return False
        try:
            self._cookies.loads(token, max_age=600)
        except BadSignature:
            return False
        return True

    def end(self, person: Person) -> None:
        now = self.clock()
        self._ended = {sid: at for sid, at in self._ended.items() if at > now - self.idle_seconds}
        self._ended[person.sid] = now

    def csrf(self, sid: str) -> str:
        """The token every form of this session carries."""
        return hmac.new(self.secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(sid), token or "")


class Throttle:
    """At most `limit` failed sign-ins for one name within `window` seconds;
    then the name is refused (429) until the oldest failure ages out."""

    def __init__(self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 names: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.names = names
        """Names kept at most before those whose last failure is a window old are forgotten (made-up names
        sent by the thousand would otherwise be kept for ever)."""
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, name: str) -> int | None:
        """Seconds until `name` may try again (None: now)."""
        failures = self._failures.get(name)
        if not failures:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[name]
        if len(failures) < self.limit:
            return None
        return max(1, int(failures[0] + self.window - now + 0.999))

    def failed(self, name: str) -> None:
        now = self.clock()
        if len(self._failures) >= self.names:
            for stale in [k for k, times in self._failures.items() if not times or times[-1] <= now - self.window]:
                del self._failures[stale]
        self._failures[name].append(now)
