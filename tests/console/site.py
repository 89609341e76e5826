"""A real `ticketing serve` with its console, as a person runs it (embedded
nats-server, SQLite), shared by the console's tests; people added with the CLI;
a plain HTTP client that keeps cookies and follows nothing by itself; the bus
spoken as the local operator."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import nats
import orjson

from infra.auth.permissions import inbox_prefix
from infra.bus.nats_server import free_port
from tests.conftest import complaint_data, customer_data
from tests.processes import TICKETING, Serve

PASSWORD = "correct horse battery"
FAST_POLICY = ('[[limit]]\nfirst_response = "1000d"\nplan = "1000d"\nresolution = "1000d"\ncallback = "1000d"\n'
               'loop = "1000d"\n\n[[limit]]\npriority = "urgent"\nfirst_response = "4s"\n')
"""Every limit out of reach but an urgent case's first response: 4 s, warned at 3 s."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    set_cookies: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


@dataclass
class Web:
    """One browser's worth of HTTP: its cookies, nothing followed."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookie = rest.split(";", 1)[0]
                if cookie in ('""', "") or "max-age=0" in value.lower():
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = cookie
        connection.close()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, text,
                     [v for k, v in response.getheaders() if k.lower() == "set-cookie"])

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self.request("POST", path, form)

    def sign_in(self, name: str, password: str = PASSWORD) -> Reply:
        page = self.get("/login")
        token = re.search(r'name="token" value="([^"]+)"', page.body)
        assert token, page.body
        return self.post("/login", {"name": name, "password": password, "token": token.group(1), "next": "/"})

    def csrf(self, path: str = "/limits") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(path).body)
        assert found, f"no CSRF token on {path}"
        return found.group(1)


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """`check()` once it is truthy (the read models follow the store within moments)."""
    deadline = time.monotonic() + timeout
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        policy = root / "fast.toml"
        policy.write_text(FAST_POLICY)
        self.env = {"TICKETING_DATA_DIR": str(self.data), "TICKETING_CONSOLE_PORT": str(self.port),
                    "TICKETING_METRICS_PORT": "0", "TICKETING_NATS_PORT": str(free_port()),
                    "TICKETING_SLA_POLICY": str(policy), "TICKETING_AUDIT_ANCHOR_SECONDS": "1",
                    "TICKETING_SLA_TICK_SECONDS": "0.1"}
        self.serve = Serve(root, self.env)
        self.url = self.serve.wait_ready(self.data, timeout=60)
        self._pool = ThreadPoolExecutor(1)

    def stop(self) -> None:
        self.serve.interrupt()
        self.serve.log.close()
        self._pool.shutdown()

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
        return subprocess.run([TICKETING, *args], cwd=self.root, env=clean | self.env, input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)

    def person(self, role: str, bus: bool = False) -> str:
        """A new person of `role` who signs in with PASSWORD (and, with `bus`, holds credentials too)."""
        name = f"{role[:4]}-{uuid.uuid4().hex[:6]}"
        extra = ["--out", str(self.root / f"{name}.nk")] if bus else []
        done = self.cli("users", "add", name, "--role", role, "--password-file", "-", *extra, stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
        return name

    def web(self) -> Web:
        return Web(self.port)

    # -- the bus, as the local operator (a manager) or a person holding credentials ---

    def ask(self, subject: str, body: dict[str, Any], as_user: str | None = None) -> dict[str, Any]:
        return self._pool.submit(asyncio.run, self._request(subject, body, as_user)).result(30)

    async def _request(self, subject: str, body: dict[str, Any], as_user: str | None) -> dict[str, Any]:
        seed = self.root / f"{as_user}.nk" if as_user else self.data / "auth" / "operator.nk"
        nc = await nats.connect(self.url, nkeys_seed=str(seed), inbox_prefix=inbox_prefix(as_user or "operator"))
        try:
            reply = await nc.request(subject, orjson.dumps(body), timeout=20)
        finally:
            await nc.close()
        return dict(orjson.loads(reply.data))

    def command(self, aggregate: str, command: str, data: dict[str, Any], case_id: str | None = None,
                as_user: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"command_id": str(uuid.uuid4()), "data": data}
        if case_id:
            body["aggregate_id"] = case_id
        reply = self.ask(f"ticketing.v1.commands.{aggregate}.{command}", body, as_user)
        assert reply["ok"], reply
        return reply

    def customer(self, **overrides: Any) -> str:
        return str(self.command("customer", "register", customer_data(**overrides))["aggregate_id"])

    def complaint(self, customer_id: str | None = None, **overrides: Any) -> str:
        data = complaint_data(customer_id=customer_id or self.customer()) | overrides
        data = {k: v for k, v in data.items() if v is not None}  # None: left out (the customer's region, say)
        return str(self.command("complaint", "register", data)["aggregate_id"])

    def history(self, case_id: str) -> dict[str, Any]:
        return self.ask("ticketing.v1.queries.case.history", {"case_id": case_id})
