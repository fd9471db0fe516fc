"""Statistical detectors: z-score, robust z (median/MAD) and IQR fences on an entity's own history.

Every detector compares the transaction amount with statistics of the same
entity's *previous* amounts, which the features stage computes
(`<entity>_amount_history_{count,mean,std,median,mad,q1,q3}`). Scores are
vectorised over the batch. Two edge cases are explicit, never silent:

- insufficient history (fewer than `min_history` past amounts, default 5): the
  row is not judged (NaN score) and `vigil_detector_skipped_total{reason=
  "insufficient_history"}` counts it;
- zero spread (all past amounts equal): the spread is floored at 5 % of the
  baseline (at least one minor unit), so a constant subscription that suddenly
  jumps is still flagged while one-cent noise is not; counted as `zero_variance`;
- a statistic the detector needs is absent (e.g. a feature set without
  `account_amount_history_q1`/`_q3`, which the IQR detector reads): the row is not
  judged and is counted as `missing_feature`, never mistaken for zero spread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from core import metrics
from core.contracts import DetectorFamily, EntityType, Reason, Transaction
from core.detection import FeatureBatch, FloatArray, Scores
from core.settings import Settings
from detectors.config import ResolvedBand, StatisticalConfig

RELATIVE_SPREAD_FLOOR: Final = 0.05
ABSOLUTE_SPREAD_FLOOR: Final = 0.01
MAD_TO_SIGMA: Final = 1.4826  # MAD of a normal distribution times this is its σ
IQR_WARNING: Final = 1.5  # Tukey's fences: outlier beyond Q3 + 1.5 IQR, extreme beyond Q3 + 3 IQR
IQR_CRITICAL: Final = 3.0

_ENTITY_ID: Final[dict[EntityType, Callable[[Transaction], str | None]]] = {
    EntityType.ACCOUNT: lambda t: t.account_id,
    EntityType.CARD: lambda t: t.card_id,
    EntityType.MERCHANT: lambda t: t.merchant_id,
    EntityType.DEVICE: lambda t: t.device_id,
    EntityType.IP: lambda t: None if t.ip is None else str(t.ip),
}


def normalise(deviation: FloatArray, threshold: FloatArray, critical: FloatArray) -> FloatArray:
    """Map deviations to 0-100: `threshold` -> 50 (warning band), `critical` -> 80, saturating at 100."""
    below = 50.0 * np.clip(deviation / threshold, 0.0, 1.0)
    between = 50.0 + 30.0 * (deviation - threshold) / (critical - threshold)
    beyond = 80.0 + 20.0 * (1.0 - np.exp(-(deviation - critical) / critical))
    with np.errstate(invalid="ignore"):
        result = np.where(deviation < threshold, below, np.where(deviation < critical, between, beyond))
    return np.asarray(result, dtype=np.float64)


def spread_floor(baseline: FloatArray) -> FloatArray:
    return np.maximum(RELATIVE_SPREAD_FLOOR * np.abs(baseline), ABSOLUTE_SPREAD_FLOOR)


@dataclass
class _AmountDetector:
    """Shared plumbing: per-row thresholds by tenant and entity, history checks, entity choice."""

    settings: Settings
    config: StatisticalConfig = field(default_factory=StatisticalConfig)
    entity: EntityType = EntityType.ACCOUNT
    family: DetectorFamily = field(default=DetectorFamily.STATISTICAL, init=False)
    version: str = field(default="1", init=False)
    method: str = field(default="", init=False)
    _memo: tuple[FeatureBatch, tuple[FloatArray, FloatArray, FloatArray]] | None = field(
        default=None, init=False, repr=False
    )

    def _deviation(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(deviation, warning level, critical level) per row, computed once per batch.

        `explain` runs for flagged rows after `score`; the memo keeps it from
        recomputing the batch (and from counting skipped rows twice).
        """
        if self._memo is None or self._memo[0] is not batch:
            self._memo = (batch, self._compute(batch))
        return self._memo[1]

    def _compute(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        raise NotImplementedError

    def score(self, batch: FeatureBatch) -> Scores:
        deviation, warning, critical = self._deviation(batch)
        normalised = np.where(np.isnan(deviation), np.nan, normalise(deviation, warning, critical))
        return Scores(raw=deviation, normalised=normalised)

    @property
    def name(self) -> str:
        return f"{self.entity.value}_amount_{self.method}"

    def _feature(self, batch: FeatureBatch, stat: str) -> FloatArray:
        return batch.feature(f"{self.entity.value}_amount_history_{stat}")

    def _bands(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        cache: dict[str, ResolvedBand] = {}
        bands = []
        for transaction in batch.transactions:
            band = cache.get(transaction.tenant_id)
            if band is None:
                band = self.config.resolve(settings=self.settings, tenant_id=transaction.tenant_id, entity=self.entity)
                cache[transaction.tenant_id] = band
            bands.append(band)
        threshold = np.fromiter((b.threshold for b in bands), np.float64, len(bands))
        critical = np.fromiter((b.critical for b in bands), np.float64, len(bands))
        min_history = np.fromiter((b.min_history for b in bands), np.float64, len(bands))
        return threshold, critical, min_history

    def _judgeable(self, batch: FeatureBatch, min_history: FloatArray, *, needs: tuple[str, ...]) -> FloatArray:
        """1.0 where the row has enough history and every statistic in `needs`; skipped rows are counted."""
        count = self._feature(batch, "count")
        enough = np.nan_to_num(count, nan=0.0) >= min_history
        short = int(len(batch) - np.count_nonzero(enough))
        if short:
            metrics.DETECTOR_SKIPPED.labels(self.name, "insufficient_history").inc(short)
        present = np.ones(len(batch), dtype=bool)
        for stat in needs:
            present &= ~np.isnan(self._feature(batch, stat))
        missing = int(np.count_nonzero(enough & ~present))
        if missing:
            metrics.DETECTOR_SKIPPED.labels(self.name, "missing_feature").inc(missing)
        return np.asarray(enough & present, dtype=np.float64)

    def _floor(self, spread: FloatArray, baseline: FloatArray, judged: FloatArray) -> FloatArray:
        floor = spread_floor(baseline)
        floored = (np.nan_to_num(spread, nan=0.0) < floor) & (judged > 0)
        if floored.any():
            metrics.DETECTOR_SKIPPED.labels(self.name, "zero_variance").inc(int(floored.sum()))
        return np.asarray(np.maximum(np.nan_to_num(spread, nan=0.0), floor), dtype=np.float64)

    def entity_for(self, transaction: Transaction) -> tuple[EntityType, str]:
        entity_id = _ENTITY_ID[self.entity](transaction)
        if entity_id is None:
            return EntityType.ACCOUNT, transaction.account_id
        return self.entity, entity_id

    def _history_text(self, batch: FeatureBatch, index: int) -> str:
        count = self._feature(batch, "count")[index]
        return f"{int(count)} past payments of this {self.entity.value}"


@dataclass
class ZScoreDetector(_AmountDetector):
    """Amount's distance from the entity's mean in standard deviations (one-sided: higher amounts)."""

    method: str = field(default="zscore", init=False)

    def _compute(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        threshold, critical, min_history = self._bands(batch)
        judged = self._judgeable(batch, min_history, needs=("mean", "std"))
        mean = self._feature(batch, "mean")
        std = self._floor(self._feature(batch, "std"), mean, judged)
        z = (batch.field("amount").astype(np.float64) - mean) / std
        z = np.where(judged > 0, z, np.nan)
        return z, threshold, critical

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        z, _, _ = self._deviation(batch)
        transaction = batch.transactions[index]
        mean = float(self._feature(batch, "mean")[index])
        std = float(self._feature(batch, "std")[index])
        return [
            Reason(
                feature="amount",
                value=float(transaction.amount),
                baseline=round(mean, 2),
                contribution=1.0,
                text=(
                    f"Amount {transaction.amount} {transaction.currency} is {z[index]:.1f}σ above the usual "
                    f"{mean:.2f} (σ {std:.2f}) over {self._history_text(batch, index)}."
                ),
            )
        ]


@dataclass
class RobustZDetector(_AmountDetector):
    """Robust z: distance from the median in MAD-derived σ; not fooled by a few past outliers."""

    method: str = field(default="robust_z", init=False)

    def _compute(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        threshold, critical, min_history = self._bands(batch)
        judged = self._judgeable(batch, min_history, needs=("median", "mad"))
        median = self._feature(batch, "median")
        sigma = self._floor(self._feature(batch, "mad") * MAD_TO_SIGMA, median, judged)
        z = (batch.field("amount").astype(np.float64) - median) / sigma
        return np.where(judged > 0, z, np.nan), threshold, critical

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        z, _, _ = self._deviation(batch)
        transaction = batch.transactions[index]
        median = float(self._feature(batch, "median")[index])
        return [
            Reason(
                feature="amount",
                value=float(transaction.amount),
                baseline=round(median, 2),
                contribution=1.0,
                text=(
                    f"Amount {transaction.amount} {transaction.currency} is {z[index]:.1f} robust σ "
                    f"above the median {median:.2f} over {self._history_text(batch, index)}."
                ),
            )
        ]


@dataclass
class IqrDetector(_AmountDetector):
    """Tukey fences: beyond Q3 + 1.5 IQR is an outlier (warning), beyond Q3 + 3 IQR extreme (critical).

    Reads `<entity>_amount_history_q1` and `<entity>_amount_history_q3`; without them it judges nothing.
    """

    method: str = field(default="iqr", init=False)

    def _compute(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        _, _, min_history = self._bands(batch)
        judged = self._judgeable(batch, min_history, needs=("q1", "q3"))
        q1, q3 = self._feature(batch, "q1"), self._feature(batch, "q3")
        median = self._feature(batch, "median")
        iqr = self._floor(q3 - q1, np.where(np.isnan(median), q3, median), judged)
        distance = (batch.field("amount").astype(np.float64) - q3) / iqr
        distance = np.asarray(np.where(judged > 0, distance, np.nan), dtype=np.float64)
        return distance, np.full(len(batch), IQR_WARNING), np.full(len(batch), IQR_CRITICAL)

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        distance = self._deviation(batch)[0][index]
        transaction = batch.transactions[index]
        q3 = float(self._feature(batch, "q3")[index])
        return [
            Reason(
                feature="amount",
                value=float(transaction.amount),
                baseline=round(q3, 2),
                contribution=1.0,
                text=(
                    f"Amount {transaction.amount} {transaction.currency} is {distance:.1f} interquartile "
                    f"ranges above the upper quartile {q3:.2f} of {self._history_text(batch, index)}."
                ),
            )
        ]


def statistical_detectors(
    *, settings: Settings, config: StatisticalConfig | None = None
) -> list[ZScoreDetector | RobustZDetector | IqrDetector]:
    """The detectors `vigil run detect-statistical` runs."""
    config = config or StatisticalConfig()
    return [
        ZScoreDetector(settings=settings, config=config, entity=EntityType.ACCOUNT),
        RobustZDetector(settings=settings, config=config, entity=EntityType.ACCOUNT),
        IqrDetector(settings=settings, config=config, entity=EntityType.ACCOUNT),
        ZScoreDetector(settings=settings, config=config, entity=EntityType.MERCHANT),
    ]
