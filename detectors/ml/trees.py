"""Fitted tree ensembles evaluated straight from their node arrays, in one compiled pass over every tree.

scikit-learn's `IsolationForest.score_samples` and `HistGradientBoostingClassifier.predict_proba`
validate the input and dispatch once per tree (joblib for the forest, one Cython call per
boosting iteration): ~10 ms and ~1.3 ms for a single row, which is what a synchronous
`POST /v1/score` pays. The walk itself is microseconds. `CompiledTrees` copies every tree's
nodes into flat arrays once, and one numba kernel walks all trees for all rows, with exactly
scikit-learn's rules, so the scores are the same floats:

- a node sends NaN where the fitted tree says missing values go (`missing_go_to_left`),
  any other value left when `value <= threshold`;
- per row, leaf values are added in tree order onto the same starting value (the forest's 0,
  the booster's baseline), so the sum is the one scikit-learn computes;
- isolation trees compare the row cast to float32, as `score_samples` validates it; the leaf
  value is the forest's `decision path length + average path length - 1`, and the score is
  `2 ** -(depth / (trees x c(max_samples)))`;
- boosted trees compare float64 values with the raw (unbinned) thresholds; the probability is
  `expit(raw)`, as the binomial loss's link.

Ensembles these rules do not cover (categorical splits, multi-class boosting, a preprocessor)
get `None` from the builders, and their scorer keeps calling scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.special import expit

from core.detection import FloatArray

IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]


@njit(cache=True, nogil=True)
def _leaf_sums(
    matrix: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    start: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled; equality with scikit-learn is tested through the callers
    # Tree by tree over all rows (one tree's nodes stay in cache); each row's sum still
    # grows in tree order, so the floats are the ones scikit-learn adds.
    for row in range(matrix.shape[0]):
        out[row] = start
    for tree in range(roots.shape[0]):
        root = roots[tree]
        for row in range(matrix.shape[0]):
            node = root
            while left[node] >= 0:
                x = matrix[row, feature[node]]
                if np.isnan(x):
                    node = left[node] if missing_left[node] else right[node]
                elif x <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            out[row] += value[node]


@dataclass(frozen=True, slots=True)
class CompiledTrees:
    """Every tree's nodes in flat arrays: children as global node indices (-1 at leaves), leaf values."""

    feature: IntArray
    threshold: FloatArray
    missing_left: ByteArray
    left: IntArray
    right: IntArray
    value: FloatArray
    roots: IntArray
    start: float
    width: int  # columns the rows must have

    @classmethod
    def single_leaf(cls, *, value: float = 0.0, start: float = 0.0) -> CompiledTrees:
        """One tree that is one leaf over one column: every row sums to `start + value`."""
        leaf = np.full(1, -1, dtype=np.int64)
        return cls(
            feature=np.zeros(1, dtype=np.int64),
            threshold=np.zeros(1),
            missing_left=np.zeros(1, dtype=np.uint8),
            left=leaf,
            right=leaf,
            value=np.array([value]),
            roots=np.zeros(1, dtype=np.int64),
            start=start,
            width=1,
        )

    @property
    def nodes(self) -> int:
        return len(self.feature)

    def sums(self, matrix: FloatArray) -> FloatArray:
        """Per row: `start` plus the value of the leaf each tree sends it to, added in tree order."""
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"expected rows of {self.width} features, got shape {rows.shape}")
        out = np.empty(len(rows), dtype=np.float64)
        _leaf_sums(
            rows,
            self.feature,
            self.threshold,
            self.missing_left,
            self.left,
            self.right,
            self.value,
            self.roots,
            self.start,
            out,
        )
        return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the walk now: the first compile holds the GIL for ~1 s."""
    single = CompiledTrees.single_leaf()
    single.sums(np.zeros((1, 1)))


def _join(
    trees: list[tuple[IntArray, FloatArray, ByteArray, IntArray, IntArray, FloatArray]], *, start: float, width: int
) -> CompiledTrees:
    """Concatenate per-tree arrays (local child indices, negative at leaves) into one `CompiledTrees`."""
    offsets = np.cumsum([0] + [len(t[0]) for t in trees[:-1]]).astype(np.int64)
    lefts, rights = [], []
    for (_, _, _, left, right, _), offset in zip(trees, offsets, strict=True):
        lefts.append(np.where(left >= 0, left + offset, -1))
        rights.append(np.where(left >= 0, right + offset, -1))
    return CompiledTrees(
        feature=np.ascontiguousarray(np.concatenate([t[0] for t in trees]), dtype=np.int64),
        threshold=np.ascontiguousarray(np.concatenate([t[1] for t in trees]), dtype=np.float64),
        missing_left=np.ascontiguousarray(np.concatenate([t[2] for t in trees]), dtype=np.uint8),
        left=np.ascontiguousarray(np.concatenate(lefts), dtype=np.int64),
        right=np.ascontiguousarray(np.concatenate(rights), dtype=np.int64),
        value=np.ascontiguousarray(np.concatenate([t[5] for t in trees]), dtype=np.float64),
        roots=offsets,
        start=float(start),
        width=width,
    )


@dataclass(frozen=True, slots=True)
class CompiledIsolationForest:
    """A fitted `sklearn.ensemble.IsolationForest`; `anomaly_score` equals `-score_samples` exactly."""

    trees: CompiledTrees
    denominator: float  # trees x average path length of max_samples

    def anomaly_score(self, matrix: FloatArray) -> FloatArray:
        """Higher = more anomalous (the original paper's score, in (0, 1])."""
        with np.errstate(over="ignore"):  # score_samples validates to float32 too: huge values become inf
            rows = np.asarray(matrix, dtype=np.float64).astype(np.float32).astype(np.float64)
        depths = self.trees.sums(rows)
        if self.denominator == 0:  # one training sample: scikit-learn scores every row 1
            return np.ones_like(depths)
        return np.asarray(2 ** (-(depths / self.denominator)), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class CompiledBinaryBoosting:
    """A fitted binary `HistGradientBoostingClassifier`; `positive_proba` equals `predict_proba[:, 1]`."""

    trees: CompiledTrees

    def positive_proba(self, matrix: FloatArray) -> FloatArray:
        return np.asarray(expit(self.trees.sums(matrix)), dtype=np.float64)


def compile_isolation_forest(estimator: Any) -> CompiledIsolationForest:
    """Node arrays of every isolation tree, leaf values = the forest's per-leaf path length."""
    from sklearn.ensemble._iforest import _average_path_length

    width = int(estimator.n_features_in_)
    subsample = estimator._max_features != width
    trees = []
    for tree, features, path, average in zip(
        estimator.estimators_,
        estimator.estimators_features_,
        estimator._decision_path_lengths,
        estimator._average_path_length_per_tree,
        strict=True,
    ):
        nodes = tree.tree_
        left = nodes.children_left.astype(np.int64)
        feature = np.where(left >= 0, nodes.feature, 0).astype(np.int64)
        if subsample:  # the tree was fitted on X[:, features]
            feature = np.asarray(features, dtype=np.int64)[feature]
        trees.append(
            (
                feature,
                nodes.threshold.astype(np.float64),
                nodes.missing_go_to_left.astype(np.uint8),
                left,
                nodes.children_right.astype(np.int64),
                # The same three-term float sum scikit-learn adds per tree.
                np.asarray(path + average - 1.0, dtype=np.float64),
            )
        )
    denominator = float(len(estimator.estimators_) * _average_path_length([estimator._max_samples])[0])
    return CompiledIsolationForest(trees=_join(trees, start=0.0, width=width), denominator=denominator)


def compile_binary_boosting(estimator: Any) -> CompiledBinaryBoosting | None:
    """Node arrays of every boosting iteration's tree; None if the model needs scikit-learn's own path."""
    if (
        estimator.n_trees_per_iteration_ != 1
        or getattr(estimator, "_preprocessor", None) is not None
        or getattr(estimator, "is_categorical_", None) is not None
        or len(estimator.classes_) != 2
    ):
        return None
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            return None
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(
            (
                np.where(leaf, 0, nodes["feature_idx"].astype(np.int64)),
                nodes["num_threshold"].astype(np.float64),
                nodes["missing_go_to_left"].astype(np.uint8),
                # Children are unsigned in scikit-learn's nodes: widen before marking leaves -1.
                np.where(leaf, -1, nodes["left"].astype(np.int64)),
                np.where(leaf, -1, nodes["right"].astype(np.int64)),
                nodes["value"].astype(np.float64),
            )
        )
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
    return CompiledBinaryBoosting(trees=_join(trees, start=float(baseline[0]), width=int(estimator.n_features_in_)))
