"""`ticketing users ...` and `ticketing nats-config`: who may connect, and the
server configuration that says so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from infra.auth.connect import product_directory
from infra.auth.directory import DirectoryError, User, UserDirectory
from infra.auth.keys import write_secret
from infra.auth.permissions import grantable_to_services, inbox_prefix
from infra.auth.server_config import accounts_block, write_accounts
from infra.bus.nats_server import reload_running
from infra.cli.base import show
from infra.settings import Settings
from ticketing.access import SIGNED_IN

console = Console(soft_wrap=True)


def _directory(settings: Settings) -> UserDirectory:
    return product_directory(settings)


def _apply(settings: Settings, directory: UserDirectory) -> str:
    """The configuration written again, and applied to the embedded server if
    one runs on this data directory; what happened, for people."""
    write_accounts(directory)
    nodes = sorted((settings.data_dir / "cluster").glob("*/nats-server.pid"))
    if nodes and all([reload_running(pid.parent) for pid in nodes]):  # every node of `cluster up`
        consumers = asyncio.run(_keep_consumers(settings, directory))
        return f"applied to the {len(nodes)} running nodes" + (f"; {consumers}" if consumers else "")
    if settings.nats_url is None and reload_running(settings.data_dir / "nats"):
        consumers = asyncio.run(_keep_consumers(settings, directory))
        return "applied to the running embedded nats-server" + (f"; {consumers}" if consumers else "")
    if settings.nats_url is not None:
        return ("this product uses an external NATS: apply `ticketing nats-config` there and reload it "
                "twice (`nats-server --signal reload`; a new account's imports take at the second)")
    return "the embedded nats-server will use it when `ticketing serve` starts"


async def _keep_consumers(settings: Settings, directory: UserDirectory) -> str:
    """The users' consumers brought in line now, so a user just added reads
    its own at once (serve does the same within a second anyway)."""
    import nats

    from infra.auth.connect import product_options
    from infra.bus.connection import servers
    from infra.bus.user_consumers import keep_user_consumers

    try:
        url = settings.nats_url_file.read_text().strip()
        nc = await asyncio.wait_for(nats.connect(servers(url), allow_reconnect=False, max_reconnect_attempts=0,
                                                 **product_options(settings)), 5)
    except Exception:  # noqa: BLE001 - serve does it within a second
        return ""
    try:
        changed = await asyncio.wait_for(keep_user_consumers(nc.jetstream(), directory), 10)
    except Exception:  # noqa: BLE001 - likewise
        return ""
    finally:
        await nc.close()
    return ", ".join(changed)


@click.group()
def users() -> None:
    """Who may connect to the bus, and with which role."""


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, help="agent, technician, supervisor, manager, auditor, service or gateway")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="where to write the user's credentials (an nkey seed file; keep it secret); may be left out "
                   "for a person who signs in to the web console only")
@click.option("--grant", "grants", multiple=True,
              help="for a service: a command it may send, e.g. complaint.register (repeatable)")
@click.option("--password", "ask_password", is_flag=True, help="the person signs in to the web console: asks "
              "for a password twice (kept as an Argon2id hash)")
@click.option("--password-file", type=click.File("r"), help="as --password, read from a file's first line "
              "(for scripts; '-' for standard input)")
def users_add(name: str, role: str, out: Path | None, grants: tuple[str, ...], ask_password: bool,
              password_file: Any) -> None:
    """Create a user, write its credentials to FILE and, with --password, let the person sign in to the
    web console."""
    settings = Settings()
    password = _password(ask_password, password_file)
    if out is None and not password:
        raise click.UsageError("--out is required (the user's credentials), unless the person only signs in to "
                               "the web console (--password or --password-file)")
    grantable = grantable_to_services()
    unknown = [g for g in grants if g not in grantable]
    if unknown:
        raise click.ClickException(f"cannot grant {', '.join(unknown)}: a service may be granted "
                                   f"{', '.join(grantable)}")
    if out is not None and out.suffix == ".creds":
        raise click.ClickException("users get an nkey seed file (name it NAME.nk): a .creds file holds a user JWT, "
                                   "which this deployment's accounts do not use")
    if out is not None and out.exists():
        raise click.ClickException(f"{out} exists: choose another file (credentials are never overwritten)")
    directory = _directory(settings)
    try:
        if password and role not in {r.value for r in SIGNED_IN}:
            raise DirectoryError(f"only people and auditors sign in to the console, not a {role}")
        user, seed = directory.add(name, role, grants, password=password)
    except DirectoryError as error:
        raise click.ClickException(str(error)) from None
    if out is None:
        console.print(f"added {user.name} ({user.role.value}): signs in to the web console; no bus credentials "
                      f"written")
        console.print(f"  {_apply(settings, directory)}")
        return
    write_secret(out, seed + b"\n")
    console.print(f"added {user.name} ({user.role.value}), key {user.nkey}; credentials in {out} (owner-only)"
                  + ("; signs in to the web console" if password else ""))
    console.print(f"  {_apply(settings, directory)}")
    console.print(f"  connect with the seed file and the user's own inbox, e.g. nats-py: "
                  f"nats.connect(url, nkeys_seed={str(out)!r}, inbox_prefix={inbox_prefix(user.name)!r}); "
                  f"nats CLI: --nkey {out} --inbox-prefix {inbox_prefix(user.name)}")


def _password(ask: bool, file: Any) -> str:
    """An Argon2id hash of the password asked for (twice) or read; '' when neither."""
    from infra.auth.passwords import WeakPassword, hash_password

    if file is not None:
        given = file.readline().rstrip("\r\n")
    elif ask:
        given = click.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        return ""
    try:
        return hash_password(given)
    except WeakPassword as error:
        raise click.ClickException(str(error)) from None


@users.command("passwd")
@click.argument("name")
@click.option("--password-file", type=click.File("r"), help="read the new password from a file's first line")
def users_passwd(name: str, password_file: Any) -> None:
    """Set a person's web console password (asks twice); their open sessions end."""
    directory = _directory(Settings())
    try:
        directory.set_password(name, _password(True, password_file))
    except DirectoryError as error:
        raise click.ClickException(str(error)) from None
    console.print(f"{name}'s console password set; their open sessions have ended")


@users.command("list")
def users_list() -> None:
    """Every user: name, role, key, grants."""
    directory = _directory(Settings())
    show(f"users ({directory.path})", ["name", "role", "key", "grants", "console", "added"],
         [[u.name, u.role.value, u.nkey, ", ".join(u.grants) or "-", "yes" if u.password else "-", u.added_at]
          for u in directory.users()], wrap=("grants",))


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Remove a user: its connections are cut and its next request refused."""
    settings = Settings()
    directory = _directory(settings)
    try:
        user: User = directory.remove(name)
    except DirectoryError as error:
        raise click.ClickException(str(error)) from None
    console.print(f"removed {user.name} ({user.role.value}); {_apply(settings, directory)}")


@click.command("nats-config")
def nats_config() -> None:
    """Print the accounts block an operator adds to a NATS server's configuration
    (with JetStream) to give the product and every user its permissions."""
    click.echo(accounts_block(_directory(Settings())), nl=False)
