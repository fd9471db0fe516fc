"""`vigil run detect-statistical` and `vigil run aggregate-check`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from vigil.commands import settings_of as _settings


@click.command("detect-statistical")
@click.option(
    "--group",
    default="vigil-detect-statistical",
    show_default=True,
    help="Kafka consumer group (behind the topic prefix, like the topics).",
)
@click.pass_context
def detect_statistical(ctx: click.Context, group: str) -> None:
    """Score tx.features with z-score, robust z and IQR detectors; write anomalies."""
    from core.detection import run_detection_service
    from core.kafka import StopFlag
    from core.logging import configure_logging
    from detectors import load_statistical_config, statistical_detectors

    settings = _settings(ctx)
    configure_logging(service="detect-statistical", level=settings.log_level, fmt=settings.log_format)
    detectors = statistical_detectors(
        settings=settings, config=load_statistical_config(settings.statistical_config_file)
    )
    stop = StopFlag()
    stop.install()
    run_detection_service(
        settings=settings, service="detect-statistical", group_id=group, detectors=lambda: detectors, stop=stop
    )


@click.command("aggregate-check")
@click.option(
    "--hour",
    type=click.DateTime(["%Y-%m-%dT%H", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    help="Check the hour starting here (UTC); default: the last complete hour.",
)
@click.option("--every", type=click.IntRange(min=60), help="Keep running, checking every N seconds.")
@click.pass_context
def aggregate_check(ctx: click.Context, hour: datetime | None, every: int | None) -> None:
    """Hour-of-week volume and 24-hour shape checks per merchant and account."""
    from core.db import make_engine
    from core.detection import AnomalyWriter
    from core.kafka import DeliveringProducer, StopFlag
    from core.logging import configure_logging
    from detectors.aggregate import check_hour

    settings = _settings(ctx)
    configure_logging(service="aggregate-check", level=settings.log_level, fmt=settings.log_format)
    engine = make_engine(settings, pool_size=1)
    writer = AnomalyWriter(
        engine=engine,
        producer=DeliveringProducer(settings, service="aggregate-check"),
        settings=settings,
        service="aggregate-check",
    )
    stop = StopFlag()
    stop.install()
    while True:
        target = hour.replace(tzinfo=UTC) if hour else datetime.now(UTC) - timedelta(hours=1)
        with engine.connect() as connection:
            anomalies = check_hour(connection, settings=settings, hour=target)
        inserted = writer.write(anomalies)
        click.echo(f"{target:%Y-%m-%dT%H}:00Z checked: {len(anomalies)} anomalies ({inserted} new)")
        if every is None or stop.event.wait(every) or stop.is_set:
            break
        hour = None
    engine.dispose()


run_commands = [detect_statistical, aggregate_check]
