"""Ingestion commands: `vigil run ingest`, `vigil schema`, `vigil dlq`, `vigil generate`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vigil.commands import settings_of as _settings

if TYPE_CHECKING:
    from vigil.generator import Label


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


# --- vigil generate --------------------------------------------------------------------------


def _parse_start(value: str | None) -> datetime:
    if value is None or value == "now":
        now = datetime.now(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected ISO 8601, e.g. 2026-01-01T00:00:00Z", param_hint="--start") from None
    if start.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2026-01-01T00:00:00Z", param_hint="--start")
    return start


def _parse_tenants(value: str) -> tuple[str, ...]:
    if value.isdigit():
        count = int(value)
        if not 1 <= count <= 10_000:
            raise click.BadParameter("between 1 and 10000 tenants", param_hint="--tenants")
        return tuple(f"tenant-{n}" for n in range(1, count + 1))
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter("a count or comma-separated tenant ids", param_hint="--tenants")
    return names


@click.command("generate")
@click.option("--rate", default=100.0, show_default=True, type=click.FloatRange(min=0.001), help="Transactions/s.")
@click.option(
    "--duration", default=60.0, show_default=True, type=click.FloatRange(min=0), help="Seconds; 0 = until stopped."
)
@click.option("--accounts", default=1000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--merchants", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--fraud-rate", default=0.01, show_default=True, type=click.FloatRange(0, 0.5), help="Fraud share.")
@click.option("--seed", default=None, type=click.IntRange(min=0), help="Same seed, same data (default: random).")
@click.option("--to", "target", type=click.Choice(["kafka", "http", "file"]), default="kafka", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write (--to file).")
@click.option("--format", "file_format", type=click.Choice(["jsonl", "csv", "parquet"]), help="Default: suffix.")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False, path_type=Path), help="Labels CSV to write.")
@click.option("--labels-topic", is_flag=True, help="Also publish labels to the `labels` topic (--to kafka).")
@click.option("--tenants", default="1", show_default=True, help="A count (tenant-1..N) or comma-separated ids.")
@click.option("--start", default=None, help="Event time of the first transaction, ISO 8601 (default: now).")
@click.option(
    "--event-rate",
    default=None,
    type=click.FloatRange(min=1e-6),
    help="Transactions per second of event time (default: --rate); lets a short run cover days of history.",
)
@click.option("--token", envvar="VIGIL_TOKEN", default=None, help="Bearer token for --to http (env VIGIL_TOKEN).")
@click.pass_context
def generate_command(
    ctx: click.Context,
    rate: float,
    duration: float,
    accounts: int,
    merchants: int,
    fraud_rate: float,
    seed: int | None,
    target: str,
    out: Path | None,
    file_format: str | None,
    labels_path: Path | None,
    labels_topic: bool,
    tenants: str,
    start: str | None,
    event_rate: float | None,
    token: str | None,
) -> None:
    """Synthetic transactions with labelled fraud typologies, to Kafka, the HTTP API or a file."""
    import secrets
    import time
    from contextlib import ExitStack

    from core.kafka import StopFlag
    from vigil.generator import (
        GeneratorConfig,
        HttpSink,
        KafkaSink,
        LabelFile,
        SyntheticStream,
        TransactionFile,
        format_for,
        stream_paced,
    )

    settings = _settings(ctx)
    if target == "file" and out is None:
        raise click.UsageError("--to file needs --out PATH")
    if target == "file" and duration == 0:
        raise click.UsageError("--to file needs a finite --duration")
    if target == "http" and not token:
        raise click.UsageError("--to http needs --token (or VIGIL_TOKEN)")
    if seed is None:
        seed = secrets.randbelow(2**31)
        click.echo(f"seed: {seed}", err=True)
    config = GeneratorConfig(
        rate=rate,
        duration=duration,
        accounts=accounts,
        merchants=merchants,
        fraud_rate=fraud_rate,
        seed=seed,
        tenants=_parse_tenants(tenants),
        start=_parse_start(start),
        event_rate=event_rate,
    )
    stream = SyntheticStream(config)
    started = time.perf_counter()
    sent = fraud = 0
    with ExitStack() as stack:
        label_file = stack.enter_context(LabelFile(labels_path)) if labels_path is not None else None

        send_to: Callable[[Sequence[dict[str, Any]], Sequence[Label]], None]

        def deliver(records: Sequence[dict[str, Any]], labels: Sequence[Label]) -> None:
            # Counted (and labelled) as delivered, so a stopped stream reports what really went out.
            nonlocal sent, fraud
            send_to(records, labels)
            sent += len(records)
            fraud += len(labels)
            if label_file is not None:
                label_file.write(labels)

        if target == "file":
            assert out is not None
            with TransactionFile(out, format_for(out, file_format)) as writer:
                send_to = writer.send
                for batch in stream.batches():
                    deliver(batch.transactions, batch.labels)
        else:
            stop = StopFlag()
            stop.install()
            sink: KafkaSink | HttpSink = (
                KafkaSink(settings, labels_topic=labels_topic)
                if target == "kafka"
                else HttpSink(base_url=settings.public_url, token=token or "")
            )
            send_to = sink.send
            try:
                stream_paced(stream.batches(), _Delivering(deliver), rate=rate, should_stop=lambda: stop.is_set)
            finally:
                sink.close()
    elapsed = time.perf_counter() - started
    share = fraud / sent if sent else 0.0
    where = str(out) if target == "file" else target
    click.echo(
        f"sent {sent} transactions ({fraud} fraud, {share:.2%}) to {where} "
        f"in {elapsed:.2f}s ({sent / elapsed if elapsed else 0:,.0f} tx/s)",
        err=True,
    )


class _Delivering:
    """A sink made of a function (the command counts and labels what it delivers)."""

    def __init__(self, deliver: Any) -> None:
        self.send = deliver

    def close(self) -> None:
        return None


run_commands = [ingest_command]
commands: list[click.Command] = [schema_group, dlq_group, generate_command]
