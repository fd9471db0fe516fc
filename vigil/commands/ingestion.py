"""Ingestion commands: `vigil run ingest`, `vigil schema`, `vigil dlq`, `vigil generate`."""

from __future__ import annotations

import click

from core.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    if settings is None:
        raise click.UsageError("settings were not loaded")
    return settings


# --- vigil run ingest ------------------------------------------------------------------------


@click.command("ingest")
@click.option(
    "--max-future-seconds",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0, 86_400),
    help="Dead-letter transactions whose occurred_at is further ahead of the record timestamp.",
)
@click.option(
    "--max-age-days",
    default=90.0,
    show_default=True,
    type=click.FloatRange(0.001, 36_500),
    help="Dead-letter transactions whose occurred_at is older than this before the record timestamp.",
)
@click.option(
    "--instance-id",
    default=None,
    help="Stable id of this replica (default: host name); a restart with the same id aborts "
    "its predecessor's unfinished Kafka transaction at once.",
)
@click.pass_context
def ingest_command(ctx: click.Context, max_future_seconds: float, max_age_days: float, instance_id: str | None) -> None:
    """Validate tx.raw into the transactions table and tx.valid; refuse into tx.dlq."""
    from core import metrics
    from core.kafka import StopFlag
    from core.logging import configure_logging
    from ingestion import TimeWindow, run_ingest

    settings = _settings(ctx)
    configure_logging(service="ingest", level=settings.log_level, fmt=settings.log_format)
    stop = StopFlag()
    stop.install()
    health = metrics.Health()
    server = metrics.serve_ops(health=health, port=settings.metrics_port) if settings.metrics_port > 0 else None
    try:
        run_ingest(
            settings=settings,
            stop=stop,
            window=TimeWindow(max_future_seconds=max_future_seconds, max_age_seconds=max_age_days * 86_400),
            instance_id=instance_id,
            health=health,
        )
    finally:
        if server is not None:
            server.shutdown()


# --- vigil schema -----------------------------------------------------------------------------


@click.group("schema")
def schema_group() -> None:
    """JSON Schemas of the event contracts, for producers."""


@schema_group.command("transaction")
def schema_transaction() -> None:
    """Print the JSON Schema of a transaction (committed as docs/schemas/transaction.v1.json)."""
    from ingestion import transaction_json_schema

    click.echo(transaction_json_schema(), nl=False)


run_commands = [ingest_command]
commands: list[click.Command] = [schema_group]
