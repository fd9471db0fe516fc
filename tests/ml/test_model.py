"""Fitted models: calibration onto Vigil's 0-100 bands, explanations, the load-time probe, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from detectors.ml import Calibration, FitOptions, ModelKind, ModelUnavailableError, fit_model
from tests.ml.factories import fitted_model

NAMES = ("a", "b", "c", "d")


def _habits(seed: int = 0, rows: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.lognormal(3.0, 0.4, size=(rows, len(NAMES)))


def test_calibration_bands_are_monotone_and_anchored() -> None:
    calibration = Calibration(typical=1.0, warning=2.0, critical=4.0)
    raw = np.array([0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0, 1e6, np.nan])
    out = calibration.normalise(raw)
    np.testing.assert_allclose(out[:6], [0.0, 0.0, 25.0, 50.0, 65.0, 80.0])
    assert 80 < out[6] < out[7] <= 100
    assert np.isnan(out[8])
    assert np.all(np.diff(out[:8]) >= 0)


@pytest.mark.parametrize("kind", [k for k in ModelKind if not k.supervised])
def test_unsupervised_warning_band_holds_the_contamination_share(kind: ModelKind) -> None:
    matrix = _habits()
    model = fit_model(
        kind=kind, matrix=matrix, feature_names=NAMES, target=None, options=FitOptions(contamination=0.02)
    )
    flagged = model.normalise(model.raw_scores(matrix)) >= 50
    assert 0.01 <= flagged.mean() <= 0.03


@pytest.mark.parametrize("kind", [ModelKind.ISOLATION_FOREST, ModelKind.ECOD, ModelKind.HBOS])
def test_explanations_name_the_feature_that_is_off(kind: ModelKind) -> None:
    matrix = _habits(seed=1)
    model = fit_model(kind=kind, matrix=matrix, feature_names=NAMES, target=None)
    row = np.median(matrix, axis=0)
    row[2] *= 60  # only feature "c" is far from its habit
    contributions = model.contributions(row)
    assert contributions[0].feature == "c"
    assert contributions[0].value == pytest.approx(row[2])
    assert contributions[0].baseline == pytest.approx(np.median(matrix[:, 2]))
    assert 0 < sum(c.share for c in contributions) <= 1 + 1e-9
    typical = np.median(matrix, axis=0).reshape(1, -1)
    assert model.raw_scores(row.reshape(1, -1))[0] > model.raw_scores(typical)[0]


def test_supervised_model_learns_the_labelled_pattern_and_calibrates_on_validation() -> None:
    rng = np.random.default_rng(2)
    matrix = _habits(seed=2, rows=4000)
    target = rng.random(len(matrix)) < 0.03
    matrix[target, 1] *= 5  # fraud shows in feature "b" only
    matrix[rng.random(len(matrix)) < 0.1, 3] = np.nan  # missing values are fine for this kind
    train, valid = slice(0, 3000), slice(3000, None)
    model = fit_model(
        kind=ModelKind.SUPERVISED,
        matrix=matrix[train],
        feature_names=NAMES,
        target=target[train],
        validation=(matrix[valid], target[valid]),
        options=FitOptions(operating_recall=0.8),
    )
    flagged = model.normalise(model.raw_scores(matrix[valid])) >= 50
    recall = (flagged & target[valid]).sum() / target[valid].sum()
    assert recall >= 0.8  # the warning threshold sits at the operating recall of held-out data
    assert int(np.argmax(model.importance)) == 1
    fraud_row = matrix[valid][target[valid]][0]
    assert model.contributions(fraud_row)[0].feature == "b"


def test_probe_check_catches_a_model_that_no_longer_scores_the_same() -> None:
    model = fitted_model(ModelKind.ISOLATION_FOREST)
    model.check()  # a faithful model passes
    mixed_up = pickle.loads(pickle.dumps(model))
    mixed_up.scorer = fitted_model(ModelKind.ECOD).scorer  # e.g. an artifact from another run
    with pytest.raises(ModelUnavailableError, match="reproduce"):
        mixed_up.check()
    broken = pickle.loads(pickle.dumps(model))
    broken.feature_names = broken.feature_names[:-1]
    broken.scorer = fitted_model(ModelKind.ECOD).scorer
    broken.probe = broken.probe[:, :2]  # the scorer cannot even run on it
    with pytest.raises(ModelUnavailableError, match="cannot score"):
        broken.check()


def test_pickled_model_scores_identically() -> None:
    model = fitted_model(ModelKind.ECOD)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.raw_scores(model.probe), model.raw_scores(model.probe))
