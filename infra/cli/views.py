"""Client commands that show what the read models know: the dashboard, the
quality report, the staff assessment, the dangerous-customer list."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson
from rich import box
from rich.table import Table

from infra.cli.base import console, show
from infra.cli.client import credentials_option, request


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

    from infra.figures import FIGURES, OPEN_BY

    figures = Table(title=f"as of {reply['at']} ({reply['timezone']})")
    figures.add_column("")
    for label in ("today", "this month"):
        figures.add_column(label, justify="right")
    for label, value in FIGURES:
        figures.add_row(label, value(reply["today"]), value(reply["month"]))
    limits = f"[yellow]{reply['limits_at_risk']} limits at risk[/]   [red]{reply['limits_breached']} breached[/]"
    tables = []
    for name in OPEN_BY:
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
    period = _period(month, quarter)
    reply = asyncio.run(request("ticketing.v1.queries.report", {"period": period}, timeout=60))
    if not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(1)
    staff = asyncio.run(request("ticketing.v1.queries.staff.assessment", {"period": period}, timeout=60))
    if staff.get("ok"):
        reply["staff"] = staff
    else:
        console.print(f"[yellow]no staff section:[/] {staff.get('message', staff)}")
    from infra.report_files import write

    for path in write(reply, out):
        console.print(f"wrote {path}")
    for miss in reply["misses"]:
        console.print(f"[red]missed:[/] {miss}")


def _period(month: str | None, quarter: str | None) -> str:
    """The period asked for, or a usage error in words."""
    import re

    if bool(month) == bool(quarter):
        raise click.UsageError("give --month (a month like 2026-11) or --quarter (a quarter like 2026-Q4)")
    if month and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise click.UsageError(f"--month {month}: a month like 2026-11 (year first; for a quarter, --quarter "
                               f"2026-Q4)")
    if quarter and not re.fullmatch(r"\d{4}-[Qq][1-4]", quarter):
        raise click.UsageError(f"--quarter {quarter}: a quarter like 2026-Q4 (for a month, --month 2026-11)")
    return str(month or quarter)


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
    shown, styles = [], []
    for c in reply["customers"]:
        reasons = "; ".join(f"{r['text']} ({', '.join(i[:8] for i in r['case_ids']) or '-'}"
                            f"{f' +{more} more' if (more := r['case_count'] - len(r['case_ids'])) > 0 else ''})"
                            for r in c["reasons"])
        styles.append({"critical": "bold red", "high": "red", "watch": "yellow"}[c["level"]])
        shown.append([c["customer_id"], c["tier"], c["region"] or "-", c["level"], c["danger_type"],
                      c["entered_at"], reasons, c["counter_measure"]])
    show(f"dangerous customers as of {reply['at']} ({len(reply['customers'])} of {reply['total']})",
         ["customer", "tier", "region", "level", "type", "since", "reasons (cases)", "counter-measure"], shown,
         styles, wrap=("region", "reasons (cases)", "counter-measure"))
    if reply["next"]:
        console.print(f"more: --after '{reply['next']}'")


@click.command()
@click.option("--month", help="a month, e.g. 2026-11")
@click.option("--quarter", help="a quarter, e.g. 2026-Q4")
@click.option("--agent", "person", help="one person's card (their user id)")
@click.option("--json", "as_json", is_flag=True, help="print the raw reply")
@credentials_option
def staff(month: str | None, quarter: str | None, person: str | None, as_json: bool) -> None:
    """The staff assessment (月度考核) of a month or a quarter: each person's
    figures, score, grade, rank in the team and streaks (an agent or a
    technician sees their own)."""
    query = {"period": _period(month, quarter)} | ({"person": person} if person else {})
    reply = asyncio.run(request("ticketing.v1.queries.staff.assessment", query, timeout=60))
    if as_json or not reply.get("ok"):
        console.print_json(orjson.dumps(reply).decode())
        sys.exit(0 if reply.get("ok") else 1)
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    for team in dict.fromkeys(c["team"] for c in reply["cards"]):
        table = Table(title=f"staff assessment {reply['period']} ({reply['timezone']}): {team}s",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for column in ("#", "person", "score", "grade", "done", "on time", "csat", "FCR", "calls", "streak"):
            table.add_column(column, no_wrap=True, justify="right" if column in ("#", "score", "done") else "left")
        for c in (c for c in reply["cards"] if c["team"] == team):
            f = c["figures"]
            streak = ("bonus" if c["bonus"] else "post at risk" if c["post_at_risk"] else
                      f"1st x{c['first_place_months']}" if c["first_place_months"] else
                      f"{reply['grades'][-1]['name']} x{c['failing_months']}" if c["failing_months"] else "-")
            style = "red" if c["grade"] == reply["grades"][-1]["name"] else "green" if c["rank"] == 1 else None
            table.add_row(f"{c['rank']}/{c['team_size']}", c["person"], f"{c['score']:.1f}", c["grade"],
                          str(f["handled_total"]), share(f["on_time"]),
                          "-" if f["average_score"] is None else f"{f['average_score']:.0f}",
                          share(f["first_contact_share"]), f"{f['callbacks_done']}/{f['callbacks_missed']}",
                          streak, style=style)
        console.print(table)
    console.print("done: cases handled; csat: the callbacks' average score on their cases;\n"
                  "FCR: first-contact resolution; calls: callbacks done/missed; --json: all")
    console.print("grades: " + ", ".join(f"{g['name']} >= {g['min']:g}" for g in reply["grades"]))
