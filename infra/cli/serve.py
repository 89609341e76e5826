"""Running the product: `serve` (everything, on embedded defaults unless
told otherwise) and `worker` (what serve runs as its child process)."""

from __future__ import annotations

import asyncio
import time

import click

from infra.cli.base import console, safe_url, setup_logging, stop_on_signals
from infra.runtime.parts import PARTS
from infra.settings import Settings


@click.command()
def serve() -> None:
    """Run everything: nats-server (unless TICKETING_NATS_URL is set), the event
    store, command handlers, relay and projections. Ctrl-C stops it all."""
    from infra.config_files import BadPolicy

    settings = Settings()
    setup_logging(settings.log_level)
    try:
        asyncio.run(_serve(settings))
    except BadPolicy as error:
        raise click.ClickException(str(error)) from None


async def _serve(settings: Settings) -> None:
    from infra.bootstrap import start
    from infra.runtime import collector

    stop = stop_on_signals()
    runtime = await start(settings, worker="process", stop=stop)
    collector.started()
    if not stop.is_set():  # (stopped while starting: straight to stopping)
        where = "embedded nats-server" if runtime.embedded else "external NATS"
        console.print(f"[bold]ticketing[/] serving; data in {settings.data_dir.resolve()}")
        console.print(f"  NATS ({where}): {runtime.nats_url}  (written to {settings.nats_url_file}); "
                      f"no anonymous access")
        console.print(f"  local operator's credentials: {settings.client_credentials.resolve()} (role manager; "
                      f"the CLI uses them); more users: `ticketing users add NAME --role ROLE --out FILE`")
        console.print(f"  event store:   {safe_url(settings.event_store_url)}")
        console.print(f"  read models:   {safe_url(settings.read_model_url)}")
        console.print("  projections, relay, monitors and policies in child processes (`ticketing worker --part`)")
        console.print("  commands on ticketing.v1.commands.>, queries on ticketing.v1.queries.>, "
                      "events on ticketing.v1.events.> (stream TICKETING_EVENTS)")
        if runtime.console is not None:
            console.print(f"  web console:   {runtime.console.url}  (people sign in with a password: "
                          f"`ticketing users add NAME --role supervisor --password`)")
        if settings.metrics_port:
            console.print(f"  metrics:       http://127.0.0.1:{settings.metrics_port}/metrics (and /ready, /live)")
        console.print("  Ctrl-C to stop")
        await stop.wait()
    console.print("stopping...")
    began = time.monotonic()
    await runtime.stop()
    console.print(f"stopped in {time.monotonic() - began:.1f}s")


@click.command()
@click.option("--part", "parts", type=click.Choice(PARTS), multiple=True,
              help="Run only this part (repeatable; all of them by default): the projections; the relay with "
                   "the chain's anchors; or the monitors with the policies. `serve` runs each apart.")
def worker(parts: tuple[str, ...]) -> None:
    """Run the worker until stopped: the relay, the projections, the policies
    and the monitors (what `serve` runs as its child processes)."""
    from infra.runtime.worker import run_worker

    settings = Settings()
    setup_logging(settings.log_level)

    async def run() -> None:
        stop = stop_on_signals()
        asyncio.get_running_loop().create_task(_exit_if_stuck(stop))
        await run_worker(settings, stop, tuple(p for p in PARTS if p in parts) if parts else PARTS)

    asyncio.run(run())


STUCK_STOPPING_SECONDS = 15.0


async def _exit_if_stuck(stop: asyncio.Event) -> None:
    """A part told to stop is gone within STUCK_STOPPING_SECONDS, whatever it
    waits on (a database or a bus that does not answer): an orphan that
    lingers after its serve died would hold connections and locks. A timer
    thread, so it fires though the loop itself is blocked."""
    import os
    import threading

    await stop.wait()
    timer = threading.Timer(STUCK_STOPPING_SECONDS, lambda: os._exit(1))
    timer.daemon = True
    timer.start()
