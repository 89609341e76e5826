"""`ticketing sla`: service limits running or breached, the what-if of a
candidate policy, and the working days of a business calendar."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import click
import orjson
from rich.table import Table

from infra.cli.base import console, show, span
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
    headers = ["case", "kind", "metric", "cycle", "tier", "priority", "assignee", "state",
               "breached at" if breaches else "deadline", "elapsed / limit" if breaches else "time left"]
    shown, styles = [], []
    for row in rows:
        if breaches:
            when, figure = row["breached_at"], f"{span(row['elapsed_seconds'])} / {span(row['limit_seconds'])}"
        else:
            when = row["deadline"] or "(paused)"
            figure = "-" if row["time_left_seconds"] is None else span(row["time_left_seconds"])
        styles.append({"breached": "red", "missed": "red", "at_risk": "yellow", "paused": "dim"}.get(row["state"]))
        shown.append([row["case_id"], row["case_type"], row["metric"], str(row["cycle"]), row["tier"],
                      row["priority"], row["assignee"] or "-", row["state"], when, figure])
    show(f"{'breached' if breaches else 'running'} limits as of {reply['at']} ({len(rows)})", headers, shown,
         styles, wrap=("assignee",))


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

    from handlers.sla_views import simulate
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


FEW_HOLIDAYS = 5
"""Fewer listed holidays in a year than this: the year's list is missing (China has 7 public holidays)."""


@sla.command("calendar")
@click.option("--year", type=click.IntRange(1900, 2999), required=True)
@click.option("--name", default=None, help="a [calendar.NAME] of the SLA policy (default: the policy's default)")
@click.option("--official", metavar="COUNTRY", default=None,
              help="print the official holidays and make-up workdays of this country (ISO code, e.g. CN) for "
                   "the year, as the calendar's holidays and workdays lines to put in the policy")
@click.option("--subdivision", default=None, help="with --official: a province or state code")
def calendar_command(year: int, name: str | None, official: str | None, subdivision: str | None) -> None:
    """The working days of a business calendar in a year, with the holidays
    and the make-up workdays (调休), so a supervisor can check them; with
    --official, the lines that fill the calendar with a country's official list."""
    from datetime import timedelta

    from infra.config_files import load_sla_policy
    from infra.settings import Settings

    policy = load_sla_policy(Settings())
    chosen = name or policy.calendar
    if chosen not in policy.calendars:
        raise click.ClickException(f"no calendar {chosen!r}; the policy has {', '.join(sorted(policy.calendars))}")
    calendar = policy.calendars[chosen]
    if official is not None:
        _official(official, subdivision, year, chosen, calendar)
        return
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
    listed = sorted(d for d in calendar.holidays if d.year == year)
    if calendar.holidays and len(listed) < FEW_HOLIDAYS:
        console.print(f"[yellow]the calendar holds no holiday list for {year}[/] (only "
                      f"{', '.join(map(str, listed)) or 'no day'}): its public holidays count as working days "
                      f"until their dates are in the policy; `ticketing sla calendar --year {year} --name "
                      f"{chosen} --official CN` prints the official ones as lines to add", highlight=False)


def official_days(country: str, subdivision: str | None, year: int) -> tuple[dict[date, str], list[date]]:
    """A country's official holidays (with their names) and make-up workdays
    (weekend days worked in exchange for a day off) in a year, from the
    `holidays` package; click's error when it has no such country."""
    import holidays

    try:
        found = holidays.country_holidays(country.upper(), subdiv=subdivision, years=year)
    except NotImplementedError as error:
        raise click.BadParameter(str(error), param_hint="--official / --subdivision") from None
    return dict(found), sorted(d for d in found.weekend_workdays if d.year == year)


def _official(country: str, subdivision: str | None, year: int, name: str, calendar: Any) -> None:
    """Print the calendar's `holidays` and `workdays` lines: its dates of other
    years kept, this year's the official list."""
    import holidays as package

    days_off, workdays = official_days(country, subdivision, year)
    keep_off = sorted(d for d in calendar.holidays if d.year != year)
    keep_work = sorted(d for d in calendar.workdays if d.year != year)
    where = country.upper() + (f"-{subdivision}" if subdivision else "")
    click.echo(f"# [calendar.{name}]: the official holidays and make-up workdays of {where} in {year} "
               f"(the holidays package {package.__version__}), beside the calendar's dates of other years")
    for day, what in sorted(days_off.items()):
        click.echo(f"#   {day} {day:%a} {what}")
    for day in workdays:
        click.echo(f"#   {day} {day:%a} make-up workday")
    click.echo("holidays = [" + ", ".join(f'"{d}"' for d in sorted(set(keep_off) | set(days_off))) + "]")
    click.echo("workdays = [" + ", ".join(f'"{d}"' for d in sorted(set(keep_work) | set(workdays))) + "]")
