"""Compiled tree ensembles give scikit-learn's own scores (score_samples, predict_proba) on any input."""

from __future__ import annotations

import csv
import pickle
from datetime import timedelta

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

from detectors.ml import KnownLabel, ModelKind, TrainingOptions, read_feature_frame, train_model
from detectors.ml.scorers import IsolationForestScorer, SupervisedScorer
from detectors.ml.trees import compile_binary_boosting, compile_isolation_forest
from tests.ml.factories import Dataset, fitted_model

TOLERANCE = 1e-12  # in practice the floats are identical: same comparisons, same additions in the same order


def _random_rows(width: int, *, seed: int, rows: int = 3000, missing: float = 0.15) -> np.ndarray:
    """Values over several orders of magnitude, NaNs scattered, all-missing rows and zeros."""
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.01, 1.0, 100.0], size=(rows, width))
    matrix: np.ndarray = rng.normal(0.0, 3.0, size=(rows, width)) * scale
    matrix[rng.random(matrix.shape) < missing] = np.nan
    matrix[:5] = np.nan  # all missing
    matrix[5:10] = 0.0
    return matrix


def _on_thresholds(thresholds: np.ndarray, width: int, *, seed: int) -> np.ndarray:
    """Rows sitting exactly on split thresholds (and one float32 ulp beside them): `<=` must match."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(400, width))
    pick = rng.integers(0, len(thresholds), size=rows.shape)
    on = np.isfinite(thresholds[pick])
    rows[on] = thresholds[pick][on]
    rows[::3] = np.nextafter(rows[::3], np.inf)
    return rows


def _assert_same(expected: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == expected.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0.0, atol=TOLERANCE)


def test_isolation_forest_of_fit_model_equals_score_samples_on_random_rows_with_nans() -> None:
    model = fitted_model(ModelKind.ISOLATION_FOREST)
    assert isinstance(model.scorer, IsolationForestScorer)
    estimator = model.scorer.estimator_
    compiled = compile_isolation_forest(estimator)
    for seed in range(3):
        rows = _random_rows(len(model.feature_names), seed=seed)
        _assert_same(-estimator.score_samples(rows), compiled.anomaly_score(rows))
    edge = _on_thresholds(compiled.trees.threshold, len(model.feature_names), seed=4)
    _assert_same(-estimator.score_samples(edge), compiled.anomaly_score(edge))
    # What serving calls: the scorer's raw score through the model's preprocessing.
    rows = _random_rows(len(model.feature_names), seed=5)
    _assert_same(-estimator.score_samples(model.prepare(rows)), model.raw_scores(rows))


def test_supervised_model_of_fit_model_equals_predict_proba_on_random_rows_with_nans() -> None:
    model = fitted_model(ModelKind.SUPERVISED)
    assert isinstance(model.scorer, SupervisedScorer)
    estimator = model.scorer.estimator_
    compiled = compile_binary_boosting(estimator)
    assert compiled is not None
    for seed in range(3):
        rows = _random_rows(len(model.feature_names), seed=seed)
        _assert_same(estimator.predict_proba(rows)[:, 1], compiled.positive_proba(rows))
    edge = _on_thresholds(compiled.trees.threshold, len(model.feature_names), seed=4)
    _assert_same(estimator.predict_proba(edge)[:, 1], compiled.positive_proba(edge))
    rows = _random_rows(len(model.feature_names), seed=5)
    _assert_same(estimator.predict_proba(model.prepare(rows))[:, 1], model.raw_scores(rows))


def test_models_trained_on_generated_traffic_score_like_scikit_learn(dataset: Dataset) -> None:
    """`train_model` on the generated dataset (the path `vigil train` takes), scored on later days."""
    frame = read_feature_frame(dataset.features)
    with dataset.labels.open(encoding="utf-8") as handle:
        labels = [KnownLabel(r["tenant_id"], r["transaction_id"], "confirmed_fraud") for r in csv.DictReader(handle)]
    cutoff = dataset.start + timedelta(days=6)
    options = TrainingOptions(label_delay=timedelta(days=1))
    later = frame.select(frame.event_time >= cutoff.timestamp())
    for kind in (ModelKind.ISOLATION_FOREST, ModelKind.SUPERVISED):
        model = train_model(frame=frame, labels=labels, kind=kind, cutoff=cutoff, options=options).model
        matrix = later.columns(model.feature_names)
        assert np.isnan(matrix).any()  # missing features (no device, first payment) are part of the test
        prepared = model.prepare(matrix)
        assert isinstance(model.scorer, IsolationForestScorer | SupervisedScorer)
        estimator = model.scorer.estimator_
        if kind is ModelKind.SUPERVISED:
            expected = estimator.predict_proba(prepared)[:, 1]
            assert compile_binary_boosting(estimator) is not None  # the compiled path is the one taken
        else:
            expected = -estimator.score_samples(prepared)
        _assert_same(expected, model.raw_scores(matrix))
        _assert_same(expected[:1], model.raw_scores(matrix[:1]))  # one row, as POST /v1/score asks


def test_isolation_forest_with_feature_subsampling_and_missing_values_in_training() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(size=(2000, 6))
    train[rng.random(train.shape) < 0.1] = np.nan  # trees learn where missing values go
    estimator = IsolationForest(n_estimators=40, max_features=0.5, random_state=0).fit(train)
    compiled = compile_isolation_forest(estimator)
    rows = _random_rows(6, seed=7)
    _assert_same(-estimator.score_samples(rows), compiled.anomaly_score(rows))
    huge = np.full((1, 6), 1e300)  # beyond float32: score_samples sees inf, and so must the walk
    with np.errstate(over="ignore"):  # scikit-learn's own float32 cast overflows on purpose here
        expected = -estimator.score_samples(huge)
    _assert_same(expected, compiled.anomaly_score(huge))


def test_boosting_with_missing_values_in_training_follows_the_learned_side() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(4000, 5))
    target = (train[:, 0] + rng.normal(scale=0.5, size=4000)) > 1.0
    train[rng.random(train.shape) < 0.2] = np.nan
    train[target & (rng.random(4000) < 0.5), 1] = np.nan  # missing carries signal
    estimator = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(train, target)
    compiled = compile_binary_boosting(estimator)
    assert compiled is not None
    rows = _random_rows(5, seed=8)
    _assert_same(estimator.predict_proba(rows)[:, 1], compiled.positive_proba(rows))


def test_boosting_the_walk_does_not_cover_falls_back_to_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    train = np.column_stack([rng.integers(0, 4, size=600), rng.normal(size=600)]).astype(np.float64)
    target = train[:, 0] == 2
    categorical = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]).fit(train, target)
    assert compile_binary_boosting(categorical) is None
    scorer = SupervisedScorer()
    scorer.estimator_ = categorical
    np.testing.assert_array_equal(scorer.raw(train), categorical.predict_proba(train)[:, 1])
    assert scorer.native_threads  # scikit-learn's OpenMP path: callers limit its threads


def test_compiled_arrays_are_not_pickled_and_old_pickles_compile_on_first_use() -> None:
    model = fitted_model(ModelKind.ISOLATION_FOREST)
    rows = _random_rows(len(model.feature_names), seed=9, rows=50)
    expected = model.raw_scores(rows)  # compiles
    assert getattr(model.scorer, "compiled_", None) is not None
    state = pickle.loads(pickle.dumps(model.scorer)).__dict__
    assert "compiled_" not in state
    old = IsolationForestScorer.__new__(IsolationForestScorer)
    old.__dict__.update(state)  # as a model registered before the compiled path existed unpickles
    np.testing.assert_array_equal(old.raw(model.prepare(rows)), expected)


def test_wrong_width_is_refused() -> None:
    scorer = fitted_model(ModelKind.ISOLATION_FOREST).scorer
    assert isinstance(scorer, IsolationForestScorer)
    compiled = compile_isolation_forest(scorer.estimator_)
    with pytest.raises(ValueError, match="features"):
        compiled.anomaly_score(np.zeros((1, compiled.trees.width + 1)))


def test_warm_up_compiles_the_walk_on_a_single_leaf() -> None:
    from detectors.ml.trees import CompiledTrees, warm_up

    warm_up()
    single = CompiledTrees.single_leaf(value=0.25, start=1.5)
    np.testing.assert_array_equal(single.sums(np.array([[np.nan], [3.0]])), [1.75, 1.75])
