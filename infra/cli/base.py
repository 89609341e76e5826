"""What every `ticketing` command shares: the console, logging, Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal

from rich.console import Console

console = Console(soft_wrap=True)


NARROW = 110
"""Below this many columns a wide table reads better as a list (`narrow()`)."""


def narrow() -> bool:
    return console.width < NARROW


def show(title: str, headers: list[str], rows: list[list[str]], styles: list[str | None] | None = None,
         wrap: tuple[str, ...] = ()) -> None:
    """Rows as a table, or, under `NARROW` columns, as a list (the first
    column on a line of its own, the rest as `header: value` beneath), so
    no column is squeezed to nothing on an 80-column terminal."""
    from rich.table import Table

    styles = styles or [None] * len(rows)
    if narrow():
        console.print(f"[bold]{title}[/]")
        for row, style in zip(rows, styles, strict=True):
            console.print(f"[bold]{row[0]}[/]", style=style, highlight=False)
            console.print("    " + "  ".join(f"{h}: {v}" for h, v in zip(headers[1:], row[1:], strict=True)
                                             if v not in ("", "-")), highlight=False)
        return
    table = Table(title=title)
    for header in headers:
        table.add_column(header, overflow="fold", no_wrap=header not in wrap)
    for row, style in zip(rows, styles, strict=True):
        table.add_row(*row, style=style)
    console.print(table)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FastStream logs every message and every worker task at INFO: keep it to
    # problems. (Imported first: importing it configures its own loggers.)
    import faststream  # noqa: F401

    for noisy in ("faststream", "ticketing.bus", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C (SIGINT) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def safe_url(url: str) -> str:
    """A URL without its password, fit for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def span(seconds: float) -> str:
    """A signed duration for people: `-1h05m`, `3d4h`, `12m`."""
    sign, left = ("-" if seconds < 0 else ""), int(abs(seconds))
    days, left = divmod(left, 86400)
    hours, left = divmod(left, 3600)
    minutes = left // 60
    if days:
        return f"{sign}{days}d{hours}h"
    return f"{sign}{hours}h{minutes:02d}m" if hours else f"{sign}{minutes}m"
