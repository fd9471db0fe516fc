"""`vigil run features` (the online stage) and `vigil replay` (the same features from a file)."""

from __future__ import annotations

from pathlib import Path

import click

from vigil.commands import settings_of as _settings


@click.command("features")
@click.option(
    "--replica-index",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    envvar="VIGIL_FEATURES_REPLICA_INDEX",
    help="This replica's ordinal (StatefulSet pod ordinal); it emits for partitions p % replicas == index.",
)
@click.option(
    "--replicas",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    envvar="VIGIL_FEATURES_REPLICAS",
    help="How many replicas share the output.",
)
@click.option(
    "--allowed-lateness",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds an event may trail its partition's newest event and still be ordered exactly.",
)
@click.option(
    "--idle-seconds",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="A caught-up partition silent this long no longer holds the watermark back.",
)
@click.option(
    "--snapshot-interval",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between state snapshots (a restart replays at most this much).",
)
@click.option(
    "--output-compression",
    default="none",
    show_default=True,
    type=click.Choice(["none", "lz4", "zstd", "snappy", "gzip"]),
    envvar="VIGIL_FEATURES_OUTPUT_COMPRESSION",
    help="Compression of tx.features batches: none spends bytes on the broker, lz4 ~2.6x the producer CPU.",
)
@click.option(
    "--vector-form",
    default="compact",
    show_default=True,
    type=click.Choice(["compact", "named"]),
    envvar="VIGIL_FEATURES_VECTOR_FORM",
    help="compact: feature values in registry order (~2.0 KB a vector); named: the pre-compact form (~5.3 KB).",
)
@click.pass_context
def run_features(
    ctx: click.Context,
    replica_index: int,
    replicas: int,
    allowed_lateness: float,
    idle_seconds: float,
    snapshot_interval: float,
    output_compression: str,
    vector_form: str,
) -> None:
    """Consume tx.valid, publish one FeatureVector per transaction to tx.features."""
    from core import metrics
    from core.db import make_engine
    from core.kafka import StopFlag
    from core.logging import configure_logging
    from features.service import FeatureStage, StageOptions

    settings = _settings(ctx)
    configure_logging(service="features", level=settings.log_level, fmt=settings.log_format)
    options = StageOptions(
        replica_index=replica_index,
        replicas=replicas,
        allowed_lateness=allowed_lateness,
        idle_seconds=idle_seconds,
        snapshot_interval=snapshot_interval,
        output_compression=output_compression,
        vector_form=vector_form,
    )
    stop = StopFlag()
    stop.install()
    health = metrics.Health()
    server = metrics.serve_ops(health=health, port=settings.metrics_port) if settings.metrics_port else None
    database = make_engine(settings, pool_size=1)
    try:
        FeatureStage(settings=settings, options=options, database=database, stop=stop, health=health).run()
    finally:
        database.dispose()
        if server is not None:
            server.shutdown()


@click.command("replay")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Transactions as .csv or .parquet (Transaction fields as columns).",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Parquet file to write: identifiers, event time and every registry feature.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def replay_command(input_path: Path, output_path: Path, progress: bool) -> None:
    """Compute the online features offline, from a file, in event-time order."""
    from tqdm import tqdm

    from features.offline import read_transactions, replay

    if output_path.suffix.lower() != ".parquet":
        raise click.BadParameter("the output must be a .parquet file", param_hint="--output")
    total = read_transactions(input_path).num_rows if progress else 0
    with tqdm(total=total, unit="tx", disable=not progress) as bar:
        report = replay(input_path=input_path, output_path=output_path, progress=bar.update)
    rate = report.rows / report.seconds if report.seconds else 0.0
    click.echo(f"{report.rows} transactions -> {report.output} in {report.seconds:.1f}s ({rate:,.0f} tx/s)")


commands = [replay_command]
run_commands = [run_features]
