"""Training on generated traffic: quality on later days, and what the fingerprint recognises."""

from __future__ import annotations

import csv
from datetime import timedelta

import numpy as np
import pytest

from detectors.ml import (
    KnownLabel,
    ModelKind,
    TrainingDataError,
    TrainingOptions,
    ranking_quality,
    read_feature_frame,
    resolve_targets,
    train_model,
)
from tests.ml.factories import Dataset


def _truth(dataset: Dataset) -> list[KnownLabel]:
    with dataset.labels.open(encoding="utf-8") as handle:
        return [KnownLabel(r["tenant_id"], r["transaction_id"], "confirmed_fraud") for r in csv.DictReader(handle)]


def test_supervised_model_beats_unsupervised_ones_on_later_days(dataset: Dataset) -> None:
    frame = read_feature_frame(dataset.features)
    labels = _truth(dataset)
    cutoff = dataset.start + timedelta(days=6)
    later = frame.select(frame.event_time >= cutoff.timestamp())
    target = resolve_targets(later, labels, cutoff=cutoff + timedelta(days=30), delay=timedelta(0)).fraud
    options = TrainingOptions(label_delay=timedelta(days=1))
    quality = {}
    for kind in (ModelKind.SUPERVISED, ModelKind.ISOLATION_FOREST, ModelKind.ECOD):
        outcome = train_model(frame=frame, labels=labels, kind=kind, cutoff=cutoff, options=options)
        scores = outcome.model.raw_scores(later.columns(outcome.model.feature_names))
        quality[kind] = ranking_quality(target, scores)
        assert outcome.counts["rows"] == int((frame.event_time < cutoff.timestamp()).sum())
    base_rate = target.mean()
    assert quality[ModelKind.ISOLATION_FOREST].average_precision > 5 * base_rate
    assert quality[ModelKind.SUPERVISED].average_precision > max(
        quality[ModelKind.ISOLATION_FOREST].average_precision, quality[ModelKind.ECOD].average_precision
    )


def test_supervised_training_respects_the_label_delay(dataset: Dataset) -> None:
    frame = read_feature_frame(dataset.features)
    cutoff = dataset.start + timedelta(days=4)
    outcome = train_model(
        frame=frame,
        labels=_truth(dataset),
        kind=ModelKind.SUPERVISED,
        cutoff=cutoff,
        options=TrainingOptions(label_delay=timedelta(days=2)),
    )
    mature = int((frame.event_time < (cutoff - timedelta(days=2)).timestamp()).sum())
    assert outcome.counts["label_mature_rows"] == mature
    assert outcome.counts["train_rows"] + outcome.counts["holdout_rows"] == mature
    assert outcome.quality is not None and outcome.quality.rows == outcome.counts["holdout_rows"]
    assert outcome.params["label_delay_days"] == "2"


def test_fingerprint_recognises_identical_training_only(dataset: Dataset) -> None:
    frame = read_feature_frame(dataset.features, end=dataset.start + timedelta(days=3))
    labels = _truth(dataset)
    cutoff = dataset.start + timedelta(days=3)
    first = train_model(frame=frame, labels=labels, kind=ModelKind.ECOD, cutoff=cutoff)
    again = train_model(frame=frame, labels=labels, kind=ModelKind.ECOD, cutoff=cutoff)
    other_seed = train_model(
        frame=frame, labels=labels, kind=ModelKind.ECOD, cutoff=cutoff, options=TrainingOptions(seed=1)
    )
    fewer_labels = train_model(frame=frame, labels=labels[50:], kind=ModelKind.ECOD, cutoff=cutoff)  # the earliest
    assert first.fingerprint == again.fingerprint
    assert len({first.fingerprint, other_seed.fingerprint, fewer_labels.fingerprint}) == 3
    np.testing.assert_array_equal(first.model.probe_scores, again.model.probe_scores)


def test_no_rows_or_no_mature_rows_is_a_clear_error(dataset: Dataset) -> None:
    frame = read_feature_frame(dataset.features)
    with pytest.raises(TrainingDataError, match="no transactions before the cutoff"):
        train_model(frame=frame, labels=[], kind=ModelKind.ECOD, cutoff=dataset.start)
    with pytest.raises(TrainingDataError, match="older than the label delay"):
        train_model(
            frame=frame,
            labels=[],
            kind=ModelKind.SUPERVISED,
            cutoff=dataset.start + timedelta(days=1),
            options=TrainingOptions(label_delay=timedelta(days=3)),
        )
