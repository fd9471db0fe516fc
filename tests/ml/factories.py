"""Small fitted models, generated datasets and detect-ml helpers for ML tests."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select

from core import metrics
from core.contracts import FeatureVector, Transaction
from core.detection import Detector, FloatArray, Thresholds
from core.kafka import DeliveringProducer, StopFlag
from core.schema import anomalies
from core.settings import Settings
from core.topics import TX_FEATURES
from detectors.ml import (
    FittedModel,
    KnownLabel,
    MLDetector,
    ModelKind,
    ModelRegistry,
    TrainingOptions,
    UnavailableModel,
    fit_model,
    matrix_from_vectors,
    read_feature_frame,
    run_ml_service,
    train_model,
)
from detectors.ml.serving import ModelSource
from tests.detectors.factories import labelled_batch

CONFORMANCE_FEATURES = (
    "amount",
    "account_amount_history_count",
    "account_amount_history_mean",
    "account_amount_history_std",
    "account_amount_history_median",
    "account_amount_history_mad",
)


@cache
def fitted_model(kind: ModelKind = ModelKind.ISOLATION_FOREST, seed: int = 0) -> FittedModel:
    """A model fitted on detector-test vectors (lognormal habits with planted 8-20x outliers)."""
    vectors, labels = labelled_batch(seed=3, size=600)
    matrix = matrix_from_vectors(vectors, CONFORMANCE_FEATURES)
    target = np.asarray(labels, dtype=bool) if kind.supervised else None
    return fit_model(kind=kind, matrix=matrix, feature_names=CONFORMANCE_FEATURES, target=target)


def ml_detectors() -> list[Detector]:
    """Every ML detector class, for the conformance suite."""
    return [
        MLDetector(model=fitted_model(ModelKind.ISOLATION_FOREST), model_name="conformance-iforest", model_version="1"),
        MLDetector(model=fitted_model(ModelKind.ECOD), model_name="conformance-ecod", model_version="1"),
        MLDetector(model=fitted_model(ModelKind.SUPERVISED), model_name="conformance-supervised", model_version="1"),
        UnavailableModel(model_name="conformance-unavailable"),
    ]


@dataclass(frozen=True)
class Dataset:
    """A generated dataset on disk: transactions, labels (fraud only) and the offline features."""

    transactions: Path
    labels: Path
    features: Path
    records: dict[str, dict[str, object]]
    start: datetime
    days: int


def generate(directory: Path, *, rows: int, days: int, seed: int = 7, accounts: int = 600) -> Dataset:
    """Seeded synthetic traffic (vigil.generator) and its features (features.offline.replay)."""
    from features.offline import replay
    from vigil.generator import GeneratorConfig, LabelFile, SyntheticStream, TransactionFile

    start = datetime(2026, 9, 1, tzinfo=UTC)
    config = GeneratorConfig(
        rate=1000.0,
        duration=rows / 1000.0,
        accounts=accounts,
        merchants=120,
        fraud_rate=0.02,
        seed=seed,
        start=start,
        event_rate=rows / (days * 86_400),
    )
    directory.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, object]] = {}
    with (
        TransactionFile(directory / "transactions.parquet", "parquet") as transactions,
        LabelFile(directory / "labels.csv") as labels,
    ):
        for batch in SyntheticStream(config).batches():
            transactions.write(batch)
            labels.write(batch.labels)
            records.update((str(r["transaction_id"]), r) for r in batch.transactions)
    features = directory / "features.parquet"
    replay(input_path=directory / "transactions.parquet", output_path=features)
    return Dataset(
        transactions=directory / "transactions.parquet",
        labels=directory / "labels.csv",
        features=features,
        records=records,
        start=start,
        days=days,
    )


def feature_vectors(
    dataset: Dataset, transaction_ids: Sequence[str], matrix: FloatArray, names: Sequence[str]
) -> list[FeatureVector]:
    """Contract-valid feature vectors (what the features stage publishes) for rows of the feature file."""
    vectors = []
    for tx, row in zip(transaction_ids, matrix.tolist(), strict=True):
        features = {name: (None if value != value else value) for name, value in zip(names, row, strict=True)}
        vectors.append(
            FeatureVector(
                transaction=Transaction.model_validate(dataset.records[tx]),
                features=features,
                feature_set_version=1,
            )
        )
    return vectors


# --- running detect-ml against the real stack ---------------------------------------------------


def versions_by_transaction(db: Engine, name: str) -> dict[str, set[str]]:
    """Transaction id -> model versions that wrote an anomaly for it."""
    with db.connect() as connection:
        rows = connection.execute(
            select(anomalies.c.transaction_id, anomalies.c.detector_version).where(anomalies.c.detector_name == name)
        )
        found: dict[str, set[str]] = {}
        for tx, version in rows:
            found.setdefault(tx, set()).add(version)
        return found


class Traffic:
    """Contract-valid FeatureVectors from the generated dataset (day 5 on), produced to tx.features."""

    def __init__(self, settings: Settings, dataset: Dataset) -> None:
        self.settings = settings
        self.dataset = dataset
        self.frame = read_feature_frame(dataset.features, start=dataset.start + timedelta(days=5))
        self.position = 0

    def send(self, count: int) -> set[str]:
        start, stop = self.position, self.position + count
        self.position = stop
        ids = self.frame.transaction_ids[start:stop]
        vectors = feature_vectors(self.dataset, ids, self.frame.matrix[start:stop], self.frame.feature_names)
        producer = DeliveringProducer(self.settings, service="test")
        for vector in vectors:
            producer.produce(
                self.settings.topic(TX_FEATURES), vector.model_dump_json().encode(), key=vector.transaction.account_id
            )
        producer.flush_or_raise()
        return set(ids)


@contextmanager
def detect_ml_thread(
    *, settings: Settings, source: ModelSource, names: Sequence[str], group: str
) -> Iterator[tuple[threading.Thread, metrics.Health]]:
    """`run_ml_service` on a thread, flagging every judged row (anomalies == messages scored)."""
    stop = StopFlag()
    health = metrics.Health()
    thread = threading.Thread(
        target=run_ml_service,
        kwargs={
            "settings": settings,
            "group_id": group,
            "stop": stop,
            "source": source,
            "names": list(names),
            "health": health,
            "thresholds": Thresholds(warning=0.0, critical=80.0),
        },
        daemon=True,
    )
    thread.start()
    try:
        yield thread, health
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive(), "detect-ml did not stop within 15 s"


def served_version(name: str) -> float | None:
    return REGISTRY.get_sample_value("vigil_ml_model_version", {"detector": name})


def ground_truth(dataset: Dataset) -> list[KnownLabel]:
    with dataset.labels.open(encoding="utf-8") as handle:
        return [KnownLabel(r["tenant_id"], r["transaction_id"], "confirmed_fraud") for r in csv.DictReader(handle)]


def train_and_register(
    *, registry: ModelRegistry, experiment: str, dataset: Dataset, name: str, kind: ModelKind, days: float
) -> str:
    """Train `kind` on the dataset's first `days` and register it (alias challenger); returns the version."""
    cutoff = dataset.start + timedelta(days=days)
    frame = read_feature_frame(dataset.features, end=cutoff)
    options = TrainingOptions(label_delay=timedelta(hours=12))
    outcome = train_model(frame=frame, labels=ground_truth(dataset), kind=kind, cutoff=cutoff, options=options)
    return registry.register(name=name, outcome=outcome, experiment=experiment).version
