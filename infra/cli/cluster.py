"""`ticketing cluster up`: a NATS cluster and several instances of the
product on this machine, started from exactly the files a deployment on
several machines uses (`infra/runtime/deploy.py`), each started again when
it dies, all stopped by Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from infra.cli.base import console, safe_url, setup_logging, stop_on_signals
from infra.settings import Settings


@click.group()
def cluster() -> None:
    """Several instances on one PostgreSQL store and a NATS cluster."""


@cluster.command("up")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9), help="clustered nats-servers")
@click.option("--instances", default=2, show_default=True, type=click.IntRange(1, 9),
              help="instances of the product (`ticketing serve`)")
def cluster_up(nodes: int, instances: int) -> None:
    """Start NODES clustered nats-servers (JetStream, routes, each its own store and ports) and INSTANCES
    instances of the product sharing TICKETING_DATABASE_URL, from the files written to <data dir>/deploy/
    (a nats-server configuration per node, an environment file per instance, systemd unit templates)."""
    settings = Settings()
    setup_logging(settings.log_level)
    if not settings.event_store_url.startswith("postgresql"):
        raise click.ClickException("cluster up needs TICKETING_DATABASE_URL naming PostgreSQL: several instances "
                                   "share one store, and SQLite takes one writer")
    asyncio.run(_up(settings, nodes, instances))


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            return conn.recv(4).startswith(b"INFO")
    except OSError:
        return False


async def _up(settings: Settings, nodes: int, instances: int) -> None:
    from infra.auth.connect import product_directory
    from infra.bus.nats_server import binary
    from infra.common.processes import spawn, terminate
    from infra.runtime.deploy import environment, plan, write

    stop = stop_on_signals()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    deployment = plan(settings, nodes, instances)
    write(deployment, settings, product_directory(settings))
    logs = deployment.directory / "logs"
    logs.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    ticketing = str(Path(sys.executable).parent / "ticketing")
    commands: dict[str, tuple[list[str], dict[str, str] | None, Path]] = {}
    for node in deployment.nodes:
        store = deployment.node_store(node, settings.data_dir)
        commands[node.name] = ([binary(), "-c", str(deployment.node_config(node)), "-l",
                                str(store / "nats-server.log")], None, logs / f"{node.name}.out")
    for instance in deployment.instances:
        commands[instance] = ([ticketing, "serve"], clean | environment(deployment.instance_env(instance)),
                              logs / f"{instance}.log")
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for node in deployment.nodes:
            running[node.name] = spawn(commands[node.name][0], log_file=commands[node.name][2])
        deadline = time.monotonic() + 30
        while not all(_answers(node.port) for node in deployment.nodes):
            if time.monotonic() > deadline or stop.is_set():
                raise click.ClickException(f"the NATS nodes did not all start; see {logs}")
            await asyncio.sleep(0.1)
        settings.nats_url_file.write_text(deployment.nats_url + "\n")
        for instance in deployment.instances:
            argv, env, log = commands[instance]
            running[instance] = spawn(argv, env=env, log_file=log)
        console.print(f"[bold]ticketing cluster[/]: {nodes} NATS node(s), {instances} instance(s); files in "
                      f"{deployment.directory}")
        for node in deployment.nodes:
            console.print(f"  {node.name}: {node.url} (routes on 127.0.0.1:{node.route_port}), store "
                          f"{deployment.node_store(node, settings.data_dir)}")
        for instance in deployment.instances:
            console.print(f"  {instance}: `ticketing serve` with {deployment.instance_env(instance)}, log "
                          f"{logs / (instance + '.log')}")
        console.print(f"  NATS URL (written to {settings.nats_url_file}): {deployment.nats_url}")
        console.print(f"  store and read models: {safe_url(settings.event_store_url)}")
        await _say_holders(settings, stop)
        console.print("  who holds what now: `ticketing status`; Ctrl-C to stop")
        await _keep(running, commands, stop)
    finally:
        console.print("stopping...")
        for name in [*deployment.instances, *(n.name for n in deployment.nodes)]:
            await asyncio.to_thread(terminate, running.get(name))
        console.print("stopped")


async def _say_holders(settings: Settings, stop: asyncio.Event, wait: float = 60.0) -> None:
    """Who took each part, once every part is held (or after `wait`)."""
    from infra.cluster.leases import Leases
    from infra.store.database import make_engine

    engine = make_engine(settings.read_model_url)
    leases = Leases(engine, settings.lease_seconds, create=False)
    deadline = time.monotonic() + wait
    held: list[dict[str, object]] = []
    try:
        while time.monotonic() < deadline and not stop.is_set():
            try:
                held = [lease for lease in await asyncio.to_thread(leases.holders) if lease["live"]]
            except Exception:  # noqa: BLE001 - the instances have not made the table yet
                held = []
            if len(held) >= 3:
                break
            await asyncio.sleep(0.5)
    finally:
        engine.dispose()
    for lease in held:
        console.print(f"  {lease['name']}: held by {lease['holder']} (epoch {lease['epoch']})")


async def _keep(running: dict[str, subprocess.Popen[bytes]],
                commands: dict[str, tuple[list[str], dict[str, str] | None, Path]], stop: asyncio.Event) -> None:
    """Each process started again when it dies (said once each time), until `stop`."""
    from infra.common.processes import spawn

    while not stop.is_set():
        for name, process in list(running.items()):
            if process.poll() is not None and not stop.is_set():
                console.print(f"[yellow]{name} exited with {process.returncode}: starting it again[/]")
                argv, env, log = commands[name]
                running[name] = spawn(argv, env=env, log_file=log)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            continue
