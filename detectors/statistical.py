"""Statistical detectors: z-score, and robust z and IQR fences on log amounts, on an entity's own history.

Every detector compares the transaction amount with statistics of the same
entity's *previous* amounts, which the features stage computes
(`<entity>_amount_history_{count,mean,std,median,q1,q3}`). Scores are
vectorised over the batch. Two edge cases are explicit, never silent:

- insufficient history (fewer than `min_history` past amounts, default 10): the
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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numba import njit

from core import metrics
from core.contracts import DetectorFamily, EntityType, Reason, Transaction
from core.detection import FeatureBatch, FloatArray, Scores
from core.settings import Settings
from detectors.config import ResolvedBand, StatisticalConfig

RELATIVE_SPREAD_FLOOR: Final = 0.05
ABSOLUTE_SPREAD_FLOOR: Final = 0.01
IQR_TO_SIGMA: Final = 1.349  # the IQR of a normal distribution is 1.349 σ
LOG_SPREAD_FLOOR: Final = 0.0488  # log(1.05): log-scale spread floored at 5 % of the baseline, as on raw amounts
ROBUST_Z_WARNING: Final = 3.5  # Iglewicz & Hoaglin's cutoff for the modified z-score
ROBUST_Z_CRITICAL: Final = 7.0  # twice the warning distance
# Tukey's fences: k = 1.5 "outlier", k = 3 "far out". The inner fence flags ~1.5 % of legitimate
# payments on log amounts (docs/detectors.md), too many for a queue: warning at the outer fence.
IQR_WARNING: Final = 3.0
IQR_CRITICAL: Final = 6.0  # twice the warning distance

_ENTITY_ID: Final[dict[EntityType, Callable[[Transaction], str | None]]] = {
    EntityType.ACCOUNT: lambda t: t.account_id,
    EntityType.CARD: lambda t: t.card_id,
    EntityType.MERCHANT: lambda t: t.merchant_id,
    EntityType.DEVICE: lambda t: t.device_id,
    EntityType.IP: lambda t: None if t.ip is None else str(t.ip),
}


# One compiled loop, not three numpy expressions and two `where`s: the same arithmetic element by
# element, ~1 µs per call instead of ~13 µs, which a one-row batch (POST /v1/score) pays four times.
@njit(cache=True)
def _normalise(deviation: np.ndarray, threshold: np.ndarray, critical: np.ndarray) -> np.ndarray:  # pragma: no cover
    out = np.empty(deviation.shape[0])
    for i in range(deviation.shape[0]):
        d, t, c = deviation[i], threshold[i], critical[i]
        if d < t:
            out[i] = 50.0 * min(max(d / t, 0.0), 1.0)
        elif d < c:
            out[i] = 50.0 + 30.0 * (d - t) / (c - t)
        elif d >= c:
            out[i] = 80.0 + 20.0 * (1.0 - math.exp(-(d - c) / c))
        else:
            out[i] = math.nan  # not judged
    return out


def normalise(deviation: FloatArray, threshold: FloatArray, critical: FloatArray) -> FloatArray:
    """Map deviations to 0-100: `threshold` -> 50 (warning band), `critical` -> 80, saturating at 100; NaN stays NaN."""
    as_float = np.float64
    return np.asarray(
        _normalise(np.asarray(deviation, as_float), np.asarray(threshold, as_float), np.asarray(critical, as_float))
    )


def _log(values: FloatArray) -> FloatArray:
    """Natural log, with amounts and statistics floored at one cent (they are positive by contract)."""
    return np.asarray(np.log(np.maximum(values, ABSOLUTE_SPREAD_FLOOR)), dtype=np.float64)


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
    # Bands per tenant: `config` and `settings` never change for a detector instance, and resolving
    # validates a pydantic model (~30 µs), which a one-row batch (POST /v1/score) felt on every call.
    _bands_by_tenant: dict[str, ResolvedBand] = field(default_factory=dict, init=False, repr=False)

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
        return Scores(raw=deviation, normalised=normalise(deviation, warning, critical))

    @property
    def name(self) -> str:
        return f"{self.entity.value}_amount_{self.method}"

    def _feature(self, batch: FeatureBatch, stat: str) -> FloatArray:
        return batch.feature(f"{self.entity.value}_amount_history_{stat}")

    def _bands(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        cache = self._bands_by_tenant
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
        enough = count >= min_history  # NaN (no history feature) compares False: not enough
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

    # Floors are positive, so a missing (NaN) spread is below them: `~(spread >= floor)` flags it, and
    # `fmax` (which skips NaN) replaces it by the floor; the same as treating NaN as 0, without the copies.
    def _floor(self, spread: FloatArray, baseline: FloatArray, judged: FloatArray) -> FloatArray:
        floor = spread_floor(baseline)
        floored = ~(spread >= floor) & (judged > 0)
        if floored.any():
            metrics.DETECTOR_SKIPPED.labels(self.name, "zero_variance").inc(int(floored.sum()))
        return np.asarray(np.fmax(spread, floor), dtype=np.float64)

    def _log_floor(self, spread: FloatArray, judged: FloatArray) -> FloatArray:
        """A log-scale spread floored at log(1.05) (all past amounts nearly equal); floored rows are counted."""
        floored = ~(spread >= LOG_SPREAD_FLOOR) & (judged > 0)
        if floored.any():
            metrics.DETECTOR_SKIPPED.labels(self.name, "zero_variance").inc(int(floored.sum()))
        return np.asarray(np.fmax(spread, LOG_SPREAD_FLOOR), dtype=np.float64)

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
    """Robust z on log amounts (Iglewicz & Hoaglin): distance from the median in robust σ of the log amount.

    Amounts are multiplicative (lognormal-like): on the raw scale a small MAD makes any payment
    about twice the usual look extreme. Order statistics survive the log, so the log median is
    the log of the median, and the robust σ of the log amounts is their IQR / 1.349.
    Warning at 3.5 (Iglewicz & Hoaglin's outlier cutoff), critical at twice that.
    """

    method: str = field(default="robust_z", init=False)
    version: str = field(default="2", init=False)  # 2: log scale (1 compared raw amounts with median/MAD)

    def _compute(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        _, _, min_history = self._bands(batch)
        judged = self._judgeable(batch, min_history, needs=("median", "q1", "q3"))
        median, q1, q3 = (_log(self._feature(batch, stat)) for stat in ("median", "q1", "q3"))
        sigma = self._log_floor((q3 - q1) / IQR_TO_SIGMA, judged)
        z = (_log(batch.field("amount").astype(np.float64)) - median) / sigma
        z = np.asarray(np.where(judged > 0, z, np.nan), dtype=np.float64)
        return z, np.full(len(batch), ROBUST_Z_WARNING), np.full(len(batch), ROBUST_Z_CRITICAL)

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        z, _, _ = self._deviation(batch)
        transaction = batch.transactions[index]
        median = float(self._feature(batch, "median")[index])
        ratio = float(transaction.amount) / median if median > 0 else float("inf")
        return [
            Reason(
                feature="amount",
                value=float(transaction.amount),
                baseline=round(median, 2),
                contribution=1.0,
                text=(
                    f"Amount {transaction.amount} {transaction.currency} is {ratio:.1f} times the median "
                    f"{median:.2f}, {z[index]:.1f} robust σ above it on the log scale, over "
                    f"{self._history_text(batch, index)}."
                ),
            )
        ]


@dataclass
class IqrDetector(_AmountDetector):
    """Tukey's fences on log amounts: beyond Q3 + k IQR of the account's log amounts.

    Reads `<entity>_amount_history_q1` and `<entity>_amount_history_q3`; without them it judges nothing.
    On the log scale a fence is a ratio: amount > Q3 x (Q3 / Q1)^k. Warning at IQR_WARNING,
    critical at IQR_CRITICAL (see the constants for why).
    """

    method: str = field(default="iqr", init=False)
    version: str = field(default="2", init=False)  # 2: fences on log amounts, warning at the outer fence

    def _compute(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
        _, _, min_history = self._bands(batch)
        judged = self._judgeable(batch, min_history, needs=("q1", "q3"))
        q1, q3 = _log(self._feature(batch, "q1")), _log(self._feature(batch, "q3"))
        iqr = self._log_floor(q3 - q1, judged)
        distance = (_log(batch.field("amount").astype(np.float64)) - q3) / iqr
        distance = np.asarray(np.where(judged > 0, distance, np.nan), dtype=np.float64)
        return distance, np.full(len(batch), IQR_WARNING), np.full(len(batch), IQR_CRITICAL)

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        distance = self._deviation(batch)[0][index]
        transaction = batch.transactions[index]
        q1 = float(self._feature(batch, "q1")[index])
        q3 = float(self._feature(batch, "q3")[index])
        return [
            Reason(
                feature="amount",
                value=float(transaction.amount),
                baseline=round(q3, 2),
                contribution=1.0,
                text=(
                    f"Amount {transaction.amount} {transaction.currency} is {distance:.1f} interquartile "
                    f"ranges above the upper quartile {q3:.2f} on the log scale (quartiles {q1:.2f}-{q3:.2f}) "
                    f"of {self._history_text(batch, index)}."
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
