"""`ticketing audit verify|upgrade|export|check`: the hash chain checked or
begun on the data directory's store (and the anchors on its NATS); a case's
bundle written, and checked offline."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from infra.cli.base import console, setup_logging
from infra.settings import Settings


@click.group()
def audit() -> None:
    """Tamper evidence: the store's hash chain and its anchors."""


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from infra.store.event_store import EventStore
    from infra.store.secrets import cipher_key

    return EventStore(settings.event_store_url, cipher_key(settings))


async def _anchors(settings: Settings) -> tuple[list, str | None]:  # type: ignore[type-arg]
    """The anchors on the product's NATS, read with the product's own credentials; (.., why not) when unreachable."""
    import nats

    from infra.auth.connect import product_options
    from infra.bus.anchors import read_anchors

    url = settings.nats_url or (settings.nats_url_file.read_text().strip() if settings.nats_url_file.exists() else None)
    if url is None:
        return [], "no NATS URL (serve is not running): the anchors were not checked"
    try:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False,
                                **product_options(settings))
    except Exception as error:  # noqa: BLE001 - said in the verdict
        return [], f"NATS unreachable ({type(error).__name__}): the anchors were not checked"
    try:
        return await read_anchors(nc.jetstream()), None
    except Exception as error:  # noqa: BLE001
        return [], f"cannot read the anchors ({type(error).__name__})"
    finally:
        await nc.close()


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON")
def verify_command(as_json: bool) -> None:
    """Walk the whole store: every hash, every link, every anchor. Exits 1 when the history is not intact."""
    from infra.store.verify import verify

    settings = Settings()
    setup_logging("WARNING")
    store = _store(settings)
    anchors, why_not = asyncio.run(_anchors(settings))
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task("verify", total=store.max_position() or 1)
        verdict = verify(store, anchors, lambda done, total: progress.update(task, completed=done, total=total))
    if why_not:
        verdict.notes.append(why_not)
    if as_json:
        click.echo(orjson.dumps(verdict.as_dict()).decode())
    else:
        rate = verdict.events / verdict.seconds if verdict.seconds else 0
        console.print(("[green]" if verdict.intact else "[bold red]") + verdict.summary() + "[/]")
        console.print(f"{verdict.anchors_checked} anchor(s) checked; {verdict.events:,} events in "
                      f"{verdict.seconds:.2f}s ({rate:,.0f} events/s)")
        for note in verdict.notes:
            console.print(f"[yellow]{note}[/]")
    sys.exit(0 if verdict.intact else 1)


@audit.command("upgrade")
def upgrade_command() -> None:
    """Upgrade a store written before the hash chain and per-customer keys
    existed: seal each customer's contact data with their own key, then
    chain every event (one time; serve does it at start too)."""
    store = _store(Settings())
    sealed = store.seal_unsealed()
    console.print(f"sealed the contact data of {sealed} event(s) with their customers' own keys")
    chained = store.chain_unchained()
    position, head = store.chain_head()
    console.print(f"chained {chained} event(s) that had no link; the chain ends at position {position} "
                  f"with {head}")


@audit.command("export")
@click.argument("case_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="the bundle's file")
def export_command(case_id: str, out: Path) -> None:
    """A case's events, their hashes, the hash path to the nearest anchor: one JSON file to check offline."""
    from uuid import UUID

    from infra.store.bundle import export

    settings = Settings()
    try:
        wanted = UUID(case_id)
    except ValueError:
        raise click.ClickException(f"{case_id!r} is not a case id (a UUID)") from None
    anchors, why_not = asyncio.run(_anchors(settings))
    try:
        bundle = export(_store(settings), wanted, anchors)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    out.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    anchored = f"to the anchor at position {bundle['anchor']['position']}" if bundle["anchor"] else "(no anchor yet)"
    console.print(f"wrote {out}: {len(bundle['events'])} events, {len(bundle['links'])} links {anchored}")
    if why_not:
        console.print(f"[yellow]{why_not}[/]")


@audit.command("check")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check_command(bundle: Path) -> None:
    """Check a case bundle offline (no store, no bus). Exits 1 when anything in it was changed."""
    from infra.store.bundle import check

    try:
        content = orjson.loads(bundle.read_bytes())
    except orjson.JSONDecodeError as error:
        raise click.ClickException(f"{bundle} is not JSON ({error})") from None
    intact, said = check(content)
    console.print(("[green]" if intact else "[bold red]NOT intact: ") + said + "[/]")
    sys.exit(0 if intact else 1)
