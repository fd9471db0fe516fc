"""Small fitted models and generated datasets for ML tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

from core.contracts import FeatureVector, Transaction
from core.detection import Detector, FloatArray
from detectors.ml import FittedModel, MLDetector, ModelKind, UnavailableModel, fit_model, matrix_from_vectors
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
