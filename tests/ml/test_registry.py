"""The MLflow registry on the shared server: register, idempotent re-runs, aliases, rollback, loading."""

from __future__ import annotations

import csv
from datetime import timedelta

import numpy as np
import pytest

from core.settings import Settings
from detectors.ml import (
    KnownLabel,
    ModelKind,
    ModelRegistry,
    RegistryError,
    TrainingOptions,
    TrainingOutcome,
    read_feature_frame,
    train_model,
)
from tests.ml.factories import Dataset

pytestmark = pytest.mark.integration


def _outcome(dataset: Dataset, kind: ModelKind, days: int = 3) -> TrainingOutcome:
    cutoff = dataset.start + timedelta(days=days)
    frame = read_feature_frame(dataset.features, end=cutoff)
    with dataset.labels.open(encoding="utf-8") as handle:
        labels = [KnownLabel(r["tenant_id"], r["transaction_id"], "confirmed_fraud") for r in csv.DictReader(handle)]
    options = TrainingOptions(label_delay=timedelta(hours=12))
    return train_model(frame=frame, labels=labels, kind=kind, cutoff=cutoff, options=options)


def test_register_promote_rollback_and_load(stack: Settings, dataset: Dataset, model_name: str) -> None:
    from api.registry.mlflow_registry import MlflowModelRegistry

    registry = ModelRegistry(stack.mlflow_tracking_uri)
    experiment = f"{model_name}-runs"
    ecod = _outcome(dataset, ModelKind.ECOD)
    first = registry.register(name=model_name, outcome=ecod, experiment=experiment)
    assert (first.version, first.created) == ("1", True)
    assert registry.resolve(model_name, "challenger") == "1"
    assert registry.kind_of(model_name) is ModelKind.ECOD

    repeat = registry.register(name=model_name, outcome=ecod, experiment=experiment)
    assert (repeat.version, repeat.created, repeat.run_id) == ("1", False, first.run_id)  # a re-run adds nothing

    forest = _outcome(dataset, ModelKind.ISOLATION_FOREST)
    second = registry.register(name=model_name, outcome=forest, experiment=experiment)
    assert (second.version, registry.resolve(model_name, "challenger")) == ("2", "2")

    with pytest.raises(RegistryError, match="no version aliased 'champion'"):
        registry.resolve(model_name, "champion")
    promoted = registry.promote(name=model_name)  # the challenger by default
    assert (promoted.previous_version, promoted.version) == (None, "2")
    assert registry.promote(name=model_name).previous_version == "2"  # already serving it: a no-op
    assert registry.promote(name=model_name, version="1").previous_version == "2"
    back = registry.rollback(name=model_name)
    assert (back.previous_version, back.version) == ("1", "2")
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback(name=model_name)

    # The API's registry adapter reads and writes the same alias history.
    api = MlflowModelRegistry(stack.mlflow_tracking_uri)
    api.promote(name=model_name, version="1", alias="champion")
    assert registry.rollback(name=model_name).version == "2"

    loaded = registry.load(model_name, "2")
    assert loaded.kind is ModelKind.ISOLATION_FOREST and loaded.feature_names == forest.model.feature_names
    np.testing.assert_array_equal(loaded.raw_scores(forest.model.probe), forest.model.probe_scores)

    (summary,) = registry.list_models([model_name])
    assert summary.aliases == {"challenger": "2", "champion": "2"}
    assert [(v.version, v.kind) for v in summary.versions] == [("2", "isolation_forest"), ("1", "ecod")]
    assert summary.versions[0].aliases == ("challenger", "champion")
    if forest.quality is not None:
        assert summary.versions[0].metrics["average_precision"] == pytest.approx(forest.quality.average_precision)
    assert summary.versions[0].metrics["count_train_rows"] == forest.counts["train_rows"]


def test_unknown_models_and_versions_are_clear_errors(stack: Settings, model_name: str) -> None:
    registry = ModelRegistry(stack.mlflow_tracking_uri)
    with pytest.raises(RegistryError, match="no registered model"):
        registry.promote(name=model_name, version="1")
    assert registry.kind_of(model_name) is None
