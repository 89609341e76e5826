"""The `ticketing` command: each group of commands in a module of its own
(`serve.py`: running the product; `client.py`, `views.py` and `sla.py`: talking to a
running one; `admin.py`: read models, roles, documents; `audit.py`: the hash
chain; `users.py`: who may connect)."""

from __future__ import annotations

import os

import click

from infra.cli.admin import asyncapi, projections, roles
from infra.cli.audit import audit
from infra.cli.client import history, send, status
from infra.cli.cluster import cluster
from infra.cli.serve import serve, worker
from infra.cli.sla import sla
from infra.cli.users import nats_config, users
from infra.cli.views import customers, dashboard, report, staff


class _Main(click.Group):
    """Settings that cannot be used are said in a line each, not as a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from pydantic import ValidationError

        try:
            return super().invoke(ctx)
        except ValidationError as error:
            if error.title != "Settings":
                raise
            raise click.ClickException("; ".join(
                f"TICKETING_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
                for e in error.errors())) from None


@click.group(cls=_Main)
def main() -> None:
    """Event-sourced case handling for customer-service departments."""
    os.umask(0o077)  # every file the product writes (stores, reports, bundles, keys) is the owner's only


for command in (serve, worker, send, history, status, sla, dashboard, report, staff, customers, projections,
                roles, asyncapi, users, nats_config, audit, cluster):
    main.add_command(command)
