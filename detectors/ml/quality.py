"""Ranking quality of a score against labels: what training logs to MLflow and `vigil evaluate` prints.

Rows a detector did not judge (NaN) rank below every judged row. Metrics that
need both classes are NaN when a class is missing, never a misleading 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.detection import FloatArray
from detectors.ml.scorers import BoolArray


@dataclass(frozen=True, slots=True)
class RankingQuality:
    """ROC AUC, average precision, precision in the top k, and the false-positive rate at a target recall."""

    rows: int
    positives: int
    roc_auc: float
    average_precision: float
    k: int
    precision_at_k: float
    recall_target: float
    fpr_at_recall: float

    def as_metrics(self) -> dict[str, float]:
        """Flat name -> value (MLflow metrics; NaN ones are left out)."""
        named = {
            "roc_auc": self.roc_auc,
            "average_precision": self.average_precision,
            f"precision_at_{self.k}": self.precision_at_k,
            f"fpr_at_recall_{round(self.recall_target * 100)}": self.fpr_at_recall,
            "holdout_rows": float(self.rows),
            "holdout_positives": float(self.positives),
        }
        return {name: value for name, value in named.items() if not math.isnan(value)}

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ranked(scores: FloatArray) -> FloatArray:
    return np.where(np.isnan(scores), -np.inf, scores)


def precision_at_k(target: BoolArray, scores: FloatArray, k: int) -> float:
    """Share of confirmed fraud among the k highest scores (ties broken by row order)."""
    if len(target) == 0 or k <= 0:
        return math.nan
    top = np.argsort(-_ranked(scores), kind="stable")[: min(k, len(target))]
    return float(target[top].mean())


def fpr_at_recall(target: BoolArray, scores: FloatArray, recall: float) -> float:
    """False-positive rate at the highest threshold that still catches `recall` of the fraud."""
    positives = int(target.sum())
    negatives = len(target) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(-_ranked(scores), kind="stable")
    ranked = _ranked(scores)[order]
    hits = np.cumsum(target[order])
    needed = math.ceil(recall * positives)
    cut = int(np.searchsorted(hits, needed))  # first rank where the recall target is met
    threshold = ranked[cut]
    flagged = ranked >= threshold  # everything tied with the cut row is flagged too
    false_positives = int(np.count_nonzero(flagged & ~target[order]))
    return false_positives / negatives


def ranking_quality(target: BoolArray, scores: FloatArray, *, k: int = 100, recall: float = 0.8) -> RankingQuality:
    """Every ranking metric at once."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = int(target.sum())
    both = 0 < positives < len(target)
    judged = ~np.isnan(scores)
    floor = float(scores[judged].min()) - 1.0 if judged.any() else 0.0
    finite = np.where(judged, scores, floor)  # unjudged rows rank last, as in every other metric
    return RankingQuality(
        rows=len(target),
        positives=positives,
        roc_auc=float(roc_auc_score(target, finite)) if both else math.nan,
        average_precision=float(average_precision_score(target, finite)) if both else math.nan,
        k=k,
        precision_at_k=precision_at_k(target, scores, k),
        recall_target=recall,
        fpr_at_recall=fpr_at_recall(target, scores, recall),
    )


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """What happens at the threshold a detector actually flags at."""

    flagged: int
    recall: float
    false_positive_rate: float
    precision: float


def operating_point(target: BoolArray, flagged: BoolArray) -> OperatingPoint:
    """Recall, FPR and precision of a yes/no decision."""
    positives = int(target.sum())
    negatives = len(target) - positives
    caught = int(np.count_nonzero(flagged & target))
    wrong = int(np.count_nonzero(flagged & ~target))
    count = caught + wrong
    return OperatingPoint(
        flagged=count,
        recall=caught / positives if positives else math.nan,
        false_positive_rate=wrong / negatives if negatives else math.nan,
        precision=caught / count if count else math.nan,
    )


def daily_precision_at_k(
    target: BoolArray, scores: FloatArray, days: list[str] | np.ndarray, k: int
) -> dict[str, float]:
    """Precision@k within each day: what a team reviewing k alerts a day would find (Card Precision@k)."""
    labels = np.asarray(days)
    result: dict[str, float] = {}
    for day in sorted(set(labels.tolist())):
        rows = labels == day
        result[str(day)] = precision_at_k(target[rows], scores[rows], k)
    return result
