"""Commands that work on the data directory and the domain's tables
without a running product: rebuilding read models, the roles, the AsyncAPI
document."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from infra.cli.base import console, setup_logging
from infra.settings import Settings


@click.group()
def projections() -> None:
    """Read models fed from the bus."""


@projections.command("rebuild")
@click.argument("name", required=False)
def rebuild_command(name: str | None) -> None:
    """Rebuild a projection (default: all) from the event store, beside the
    live ones: they keep serving (and the monitors alerting) while it builds,
    then the rebuilt ones take their place in one step. (On SQLite every
    projection: the swap puts a new file in place.)"""
    from zoneinfo import ZoneInfo

    from infra.config_files import load_sla_policy
    from infra.runtime.worker import projections as all_projections
    from infra.store.database import FILES, make_engine
    from infra.store.event_store import EventStore
    from infra.store.rebuild_live import rebuild_live
    from infra.store.secrets import cipher_key

    settings = Settings()
    setup_logging(settings.log_level)
    every = all_projections(load_sla_policy(settings), ZoneInfo(settings.timezone))
    chosen = [p for p in every if name in (None, p.name)]
    if not chosen:
        names = ", ".join(p.name for p in every)
        raise click.ClickException(f"no projection {name!r}; there are: {names}")
    store = EventStore(settings.event_store_url, cipher_key(settings))
    engine = make_engine(settings.read_model_url)
    if len(chosen) < len(every) and FILES.get(engine) is not None:
        # The swap puts a new file in place: the projections not rebuilt would
        # be copied into it while the live models wait (seconds at a million
        # events); built with the others, they cost the build, not the wait.
        console.print(f"SQLite: the read models are swapped in as a new file, so every projection is built "
                      f"into it ({name} among them)")
        chosen = every
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[rate]}"))
    began = time.monotonic()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(", ".join(p.name for p in chosen), total=store.max_position() or 1, rate="")

        def shown(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - began, 1e-6)
            progress.update(task, completed=done, total=total, rate=f"{rate:,.0f} events/s")
        reached = rebuild_live(store, engine, chosen, shown)
        progress.update(task, completed=reached or 1)
    seconds = time.monotonic() - began
    console.print(f"rebuilt {', '.join(p.name for p in chosen)} up to position {reached}: {reached:,} events in "
                  f"{seconds:.1f}s ({reached / max(seconds, 1e-6):,.0f} events/s, each read and decoded once); swapped in "
                  f"for the live ones")


@click.command()
@click.option("--bus", is_flag=True, help="what each role may publish and subscribe to on NATS instead")
@click.option("--markdown", is_flag=True, help="with --bus: as a Markdown table (the README's)")
def roles(bus: bool, markdown: bool) -> None:
    """Who may do what, in which status: every case kind's state table, from the domain
    (with --bus: each role's NATS permissions, derived from the same tables)."""
    from handlers.kinds import KINDS

    if bus:
        from infra.auth.permissions import markdown_table, role_table

        if markdown:
            click.echo(markdown_table(), nl=False)
            return
        permissions = Table(title="NATS permissions by role (from the state tables and ticketing/access.py)")
        for column in ("role", "may publish to", "may subscribe to"):
            permissions.add_column(column, overflow="fold")
        for row in role_table():
            permissions.add_row(*row)
        console.print(permissions)
        return

    table = Table(title="commands by case kind: from which status, to which, by whom")
    for column in ("kind", "command", "allowed from", "to", "roles"):
        table.add_column(column)
    for name, kind in KINDS.items():
        lifecycle = kind.aggregate.lifecycle
        table.add_row(name, kind.creates, "-", "(new)", ", ".join(sorted(lifecycle.register_roles)))
        for command, step in lifecycle.steps.items():
            table.add_row(name, command, ", ".join(sorted(step.allowed_from)), step.to or "(same)",
                          ", ".join(sorted(step.roles)))
    console.print(table)
    console.print("Within a step, the domain asks more where the handbooks do: a contractor needs a manager, "
                  "compensation above TICKETING_COMPENSATION_LIMIT and closing an escalated complaint need a "
                  "supervisor or above, an agent's dispatch waits for a supervisor's approval.")


@click.command()
def asyncapi() -> None:
    """Print the AsyncAPI document of the bus (JSON)."""
    import sys

    from infra.docs import document

    sys.stdout.buffer.write(document())
