"""The console served from serve's own event loop (uvicorn), on
TICKETING_CONSOLE_HOST:TICKETING_CONSOLE_PORT; it connects to NATS as the
console's gateway identity, made on first start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn

import contracts
from infra.auth.connect import client_options
from infra.auth.directory import UserDirectory
from infra.bus.anchors import ANCHOR_FILE, read_anchor_file, read_anchors
from infra.bus.connection import servers
from infra.console.app import make_app
from infra.console.gateway import Gateway
from infra.console.sessions import Sessions
from infra.settings import Settings

log = logging.getLogger(__name__)


class _Quiet(uvicorn.Server):
    """uvicorn without its own signal handlers: serve's stop decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Console:
    def __init__(self, server: _Quiet, gateway: Gateway, tasks: list[asyncio.Task[None]], url: str) -> None:
        self.server = server
        self.gateway = gateway
        self.tasks = tasks
        self.url = url

    async def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # open live streams are not waited for
        connecting, serving = self.tasks
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.gather(connecting, serving, return_exceptions=True), 5)
        await self.gateway.stop()


async def start_console(settings: Settings, nats_url: str, directory: UserDirectory, credentials: Path,
                        bundle: Callable[[str], Awaitable[dict[str, Any]]]) -> Console | None:
    """The console serving; None (said once) when its address is taken: the product runs on without it."""
    try:
        listening = socket.create_server((settings.console_host, settings.console_port))
    except OSError as error:
        log.warning("the web console cannot listen on %s:%d (%s): the product runs without it; set "
                    "TICKETING_CONSOLE_PORT to a free port (0 turns it off)", settings.console_host,
                    settings.console_port, error.strerror or error)
        return None
    gateway = Gateway()
    connecting = asyncio.create_task(gateway.connect(servers(nats_url), client_options(settings, credentials)),
                                     name="console's NATS connection")
    sessions = Sessions(settings.auth_dir / "console.key", directory, settings.console_idle_hours * 3600)
    app = make_app(gateway, sessions, Path(contracts.__file__).parent, bundle, ZoneInfo(settings.timezone))
    server = _Quiet(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                   server_header=False))
    serving = asyncio.create_task(server.serve(sockets=[listening]), name="console")
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):  # usually at once; else it goes on connecting
        await asyncio.wait_for(asyncio.shield(connecting), 5)
    host, port = listening.getsockname()[:2]
    return Console(server, gateway, [connecting, serving], f"http://{host}:{port}/")


def case_bundle(store: Any, js: Any, signer: Any, data_dir: Path) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """`audit export` for the console: a case's signed bundle, with the anchors
    on the bus (or, when they cannot be read, those kept in the data directory)."""
    from uuid import UUID

    from infra.store.bundle import export

    async def bundle(case_id: str) -> dict[str, Any]:
        try:
            wanted = UUID(case_id)
        except ValueError:
            raise ValueError(f"{case_id!r} is not a case id (a UUID)") from None
        try:
            anchors = await read_anchors(js)
        except Exception:  # noqa: BLE001 - the kept copies serve as well
            kept = data_dir / ANCHOR_FILE
            anchors = read_anchor_file(kept) if kept.exists() else []
        return dict(await asyncio.to_thread(export, store, wanted, anchors, signer))
    return bundle
