"""Client commands that talk to a running product over NATS (its URL from
TICKETING_NATS_URL or <data dir>/nats.url) as a user: the local operator's
credentials from the data directory, or those of --credentials /
TICKETING_CREDENTIALS. Any failure is one line saying what to do."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import orjson
from rich.table import Table

from infra.cli.base import console, narrow, span
from infra.settings import Settings

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


def _nats_url(settings: Settings) -> str:
    if settings.nats_url:
        return settings.nats_url
    if settings.nats_url_file.exists():
        return settings.nats_url_file.read_text().strip()
    raise click.ClickException(f"ticketing serve is not running here (no {settings.nats_url_file}): start it "
                               f"with `make run` or `ticketing serve`, or set TICKETING_NATS_URL")


async def request(subject: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request as the CLI's user; any failure is one line saying what to do."""
    import nats
    from nats.errors import NoRespondersError, NoServersError
    from nats.errors import TimeoutError as NatsTimeout

    from infra.auth.connect import client_options
    from infra.auth.keys import BadCredentials
    from infra.bus.connection import servers

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
        nc = await nats.connect(servers(url), connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False,
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


@click.command()
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
    from handlers.kinds import KINDS

    creates = KINDS[aggregate].creates
    if command != creates and not aggregate_id:
        raise click.UsageError(f"--id is required: the {aggregate}'s id (the aggregate_id its {creates} replied; "
                               f"`ticketing history ID` lists a case's callbacks and follow-ups)")
    if command == creates and aggregate_id:
        raise click.UsageError(f"--id must be left out on {creates}: the reply gives the new {aggregate}'s id")
    try:
        fields = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise click.ClickException(f"DATA is not JSON ({error}); e.g. '{{\"note\": \"called back\"}}'") from None
    body: dict[str, Any] = {"command_id": str(uuid.uuid4()), "data": fields}
    if aggregate_id:
        body["aggregate_id"] = aggregate_id
    if expected_version is not None:
        body["expected_version"] = expected_version
    reply = asyncio.run(request(f"ticketing.v1.commands.{aggregate}.{command}", body))
    console.print_json(orjson.dumps(reply).decode())
    sys.exit(0 if reply.get("ok") else 1)


@click.command()
@click.argument("case_id")
@click.option("--at", help="RFC 3339 instant, e.g. 2026-11-25T08:00:00Z (default: now)")
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def history(case_id: str, at: str | None, as_json: bool) -> None:
    """A case's events and its state as it was at --at."""
    query: dict[str, Any] = {"case_id": case_id}
    if at:
        query["at"] = at
    reply = asyncio.run(request("ticketing.v1.queries.case.history", query))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") else 1)
    title = f"{reply['aggregate_type']} {reply['case_id']} as of {reply['at']}"
    if not reply["events"]:
        console.print(f"{title}: the {reply['aggregate_type']} did not exist yet; its first event came at "
                      f"{reply['began_at']}")
        sys.exit(1)
    events = [(str(e["aggregate_version"]), str(e["position"]), e["occurred_at"], e["type"],
               f"{e['actor']['id']} ({e['actor']['role']})" + (f" via {e['actor']['via']['id']}"
                                                                if e["actor"].get("via") else ""),
               ", ".join(f"{k}={v}" for k, v in e["data"].items() if v is not None)) for e in reply["events"]]
    if narrow():  # a list: the data keeps its room at 80 columns
        console.print(f"[bold]{title}[/]")
        for version, position, at, kind, actor, data in events:
            console.print(f"[bold]v{version}[/] {at}  [cyan]{kind}[/]  {actor}  (position {position})")
            if data:
                console.print(f"    {data}", highlight=False)
    else:
        table = Table(title=title)
        for column in ("v", "position", "occurred at", "event", "actor"):
            table.add_column(column, no_wrap=True)
        table.add_column("data", overflow="fold")
        for row in events:
            table.add_row(*row)
        console.print(table)
    console.print(f"[bold]state at version {reply['version']}[/]")
    console.print_json(orjson.dumps(reply["state"]).decode())
    if reply.get("linked"):
        console.print("[bold]linked[/] (status now):")
        for link in reply["linked"]:
            console.print(f"  {link['relation'].replace('_', ' ')}: {link['kind']} {link['case_id']} "
                          f"({link['status']})  -> ticketing history {link['case_id']}", highlight=False)
    if reply.get("sla"):
        policy = reply["sla_policy"]
        limits = Table(title=f"service limits as of {reply['at']} (policy {policy['digest'][:12]}, in force "
                             f"from {policy['adopted_at'] or 'the first record'})")
        for column in ("metric", "cycle", "state", "started", "deadline", "left / overdue", "counted / limit",
                       "rule"):
            limits.add_column(column, no_wrap=True)
        for limit in reply["sla"]:
            left = "-" if limit["time_left_seconds"] is None else span(limit["time_left_seconds"])
            limits.add_row(limit["metric"], str(limit["cycle"]), limit["state"], limit["started_at"],
                           limit["deadline"] or "-", left,
                           f"{span(limit['elapsed_seconds'])} / {span(limit['limit_seconds'])}",
                           f"line {limit['rule_line']}" if limit["rule_line"] else "-",
                           style={"breached": "red", "paused": "dim"}.get(limit["state"]))
        console.print(limits)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def status(as_json: bool) -> None:
    """Each part of the running product: up or not, how far behind the store, parked messages, last error.
    Exits 1 when a part is down."""
    reply = asyncio.run(request("ticketing.v1.queries.health", {}))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") and reply.get("healthy") else 1)
    table = Table(title=f"{'healthy' if reply['healthy'] else 'NOT healthy'} as of {reply['at']}, "
                        f"store head {reply['head']}")
    for column in ("part", "up", "position", "behind", "parked", "last error"):
        table.add_column(column, overflow="fold", no_wrap=column == "part")
    for part in reply["parts"]:
        behind = "-" if part["lag_events"] is None else (
            f"{part['lag_events']}" + (f" ({span(part['lag_seconds'])})" if part["lag_seconds"] else ""))
        table.add_row(part["name"], "yes" if part["up"] else "NO",
                      "-" if part["position"] is None else str(part["position"]), behind,
                      "-" if part["parked"] is None else str(part["parked"]), part["last_error"] or "-",
                      style=None if part["up"] else "bold red")
    console.print(table)
    if reply.get("instances") or reply.get("leases"):
        holds: dict[str, list[str]] = {}
        for lease in reply.get("leases", []):
            if lease["live"]:
                holds.setdefault(lease["holder"].split("/", 1)[0], []).append(f"{lease['name']} (epoch "
                                                                              f"{lease['epoch']})")
        instances = Table(title="instances")
        for column in ("instance", "host", "pid", "up", "holds"):
            instances.add_column(column, overflow="fold")
        for instance in reply.get("instances", []):
            instances.add_row(instance["name"], instance["host"], str(instance["pid"]), span(instance["up_seconds"]),
                              ", ".join(holds.get(instance["name"], [])) or "- (standing by)")
        console.print(instances)
    sys.exit(0 if reply["healthy"] else 1)
