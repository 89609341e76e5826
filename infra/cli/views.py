"""Client commands that show what the read models know: service limits, the
dashboard, the quality report, the dangerous-customer list."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson
from rich.table import Table

from infra.cli.base import console, span
from infra.cli.client import credentials_option, request


@click.group(invoke_without_command=True)
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
@click.pass_context
def sla(context: click.Context, breaches: bool, assignee: str | None, tier: str | None, kind: str | None,
        metric: str | None, since: str | None, until: str | None, limit: int, as_json: bool) -> None:
    """Service limits running, the most urgent first (or, with --breaches,
    breached, the latest first); `sla simulate` for a what-if."""
    if context.invoked_subcommand is not None:
        return
    filters = {"tier": tier, "kind": kind, "metric": metric, "limit": limit}
    if breaches:
        query, filters = "sla.breaches", filters | {"since": since, "until": until}
    else:
        query, filters = "sla.open", filters | {"assignee": assignee}
    reply = asyncio.run(request(f"ticketing.v1.queries.{query}", {k: v for k, v in filters.items() if v}))
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
            when, figure = row["breached_at"], f"{span(row['elapsed_seconds'])} / {span(row['limit_seconds'])}"
        else:
            when = row["deadline"] or "(paused)"
            figure = "-" if row["time_left_seconds"] is None else span(row["time_left_seconds"])
        style = {"breached": "red", "missed": "red", "at_risk": "yellow", "paused": "dim"}.get(row["state"])
        table.add_row(row["case_id"], row["case_type"], row["metric"], str(row["cycle"]), row["tier"],
                      row["priority"], row["assignee"] or "-", row["state"], when, figure, style=style)
    console.print(table)


@click.command()
@click.option("--watch", is_flag=True, help="refresh until Ctrl-C")
@click.option("--every", type=float, default=2.0, show_default=True, help="seconds between refreshes")
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def dashboard(watch: bool, every: float, as_json: bool) -> None:
    """The live dashboard: open work, today's and this month's figures, limits at risk."""
    reply = asyncio.run(request("ticketing.v1.queries.dashboard", {}))
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
                live.update(_dashboard(asyncio.run(request("ticketing.v1.queries.dashboard", {}))), refresh=True)
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


@click.command()
@click.option("--month", help="a month, e.g. 2026-11")
@click.option("--quarter", help="a quarter, e.g. 2026-Q4")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"),
              show_default=True, help="where to write the files")
@credentials_option
def report(month: str | None, quarter: str | None, out: Path) -> None:
    """The monthly or quarterly service-quality report: HTML with charts, JSON and CSV."""
    if bool(month) == bool(quarter):
        raise click.UsageError("give --month or --quarter")
    reply = asyncio.run(request("ticketing.v1.queries.report", {"period": month or quarter}, timeout=60))
    if not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(1)
    from infra.cli.report_files import write

    for path in write(reply, out):
        console.print(f"wrote {path}")
    for miss in reply["misses"]:
        console.print(f"[red]missed:[/] {miss}")


@click.group()
def customers() -> None:
    """Customers: the dangerous-customer list."""


@customers.command("dangerous")
@click.option("--level", type=click.Choice(["watch", "high", "critical"]), help="this level or above")
@click.option("--type", "danger_type",
              type=click.Choice(["churn_risk", "malicious_complainant", "extortion", "escalation_magnet"]))
@click.option("--limit", type=int, default=100, show_default=True, help="a page of this many")
@click.option("--after", help="the page after this cursor (printed under the page before)")
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def customers_dangerous(level: str | None, danger_type: str | None, limit: int, after: str | None,
                        as_json: bool) -> None:
    """The dangerous-customer list (危险客户统计表): who, why, since when, what to do."""
    query = {k: v for k, v in {"level": level, "danger_type": danger_type, "limit": limit, "after": after}.items()
             if v}
    reply = asyncio.run(request("ticketing.v1.queries.customers.dangerous", query))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") else 1)
    table = Table(title=f"dangerous customers as of {reply['at']} ({len(reply['customers'])} of {reply['total']})")
    for column in ("customer", "tier", "region", "level", "type", "since", "reasons (cases)", "counter-measure"):
        table.add_column(column, overflow="fold", no_wrap=column in ("customer", "since"))
    for c in reply["customers"]:
        reasons = "\n".join(f"{r['text']} ({', '.join(i[:8] for i in r['case_ids']) or '-'}"
                            f"{f' +{more} more' if (more := r['case_count'] - len(r['case_ids'])) > 0 else ''})"
                            for r in c["reasons"])
        style = {"critical": "bold red", "high": "red", "watch": "yellow"}[c["level"]]
        table.add_row(c["customer_id"], c["tier"], c["region"] or "-", c["level"], c["danger_type"],
                      c["entered_at"], reasons, c["counter_measure"], style=style)
    console.print(table)
    if reply["next"]:
        console.print(f"more: --after '{reply['next']}'")


@sla.command("simulate")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the candidate SLA policy file")
@click.option("--since", required=True, help="cases registered from this date or RFC 3339 instant")
@click.option("--until", help="... and before this one (default: now); outcomes are counted as of it")
@click.option("--kind", type=click.Choice(["complaint", "repair_job", "callback"]), help="cases of this kind only")
@click.option("--changed", "changed_limit", type=int, default=20, show_default=True,
              help="how many changed cases to list")
@click.option("--json", "as_json", is_flag=True, help="print the whole comparison as JSON")
def simulate_command(policy_file: Path, since: str, until: str | None, kind: str | None, changed_limit: int,
                     as_json: bool) -> None:
    """What-if: replay the real history of a period against a candidate policy
    (on this data directory's store, in memory: nothing live is touched, no
    alert is sent) and show it beside what happened under the policy of then."""
    from datetime import UTC, datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from handlers.queries import simulate
    from infra.cli.audit import _store
    from infra.config_files import load_sla_policy
    from infra.settings import Settings
    from infra.store.policies import timeline
    from infra.store.scan import case_tracks
    from ticketing.sla.policy import PolicyError

    def instant(text: str, option: str) -> datetime:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a date (2026-10-01) or an RFC 3339 instant",
                                     param_hint=option) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    start, end = instant(since, "--since"), instant(until, "--until") if until else datetime.now(UTC)
    if end <= start:
        raise click.BadParameter("must be after --since", param_hint="--until")
    settings = Settings()
    store = _store(settings)
    then = timeline(store.engine, load_sla_policy(settings))
    began = time.monotonic()
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console, transient=True,
                  disable=as_json) as progress:
        task = progress.add_task("scan", total=store.max_position() or 1)

        def tracks(a: datetime, b: datetime) -> Any:
            return case_tracks(store, a, b, lambda done, total: progress.update(task, completed=done, total=total))

        try:
            reply = simulate(tracks, then, policy_file.read_text(encoding="utf-8"), start, end, changed_limit, kind)
        except PolicyError as error:
            raise click.ClickException(f"{policy_file}: {error}") from None
    seconds = time.monotonic() - began
    if as_json:
        click.echo(reply.model_dump_json())
        return
    table = Table(title=f"on time, cases registered {start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M} UTC "
                        f"({reply.cases} cases)")
    for header in ("by", "", "then: met / decided", "on time", "candidate: met / decided", "on time", "change"):
        table.add_column(header, justify="right" if header not in ("by", "") else "left")

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    for row in reply.figures:
        change = ("-" if row.then_on_time is None or row.candidate_on_time is None
                  else f"{(row.candidate_on_time - row.then_on_time) * 100:+.1f} pt")
        table.add_row(row.dimension, row.value, f"{row.then_met} / {row.then_met + row.then_breached}",
                      share(row.then_on_time), f"{row.candidate_met} / {row.candidate_met + row.candidate_breached}",
                      share(row.candidate_on_time), change)
    console.print(table)
    then_names = ", ".join(f"{p.digest[:12]} (from {p.adopted_at or 'the start'})" for p in reply.policies_then)
    console.print(f"then: {then_names}; candidate: {reply.candidate[:12]} ({policy_file})")
    console.print(f"{reply.changed_total} limit(s) would change outcome" + (":" if reply.changed else "."))
    for change in reply.changed:
        console.print(f"  {change.case_id} {change.case_type} {change.metric} (cycle {change.cycle}): "
                      f"{change.then} -> {change.candidate}")
    rate = reply.events_read / seconds if seconds else 0
    console.print(f"{reply.events_read:,} events read in {seconds:.2f}s ({rate:,.0f} events/s); nothing live touched")


@sla.command("calendar")
@click.option("--year", type=click.IntRange(1900, 2999), required=True)
@click.option("--name", default=None, help="a [calendar.NAME] of the SLA policy (default: the policy's default)")
def calendar_command(year: int, name: str | None) -> None:
    """The working days of a business calendar in a year, with the holidays
    and the make-up workdays (调休), so a supervisor can check them."""
    from datetime import date, timedelta

    from infra.config_files import load_sla_policy
    from infra.settings import Settings

    policy = load_sla_policy(Settings())
    chosen = name or policy.calendar
    if chosen not in policy.calendars:
        raise click.ClickException(f"no calendar {chosen!r}; the policy has {', '.join(sorted(policy.calendars))}")
    calendar = policy.calendars[chosen]
    if calendar.timezone is None:
        console.print(f"{chosen}: around the clock, every day of {year}")
        return
    table = Table(title=f"calendar {chosen} ({calendar.timezone.key}), {year}")
    for column in ("month", "working days", "hours", "holidays", "make-up workdays"):
        table.add_column(column, overflow="fold")
    day, working = date(year, 1, 1), 0
    while day.year == year:
        month, days, hours = day.month, 0, 0.0
        while day.year == year and day.month == month:
            periods = calendar.periods_of(day)
            if periods:
                days += 1
                hours += sum((end.hour * 60 + end.minute - start.hour * 60 - start.minute) / 60
                             for start, end in periods)
            day += timedelta(days=1)
        working += days
        holidays = sorted(d for d in calendar.holidays if d.year == year and d.month == month)
        makeup = sorted(d for d in calendar.workdays if d.year == year and d.month == month)
        table.add_row(f"{year}-{month:02d}", str(days), f"{hours:g}h", ", ".join(f"{d:%m-%d %a}" for d in holidays)
                      or "-", ", ".join(f"{d:%m-%d %a}" for d in makeup) or "-")
    console.print(table)
    console.print(f"{working} working days in {year}")
