"""Aggregate checks: spikes and shape changes that no single transaction shows.

Per merchant and per account active in the checked hour:

- *volume*: the hour's transaction count and amount, z-scored against the same
  hour of the week over the previous four weeks. With only four baseline points
  the spread is floored at the Poisson σ (sqrt of the mean count, at least 1) so
  a quiet entity going from 0 to 2 payments is not a "spike".
- *shape*: the last 24 hourly counts against the mean 24-hour profile of the
  previous 28 days, by cosine similarity; a low similarity with real volume
  means the entity's day looks unlike its usual day (e.g. a compromised
  terminal active at night).

Results are anomalies of family `aggregate` whose transaction id names the
window (`agg:<tenant>:<entity>:<id>:<hour>`), so re-running a window is idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
from sqlalchemy import Connection, text

from core.contracts import Anomaly, DetectorFamily, EntityType, Reason, Severity
from core.settings import Settings
from detectors.statistical import normalise

BASELINE_WEEKS: Final = 4
SHAPE_DAYS: Final = 28
SHAPE_MIN_COUNT: Final = 24  # below ~1 payment an hour a 24-hour shape is noise
SHAPE_WARNING: Final = 0.6  # cosine similarity under which the day "looks different"
SHAPE_CRITICAL: Final = 0.3
ENTITY_COLUMNS: Final = {EntityType.MERCHANT: "merchant_id", EntityType.ACCOUNT: "account_id"}
VERSION: Final = "1"


@dataclass(frozen=True, slots=True)
class HourlySeries:
    """Hourly counts and sums of one entity over the lookback, oldest first, ending at the checked hour."""

    tenant_id: str
    entity_type: EntityType
    entity_id: str
    counts: np.ndarray
    sums: np.ndarray


def load_series(connection: Connection, *, entity_type: EntityType, hour: datetime) -> list[HourlySeries]:
    """Hourly series for every entity active in the 24 hours ending with `hour`, over 29 days."""
    column = ENTITY_COLUMNS[entity_type]
    start = hour - timedelta(days=SHAPE_DAYS + 1)
    end = hour + timedelta(hours=1)
    hours = int((end - start).total_seconds() // 3600)
    rows = connection.execute(
        text(
            f"""
            WITH active AS (
                SELECT DISTINCT tenant_id, {column} AS entity_id FROM transactions
                WHERE occurred_at >= :day_start AND occurred_at < :end
            )
            SELECT t.tenant_id, t.{column}, date_trunc('hour', t.occurred_at AT TIME ZONE 'UTC') AS bucket,
                   count(*), sum(t.amount)
            FROM transactions t JOIN active a ON a.tenant_id = t.tenant_id AND a.entity_id = t.{column}
            WHERE t.occurred_at >= :start AND t.occurred_at < :end
            GROUP BY 1, 2, 3
            """
        ),
        {"day_start": end - timedelta(hours=24), "start": start, "end": end},
    ).all()
    counts: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(hours))
    sums: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(hours))
    naive_start = start.replace(tzinfo=None)
    for tenant_id, entity_id, bucket, count, total in rows:
        index = int((bucket - naive_start).total_seconds() // 3600)
        counts[(tenant_id, entity_id)][index] = count
        sums[(tenant_id, entity_id)][index] = float(total)
    return [
        HourlySeries(tenant_id, entity_type, entity_id, counts[(tenant_id, entity_id)], sums[(tenant_id, entity_id)])
        for tenant_id, entity_id in sorted(counts)
    ]


def _volume_z(series: HourlySeries, values: np.ndarray) -> tuple[float, float, float]:
    """z of the last hour against the same hour of the previous weeks: (z, baseline mean, spread)."""
    week = 7 * 24
    baseline = np.array([values[-1 - week * k] for k in range(1, BASELINE_WEEKS + 1)])
    mean = float(baseline.mean())
    spread = max(float(baseline.std()), float(np.sqrt(max(mean, 1.0))))
    return (float(values[-1]) - mean) / spread, mean, spread


def _shape_similarity(series: HourlySeries) -> tuple[float, float]:
    """Cosine similarity of the last 24 hours with the mean profile of the same 24 slots on previous days."""
    today = series.counts[-24:]
    previous = np.stack([series.counts[-24 - 24 * d : -24 * d] for d in range(1, SHAPE_DAYS + 1)])
    profile = previous.mean(axis=0)
    norm = float(np.linalg.norm(today) * np.linalg.norm(profile))
    if norm == 0.0:
        return 1.0, float(today.sum())
    return float(today @ profile) / norm, float(today.sum())


def check_hour(
    connection: Connection, *, settings: Settings, hour: datetime, detected_at: datetime | None = None
) -> list[Anomaly]:
    """Run every aggregate check for the hour starting at `hour` (UTC, truncated)."""
    hour = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    detected_at = detected_at or datetime.now(UTC)
    anomalies: list[Anomaly] = []
    for entity_type in ENTITY_COLUMNS:
        for series in load_series(connection, entity_type=entity_type, hour=hour):
            anomalies.extend(_judge(series, settings=settings, hour=hour, detected_at=detected_at))
    return anomalies


def _judge(series: HourlySeries, *, settings: Settings, hour: datetime, detected_at: datetime) -> list[Anomaly]:
    found: list[Anomaly] = []
    threshold, critical = settings.zscore_threshold, settings.zscore_critical
    window = f"{hour:%Y%m%dT%H}"
    base = {
        "tenant_id": series.tenant_id,
        "entity_type": series.entity_type,
        "entity_id": series.entity_id,
        "event_time": hour,
        "detector_family": DetectorFamily.AGGREGATE,
        "detector_version": VERSION,
    }
    entity = series.entity_type.value
    z, mean, spread = _volume_z(series, series.counts)
    if z >= threshold:
        amount_z, amount_mean, _ = _volume_z(series, series.sums)
        score = float(normalise(np.array([z]), np.array([threshold]), np.array([critical]))[0])
        found.append(
            Anomaly.build(
                detected_at=detected_at,
                transaction_id=f"agg:{series.tenant_id}:{entity}:{series.entity_id}:{window}:volume"[:128],
                detector_name=f"{entity}_hourly_volume",
                score_raw=z,
                score=score,
                severity=Severity.CRITICAL if z >= critical else Severity.WARNING,
                reasons=[
                    Reason(
                        feature="hourly_count",
                        value=float(series.counts[-1]),
                        baseline=round(mean, 2),
                        contribution=1.0,
                        text=(
                            f"{int(series.counts[-1])} payments in the hour from {hour:%a %H:00} UTC, "
                            f"against {mean:.1f} on average at this hour of the week over {BASELINE_WEEKS} weeks "
                            f"({z:.1f}σ)."
                        ),
                    ),
                    Reason(
                        feature="hourly_amount",
                        value=round(float(series.sums[-1]), 2),
                        baseline=round(amount_mean, 2),
                        contribution=None,
                        text=f"Amount in the hour {series.sums[-1]:.2f} against {amount_mean:.2f} usually "
                        f"({amount_z:.1f}σ).",
                    ),
                ],
                features={
                    "hourly_count": float(series.counts[-1]),
                    "baseline_mean": mean,
                    "baseline_spread": spread,
                    "hourly_amount": float(series.sums[-1]),
                },
                **base,
            )
        )
    similarity, volume = _shape_similarity(series)
    if volume >= SHAPE_MIN_COUNT and similarity < SHAPE_WARNING:
        deviation = 1.0 - similarity
        score = float(
            normalise(np.array([deviation]), np.array([1 - SHAPE_WARNING]), np.array([1 - SHAPE_CRITICAL]))[0]
        )
        found.append(
            Anomaly.build(
                detected_at=detected_at,
                transaction_id=f"agg:{series.tenant_id}:{entity}:{series.entity_id}:{window}:shape"[:128],
                detector_name=f"{entity}_daily_shape",
                score_raw=similarity,
                score=score,
                severity=Severity.CRITICAL if similarity < SHAPE_CRITICAL else Severity.WARNING,
                reasons=[
                    Reason(
                        feature="daily_shape_cosine",
                        value=round(similarity, 3),
                        baseline=1.0,
                        contribution=1.0,
                        text=(
                            f"The last 24 hours ({int(volume)} payments) look unlike this {entity}'s "
                            f"usual day: cosine similarity {similarity:.2f} with its {SHAPE_DAYS}-day hourly profile."
                        ),
                    )
                ],
                features={"daily_shape_cosine": similarity, "daily_count": volume},
                **base,
            )
        )
    return found
