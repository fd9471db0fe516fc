"""A trained model as Vigil serves it: features in order, preprocessing, scorer, calibration, explanations.

`FittedModel` is what MLflow stores (inside a pyfunc wrapper) and what `MLDetector`
scores with. It carries everything serving needs to rebuild the exact training-time
matrix and to explain a score cheaply:

- preprocessing: signed log per feature, then (unsupervised kinds) the training median
  for missing values;
- calibration: raw scores map onto Vigil's 0-100 scale so that 50 is the model's
  warning threshold and 80 its critical one (statistical detectors use the same bands);
- explanations: each feature's share = global importance (score sensitivity to
  permuting it) x its standardised distance from the training median; ECOD/COPOD use
  their own per-dimension tail terms instead;
- a probe: a few training rows and the scores they got, so a loaded model proves it
  reproduces them before it is served (a broken artifact or library mismatch never goes live).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from core.detection import FloatArray
from detectors.ml.columns import signed_log
from detectors.ml.errors import ModelUnavailableError, TrainingDataError
from detectors.ml.scorers import BoolArray, EcdfScorer, ModelKind, Scorer, make_scorer

_IMPORTANCE_ROWS: Final = 1000
_CALIBRATION_ROWS: Final = 50_000
_PROBE_ROWS: Final = 32
_MIN_SCALE: Final = 1e-6

IndexArray = npt.NDArray[np.int64]


_CONTROLLER: list[Any] = []


@contextmanager
def native_threads(count: int) -> Iterator[None]:
    """Limit OpenMP/BLAS threads (scikit-learn's trees, numpy) for the block; cheap after the first call."""
    if not _CONTROLLER:
        import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the controller must see

        # threadpoolctl (also scikit-learn's own dependency) ships no type information.
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _CONTROLLER.append(ThreadpoolController())
    with _CONTROLLER[0].limit(limits=count):
        yield


@dataclass(frozen=True, slots=True)
class Calibration:
    """Raw scores at which the normalised score is 0 (typical), 50 (warning) and 80 (critical)."""

    typical: float
    warning: float
    critical: float

    def normalise(self, raw: FloatArray) -> FloatArray:
        warning = max(self.warning, self.typical + _MIN_SCALE)
        critical = max(self.critical, warning + _MIN_SCALE)
        # Every branch is computed for every row; the unused ones may overflow harmlessly.
        with np.errstate(invalid="ignore", over="ignore"):
            below = 50.0 * np.clip((raw - self.typical) / (warning - self.typical), 0.0, 1.0)
            between = 50.0 + 30.0 * (raw - warning) / (critical - warning)
            beyond = 80.0 + 20.0 * (1.0 - np.exp(-(raw - critical) / (critical - warning)))
            result = np.where(raw < warning, below, np.where(raw < critical, between, beyond))
        return np.asarray(result, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Contribution:
    """One feature's part in a score: its value and baseline in original units, and its share."""

    feature: str
    value: float | None
    baseline: float | None
    share: float


@dataclass
class FittedModel:
    """A trained model with its feature order, preprocessing, calibration and explanation data."""

    kind: ModelKind
    feature_names: tuple[str, ...]
    scorer: Scorer
    impute: FloatArray | None  # training medians in transformed space; None = scorer handles NaN
    centre: FloatArray  # transformed-space medians (explanations)
    scale: FloatArray  # transformed-space robust spread (explanations)
    baseline: FloatArray  # original-unit medians, shown to analysts
    importance: FloatArray  # sums to 1
    calibration: Calibration
    probe: FloatArray = field(repr=False)
    probe_scores: FloatArray = field(repr=False)
    trained_rows: int = 0
    trained_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def prepare(self, matrix: FloatArray) -> FloatArray:
        """Original-unit rows (model feature order) -> what the scorer was trained on."""
        transformed = signed_log(matrix)
        if self.impute is not None:
            transformed = np.where(np.isnan(transformed), self.impute, transformed)
        return transformed

    def raw_scores(self, matrix: FloatArray) -> FloatArray:
        if len(matrix) == 0:
            return np.empty(0, dtype=np.float64)
        prepared = self.prepare(matrix)
        if not getattr(self.scorer, "native_threads", True):  # compiled trees, numpy: no pool to limit (~25 µs)
            return self.scorer.raw(prepared)
        # One core per scoring call: replicas scale by partitions, and OpenMP threads fighting
        # for shared cores made gradient-boosting 10x slower in measurements (docs/ml.md).
        with native_threads(1):
            return self.scorer.raw(prepared)

    def normalise(self, raw: FloatArray) -> FloatArray:
        return self.calibration.normalise(raw)

    def check(self) -> None:
        """Raise `ModelUnavailableError` unless the model reproduces the scores recorded at training."""
        try:
            again = self.raw_scores(self.probe)
        except Exception as exc:  # any failure here means this artifact must not be served
            raise ModelUnavailableError(f"model cannot score its probe rows: {exc}") from exc
        if again.shape != self.probe_scores.shape or not np.allclose(again, self.probe_scores, rtol=1e-6, atol=1e-9):
            raise ModelUnavailableError("model does not reproduce the scores recorded at training")

    def contributions(self, row: FloatArray, top: int = 3) -> list[Contribution]:
        """The `top` features that explain this row's score most (original-unit row, model order)."""
        prepared = self.prepare(row.reshape(1, -1))
        if isinstance(self.scorer, EcdfScorer):
            weights = self.scorer.contributions(prepared)[0]
        else:
            distance = np.abs(prepared[0] - self.centre) / self.scale
            weights = self.importance * np.nan_to_num(distance, nan=0.0)
        weights = np.nan_to_num(weights, nan=0.0, posinf=0.0)
        total = float(weights.sum())
        if total <= 0.0:
            # Nothing stands out feature by feature: name what the model leans on most.
            weights, total = self.importance.copy(), 1.0
        order = np.argsort(-weights, kind="stable")[:top]
        return [
            Contribution(
                feature=self.feature_names[j],
                value=None if np.isnan(row[j]) else float(row[j]),
                baseline=None if np.isnan(self.baseline[j]) else float(self.baseline[j]),
                share=float(weights[j] / total),
            )
            for j in order
        ]


@dataclass(frozen=True, slots=True)
class FitOptions:
    """Knobs of `fit_model`; defaults come from settings in the composition root."""

    contamination: float = 0.005
    operating_recall: float = 0.8
    seed: int = 0
    threads: int = 1


def fit_model(
    *,
    kind: ModelKind,
    matrix: FloatArray,
    feature_names: tuple[str, ...],
    target: BoolArray | None,
    validation: tuple[FloatArray, BoolArray] | None = None,
    options: FitOptions = FitOptions(),
) -> FittedModel:
    """Fit `kind` on original-unit rows; calibrate (on `validation` when supervised) and measure importances."""
    with native_threads(options.threads):
        return _fit(kind, matrix, feature_names, target, validation, options)


def _fit(
    kind: ModelKind,
    matrix: FloatArray,
    feature_names: tuple[str, ...],
    target: BoolArray | None,
    validation: tuple[FloatArray, BoolArray] | None,
    options: FitOptions,
) -> FittedModel:
    if len(matrix) < 10:
        raise TrainingDataError(f"{len(matrix)} training rows: at least 10 are needed")
    if matrix.shape[1] != len(feature_names):
        raise TrainingDataError("matrix columns and feature names differ")
    rng = np.random.default_rng(options.seed)
    transformed = signed_log(matrix)
    # Columns that are always missing (e.g. no devices in a dataset) are expected: NaN stats, no warnings.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nan_to_num(np.nanmedian(transformed, axis=0), nan=0.0) if len(matrix) else np.zeros(0)
        q1, q3 = np.nanquantile(transformed, [0.25, 0.75], axis=0)
        spread = np.nanstd(transformed, axis=0)
        baseline = np.nanmedian(matrix, axis=0)
    scale = np.maximum(np.nan_to_num((q3 - q1) / 1.349, nan=0.0), np.nan_to_num(spread, nan=0.0))
    scale = np.maximum(scale, _MIN_SCALE)
    impute = None if kind.supervised else centre
    prepared = transformed if impute is None else np.where(np.isnan(transformed), impute, transformed)

    scorer = make_scorer(kind)
    scorer.fit(prepared, target, seed=options.seed)

    sample = _sample(len(prepared), _CALIBRATION_ROWS, rng)
    train_raw = scorer.raw(prepared[sample])
    calibration = _calibrate(kind, train_raw, scorer, impute, validation, options)
    importance = _permutation_importance(scorer, prepared[_sample(len(prepared), _IMPORTANCE_ROWS, rng)], rng)
    probe_rows = matrix[_sample(len(matrix), _PROBE_ROWS, rng)]
    model = FittedModel(
        kind=kind,
        feature_names=feature_names,
        scorer=scorer,
        impute=impute,
        centre=centre,
        scale=scale,
        baseline=baseline,
        importance=importance,
        calibration=calibration,
        probe=probe_rows,
        probe_scores=np.empty(0),
        trained_rows=len(matrix),
    )
    model.probe_scores = model.raw_scores(probe_rows)
    return model


def _sample(size: int, limit: int, rng: np.random.Generator) -> IndexArray:
    if size <= limit:
        return np.arange(size, dtype=np.int64)
    return np.sort(rng.choice(size, limit, replace=False)).astype(np.int64)


def _calibrate(
    kind: ModelKind,
    train_raw: FloatArray,
    scorer: Scorer,
    impute: FloatArray | None,
    validation: tuple[FloatArray, BoolArray] | None,
    options: FitOptions,
) -> Calibration:
    typical = float(np.median(train_raw))
    if kind.supervised and validation is not None and validation[1].any():
        matrix, target = validation
        prepared = signed_log(matrix)
        if impute is not None:
            prepared = np.where(np.isnan(prepared), impute, prepared)
        scores = scorer.raw(prepared)
        positives = np.sort(scores[target])[::-1]
        # Warning where the held-out recall reaches the operating target; critical at half of it.
        warning = float(positives[max(0, int(np.ceil(options.operating_recall * len(positives))) - 1)])
        critical = float(positives[max(0, int(np.ceil(0.5 * len(positives))) - 1)])
        return Calibration(typical=min(typical, warning), warning=warning, critical=max(critical, warning))
    # Unsupervised (or no held-out fraud): the top `contamination` of training rows is the warning band.
    warning = float(np.quantile(train_raw, 1.0 - options.contamination))
    critical = float(np.quantile(train_raw, 1.0 - options.contamination / 10.0))
    return Calibration(typical=typical, warning=warning, critical=max(critical, warning))


def _permutation_importance(scorer: Scorer, sample: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Mean absolute change of the raw score when one feature is shuffled: the model's reliance on it."""
    width = sample.shape[1]
    if len(sample) < 2:
        return np.full(width, 1.0 / width)
    base = scorer.raw(sample)
    importance = np.empty(width)
    for j in range(width):
        shuffled = sample.copy()
        shuffled[:, j] = rng.permutation(shuffled[:, j])
        importance[j] = float(np.mean(np.abs(scorer.raw(shuffled) - base)))
    total = importance.sum()
    return importance / total if total > 0 else np.full(width, 1.0 / width)
