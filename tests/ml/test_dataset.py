"""The label join: label delay, no future labels, newest verdict wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from detectors.ml import FeatureFrame, KnownLabel, resolve_targets

CUTOFF = datetime(2026, 10, 20, tzinfo=UTC)
DAY = 86_400.0


def _frame() -> FeatureFrame:
    times = np.array([CUTOFF.timestamp() - d * DAY for d in (20, 10, 8, 6, 1)])
    return FeatureFrame(
        transaction_ids=["t20", "t10", "t8", "t6", "t1"],
        tenant_ids=["acme"] * 5,
        event_time=times,
        feature_names=("x",),
        matrix=np.zeros((5, 1)),
    )


def test_only_label_mature_transactions_are_eligible() -> None:
    targets = resolve_targets(_frame(), [], cutoff=CUTOFF, delay=timedelta(days=7))
    assert targets.eligible.tolist() == [True, True, True, False, False]


def test_labels_recorded_after_the_cutoff_are_not_used() -> None:
    labels = [
        KnownLabel("acme", "t20", "confirmed_fraud", CUTOFF - timedelta(days=1)),
        KnownLabel("acme", "t10", "confirmed_fraud", CUTOFF + timedelta(seconds=1)),  # future knowledge
    ]
    targets = resolve_targets(_frame(), labels, cutoff=CUTOFF, delay=timedelta(days=7))
    assert targets.fraud.tolist() == [True, False, False, False, False]
    assert targets.labels_ignored_late == 1


def test_newest_label_wins_and_an_analyst_beats_an_import_at_the_same_moment() -> None:
    at = CUTOFF - timedelta(days=2)
    labels = [
        KnownLabel("acme", "t20", "confirmed_fraud", at - timedelta(days=3), "import"),
        KnownLabel("acme", "t20", "false_positive", at, "analyst"),  # the analyst revised it
        KnownLabel("acme", "t10", "confirmed_fraud", at, "analyst"),
        KnownLabel("acme", "t10", "expected", at, "import"),
        KnownLabel("other", "t8", "confirmed_fraud", at),  # another tenant's transaction
    ]
    targets = resolve_targets(_frame(), labels, cutoff=CUTOFF, delay=timedelta(days=7))
    assert targets.fraud.tolist() == [False, True, False, False, False]
    assert targets.labelled.tolist() == [True, True, False, False, False]


def test_tenantless_ground_truth_matches_by_transaction_id() -> None:
    labels = [KnownLabel("", "t8", "confirmed_fraud"), KnownLabel("", "t1", "confirmed_fraud")]
    targets = resolve_targets(_frame(), labels, cutoff=CUTOFF, delay=timedelta(days=7))
    assert targets.fraud.tolist() == [False, False, True, False, True]
    assert (targets.fraud & targets.eligible).tolist() == [False, False, True, False, False]
