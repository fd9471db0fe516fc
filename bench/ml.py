"""ML serving benchmark: rows/s scored by the serving path, per model kind.

Target (issue 6): >= 50,000 rows/s on one core for the chosen unsupervised model.
Reference: IsolationForest (100 trees) costs ~16 ms for a single-row call and
scores ~184k rows/s in batches (ARCHITECTURE.md section 4).

Run: .venv/bin/python -m bench.ml [--rows 60000] [--days 10] [--batch 5000] [--repeat 5]

Data: `vigil generate`'s generator (seed 7) -> features by `features.offline.replay`;
every kind is trained on the first 70 % of the time span. Figures per kind (best of
`--repeat`, batches of `--batch` rows, one native thread):

- model:    `FittedModel.raw_scores` + normalise on a ready float matrix;
- serving:  `MLDetector.score(FeatureBatch)` on contract-valid FeatureVectors, i.e. what
  `detect-ml` runs per micro-batch: feature extraction from the vectors, transform,
  score, normalise (decoding JSON and writing anomalies are the framework's, not measured);
- 1-row:    one `raw_scores` call on a single row (why scoring is never per message);
- explain:  `MLDetector.explain` per flagged row (only flagged rows are explained).

Rates are rows per CPU-second of this process (one core); wall-clock rates are printed
too, since the machine is shared and wall time includes other people's work.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from core.contracts import FeatureVector, Transaction
from core.detection import FeatureBatch
from detectors.ml import KnownLabel, MLDetector, ModelKind, TrainingOptions, read_feature_frame, train_model
from detectors.ml.dataset import FeatureFrame

CHOSEN = ModelKind.ISOLATION_FOREST  # docs/adr/0008-ml-models.md
TARGET_ROWS_PER_SECOND = 50_000


def _generate(
    directory: Path, rows: int, days: float
) -> tuple[FeatureFrame, dict[str, dict[str, object]], list[KnownLabel]]:
    from features.offline import replay
    from vigil.generator import GeneratorConfig, SyntheticStream, TransactionFile

    config = GeneratorConfig(
        rate=1000.0,
        duration=rows / 1000.0,
        accounts=3000,
        merchants=300,
        fraud_rate=0.01,
        seed=7,
        start=datetime(2026, 10, 1, tzinfo=UTC),
        event_rate=rows / (days * 86_400),
    )
    records: dict[str, dict[str, object]] = {}
    labels: list[KnownLabel] = []
    with TransactionFile(directory / "tx.parquet", "parquet") as sink:
        for batch in SyntheticStream(config).batches():
            sink.write(batch)
            records.update((str(r["transaction_id"]), r) for r in batch.transactions)
            labels += [KnownLabel(label.tenant_id, label.transaction_id, "confirmed_fraud") for label in batch.labels]
    replay(input_path=directory / "tx.parquet", output_path=directory / "features.parquet")
    return read_feature_frame(directory / "features.parquet"), records, labels


def _vectors(frame: FeatureFrame, records: dict[str, dict[str, object]]) -> list[FeatureVector]:
    names = frame.feature_names
    vectors = []
    for tx, row in zip(frame.transaction_ids, frame.matrix.tolist(), strict=True):
        features = {name: (None if value != value else value) for name, value in zip(names, row, strict=True)}
        vectors.append(
            FeatureVector(transaction=Transaction.model_validate(records[tx]), features=features, feature_set_version=1)
        )
    return vectors


def _best(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of `repeat` runs."""
    cpu, wall = [], []
    for _ in range(repeat):
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started_wall)
    return min(cpu), min(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kind", action="append", choices=[k.value for k in ModelKind], help="Default: all.")
    args = parser.parse_args()
    kinds = [ModelKind(k) for k in args.kind] if args.kind else list(ModelKind)

    with tempfile.TemporaryDirectory(prefix="vigil-bench-ml-") as scratch:
        frame, records, labels = _generate(Path(scratch), args.rows, args.days)
    cutoff_ts = frame.event_time.min() + 0.7 * (frame.event_time.max() - frame.event_time.min())
    cutoff = datetime.fromtimestamp(cutoff_ts, UTC)
    serving = frame.select(frame.event_time >= cutoff_ts)
    vectors = _vectors(serving, records)
    batches = [vectors[i : i + args.batch] for i in range(0, len(vectors), args.batch)]
    rows = len(vectors)
    print(f"{rows} rows to score in batches of {args.batch}; trained on {int((frame.event_time < cutoff_ts).sum())}")
    header = ("kind", "fit s", "model rows/s", "serving rows/s", "(wall)", "1-row ms", "explain µs")
    print(f"{header[0]:<18}{header[1]:>8}{header[2]:>15}{header[3]:>16}{header[4]:>12}{header[5]:>10}{header[6]:>12}")

    for kind in kinds:
        print(_measure(kind, frame=frame, labels=labels, cutoff=cutoff, serving=serving, batches=batches, args=args))


def _measure(
    kind: ModelKind,
    *,
    frame: FeatureFrame,
    labels: list[KnownLabel],
    cutoff: datetime,
    serving: FeatureFrame,
    batches: list[list[FeatureVector]],
    args: argparse.Namespace,
) -> str:
    started = time.perf_counter()
    options = TrainingOptions(label_delay=timedelta(days=1))
    model = train_model(frame=frame, labels=labels, kind=kind, cutoff=cutoff, options=options).model
    fit_seconds = time.perf_counter() - started
    rows = len(serving)
    matrix = serving.columns(model.feature_names)
    blocks = [matrix[i : i + args.batch] for i in range(0, len(matrix), args.batch)]
    model_cpu, _ = _best(lambda: [model.normalise(model.raw_scores(b)) for b in blocks], args.repeat)
    detector = MLDetector(model=model, model_name=kind.value, model_version="bench")
    feature_batches = [FeatureBatch(b) for b in batches]

    def serve() -> None:
        for batch in feature_batches:
            batch._features.clear()  # no column cache carried between repeats
            detector._memo = None
            detector.score(batch)

    serve_cpu, serve_wall = _best(serve, args.repeat)
    single_cpu, _ = _best(lambda: model.raw_scores(matrix[:1]), max(args.repeat, 20))
    first = feature_batches[0]
    scores = detector.score(first)
    flagged = np.flatnonzero(np.nan_to_num(scores.normalised, nan=-1) >= 50)[:200]
    if len(flagged) == 0:
        flagged = np.argsort(-np.nan_to_num(scores.raw, nan=-np.inf))[:50]
    explain_cpu, _ = _best(lambda: [detector.explain(first, int(i)) for i in flagged], 3)
    marker = ""
    if kind is CHOSEN:
        verdict = "meets" if rows / serve_cpu >= TARGET_ROWS_PER_SECOND else "MISSES"
        marker = f"  <- chosen; {verdict} the {TARGET_ROWS_PER_SECOND:,} rows/s target"
    return (
        f"{kind.value:<18}{fit_seconds:>8.1f}{rows / model_cpu:>15,.0f}{rows / serve_cpu:>16,.0f}"
        f"{rows / serve_wall:>12,.0f}{single_cpu * 1000:>10.2f}{explain_cpu / len(flagged) * 1e6:>12,.0f}{marker}"
    )


if __name__ == "__main__":
    main()
