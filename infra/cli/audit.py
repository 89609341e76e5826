"""`ticketing audit verify|upgrade|export|check|key|anchors`: the hash chain
checked or begun on the data directory's store (against the signed anchors
on its NATS, kept in the data directory, or in a file); a case's bundle
written, and checked offline against the public audit key."""

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


def _public_key(settings: Settings, given: str | None) -> str | None:
    """The audit key anchors and bundles are held to: the one given, the
    setting, or the public half of the data directory's key; None: none."""
    from infra.auth.signing import BadKey, Signer, verify_key

    key = given or settings.audit_public_key
    if key is None and settings.audit_key_file.exists():
        key = Signer(settings.audit_key_file.read_bytes()).public_key
    if key is not None:
        try:
            verify_key(key)
        except BadKey as error:
            raise click.ClickException(str(error)) from None
    return key


async def _unsaid(_error: Exception) -> None:
    """A NATS that cannot be reached is said once, in the verdict's notes."""


async def _anchors(settings: Settings) -> tuple[list, str | None]:  # type: ignore[type-arg]
    """The anchors on the product's NATS, read with the product's own credentials; (.., why not) when unreachable."""
    import nats

    from infra.auth.connect import product_options
    from infra.bus.anchors import read_anchors
    from infra.bus.connection import servers

    url = settings.nats_url or (settings.nats_url_file.read_text().strip() if settings.nats_url_file.exists() else None)
    if url is None:
        return [], "no NATS URL (serve is not running): the anchors on the bus were not read"
    try:
        # Bounded: nats-py tries a refused first connection again and again.
        nc = await asyncio.wait_for(nats.connect(servers(url), connect_timeout=3, max_reconnect_attempts=0,
                                                 allow_reconnect=False, error_cb=_unsaid,
                                                 **product_options(settings)), 5)
    except Exception as error:  # noqa: BLE001 - said in the verdict
        return [], f"NATS unreachable ({type(error).__name__}): the anchors on the bus were not read"
    try:
        return await read_anchors(nc.jetstream()), None
    except Exception as error:  # noqa: BLE001
        return [], f"cannot read the anchors on the bus ({type(error).__name__})"
    finally:
        await nc.close()


def _all_anchors(settings: Settings, files: tuple[Path, ...]) -> tuple[list, list[str]]:  # type: ignore[type-arg]
    """The anchors on the bus, those kept in the data directory and those of
    `files`, with notes on where they came from."""
    from infra.bus.anchors import ANCHOR_FILE, read_anchor_file

    anchors, why_not = asyncio.run(_anchors(settings))
    notes = [why_not] if why_not else []
    kept = settings.data_dir / ANCHOR_FILE
    for path in ([kept] if kept.exists() else []) + list(files):
        found = read_anchor_file(path)
        anchors += found
        if why_not or path != kept:
            notes.append(f"{len(found)} anchor(s) read from {path}")
    return anchors, notes


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON")
@click.option("--key", help="the public audit key (A...) to hold anchors to; default: the data directory's")
@click.option("--anchors", "anchor_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a file of anchors (`ticketing audit anchors --out`), read besides the bus's and the kept ones")
@click.option("--strict", is_flag=True, help="exit 1 also when some events are covered by no signed anchor yet")
def verify_command(as_json: bool, key: str | None, anchor_files: tuple[Path, ...], strict: bool) -> None:
    """Walk the whole store: every hash, every link, every signed anchor. Exits 1 when the history is not
    intact (and with --strict, when its end is not vouched for by an anchor yet)."""
    from infra.store.verify import verify

    settings = Settings()
    setup_logging("WARNING")
    store = _store(settings)
    public_key = _public_key(settings, key)
    anchors, notes = _all_anchors(settings, anchor_files)
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task("verify", total=store.max_position() or 1)
        verdict = verify(store, anchors, public_key,
                         lambda done, total: progress.update(task, completed=done, total=total))
    verdict.notes += notes
    if as_json:
        click.echo(orjson.dumps(verdict.as_dict()).decode())
    else:
        rate = verdict.events / verdict.seconds if verdict.seconds else 0
        console.print(("[green]" if verdict.intact else "[bold red]") + verdict.summary() + "[/]")
        console.print(f"{verdict.anchors_checked} signed anchor(s) checked; {verdict.events:,} events in "
                      f"{verdict.seconds:.2f}s ({rate:,.0f} events/s)")
        for note in verdict.notes:
            console.print(f"[yellow]{note}[/]")
    sys.exit(0 if (verdict.proven if strict else verdict.intact) else 1)


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
    """A case's events, their hashes, the hash path to the nearest signed anchor: one signed JSON file to
    check offline."""
    from uuid import UUID

    from infra.auth.signing import Signer
    from infra.store.bundle import export

    settings = Settings()
    try:
        wanted = UUID(case_id)
    except ValueError:
        raise click.ClickException(f"{case_id!r} is not a case id (a UUID)") from None
    if not settings.audit_key_file.exists():
        raise click.ClickException(f"no audit key at {settings.audit_key_file}: export where the product runs "
                                   f"(or set TICKETING_AUDIT_KEY)")
    anchors, notes = _all_anchors(settings, ())
    try:
        bundle = export(_store(settings), wanted, anchors, Signer(settings.audit_key_file.read_bytes()))
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    out.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    console.print(f"wrote {out}: {len(bundle['events'])} events, {len(bundle['links'])} links to the anchor at "
                  f"position {bundle['anchor']['position']}, signed by {bundle['key']}")
    for note in notes:
        console.print(f"[yellow]{note}[/]")


@audit.command("check")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", help="the public audit key (A...) the bundle must be signed with; default: the data "
                            "directory's, or TICKETING_AUDIT_PUBLIC_KEY")
def check_command(bundle: Path, key: str | None) -> None:
    """Check a case bundle offline (no store, no bus) against the audit key. Exits 1 when anything in it was
    changed, or it is not signed by that key."""
    from infra.store.bundle import check

    try:
        content = orjson.loads(bundle.read_bytes())
    except orjson.JSONDecodeError as error:
        raise click.ClickException(f"{bundle} is not JSON ({error})") from None
    intact, said = check(content, _public_key(Settings(), key))
    console.print(("[green]" if intact else "[bold red]NOT intact: ") + said + "[/]")
    sys.exit(0 if intact else 1)


@audit.command("key")
def key_command() -> None:
    """Print the public half of the product's audit key (pin it where bundles and alerts are checked)."""
    settings = Settings()
    public = _public_key(settings, None)
    if public is None:
        raise click.ClickException(f"no audit key at {settings.audit_key_file} (serve makes it at its first start)")
    click.echo(public)


@audit.command("anchors")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="the file (one signed anchor a line)")
def anchors_command(out: Path) -> None:
    """Copy the signed anchors (from the bus, and those kept in the data directory) into a file, to keep
    apart from the store: `audit verify --anchors FILE` holds the store to them later."""
    anchors, notes = _all_anchors(Settings(), ())
    unique = {(a.position, a.hash, a.signature): a for a in anchors}
    out.write_bytes(b"".join(orjson.dumps(a.document()) + b"\n" for a in
                             sorted(unique.values(), key=lambda a: a.position)))
    console.print(f"wrote {out}: {len(unique)} anchor(s)")
    for note in notes:
        console.print(f"[yellow]{note}[/]")
