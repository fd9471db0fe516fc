"""The offline pipeline around the ML detectors: transactions -> features -> models -> quality.

This module composes packages that may not import each other: it turns a
transactions file (any CSV/Parquet, mapped onto Vigil's columns) or the
`transactions` table into the feature parquet with `features.offline.replay`
(the same engine as the online stage), and then

- `train_and_register`: trains one model with `detectors.ml` and registers it in MLflow
  (`vigil train`);
- `evaluate`: replays a labelled dataset through every detector family (statistical,
  rules, ML) and reports ROC AUC, average precision, precision@k per day, and recall/FPR
  at the operating threshold, per detector and combined (`vigil evaluate`).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import numpy as np

from core.contracts import Channel, FeatureVector, Transaction
from core.detection import Detector, FeatureBatch, FloatArray, Thresholds
from core.errors import VigilError
from core.settings import Settings
from detectors.ml import (
    CHALLENGER,
    FeatureFrame,
    KnownLabel,
    ModelKind,
    ModelRegistry,
    OperatingPoint,
    RankingQuality,
    TrainingOptions,
    TrainingOutcome,
    TrainingPlan,
    daily_precision_at_k,
    fit_plan,
    known_labels,
    operating_point,
    plan_training,
    ranking_quality,
    read_feature_frame,
    read_label_file,
    resolve_targets,
    train_model,
)
from detectors.ml.registry import RegisteredVersion

log = logging.getLogger(__name__)

TRANSACTION_COLUMNS: Final = (
    "transaction_id",
    "occurred_at",
    "tenant_id",
    "account_id",
    "card_id",
    "merchant_id",
    "merchant_category",
    "amount",
    "currency",
    "channel",
    "country",
    "device_id",
    "ip",
    "lat",
    "lon",
)
_REQUIRED: Final = ("transaction_id", "occurred_at", "account_id", "merchant_id", "amount")
# What an external dataset usually lacks, filled so features and rules still run (overridable: --default).
DEFAULTS: Final[dict[str, str]] = {
    "tenant_id": "default",
    "merchant_category": "0000",
    "currency": "EUR",
    "channel": "ecommerce",
    "country": "ZZ",  # ISO 3166 user-assigned: "unknown", never a real country
}
_BATCH: Final = 5000
_WARNING: Final = Thresholds().warning


class EvaluationError(VigilError):
    """The offline pipeline cannot run on this input."""


# --- transactions and features -------------------------------------------------------------


def normalise_transactions(
    source: Path, target: Path, *, mapping: Mapping[str, str] | None = None, defaults: Mapping[str, str] | None = None
) -> int:
    """Rewrite any CSV/Parquet of payments as Vigil's transaction parquet (`vigil replay` input)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = source.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(source)
    elif suffix == ".csv":
        with source.open(encoding="utf-8") as handle:
            header = handle.readline().strip().split(",")
        # Text for everything but coordinates: ids like 000123 must stay text.
        numeric = {(mapping or {}).get(name, name) for name in ("lat", "lon")}
        types = {name: pa.string() for name in header if name not in numeric}
        table = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(column_types=types))
    else:
        raise EvaluationError(f"{source}: expected a .csv or .parquet file")
    mapping = dict(mapping or {})
    unknown = set(mapping) - set(TRANSACTION_COLUMNS)
    if unknown:
        raise EvaluationError(f"cannot map unknown field(s) {', '.join(sorted(unknown))}")
    fill = {**DEFAULTS, **(defaults or {})}
    columns: dict[str, Any] = {}
    for name in TRANSACTION_COLUMNS:
        column_name = mapping.get(name, name)
        if column_name in table.column_names:
            column = table.column(column_name)
        elif name in mapping:
            raise EvaluationError(f"{source}: no column {column_name!r} (mapped to {name})")
        elif name in fill:
            column = pa.array([fill[name]] * table.num_rows, pa.string())
        elif name in _REQUIRED:
            raise EvaluationError(f"{source}: no {name} column (map one with --map {name}=COLUMN)")
        else:
            column = pa.nulls(table.num_rows, pa.float64() if name in ("lat", "lon") else pa.string())
        columns[name] = column
    occurred = columns["occurred_at"]
    if not pa.types.is_timestamp(occurred.type):
        text = pc.cast(occurred, pa.string())
        occurred = pc.cast(pc.replace_substring(text, "Z", "+00:00"), pa.string())
        try:
            occurred = pa.array(
                [datetime.fromisoformat(v).astimezone(UTC) if v else None for v in occurred.to_pylist()],
                pa.timestamp("us", tz="UTC"),
            )
        except ValueError as exc:
            raise EvaluationError(f"{source}: occurred_at is not ISO 8601: {exc}") from None
    elif occurred.type.tz is None:
        occurred = pc.assume_timezone(occurred, "UTC")
    columns["occurred_at"] = occurred
    for name in TRANSACTION_COLUMNS:
        if name not in ("occurred_at", "lat", "lon"):
            columns[name] = pc.cast(columns[name], pa.string())
        elif name != "occurred_at":
            columns[name] = pc.cast(columns[name], pa.float64())
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), target)
    return int(table.num_rows)


def export_transactions(*, engine: Any, start: datetime, end: datetime, target: Path) -> int:
    """Stored transactions with start <= occurred_at < end as a transaction parquet, streamed in chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import select

    from core import schema

    table = schema.transactions
    query = (
        select(*(table.c[name] for name in TRANSACTION_COLUMNS))
        .where(table.c.occurred_at >= start, table.c.occurred_at < end)
        .order_by(table.c.occurred_at, table.c.transaction_id)
    )
    arrow_schema = pa.schema(
        [
            (name, pa.timestamp("us", tz="UTC") if name == "occurred_at" else pa.float64())
            if name in ("occurred_at", "lat", "lon")
            else (name, pa.string())
            for name in TRANSACTION_COLUMNS
        ]
    )
    rows = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        pq.ParquetWriter(target, arrow_schema) as writer,
        engine.connect().execution_options(stream_results=True, yield_per=50_000) as connection,
    ):
        for partition in connection.execute(query).partitions():
            columns = list(zip(*partition, strict=True))
            data = {}
            for index, name in enumerate(TRANSACTION_COLUMNS):
                values = list(columns[index])
                if name not in ("occurred_at", "lat", "lon"):
                    values = [None if v is None else str(v) for v in values]
                data[name] = values
            writer.write_table(pa.table(data, schema=arrow_schema))
            rows += len(partition)
    return rows


def compute_features(transactions: Path, target: Path, *, progress: Callable[[int], object] | None = None) -> int:
    """Features for every transaction of the file, by the online engine run offline."""
    from features.offline import replay

    return replay(input_path=transactions, output_path=target, progress=progress).rows


# --- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRequest:
    """What `vigil train` asked for."""

    name: str
    kind: ModelKind
    start: datetime
    end: datetime
    transactions: Path | None = None  # a file instead of the transactions table
    features: Path | None = None  # an already computed feature parquet
    labels: Path | None = None  # a label file instead of the labels table
    seed: int = 0
    label_delay: timedelta | None = None  # None: settings.ml_label_delay_days


@dataclass(frozen=True)
class TrainingReport:
    plan: TrainingPlan
    outcome: TrainingOutcome | None  # None: this exact training was registered before; nothing refitted
    registered: RegisteredVersion


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vigil-train-") as scratch:
        yield Path(scratch)


def training_options(settings: Settings, *, seed: int = 0, label_delay: timedelta | None = None) -> TrainingOptions:
    return TrainingOptions(
        label_delay=label_delay if label_delay is not None else timedelta(days=settings.ml_label_delay_days),
        contamination=settings.ml_contamination,
        operating_recall=settings.ml_operating_recall,
        seed=seed,
        threads=settings.ml_train_threads,
    )


def feature_frame_for(
    request: TrainingRequest, *, settings: Settings, engine: Any, workdir: Path, warmup: timedelta
) -> FeatureFrame:
    """The window's feature rows, from a feature file, a transaction file, or the database (warmed up)."""
    features = request.features
    if features is None:
        transactions = workdir / "transactions.parquet"
        if request.transactions is not None:
            normalise_transactions(request.transactions, transactions)
        else:
            if engine is None:
                raise EvaluationError("training from the database needs a database engine")
            count = export_transactions(
                engine=engine, start=request.start - warmup, end=request.end, target=transactions
            )
            if count == 0:
                raise EvaluationError(f"no stored transactions between {request.start - warmup} and {request.end}")
        features = workdir / "features.parquet"
        compute_features(transactions, features)
    return read_feature_frame(features, start=request.start, end=request.end)


def labels_for(request: TrainingRequest, *, engine: Any) -> list[KnownLabel]:
    """Labels known at the cutoff: from the label file (ground truth) or the labels table."""
    if request.labels is not None:
        return [
            KnownLabel(r.tenant_id, r.transaction_id, r.label, r.labelled_at, "import")
            for r in read_label_file(request.labels, require_tenant=False)
        ]
    if engine is None:
        raise EvaluationError("training with stored labels needs a database engine")
    return known_labels(engine=engine, cutoff=request.end)


def train_and_register(
    request: TrainingRequest, *, settings: Settings, registry: ModelRegistry, engine: Any = None
) -> TrainingReport:
    """Build the window's features, train, log to MLflow, register a version and alias it `challenger`.

    Safe to repeat (a CronJob): the same data, labels and settings find the version
    registered before instead of adding another.
    """
    with _workdir() as workdir:
        frame = feature_frame_for(
            request,
            settings=settings,
            engine=engine,
            workdir=workdir,
            warmup=timedelta(days=settings.ml_warmup_days),
        )
        labels = labels_for(request, engine=engine)
        plan = plan_training(
            frame=frame,
            labels=labels,
            kind=request.kind,
            cutoff=request.end,
            options=training_options(settings, seed=request.seed, label_delay=request.label_delay),
        )
        existing = registry.find_version(request.name, plan.fingerprint)
        if existing is not None:
            registry.set_alias(name=request.name, alias=CHALLENGER, version=existing.version)
            return TrainingReport(plan=plan, outcome=None, registered=existing)
        outcome = fit_plan(plan)
    registered = registry.register(
        name=request.name, outcome=outcome, experiment=settings.ml_experiment, alias=CHALLENGER
    )
    return TrainingReport(plan=plan, outcome=outcome, registered=registered)


# --- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationOptions:
    """What `vigil evaluate` compares."""

    train_until: datetime | None = None  # train ML kinds on earlier rows, judge later ones
    split: bool = True  # without train_until: split at the midnight nearest the middle of the data
    kinds: tuple[ModelKind, ...] = tuple(ModelKind)
    models: tuple[str, ...] = ()  # registered models to load at `alias`
    alias: str = "champion"
    k: int = 100
    label_delay: timedelta = timedelta(days=7)
    statistical: bool = True
    rules: bool = True
    rules_pack: Path | None = None
    seed: int = 0


@dataclass
class DetectorResult:
    """One detector's quality on the evaluation rows."""

    name: str
    family: str
    quality: RankingQuality
    daily_precision: dict[str, float]
    operating: OperatingPoint
    scores: FloatArray = field(repr=False)

    @property
    def mean_daily_precision(self) -> float:
        values = [v for v in self.daily_precision.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            **self.quality.as_dict(),
            "precision_at_k_per_day": self.daily_precision,
            "mean_precision_at_k_per_day": self.mean_daily_precision,
            "operating_threshold": _WARNING,
            "flagged": self.operating.flagged,
            "recall_at_threshold": self.operating.recall,
            "fpr_at_threshold": self.operating.false_positive_rate,
            "precision_at_threshold": self.operating.precision,
        }


@dataclass
class EvaluationReport:
    rows: int
    positives: int
    days: list[str]
    train_until: datetime | None
    label_delay: timedelta
    results: list[DetectorResult]
    notes: list[str] = field(default_factory=list)
    target: Any = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "positives": self.positives,
            "days": self.days,
            "train_until": self.train_until.isoformat() if self.train_until else None,
            "label_delay_days": self.label_delay.total_seconds() / 86400,
            "detectors": [_json_safe(r.as_dict()) for r in self.results],
            "notes": self.notes,
        }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _transactions_by_key(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows by (tenant, transaction id), keyed like the feature frame's rows (ids are unique per tenant only)."""
    import pyarrow.parquet as pq

    from detectors.ml.dataset import tenant_column

    table = pq.read_table(path)
    rows = table.to_pylist()
    return {(tenant, str(row["transaction_id"])): row for tenant, row in zip(tenant_column(table), rows, strict=True)}


def _vector(row: Mapping[str, Any], features: dict[str, float | None]) -> FeatureVector:
    """A feature vector for offline scoring; model_construct: external data need not pass the contract."""
    try:
        channel = Channel(row.get("channel") or "ecommerce")
    except ValueError:  # an external dataset's own channel names: the documented default
        channel = Channel.ECOMMERCE
    occurred = row["occurred_at"]
    transaction = Transaction.model_construct(
        transaction_id=str(row["transaction_id"]),
        occurred_at=occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC),
        tenant_id=str(row.get("tenant_id") or "default"),
        account_id=str(row["account_id"]),
        card_id=row.get("card_id"),
        merchant_id=str(row["merchant_id"]),
        merchant_category=str(row.get("merchant_category") or "0000"),
        amount=Decimal(str(row["amount"])),
        currency=str(row.get("currency") or "EUR"),
        channel=channel,
        country=str(row.get("country") or "ZZ"),
        device_id=row.get("device_id"),
        ip=row.get("ip"),
        lat=row.get("lat"),
        lon=row.get("lon"),
        attributes={},
        ingested_at=None,
        schema_version=1,
    )
    return FeatureVector.model_construct(transaction=transaction, features=features, feature_set_version=1, late=False)


def _family_scores(
    detectors: Sequence[Detector], frame: FeatureFrame, transactions: Mapping[tuple[str, str], Mapping[str, Any]]
) -> dict[str, tuple[str, FloatArray, FloatArray]]:
    """Raw and normalised scores of every detector over the frame, batch by batch."""
    results: dict[str, tuple[str, list[FloatArray], list[FloatArray]]] = {}
    names = frame.feature_names
    for start in range(0, len(frame), _BATCH):
        stop = min(start + _BATCH, len(frame))
        block = frame.matrix[start:stop]
        vectors = [
            _vector(
                transactions[frame.tenant_ids[i], frame.transaction_ids[i]],
                dict(zip(names, [None if v != v else v for v in block[i - start].tolist()], strict=True)),
            )
            for i in range(start, stop)
        ]
        batch = FeatureBatch(vectors)
        for detector in detectors:
            scores = detector.score(batch)
            key = f"{detector.family.value}:{detector.name}"
            entry = results.setdefault(key, (detector.family.value, [], []))
            entry[1].append(np.asarray(scores.raw, dtype=np.float64))
            entry[2].append(np.asarray(scores.normalised, dtype=np.float64))
    return {key: (family, np.concatenate(raw), np.concatenate(norm)) for key, (family, raw, norm) in results.items()}


def evaluate(
    *,
    settings: Settings,
    transactions: Path,
    labels: Path,
    options: EvaluationOptions,
    mapping: Mapping[str, str] | None = None,
    label_mapping: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
    registry: ModelRegistry | None = None,
    progress: Callable[[str], object] | None = None,
) -> EvaluationReport:
    """Replay a labelled dataset through every detector and measure each one, and all of them combined."""
    say = progress or (lambda _message: None)
    with _workdir() as workdir:
        normalised = workdir / "transactions.parquet"
        count = normalise_transactions(transactions, normalised, mapping=mapping, defaults=defaults)
        say(f"{count} transactions read; computing features")
        features = workdir / "features.parquet"
        compute_features(normalised, features)
        frame = read_feature_frame(features)
        label_rows = read_label_file(labels, mapping=label_mapping, require_tenant=False)
        truth = [KnownLabel(r.tenant_id, r.transaction_id, r.label, None, "import") for r in label_rows]
        until = options.train_until
        if until is None and options.split and len(frame):
            until = middle_midnight(frame.event_time)
        test_rows = frame.event_time >= until.timestamp() if until is not None else np.ones(len(frame), dtype=bool)
        test = frame.select(test_rows)
        if len(test) == 0:
            raise EvaluationError("no transactions to evaluate (after --train-until)")
        far = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
        target = resolve_targets(test, truth, cutoff=far, delay=timedelta(0)).fraud
        days = [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d") for t in test.event_time]
        scored: dict[str, tuple[str, FloatArray, FloatArray]] = {}
        notes: list[str] = []

        if until is not None:
            for kind in options.kinds:
                say(f"training {kind.value} on rows before {until:%Y-%m-%d %H:%M}")
                try:
                    outcome = train_model(
                        frame=frame,
                        labels=truth,
                        kind=kind,
                        cutoff=until,
                        options=training_options(settings, seed=options.seed, label_delay=options.label_delay),
                    )
                except VigilError as exc:
                    notes.append(f"ml:{kind.value} not trained: {exc}")
                    continue
                raw = outcome.model.raw_scores(test.columns(outcome.model.feature_names))
                scored[f"ml:{kind.value}"] = ("ml", raw, outcome.model.normalise(raw))
                notes.append(
                    f"ml:{kind.value} trained on {outcome.counts['train_rows']} rows "
                    f"({outcome.counts['train_positives']} confirmed fraud)"
                )
        if options.models:
            registry = registry or ModelRegistry(settings.mlflow_tracking_uri)
            for name in options.models:
                version = registry.resolve(name, options.alias)
                model = registry.load(name, version)
                raw = model.raw_scores(test.columns(model.feature_names))
                scored[f"ml:{name}@{options.alias}(v{version})"] = ("ml", raw, model.normalise(raw))

        others: list[Detector] = []
        if options.statistical:
            from detectors import statistical_detectors

            others.extend(statistical_detectors(settings=settings))
        if options.rules:
            from rules import pack_detectors

            others.extend(pack_detectors(options.rules_pack) if options.rules_pack else pack_detectors())
        if others:
            say(f"scoring {len(test)} rows with {len(others)} statistical/rule detectors")
            rows_by_key = _transactions_by_key(normalised)
            family_scores = _family_scores(others, test, rows_by_key)
            rule_keys = [key for key, (family, _, _) in family_scores.items() if family == "rules"]
            scored.update(family_scores)
            if rule_keys:
                matched = np.column_stack([~np.isnan(family_scores[key][2]) for key in rule_keys]).any(axis=1)
                scored["rules:any"] = (
                    "rules",
                    np.asarray(matched, dtype=np.float64),
                    np.asarray(np.where(matched, 100.0, np.nan), dtype=np.float64),
                )

    results = [_result(key, family, raw, norm, target, days, options.k) for key, (family, raw, norm) in scored.items()]
    # Combined = what a case shows: the highest normalised score any detector gave the row
    # (single rules are represented by their union, "rules:any").
    parts = [norm for key, (family, _, norm) in scored.items() if family != "rules" or key == "rules:any"]
    if parts:
        combined = np.max(np.column_stack([np.nan_to_num(p, nan=0.0) for p in parts]), axis=1)
        results.append(_result("combined (max)", "all", combined, combined, target, days, options.k))
    return EvaluationReport(
        rows=len(test),
        positives=int(target.sum()),
        days=sorted(set(days)),
        train_until=until,
        label_delay=options.label_delay,
        results=results,
        notes=notes,
        target=target,
    )


def middle_midnight(event_time: FloatArray) -> datetime:
    """The UTC midnight nearest the middle of the data's time span (the default train/test split)."""
    low, high = float(event_time.min()), float(event_time.max())
    middle = datetime.fromtimestamp((low + high) / 2, UTC)
    midnight = middle.replace(hour=0, minute=0, second=0, microsecond=0)
    if middle - midnight > timedelta(hours=12):
        midnight += timedelta(days=1)
    return midnight if low < midnight.timestamp() < high else middle


def _result(
    name: str, family: str, raw: FloatArray, normalised: FloatArray, target: Any, days: list[str], k: int
) -> DetectorResult:
    # Ranking metrics on the raw score (normalising clips the low end into ties); the
    # operating point on the normalised score, where the detector really flags.
    flagged = np.nan_to_num(normalised, nan=-1.0) >= _WARNING
    return DetectorResult(
        name=name,
        family=family,
        quality=ranking_quality(target, raw, k=k),
        daily_precision=daily_precision_at_k(target, raw, days, k),
        operating=operating_point(target, flagged),
        scores=raw,
    )


# --- output -----------------------------------------------------------------------------------


def render_table(report: EvaluationReport) -> str:
    """The per-detector table `vigil evaluate` prints."""
    k = report.results[0].quality.k if report.results else 100

    def cell(value: float, digits: int = 3) -> str:
        return "-" if math.isnan(value) else f"{value:.{digits}f}"

    width = max([len(r.name) for r in report.results] + [8])
    header = (
        f"{'detector':<{width}}  {'ROC AUC':>7}  {'AP':>6}  {f'P@{k}/day':>9}  "
        f"{'recall@op':>9}  {'FPR@op':>7}  {'flagged':>8}"
    )
    lines = [header, "-" * len(header)]
    for result in report.results:
        lines.append(
            f"{result.name:<{width}}  {cell(result.quality.roc_auc):>7}  {cell(result.quality.average_precision):>6}"
            f"  {cell(result.mean_daily_precision):>9}  {cell(result.operating.recall):>9}"
            f"  {cell(result.operating.false_positive_rate, 4):>7}  {result.operating.flagged:>8}"
        )
    split = f"; trained before {report.train_until:%Y-%m-%d %H:%M}" if report.train_until else ""
    lines.append(
        f"{report.rows} transactions ({report.positives} fraud) over {len(report.days)} days{split}; "
        f"operating threshold: normalised score >= {_WARNING:g}"
    )
    return "\n".join(lines)


def write_report(report: EvaluationReport, directory: Path) -> tuple[Path, Path]:
    """report.json and pr_curves.png (precision/recall curves and precision@k per day)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report.as_dict(), indent=2))
    png_path = directory / "pr_curves.png"
    figure, (curves, daily) = plt.subplots(1, 2, figsize=(15, 6))
    target = report.target
    # Individual rule detectors would drown the picture; their union ("rules:any") stands for them.
    shown = [r for r in report.results if r.family != "rules" or r.name == "rules:any"]
    for result in shown:
        if target is None or not 0 < int(target.sum()) < len(target):
            break
        judged = ~np.isnan(result.scores)
        if not judged.any() or np.ptp(result.scores[judged]) == 0:
            continue  # judged nothing, or gave every row the same score: no curve to draw
        floor = float(result.scores[judged].min()) - 1.0 if judged.any() else 0.0
        precision, recall, _ = precision_recall_curve(target, np.where(judged, result.scores, floor))
        curves.plot(recall, precision, label=f"{result.name} (AP {result.quality.average_precision:.3f})")
        days = sorted(result.daily_precision)
        daily.plot(range(len(days)), [result.daily_precision[d] for d in days], marker="o", label=result.name)
    curves.set_xlabel("recall")
    curves.set_ylabel("precision")
    curves.set_title("Precision / recall on the evaluation rows")
    curves.legend(fontsize=7, loc="upper right")
    k = report.results[0].quality.k if report.results else 100
    daily.set_xlabel("day")
    daily.set_ylabel(f"precision@{k}")
    daily.set_title(f"Precision of the top {k} per day")
    daily.set_xticks(range(len(report.days)), report.days, rotation=60, fontsize=7)
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return json_path, png_path
