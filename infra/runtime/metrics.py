"""Prometheus metrics, with readiness and liveness beside them, served over
HTTP by the serving process (`TICKETING_METRICS_PORT`; 0 turns it off):

- `/metrics`: commands by kind and outcome, command latency, relay and
  projection lag, parked messages, SLA alerts raised, each part up or not;
- `/ready`: 200 when the store, NATS and the worker are up (a process
  supervisor or load balancer sends traffic then), 503 with the report else;
- `/live`: 200 while the event loop turns (it refreshes the snapshot every
  few seconds), 503 when it has stalled: restart the process.

The numbers that only the health report knows are refreshed from it every
`REFRESH_SECONDS`, so a scrape never waits on the store."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from contracts.health import HealthReply

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
STALLED_SECONDS = 15.0
READY_PARTS = ("store", "nats", "worker")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter("ticketing_commands", "Commands answered, by command and outcome (ok or the error "
                                "code)", ["command", "outcome"], registry=self.registry)
        self.latency = Histogram("ticketing_command_seconds", "From a command's arrival to its reply",
                                 ["command"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.up = Gauge("ticketing_part_up", "1 when the part is up", ["part"], registry=self.registry)
        self.lag_events = Gauge("ticketing_lag_events", "Events of the store a part has not dealt with (relay, "
                                "projections, policies)", ["part"], registry=self.registry)
        self.lag_seconds = Gauge("ticketing_lag_seconds", "Age of the oldest event a part has not dealt with",
                                 ["part"], registry=self.registry)
        self.parked = Gauge("ticketing_parked_messages", "Messages a projection parked on its dead-letter subject",
                            ["part"], registry=self.registry)
        self.alerts = Gauge("ticketing_sla_alerts_raised", "SLA alerts (warnings and breaches) the monitor raised "
                            "since the worker started", registry=self.registry)
        self.report: HealthReply | None = None
        self.refreshed_at = time.monotonic()

    def observe_command(self, command: str, reply: bytes, seconds: float) -> None:
        outcome = "ok" if reply.startswith(b'{"ok":true') else _code(reply)
        self.commands.labels(command, outcome).inc()
        self.latency.labels(command).observe(seconds)

    def refresh(self, report: HealthReply, worker: dict[str, Any] | None) -> None:
        self.report, self.refreshed_at = report, time.monotonic()
        for part in report.parts:
            self.up.labels(part.name).set(1 if part.up else 0)
            if part.lag_events is not None:
                self.lag_events.labels(part.name).set(part.lag_events)
            if part.lag_seconds is not None:
                self.lag_seconds.labels(part.name).set(part.lag_seconds)
            if part.parked is not None:
                self.parked.labels(part.name).set(part.parked)
        sla = (worker or {}).get("monitors", {}).get("sla")
        if sla is not None:
            self.alerts.set(sla["raised"])

    def ready(self) -> bool:
        if self.report is None:
            return False
        up = {p.name: p.up for p in self.report.parts}
        return all(up.get(name, False) for name in READY_PARTS)

    def live(self) -> bool:
        return time.monotonic() - self.refreshed_at < STALLED_SECONDS


def _code(reply: bytes) -> str:
    try:
        return str(orjson.loads(reply)["error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "unknown"


async def keep_fresh(metrics: Metrics, report: Callable[[], Awaitable[HealthReply]],
                     worker: Callable[[], dict[str, Any] | None]) -> None:
    """Refresh the snapshot behind the gauges and the endpoints, forever."""
    failing = False
    while True:
        try:
            metrics.refresh(await report(), worker())
            failing = False
        except Exception as error:  # noqa: BLE001 - said once; /live turns 503 if it lasts
            if not failing:
                log.warning("health: cannot refresh the report (%s)", error)
                failing = True
        await asyncio.sleep(REFRESH_SECONDS)


def serve_http(metrics: Metrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer | None:
    """The endpoints on a thread of their own; None (said once) when the port is taken."""

    class Endpoints(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path in ("/ready", "/live"):
                fine = metrics.ready() if path == "/ready" else metrics.live()
                body = metrics.report.model_dump_json().encode() if metrics.report else b"{}"
                self._answer(200 if fine else 503, body, "application/json")
            else:
                self._answer(404, b"/metrics, /ready or /live\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
            return

    try:
        server = ThreadingHTTPServer((host, port), Endpoints)
    except OSError as error:
        log.error("metrics: cannot listen on %s:%d (%s); serving without metrics", host, port, error.strerror)
        return None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
