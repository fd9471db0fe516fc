"""Scorers: frozen ECOD/COPOD reproduce PyOD, and no score depends on the rest of the batch."""

from __future__ import annotations

import numpy as np
import pytest
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD

from detectors.ml import ModelKind, TrainingDataError
from detectors.ml.scorers import EcdfScorer, make_scorer


def _data(seed: int = 1, rows: int = 800, width: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.lognormal(0.0, 1.0, size=(rows, width))
    matrix[:, 1] = -matrix[:, 1]  # one left-skewed column exercises the skewness switch
    matrix[:, 2] = np.round(matrix[:, 2])  # ties
    return matrix


@pytest.mark.parametrize(("method", "reference"), [("ecod", ECOD), ("copod", COPOD)])
def test_frozen_ecdf_scorer_reproduces_pyod_training_scores(method: str, reference: type) -> None:
    matrix = _data()
    pyod = reference().fit(matrix)
    ours = EcdfScorer(method=method, reference_rows=len(matrix))
    ours.fit(matrix, None, seed=0)
    np.testing.assert_allclose(ours.raw(matrix), pyod.decision_scores_, rtol=1e-9)


@pytest.mark.parametrize("kind", list(ModelKind))
def test_scores_do_not_depend_on_the_batch(kind: ModelKind) -> None:
    matrix = _data(rows=600)
    target = np.zeros(len(matrix), dtype=bool)
    target[matrix[:, 0] > np.quantile(matrix[:, 0], 0.95)] = True
    scorer = make_scorer(kind)
    scorer.fit(matrix, target if kind.supervised else None, seed=3)
    together = scorer.raw(matrix[:50])
    alone = np.array([scorer.raw(matrix[i : i + 1])[0] for i in range(50)])
    np.testing.assert_allclose(together, alone, rtol=1e-9)
    assert np.isfinite(together).all()


@pytest.mark.parametrize("kind", list(ModelKind))
def test_seeded_fits_repeat(kind: ModelKind) -> None:
    matrix = _data(rows=400)
    target = matrix[:, 0] > np.quantile(matrix[:, 0], 0.9)
    scores = []
    for _ in range(2):
        scorer = make_scorer(kind)
        scorer.fit(matrix, target if kind.supervised else None, seed=5)
        scores.append(scorer.raw(matrix))
    np.testing.assert_array_equal(scores[0], scores[1])


def test_supervised_needs_both_classes() -> None:
    scorer = make_scorer(ModelKind.SUPERVISED)
    with pytest.raises(TrainingDataError):
        scorer.fit(_data(rows=100), np.zeros(100, dtype=bool), seed=0)
