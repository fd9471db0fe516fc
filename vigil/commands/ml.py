"""ML commands: `vigil run detect-ml`, `vigil train`, `vigil models list|promote|rollback`,
`vigil labels import`, `vigil evaluate`.

Every command is safe to repeat on a schedule: training finds a version already
registered for the same data, promotion to the version already served is a no-op,
and label imports upsert.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from vigil.commands import settings_of as _settings

_KINDS = ("isolation_forest", "ecod", "copod", "hbos", "supervised")
_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """`name=column` options as a dict."""
    result = {}
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint=option)
        result[name.strip()] = column.strip()
    return result


def _quiet_mlflow() -> None:
    # Progress bars on every artifact download are noise in service logs and CronJob output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# --- serving ----------------------------------------------------------------------------------


@click.command("detect-ml")
@click.option("--group", default="vigil-detect-ml", show_default=True, help="Kafka consumer group.")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Registered model to serve (repeatable; default: VIGIL_ML_MODEL_NAMES).",
)
@click.pass_context
def detect_ml(ctx: click.Context, group: str, models: tuple[str, ...]) -> None:
    """Score tx.features with the registry's @champion models; hot-swap when the alias moves."""
    from core.kafka import StopFlag
    from core.logging import configure_logging
    from detectors.ml import ModelRegistry, fail_fast_http, run_ml_service

    settings = _settings(ctx)
    configure_logging(service="detect-ml", level=settings.log_level, fmt=settings.log_format)
    fail_fast_http()
    stop = StopFlag()
    stop.install()
    run_ml_service(
        settings=settings,
        group_id=group,
        stop=stop,
        source=ModelRegistry(settings.mlflow_tracking_uri),
        names=list(models) or None,
    )


# --- training -----------------------------------------------------------------------------


@click.command("train")
@click.option("--model", "name", required=True, help="Registered model name, e.g. vigil-supervised.")
@click.option(
    "--kind",
    type=click.Choice(_KINDS),
    help="Estimator; default: the kind this model was registered with before.",
)
@click.option(
    "--from", "start", required=True, type=click.DateTime(_DATE_FORMATS), help="Window start (UTC, inclusive)."
)
@click.option("--to", "end", required=True, type=click.DateTime(_DATE_FORMATS), help="Cutoff (UTC, exclusive).")
@click.option(
    "--input",
    "transactions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Transactions file instead of the transactions table (history before --from warms the features).",
)
@click.option(
    "--features",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Feature parquet written by `vigil replay` instead of computing it.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Label file instead of the labels table.",
)
@click.option("--label-delay-days", type=click.FloatRange(0, 180), help="Default: VIGIL_ML_LABEL_DELAY_DAYS.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def train_command(
    ctx: click.Context,
    name: str,
    kind: str | None,
    start: datetime,
    end: datetime,
    transactions: Path | None,
    features: Path | None,
    labels_path: Path | None,
    label_delay_days: float | None,
    seed: int,
    as_json: bool,
) -> None:
    """Train a model on a window, log it to MLflow, register a version and alias it `challenger`."""
    from core.db import make_engine
    from core.logging import configure_logging
    from detectors.ml import ModelKind, ModelRegistry
    from vigil.evaluation import TrainingRequest, train_and_register

    settings = _settings(ctx)
    configure_logging(service="train", level=settings.log_level, fmt="text")
    _quiet_mlflow()
    if transactions is not None and features is not None:
        raise click.UsageError("give --input or --features, not both")
    start_utc, end_utc = _utc(start), _utc(end)
    assert start_utc is not None and end_utc is not None
    if start_utc >= end_utc:
        raise click.BadParameter("--from must be before --to", param_hint="--from")
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    model_kind = ModelKind(kind) if kind else registry.kind_of(name)
    if model_kind is None:
        raise click.UsageError(f"{name!r} is not registered yet: give --kind ({', '.join(_KINDS)})")
    needs_db = labels_path is None or (transactions is None and features is None)
    engine = make_engine(settings, pool_size=1) if needs_db else None
    try:
        report = train_and_register(
            TrainingRequest(
                name=name,
                kind=model_kind,
                start=start_utc,
                end=end_utc,
                transactions=transactions,
                features=features,
                labels=labels_path,
                seed=seed,
                label_delay=timedelta(days=label_delay_days) if label_delay_days is not None else None,
            ),
            settings=settings,
            registry=registry,
            engine=engine,
        )
    finally:
        if engine is not None:
            engine.dispose()
    plan, outcome, registered = report.plan, report.outcome, report.registered
    metrics = outcome.quality.as_metrics() if outcome is not None and outcome.quality else {}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": name,
                    "kind": model_kind.value,
                    "version": registered.version,
                    "created": registered.created,
                    "run_id": registered.run_id,
                    "counts": plan.counts,
                    "metrics": metrics,
                }
            )
        )
        return
    click.echo(
        f"{model_kind.value}: {plan.counts['train_rows']} training rows "
        f"({plan.counts['train_positives']} confirmed fraud), cutoff {end_utc:%Y-%m-%d %H:%M}Z"
    )
    if not registered.created:
        click.echo(f"already registered (same data and settings) as {name} version {registered.version} (challenger)")
        return
    click.echo(f"registered {name} version {registered.version} (alias challenger)")
    if metrics:
        click.echo("held-out: " + ", ".join(f"{key} {value:.4g}" for key, value in sorted(metrics.items())))
    else:
        click.echo("held-out: no labelled fraud in the held-out rows; quality not measured")


# --- registry -------------------------------------------------------------------------------


@click.group("models")
def models_group() -> None:
    """Registered models: list versions, promote to champion, roll back."""


@models_group.command("list")
@click.option("--model", "names", multiple=True, help="Only these models (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def models_list(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Versions, aliases and held-out metrics of registered models."""
    from detectors.ml import ModelRegistry

    summaries = ModelRegistry(_settings(ctx).mlflow_tracking_uri).list_models(list(names) or None)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "aliases": s.aliases,
                        "versions": [
                            {
                                "version": v.version,
                                "kind": v.kind,
                                "aliases": list(v.aliases),
                                "created_at": v.created_at.isoformat() if v.created_at else None,
                                "metrics": v.metrics,
                            }
                            for v in s.versions
                        ],
                    }
                    for s in summaries
                ]
            )
        )
        return
    for summary in summaries:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(summary.aliases.items())) or "no aliases"
        click.echo(f"{summary.name} ({aliases})")
        for version in summary.versions:
            ap = version.metrics.get("average_precision")
            quality = f"AP {ap:.3f}" if ap is not None else "AP -"
            tags = f" [{', '.join(version.aliases)}]" if version.aliases else ""
            click.echo(f"  v{version.version:<4} {version.kind or '?':<17} {quality}{tags}")


@models_group.command("promote")
@click.option("--model", "name", required=True, help="Registered model name.")
@click.option("--version", help="Version to serve (default: the `challenger`).")
@click.option("--alias", default="champion", show_default=True, help="Alias to move.")
@click.pass_context
def models_promote(ctx: click.Context, name: str, version: str | None, alias: str) -> None:
    """Point `champion` at a version; running detect-ml processes swap to it without restart."""
    from detectors.ml import ModelRegistry

    change = ModelRegistry(_settings(ctx).mlflow_tracking_uri).promote(name=name, version=version, alias=alias)
    if change.previous_version == change.version:
        click.echo(f"{name}@{alias} already is version {change.version}")
    else:
        click.echo(f"{name}@{alias}: {change.previous_version or 'none'} -> {change.version}")


@models_group.command("rollback")
@click.option("--model", "name", required=True, help="Registered model name.")
@click.option("--alias", default="champion", show_default=True, help="Alias to move back.")
@click.pass_context
def models_rollback(ctx: click.Context, name: str, alias: str) -> None:
    """Point `champion` back at the version it had before the last promotion."""
    from detectors.ml import ModelRegistry

    change = ModelRegistry(_settings(ctx).mlflow_tracking_uri).rollback(name=name, alias=alias)
    click.echo(f"{name}@{alias}: {change.previous_version or 'none'} -> {change.version} (rolled back)")


# --- labels -----------------------------------------------------------------------------------


@click.group("labels")
def labels_group() -> None:
    """The labels store that supervised training learns from."""


@labels_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "mappings", multiple=True, help="FIELD=COLUMN, e.g. transaction_id=tx_ref (repeatable).")
@click.option("--tenant", help="Tenant for every row (files without a tenant_id column).")
@click.option("--label", help="Label for every row (files without a label column, e.g. chargebacks).")
@click.option("--author", default=None, help="Who vouches for these labels (default: import:<file name>).")
@click.pass_context
def labels_import(
    ctx: click.Context,
    file: Path,
    mappings: tuple[str, ...],
    tenant: str | None,
    label: str | None,
    author: str | None,
) -> None:
    """Bulk-import labels (chargeback files, historical verdicts); idempotent upsert, source `import`."""
    from core.db import make_engine
    from detectors.ml import import_labels, normalise_label, read_label_file

    settings = _settings(ctx)
    records = read_label_file(
        file,
        mapping=_pairs(mappings, "--map"),
        tenant_id=tenant,
        label=normalise_label(label) if label else None,
    )
    engine = make_engine(settings, pool_size=1)
    try:
        report = import_labels(engine=engine, records=records, author=author or f"import:{file.name}")
    finally:
        engine.dispose()
    click.echo(f"{report.rows} labels: {report.inserted} new, {report.updated} updated, {report.unchanged} unchanged")


# --- evaluation -----------------------------------------------------------------------------


@click.command("evaluate")
@click.option(
    "--input",
    "transactions",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Transactions (.csv or .parquet).",
)
@click.option(
    "--labels",
    "labels_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labels (.csv or .parquet): transaction ids and labels; rows absent from it are legitimate.",
)
@click.option("--map", "mappings", multiple=True, help="Transaction FIELD=COLUMN (repeatable).")
@click.option("--label-map", "label_mappings", multiple=True, help="Label FIELD=COLUMN (repeatable).")
@click.option("--default", "defaults", multiple=True, help="FIELD=VALUE for columns the file lacks.")
@click.option(
    "--train-until",
    type=click.DateTime(_DATE_FORMATS),
    help="Train every ML kind on rows before this (UTC) and evaluate on the rest (default: the middle day).",
)
@click.option("--kind", "kinds", multiple=True, type=click.Choice(_KINDS), help="ML kinds to train (default: all).")
@click.option("--model", "models", multiple=True, help="Also evaluate a registered model's @champion (repeatable).")
@click.option("--no-split", is_flag=True, help="Evaluate every row with registered models only (no training).")
@click.option("--k", default=100, show_default=True, type=click.IntRange(1), help="Alerts reviewed per day.")
@click.option("--label-delay-days", type=click.FloatRange(0, 180), help="Default: VIGIL_ML_LABEL_DELAY_DAYS.")
@click.option("--no-rules", is_flag=True, help="Leave the default rule pack out.")
@click.option("--no-statistical", is_flag=True, help="Leave the statistical detectors out.")
@click.option(
    "--output",
    default=Path("evaluation"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for report.json and pr_curves.png.",
)
@click.pass_context
def evaluate_command(
    ctx: click.Context,
    transactions: Path,
    labels_path: Path,
    mappings: tuple[str, ...],
    label_mappings: tuple[str, ...],
    defaults: tuple[str, ...],
    train_until: datetime | None,
    kinds: tuple[str, ...],
    models: tuple[str, ...],
    no_split: bool,
    k: int,
    label_delay_days: float | None,
    no_rules: bool,
    no_statistical: bool,
    output: Path,
) -> None:
    """Replay a labelled dataset through every detector; print and write per-detector quality."""
    from detectors.ml import ModelKind
    from vigil.evaluation import EvaluationOptions, evaluate, render_table, write_report

    settings = _settings(ctx)
    _quiet_mlflow()
    if no_split and not models:
        raise click.UsageError("--no-split evaluates registered models only: give --model")
    options = EvaluationOptions(
        train_until=_utc(train_until),
        split=not no_split,
        kinds=tuple(ModelKind(kind) for kind in kinds) or tuple(ModelKind),
        models=models,
        k=k,
        label_delay=timedelta(days=label_delay_days if label_delay_days is not None else settings.ml_label_delay_days),
        statistical=not no_statistical,
        rules=not no_rules,
    )
    report = evaluate(
        settings=settings,
        transactions=transactions,
        labels=labels_path,
        options=options,
        mapping=_pairs(mappings, "--map"),
        label_mapping=_pairs(label_mappings, "--label-map"),
        defaults=_pairs(defaults, "--default"),
        progress=lambda message: click.echo(message, err=True),
    )
    click.echo(render_table(report))
    for note in report.notes:
        click.echo(f"note: {note}")
    json_path, png_path = write_report(report, output)
    click.echo(f"report: {json_path} and {png_path}")


commands = [train_command, models_group, labels_group, evaluate_command]
run_commands = [detect_ml]
