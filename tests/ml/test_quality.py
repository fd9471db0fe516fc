"""Ranking metrics against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.ml import daily_precision_at_k, fpr_at_recall, operating_point, precision_at_k, ranking_quality

labelled_scores = st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=1, max_size=60)


def _brute_fpr(target: list[bool], scores: list[float], recall: float) -> float:
    positives = sum(target)
    negatives = len(target) - positives
    best = math.nan
    for threshold in sorted(set(scores), reverse=True):  # highest threshold first
        flagged = [s >= threshold for s in scores]
        caught = sum(f and t for f, t in zip(flagged, target, strict=True))
        if caught >= math.ceil(recall * positives):
            best = sum(f and not t for f, t in zip(flagged, target, strict=True)) / negatives
            break
    return best


@given(labelled_scores, st.sampled_from([0.5, 0.8, 1.0]))
@settings(max_examples=200, deadline=None)
def test_fpr_at_recall_matches_brute_force(rows: list[tuple[bool, int]], recall: float) -> None:
    target = [t for t, _ in rows]
    scores = [float(s) for _, s in rows]
    expected = _brute_fpr(target, scores, recall) if 0 < sum(target) < len(target) else math.nan
    got = fpr_at_recall(np.array(target), np.array(scores), recall)
    assert (math.isnan(expected) and math.isnan(got)) or got == expected


def test_precision_at_k_and_unjudged_rows_rank_last() -> None:
    target = np.array([True, False, True, False, True])
    scores = np.array([0.9, np.nan, 0.8, 0.95, np.nan])
    assert precision_at_k(target, scores, 2) == 0.5  # 0.95 (no), 0.9 (yes)
    assert precision_at_k(target, scores, 3) == 2 / 3
    assert math.isnan(precision_at_k(target[:0], scores[:0], 3))


def test_ranking_quality_perfect_and_single_class() -> None:
    target = np.array([False] * 8 + [True] * 2)
    perfect = ranking_quality(target, np.arange(10, dtype=float), k=2, recall=0.8)
    assert perfect.roc_auc == 1.0 and perfect.average_precision == 1.0
    assert perfect.precision_at_k == 1.0 and perfect.fpr_at_recall == 0.0
    assert perfect.as_metrics()["precision_at_2"] == 1.0
    none = ranking_quality(np.zeros(5, dtype=bool), np.arange(5, dtype=float))
    assert math.isnan(none.roc_auc) and math.isnan(none.average_precision)
    assert "roc_auc" not in none.as_metrics()


def test_operating_point_and_daily_precision() -> None:
    target = np.array([True, True, False, False, False])
    point = operating_point(target, np.array([True, False, True, False, False]))
    assert (point.flagged, point.recall, point.false_positive_rate, point.precision) == (2, 0.5, 1 / 3, 0.5)
    daily = daily_precision_at_k(target, np.array([5.0, 1.0, 4.0, 3.0, 2.0]), ["d1", "d1", "d2", "d2", "d2"], 1)
    assert daily == {"d1": 1.0, "d2": 0.0}
