"""Training one model from a feature frame and the labels known at the cutoff (no MLflow here).

The newest `holdout_fraction` of label-mature rows (by event time) is held out:
the model never sees it, and its ranking quality there is what training reports
and logs. Splitting by time, not at random, mirrors how the model is used: trained
on the past, judged on what comes next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from core.detection import FloatArray
from detectors.ml.columns import relative_features
from detectors.ml.dataset import FeatureFrame, KnownLabel, resolve_targets
from detectors.ml.errors import TrainingDataError
from detectors.ml.model import FitOptions, FittedModel, fit_model
from detectors.ml.quality import RankingQuality, ranking_quality
from detectors.ml.scorers import BoolArray, ModelKind


@dataclass(frozen=True, slots=True)
class TrainingOptions:
    """How to train; the composition root fills these from settings and CLI flags."""

    label_delay: timedelta = timedelta(days=7)
    holdout_fraction: float = 0.2
    contamination: float = 0.005
    operating_recall: float = 0.8
    top_k: int = 100
    seed: int = 0
    feature_names: tuple[str, ...] | None = None  # None: all features (supervised) or the scale-free ones
    threads: int = 1  # native threads while fitting (1: predictable on shared nodes)


@dataclass(frozen=True)
class TrainingOutcome:
    """A fitted model, its held-out quality and what went into it."""

    model: FittedModel
    quality: RankingQuality | None
    counts: dict[str, int]
    params: dict[str, str]
    fingerprint: str
    cutoff: datetime
    extra: dict[str, float] = field(default_factory=dict)


def default_features(kind: ModelKind, available: Sequence[str]) -> tuple[str, ...]:
    """Every feature for the supervised model; the scale-free subset for unsupervised ones."""
    if kind.supervised:
        return tuple(available)
    return relative_features(available) or tuple(available)


@dataclass(frozen=True)
class TrainingPlan:
    """Everything decided before fitting: rows, targets, holdout, features, and the fingerprint.

    The fingerprint is known before any fitting, so a scheduled re-run that finds it
    already registered skips the expensive part entirely.
    """

    kind: ModelKind
    cutoff: datetime
    options: TrainingOptions
    feature_names: tuple[str, ...]
    matrix: FloatArray
    fraud: BoolArray
    train_rows: BoolArray
    holdout: BoolArray
    counts: dict[str, int]
    params: dict[str, str]
    fingerprint: str


def plan_training(
    *,
    frame: FeatureFrame,
    labels: Sequence[KnownLabel],
    kind: ModelKind,
    cutoff: datetime,
    options: TrainingOptions = TrainingOptions(),
) -> TrainingPlan:
    """Rows before `cutoff`, label join with delay, and the newest label-mature rows held out."""
    frame = frame.select(frame.event_time < cutoff.timestamp())
    if len(frame) == 0:
        raise TrainingDataError("no transactions before the cutoff")
    targets = resolve_targets(frame, labels, cutoff=cutoff, delay=options.label_delay)
    mature = np.flatnonzero(targets.eligible)
    if kind.supervised and len(mature) == 0:
        raise TrainingDataError(
            f"no transaction is older than the label delay ({options.label_delay}) before the cutoff"
        )
    # Newest mature rows by event time form the holdout.
    order = mature[np.argsort(frame.event_time[mature], kind="stable")]
    holdout_size = int(len(order) * options.holdout_fraction)
    holdout = np.zeros(len(frame), dtype=bool)
    if holdout_size:
        holdout[order[-holdout_size:]] = True
    names = tuple(options.feature_names or default_features(kind, frame.feature_names))
    # Supervised: label-mature rows only. Unsupervised: every row but known fraud, which would teach
    # the model that fraud is normal.
    train_rows = targets.eligible & ~holdout if kind.supervised else ~holdout & ~targets.fraud
    if not train_rows.any():
        raise TrainingDataError("no training rows left after the holdout")
    counts = {
        "rows": len(frame),
        "train_rows": int(train_rows.sum()),
        "train_positives": int(targets.fraud[train_rows].sum()),
        "label_mature_rows": len(mature),
        "labelled_rows": int(targets.labelled.sum()),
        "labels_after_cutoff": targets.labels_ignored_late,
        "holdout_rows": int(holdout.sum()),
        "holdout_positives": int(targets.fraud[holdout].sum()),
    }
    params = {
        "kind": kind.value,
        "cutoff": cutoff.isoformat(),
        "label_delay_days": f"{options.label_delay.total_seconds() / 86400:g}",
        "holdout_fraction": f"{options.holdout_fraction:g}",
        "contamination": f"{options.contamination:g}",
        "operating_recall": f"{options.operating_recall:g}",
        "seed": str(options.seed),
        "feature_count": str(len(names)),
    }
    return TrainingPlan(
        kind=kind,
        cutoff=cutoff,
        options=options,
        feature_names=names,
        matrix=frame.columns(names),
        fraud=targets.fraud,
        train_rows=train_rows,
        holdout=holdout,
        counts=counts,
        params=params,
        fingerprint=_fingerprint(frame, targets.fraud, names, params),
    )


def fit_plan(plan: TrainingPlan) -> TrainingOutcome:
    """Fit the planned model and measure it on the holdout."""
    options = plan.options
    holdout = plan.holdout
    validation = (plan.matrix[holdout], plan.fraud[holdout]) if holdout.any() else None
    model = fit_model(
        kind=plan.kind,
        matrix=plan.matrix[plan.train_rows],
        feature_names=plan.feature_names,
        target=plan.fraud[plan.train_rows] if plan.kind.supervised else None,
        validation=validation,
        options=FitOptions(
            contamination=options.contamination,
            operating_recall=options.operating_recall,
            seed=options.seed,
            threads=options.threads,
        ),
    )
    quality = None
    if validation is not None and 0 < int(validation[1].sum()) < len(validation[1]):
        quality = ranking_quality(
            validation[1], model.raw_scores(validation[0]), k=options.top_k, recall=options.operating_recall
        )
    return TrainingOutcome(
        model=model,
        quality=quality,
        counts=plan.counts,
        params=plan.params,
        fingerprint=plan.fingerprint,
        cutoff=plan.cutoff,
    )


def train_model(
    *,
    frame: FeatureFrame,
    labels: Sequence[KnownLabel],
    kind: ModelKind,
    cutoff: datetime,
    options: TrainingOptions = TrainingOptions(),
) -> TrainingOutcome:
    """Fit `kind` on `frame` (rows before `cutoff`), holding out the newest label-mature rows for quality."""
    return fit_plan(plan_training(frame=frame, labels=labels, kind=kind, cutoff=cutoff, options=options))


def _fingerprint(frame: FeatureFrame, fraud: np.ndarray, names: Sequence[str], params: dict[str, str]) -> str:
    """Same data, labels and settings -> same key: a scheduled re-run recognises work already done."""
    digest = hashlib.sha256()
    for key in sorted(params):
        digest.update(f"{key}={params[key]}\n".encode())
    digest.update("\x1f".join(names).encode())
    digest.update("\x1f".join(frame.transaction_ids).encode())
    digest.update(np.packbits(fraud.astype(bool)).tobytes())
    digest.update(np.ascontiguousarray(frame.matrix).tobytes())
    return digest.hexdigest()
