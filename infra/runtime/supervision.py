"""Nothing needs a person watching: `serve` starts each of its worker
processes again when it dies, and its embedded nats-server when it dies or when its
JetStream is stuck. Each says so once per change of state."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson
from nats.js import JetStreamContext

from infra.common.processes import spawn
from infra.runtime.parts import PARTS
from infra.runtime.worker import WORKER_READY_SUBJECT

log = logging.getLogger(__name__)

JETSTREAM_PATIENCE_SECONDS = 15.0


class JetStreamWatch:
    """Whether the embedded server's JetStream is stuck while the connection
    is up: it stops answering, or it answers but a stream keeps refusing what
    is published to it - the relay's events with the store ahead, the
    monitors' alerts or the chain's anchors (nats-server leaves a stream that hit a full disk
    failing every write until it restarts, even once space is back; which
    stream hits it depends on who wrote while the disk was full)."""

    def __init__(self, js: JetStreamContext, head: Callable[[], int],
                 worker: Callable[[], dict[str, Any] | None], every: float = 2.0,
                 patience: float = JETSTREAM_PATIENCE_SECONDS) -> None:
        self.js = js
        self.head = head
        self.worker = worker
        self.every = every
        self.patience = patience
        self._asked = 0.0
        self._silent_since: float | None = None
        self._relay_at: tuple[int, float] | None = None
        self._others_refused_since: float | None = None

    async def trouble(self, connected: bool) -> str | None:
        """What is wrong, once it has lasted `patience`; None when all is well."""
        now = asyncio.get_running_loop().time()
        if not connected:  # reconnecting: that is another story
            self._silent_since = self._relay_at = self._others_refused_since = None
            return None
        if now - self._asked < self.every:
            return None
        self._asked = now
        try:
            await asyncio.wait_for(self.js.account_info(), 2.0)
            self._silent_since = None
        except Exception:  # noqa: BLE001 - not answering, for whatever reason
            self._silent_since = self._silent_since or now
            if now - self._silent_since >= self.patience:
                return "has not answered"
        status = self.worker() or {}
        return await self._events_refused(status.get("relay"), now) or self._others_refused(
            {**(status.get("monitors") or {}), "anchors": status.get("anchors") or {}}, now)

    async def _events_refused(self, relay: dict[str, Any] | None, now: float) -> str | None:
        try:
            head = await asyncio.to_thread(self.head)
        except Exception:  # noqa: BLE001 - the store away: not JetStream's trouble
            self._relay_at = None
            return None
        if not relay or relay["position"] >= head or not relay.get("last_error"):
            self._relay_at = None
            return None
        if self._relay_at is None or self._relay_at[0] != relay["position"]:
            self._relay_at = (relay["position"], now)
            return None
        if now - self._relay_at[1] >= self.patience:
            return f"refused every event for the stream ({relay['last_error']})"
        return None

    def _others_refused(self, parts: dict[str, Any], now: float) -> str | None:
        """The alerts' or the anchors' stream refusing (the parts say so in the worker's status)."""
        refused = sorted(name for name, own in parts.items() if own.get("refused"))
        if not refused:
            self._others_refused_since = None
            return None
        self._others_refused_since = self._others_refused_since or now
        if now - self._others_refused_since >= self.patience:
            error = parts[refused[0]].get("last_error")
            return f"refused every publish of {', '.join(refused)} to its stream" + (f" ({error})" if error else "")
        return None


async def keep_worker_running(runtime: Any) -> None:
    """Run each of the worker's parts as a child of its own (`ticketing
    worker --part P`), each started again if it dies; at first the next part
    is started once the one before is ready, however long that takes (the
    projections' part brings the read models up to date with the code and
    the SLA policy before the monitors look at them)."""
    env = os.environ | runtime.settings.as_env(nats_url=runtime.nats_url, instance=runtime.settings.instance_name)
    ready = {part: asyncio.Event() for part in PARTS}

    async def heard(msg: Any) -> None:
        for part in orjson.loads(msg.data) if msg.data else PARTS:
            if part in ready:
                ready[part].set()
        if all(event.is_set() for event in ready.values()):
            runtime.worker_ready.set()

    async def keep(part: str) -> None:
        args = [sys.executable, "-m", "infra.cli", "worker", "--part", part]
        while True:
            process = runtime.worker_processes[part] = spawn(args, env=env)
            while (code := process.poll()) is None:
                await asyncio.sleep(0.5)
            log.warning("the worker's %s process exited with %s; starting it again", part, code)
            await asyncio.sleep(1.0)

    await runtime.nc.subscribe(WORKER_READY_SUBJECT, cb=heard)
    await runtime.nc.flush()
    async with asyncio.TaskGroup() as group:
        for part in PARTS:
            group.create_task(keep(part), name=f"worker:{part}")
            try:
                await asyncio.wait_for(ready[part].wait(), 60)
            except TimeoutError:  # a rebuild at start, say: the monitors must not look at models half made
                log.warning("the worker's %s process is not ready after 60s; the next waits for it", part)
                await ready[part].wait()


async def keep_nats_running(runtime: Any, every: float = 0.5) -> None:
    """Start the embedded nats-server again whenever it dies, on the same
    port (every client reconnects to the URL it holds); said once per
    change of state, not per failed attempt."""
    assert runtime.embedded is not None
    server = runtime.embedded
    jetstream = JetStreamWatch(runtime.js, runtime.store.max_position, runtime.worker_status)
    while True:
        await asyncio.sleep(every)
        trouble = await jetstream.trouble(runtime.nc.is_connected) if server.alive else None
        if server.alive and trouble is None:
            continue
        if server.alive:
            log.error("the embedded nats-server's JetStream %s for %.0fs (its store was full, say): restarting "
                      "the server on %s", trouble, JETSTREAM_PATIENCE_SECONDS, server.url)
            await asyncio.to_thread(server.stop)
        else:
            code = server.process.returncode if server.process else None
            log.error("the embedded nats-server died (exit %s): starting it again on %s", code, server.url)
        failed_before = False
        while True:
            try:
                await server.revive()
                break
            except (RuntimeError, OSError) as error:
                if not failed_before:
                    log.error("the embedded nats-server does not start again (%s); retrying every 2s", error)
                    failed_before = True
                await asyncio.sleep(2.0)
        log.warning("the embedded nats-server is back on %s", server.url)
        jetstream = JetStreamWatch(runtime.js, runtime.store.max_position, runtime.worker_status)
