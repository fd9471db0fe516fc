"""`vigil`: the one console command, and the composition root.

Only this module wires packages together; services never import each other.
Heavy imports happen inside commands so `vigil --help` stays instant.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from core.errors import VigilError
from core.settings import load_settings
from vigil.commands import attach
from vigil.commands import settings_of as _settings


class _VigilGroup(click.Group):
    """Turns Vigil's own errors into one clear line and exit code 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VigilError as exc:
            click.echo(f"vigil: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_VigilGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vigil")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Vigil: real-time fraud detection for payment transactions.

    Configuration comes from VIGIL_* environment variables (see README.md).
    """
    try:
        ctx.obj = load_settings()
    except VigilError as exc:
        click.echo(f"vigil: {exc}", err=True)
        sys.exit(2)


# --- stack ------------------------------------------------------------------------------


@cli.group()
def stack() -> None:
    """Start, stop and check the local Kafka, PostgreSQL and MLflow."""


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Install what is missing and start the stack (safe to run twice)."""
    from core.logging import configure_logging
    from vigil.stack import Stack

    configure_logging(service="stack", fmt="text")
    status = Stack(_settings(ctx)).up()
    _print_status(status)
    if not status.healthy:
        sys.exit(1)


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop exactly the processes `stack up` started."""
    from vigil.stack import Stack

    stopped = Stack(_settings(ctx)).down()
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def stack_status(ctx: click.Context, as_json: bool) -> None:
    """Report each component; exit 1 unless all are healthy."""
    from vigil.stack import Stack

    status = Stack(_settings(ctx)).status()
    if as_json:
        rows = [
            {"name": c.name, "running": c.running, "healthy": c.healthy, "detail": c.detail} for c in status.components
        ]
        click.echo(json.dumps(rows))
    else:
        _print_status(status)
    if not status.healthy:
        sys.exit(1)


def _print_status(status: Any) -> None:
    for component in status.components:
        mark = "healthy" if component.healthy else ("running, unhealthy" if component.running else "stopped")
        click.echo(f"{component.name:<9} {mark:<19} {component.detail}")


# --- database ---------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema and housekeeping."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations (hypertables on TimescaleDB, native partitions otherwise)."""
    from core.migrate import upgrade

    upgrade(_settings(ctx).database_url, revision)
    click.echo(f"database at {revision}")


@db.command("maintain")
@click.option("--retention-days", default=90, show_default=True, type=click.IntRange(1, 3650))
@click.pass_context
def db_maintain(ctx: click.Context, retention_days: int) -> None:
    """Create upcoming time partitions and drop expired ones (native partitioning only)."""
    from core.db import make_engine
    from core.timeseries import maintain

    engine = make_engine(_settings(ctx), pool_size=1)
    with engine.begin() as connection:
        report = maintain(connection, retention_days=retention_days)
    click.echo(json.dumps(report) if report else "TimescaleDB manages retention; nothing to do")


@cli.group()
def run() -> None:
    """Run one service in the foreground (one process per Kubernetes Deployment)."""


attach(root=cli, run=run)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=argv, prog_name="vigil")
