"""The `ticketing` command: serve the product, and client commands that talk
to a running one over NATS (its URL from TICKETING_NATS_URL or
<data dir>/nats.url) as a user: the local operator's credentials from the
data directory, or those of --credentials / TICKETING_CREDENTIALS."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from infra.auth.cli import nats_config, users
from infra.settings import Settings

console = Console(soft_wrap=True)
_credentials: Path | None = None
"""The client commands' --credentials (None: TICKETING_CREDENTIALS or the local operator's)."""


def credentials_option(command: Any) -> Any:
    """--credentials FILE on a client command."""
    def keep(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        global _credentials
        _credentials = value

    return click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path), expose_value=False,
                        callback=keep, is_eager=True,
                        help="a user's credentials (nkey seed or .creds file); default: TICKETING_CREDENTIALS, "
                             "else the local operator's in <data dir>/auth/operator.nk")(command)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FastStream logs every message and every worker task at INFO: keep it to
    # problems. (Imported first: importing it configures its own loggers.)
    import faststream  # noqa: F401

    for noisy in ("faststream", "ticketing.bus", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group()
def main() -> None:
    """Event-sourced case handling for customer-service departments."""


main.add_command(users)
main.add_command(nats_config)


@main.command()
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

    stop = _stop_on_signals()
    runtime = await start(settings, worker="process")
    where = "embedded nats-server" if runtime.embedded else "external NATS"
    console.print(f"[bold]ticketing[/] serving; data in {settings.data_dir.resolve()}")
    console.print(f"  NATS ({where}): {runtime.nats_url}  (written to {settings.nats_url_file}); "
                  f"no anonymous access")
    console.print(f"  local operator's credentials: {settings.client_credentials.resolve()} (role manager; "
                  f"the CLI uses them); more users: `ticketing users add NAME --role ROLE --out FILE`")
    console.print(f"  event store:   {_safe_url(settings.event_store_url)}")
    console.print(f"  read models:   {_safe_url(settings.read_model_url)}")
    console.print("  relay and projections in a child process (`ticketing worker`)")
    console.print("  commands on ticketing.v1.commands.>, queries on ticketing.v1.queries.>, "
                  "events on ticketing.v1.events.> (stream TICKETING_EVENTS)")
    console.print("  Ctrl-C to stop")
    await stop.wait()
    console.print("stopping...")
    await runtime.stop()
    console.print("stopped")


def _stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C (SIGINT) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _safe_url(url: str) -> str:
    """A URL without its password, fit for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _nats_url(settings: Settings) -> str:
    if settings.nats_url:
        return settings.nats_url
    if settings.nats_url_file.exists():
        return settings.nats_url_file.read_text().strip()
    raise click.ClickException(f"ticketing serve is not running here (no {settings.nats_url_file}): start it "
                               f"with `make run` or `ticketing serve`, or set TICKETING_NATS_URL")


async def _request(subject: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request as the CLI's user; any failure is one line saying what to do."""
    import nats
    from nats.errors import NoRespondersError, NoServersError
    from nats.errors import TimeoutError as NatsTimeout

    from infra.auth.connect import client_options
    from infra.auth.keys import BadCredentials

    settings = Settings()
    url = _nats_url(settings)
    path = _credentials or settings.client_credentials
    try:
        options = client_options(settings, path)
    except BadCredentials as error:
        raise click.ClickException(f"{error}: run `ticketing serve` once (it makes the local operator's "
                                   f"credentials) or pass --credentials FILE (`ticketing users add`)") from None
    refused: list[str] = []

    async def on_error(error: Exception) -> None:
        refused.append(str(error))

    try:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False,
                                error_cb=on_error, **options)
    except Exception as error:  # noqa: BLE001 - said in one line, never a traceback
        if "authorization" in str(error).lower() or any("authorization" in r.lower() for r in refused):
            raise click.ClickException(f"NATS refused the credentials in {path} (authorization violation): the "
                                       f"user may have been removed; ask for new ones") from None
        raise click.ClickException(f"cannot reach NATS at {url} ({type(error).__name__}): is `ticketing serve` "
                                   f"running?") from None
    try:
        reply = await nc.request(subject, orjson.dumps(body), timeout=timeout)
    except (NatsTimeout, TimeoutError, NoRespondersError, NoServersError) as error:
        await asyncio.sleep(0.05)  # a permissions violation arrives on its own, just after
        denied = [r for r in refused if "permissions violation" in r.lower()]
        if denied:
            raise click.ClickException(f"NATS refused: {denied[0]} (your role may not do this: "
                                       f"`ticketing roles --bus`)") from None
        raise click.ClickException(f"no answer on {subject} ({type(error).__name__}): is `ticketing serve` "
                                   f"running, and is this a command or query it knows?") from None
    finally:
        await nc.close()
    return dict(orjson.loads(reply.data))


@main.command()
@click.argument("aggregate")
@click.argument("command")
@click.argument("data", default="{}")
@click.option("--id", "aggregate_id", help="the case's id (absent on register)")
@click.option("--expected-version", type=int)
@credentials_option
def send(aggregate: str, command: str, data: str, aggregate_id: str | None, expected_version: int | None) -> None:
    """Send a command as your user, e.g. `ticketing send complaint acknowledge '{"note": "called"}' --id ID`."""
    from contracts.catalog import COMMANDS

    if aggregate not in COMMANDS:
        raise click.ClickException(f"no aggregate {aggregate!r}; there are: {', '.join(COMMANDS)}")
    if command not in COMMANDS[aggregate]:
        raise click.ClickException(f"a {aggregate} has no command {command!r}; it has: "
                                   f"{', '.join(COMMANDS[aggregate])}")
    try:
        fields = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise click.ClickException(f"DATA is not JSON ({error}); e.g. '{{\"note\": \"called back\"}}'") from None
    body: dict[str, Any] = {"command_id": str(uuid.uuid4()), "data": fields}
    if aggregate_id:
        body["aggregate_id"] = aggregate_id
    if expected_version is not None:
        body["expected_version"] = expected_version
    reply = asyncio.run(_request(f"ticketing.v1.commands.{aggregate}.{command}", body))
    console.print_json(orjson.dumps(reply).decode())
    sys.exit(0 if reply.get("ok") else 1)


@main.command()
@click.argument("case_id")
@click.option("--at", help="RFC 3339 instant, e.g. 2026-11-25T08:00:00Z (default: now)")
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def history(case_id: str, at: str | None, as_json: bool) -> None:
    """A case's events and its state as it was at --at."""
    query: dict[str, Any] = {"case_id": case_id}
    if at:
        query["at"] = at
    reply = asyncio.run(_request("ticketing.v1.queries.case.history", query))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") else 1)
    table = Table(title=f"{reply['aggregate_type']} {reply['case_id']} as of {reply['at']}")
    for column in ("v", "position", "occurred at", "event", "actor"):
        table.add_column(column, no_wrap=True)
    table.add_column("data", overflow="fold")
    for e in reply["events"]:
        table.add_row(str(e["aggregate_version"]), str(e["position"]), e["occurred_at"], e["type"],
                      f"{e['actor']['id']} ({e['actor']['role']})",
                      orjson.dumps({k: v for k, v in e["data"].items() if v is not None}).decode())
    console.print(table)
    console.print(f"[bold]state at version {reply['version']}[/]")
    console.print_json(orjson.dumps(reply["state"]).decode())


@main.command()
@click.option("--breaches", is_flag=True, help="limits breached instead of those running")
@click.option("--assignee", help="running limits of this assignee only")
@click.option("--tier", type=click.Choice(["basic", "vip", "strategic"]))
@click.option("--kind", type=click.Choice(["complaint", "repair_job", "callback"]))
@click.option("--metric", type=click.Choice(["first_response", "plan", "resolution", "callback", "loop"]))
@click.option("--since", help="breaches from this RFC 3339 instant")
@click.option("--until", help="breaches before this RFC 3339 instant")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def sla(breaches: bool, assignee: str | None, tier: str | None, kind: str | None, metric: str | None,
        since: str | None, until: str | None, limit: int, as_json: bool) -> None:
    """Service limits running, the most urgent first (or, with --breaches, breached, the latest first)."""
    filters = {"tier": tier, "kind": kind, "metric": metric, "limit": limit}
    if breaches:
        query, filters = "sla.breaches", filters | {"since": since, "until": until}
    else:
        query, filters = "sla.open", filters | {"assignee": assignee}
    reply = asyncio.run(_request(f"ticketing.v1.queries.{query}", {k: v for k, v in filters.items() if v}))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") else 1)
    rows = reply["breaches" if breaches else "limits"]
    table = Table(title=f"{'breached' if breaches else 'running'} limits as of {reply['at']} ({len(rows)})")
    headers = ["case", "kind", "metric", "cycle", "tier", "priority", "assignee", "state",
               "breached at" if breaches else "deadline", "elapsed / limit" if breaches else "time left"]
    for header in headers:
        table.add_column(header, no_wrap=header != "assignee")
    for row in rows:
        if breaches:
            when, figure = row["breached_at"], f"{_span(row['elapsed_seconds'])} / {_span(row['limit_seconds'])}"
        else:
            when = row["deadline"] or "(paused)"
            figure = "-" if row["time_left_seconds"] is None else _span(row["time_left_seconds"])
        style = {"breached": "red", "missed": "red", "at_risk": "yellow", "paused": "dim"}.get(row["state"])
        table.add_row(row["case_id"], row["case_type"], row["metric"], str(row["cycle"]), row["tier"],
                      row["priority"], row["assignee"] or "-", row["state"], when, figure, style=style)
    console.print(table)


def _span(seconds: float) -> str:
    """A signed duration for people: `-1h05m`, `3d4h`, `12m`."""
    sign, left = ("-" if seconds < 0 else ""), int(abs(seconds))
    days, left = divmod(left, 86400)
    hours, left = divmod(left, 3600)
    minutes = left // 60
    if days:
        return f"{sign}{days}d{hours}h"
    return f"{sign}{hours}h{minutes:02d}m" if hours else f"{sign}{minutes}m"


@main.command()
@click.option("--watch", is_flag=True, help="refresh until Ctrl-C")
@click.option("--every", type=float, default=2.0, show_default=True, help="seconds between refreshes")
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def dashboard(watch: bool, every: float, as_json: bool) -> None:
    """The live dashboard: open work, today's and this month's figures, limits at risk."""
    reply = asyncio.run(_request("ticketing.v1.queries.dashboard", {}))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") else 1)
    if not watch:
        console.print(_dashboard(reply))
        return
    from rich.live import Live

    with Live(_dashboard(reply), console=console, screen=False, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(every)
                live.update(_dashboard(asyncio.run(_request("ticketing.v1.queries.dashboard", {}))), refresh=True)
        except KeyboardInterrupt:
            pass


def _dashboard(reply: dict[str, Any]) -> Any:
    from rich.columns import Columns
    from rich.console import Group

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    figures = Table(title=f"as of {reply['at']} ({reply['timezone']})")
    figures.add_column("")
    for label in ("today", "this month"):
        figures.add_column(label, justify="right")
    today, month = reply["today"], reply["month"]
    for label, value in (
            ("complaints registered", lambda f: str(f["registered"]["complaint"])),
            ("repair jobs registered", lambda f: str(f["registered"]["repair_job"])),
            ("resolved", lambda f: str(sum(f["resolved"].values()))),
            ("first-contact resolution", lambda f: share(f["first_contact_rate"])),
            ("first response on time", lambda f: share(f["first_response_on_time"])),
            ("resolution on time", lambda f: share(f["resolution_on_time"])),
            ("callbacks done / missed", lambda f: f"{f['callbacks_done']} / {f['callbacks_missed']}"),
            ("average satisfaction", lambda f: "-" if f["satisfaction"] is None else f"{f['satisfaction']:.1f}")):
        figures.add_row(label, value(today), value(month))
    limits = f"[yellow]{reply['limits_at_risk']} limits at risk[/]   [red]{reply['limits_breached']} breached[/]"
    tables = []
    for name in ("kind", "status", "priority", "tier", "category", "region", "assignee"):
        table = Table(title=f"open by {name}")
        table.add_column(name)
        table.add_column("cases", justify="right")
        for value, count in list(reply["open"][name].items())[:8]:
            table.add_row(value, str(count))
        tables.append(table)
    backlog = Table(title="backlog by age")
    backlog.add_column("age")
    backlog.add_column("cases", justify="right")
    for label, count in reply["backlog"].items():
        backlog.add_row(label, str(count))
    return Group(figures, limits, f"[bold]{reply['open_total']} open cases[/]", Columns([backlog, *tables]))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def status(as_json: bool) -> None:
    """Each part of the running product: up or not, how far behind the store, parked messages, last error.
    Exits 1 when a part is down."""
    reply = asyncio.run(_request("ticketing.v1.queries.health", {}))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") and reply.get("healthy") else 1)
    table = Table(title=f"{'healthy' if reply['healthy'] else 'NOT healthy'} as of {reply['at']}, "
                        f"store head {reply['head']}")
    for column in ("part", "up", "position", "behind", "parked", "last error"):
        table.add_column(column, overflow="fold", no_wrap=column == "part")
    for part in reply["parts"]:
        behind = "-" if part["lag_events"] is None else (
            f"{part['lag_events']}" + (f" ({_span(part['lag_seconds'])})" if part["lag_seconds"] else ""))
        table.add_row(part["name"], "yes" if part["up"] else "NO",
                      "-" if part["position"] is None else str(part["position"]), behind,
                      "-" if part["parked"] is None else str(part["parked"]), part["last_error"] or "-",
                      style=None if part["up"] else "bold red")
    console.print(table)
    sys.exit(0 if reply["healthy"] else 1)


@main.command()
@click.option("--month", help="a month, e.g. 2026-11")
@click.option("--quarter", help="a quarter, e.g. 2026-Q4")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"),
              show_default=True, help="where to write the files")
@credentials_option
def report(month: str | None, quarter: str | None, out: Path) -> None:
    """The monthly or quarterly service-quality report: HTML with charts, JSON and CSV."""
    if bool(month) == bool(quarter):
        raise click.UsageError("give --month or --quarter")
    reply = asyncio.run(_request("ticketing.v1.queries.report", {"period": month or quarter}, timeout=60))
    if not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(1)
    from infra.report_files import write

    for path in write(reply, out):
        console.print(f"wrote {path}")
    for miss in reply["misses"]:
        console.print(f"[red]missed:[/] {miss}")


@main.group()
def customers() -> None:
    """Customers: the dangerous-customer list."""


@customers.command("dangerous")
@click.option("--level", type=click.Choice(["watch", "high", "critical"]), help="this level or above")
@click.option("--type", "danger_type",
              type=click.Choice(["churn_risk", "malicious_complainant", "extortion", "escalation_magnet"]))
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def customers_dangerous(level: str | None, danger_type: str | None, as_json: bool) -> None:
    """The dangerous-customer list (危险客户统计表): who, why, since when, what to do."""
    query = {k: v for k, v in {"level": level, "danger_type": danger_type}.items() if v}
    reply = asyncio.run(_request("ticketing.v1.queries.customers.dangerous", query))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") else 1)
    table = Table(title=f"dangerous customers as of {reply['at']} ({len(reply['customers'])})")
    for column in ("customer", "tier", "region", "level", "type", "since", "reasons (cases)", "counter-measure"):
        table.add_column(column, overflow="fold", no_wrap=column in ("customer", "since"))
    for c in reply["customers"]:
        reasons = "\n".join(f"{r['text']} ({', '.join(i[:8] for i in r['case_ids']) or '-'})" for r in c["reasons"])
        style = {"critical": "bold red", "high": "red", "watch": "yellow"}[c["level"]]
        table.add_row(c["customer_id"], c["tier"], c["region"] or "-", c["level"], c["danger_type"],
                      c["entered_at"], reasons, c["counter_measure"], style=style)
    console.print(table)


@main.command()
def worker() -> None:
    """Run the relay and the projections until stopped (what `serve` runs as
    its child process)."""
    from infra.bootstrap import run_worker

    settings = Settings()
    setup_logging(settings.log_level)

    async def run() -> None:
        await run_worker(settings, _stop_on_signals())

    asyncio.run(run())


@main.group()
def projections() -> None:
    """Read models fed from the bus."""


@projections.command("rebuild")
@click.argument("name", required=False)
def rebuild_command(name: str | None) -> None:
    """Rebuild a projection (default: all) from the event store."""
    from infra.bootstrap import projections as all_projections
    from infra.config_files import load_sla_policy
    from infra.database import make_engine
    from infra.rebuild import rebuild_projection
    from infra.secrets import cipher_key
    from infra.store import EventStore

    settings = Settings()
    setup_logging(settings.log_level)
    every = all_projections(load_sla_policy(settings))
    chosen = [p for p in every if name in (None, p.name)]
    if not chosen:
        names = ", ".join(p.name for p in every)
        raise click.ClickException(f"no projection {name!r}; there are: {names}")
    store = EventStore(settings.event_store_url, cipher_key(settings))
    engine = make_engine(settings.read_model_url)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        for projection in chosen:
            task = progress.add_task(projection.name, total=store.max_position() or 1)
            reached = rebuild_projection(
                store, engine, projection,
                lambda done, total, task=task: progress.update(task, completed=done, total=total))
            progress.update(task, completed=reached or 1)
    console.print(f"rebuilt {', '.join(p.name for p in chosen)} up to position {store.max_position()}")


@main.command()
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


@main.command()
def asyncapi() -> None:
    """Print the AsyncAPI document of the bus (JSON)."""
    from infra.docs import specification

    click.echo(specification().to_json())



if __name__ == "__main__":
    main()
