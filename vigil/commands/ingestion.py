"""Ingestion commands: `vigil run ingest`, `vigil schema`, `vigil dlq`, `vigil generate`."""

from __future__ import annotations

import json

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


# --- vigil dlq -------------------------------------------------------------------------------


@click.group("dlq")
def dlq_group() -> None:
    """Inspect and replay dead-lettered transactions (topic tx.dlq)."""


_reason_option = click.option(
    "--reason", "reasons", multiple=True, help="Only dead letters with this reason (repeatable)."
)
_limit_option = click.option(
    "--limit", type=click.IntRange(1), default=None, help="At most this many (first in log order)."
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


@dlq_group.command("inspect")
@_reason_option
@click.option("--ref", "refs", multiple=True, help="Only this dead letter, as topic/partition/offset (repeatable).")
@_limit_option
@_json_option
@click.pass_context
def dlq_inspect(
    ctx: click.Context, reasons: tuple[str, ...], refs: tuple[str, ...], limit: int | None, as_json: bool
) -> None:
    """List dead letters with their reason, source record and transaction id."""
    from collections import Counter

    from ingestion import inspect_dead_letters

    records = inspect_dead_letters(_settings(ctx), reasons=reasons, refs=refs, limit=limit)
    if as_json:
        click.echo(json.dumps([record.as_json() for record in records], indent=2))
        return
    for record in records:
        click.echo(
            f"{record.ref}  {record.dead_lettered_at[:19]}  {record.reason:<26} "
            f"{record.transaction_id or '-':<24} from {record.source_ref}  {record.detail[:120]}"
        )
    counts = Counter(record.reason for record in records)
    summary = ", ".join(f"{reason}: {count}" for reason, count in counts.most_common())
    click.echo(f"{len(records)} dead letters" + (f" ({summary})" if summary else ""))


@dlq_group.command("replay")
@_reason_option
@click.option("--ref", "refs", multiple=True, help="Replay this dead letter, as topic/partition/offset (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter of the ingest service.")
@_limit_option
@click.option("--dry-run", is_flag=True, help="Report what would be re-submitted; send nothing.")
@_json_option
@click.pass_context
def dlq_replay(
    ctx: click.Context,
    reasons: tuple[str, ...],
    refs: tuple[str, ...],
    everything: bool,
    limit: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Re-submit chosen dead letters to tx.raw (e.g. after a contract fix), without duplicates."""
    from core.db import make_engine
    from core.topics import TX_RAW
    from ingestion import inspect_dead_letters, replay_dead_letters

    if not (reasons or refs or everything):
        raise click.UsageError("choose what to replay: --reason, --ref or --all")
    settings = _settings(ctx)
    records = inspect_dead_letters(settings, reasons=reasons, refs=refs, limit=limit)
    engine = make_engine(settings, pool_size=1)
    try:
        report = replay_dead_letters(settings, records, engine=engine, dry_run=dry_run)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, **report.as_json()}, indent=2))
        return
    verb = "would re-submit" if dry_run else "re-submitted"
    click.echo(f"{verb} {len(report.resubmitted)} to {settings.topic(TX_RAW)}")
    for label, refs_of in (
        ("skipped, already ingested", report.already_ingested),
        ("skipped, same id as an earlier selected record", report.duplicate_in_selection),
        ("skipped, not an ingestion dead letter", report.not_from_ingestion),
    ):
        if refs_of:
            click.echo(f"{label}: {len(refs_of)} ({', '.join(refs_of[:10])}{' ...' if len(refs_of) > 10 else ''})")


run_commands = [ingest_command]
commands: list[click.Command] = [schema_group, dlq_group]
