"""Kafka topic names and their layout, in one place.

Every stream topic is keyed by `account_id` so one account's events stay in
order on one partition; repartition topics re-key by another entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

TX_RAW: Final = "tx.raw"
TX_VALID: Final = "tx.valid"
TX_FEATURES: Final = "tx.features"
TX_DLQ: Final = "tx.dlq"
ANOMALIES: Final = "anomalies"
LABELS: Final = "labels"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created: name, partitions (None = settings default) and config."""

    name: str
    partitions: int | None = None
    config: tuple[tuple[str, str], ...] = ()


# Retention is generous on purpose: replays (DLQ, features after a bug fix) read from here.
STREAM_TOPICS: Final[tuple[TopicSpec, ...]] = (
    TopicSpec(TX_RAW, config=(("retention.ms", str(7 * 86_400_000)),)),
    TopicSpec(TX_VALID, config=(("retention.ms", str(7 * 86_400_000)),)),
    TopicSpec(TX_FEATURES, config=(("retention.ms", str(3 * 86_400_000)),)),
    # The DLQ keeps records for a month so analysts can inspect and replay after a fix.
    TopicSpec(TX_DLQ, partitions=1, config=(("retention.ms", str(30 * 86_400_000)),)),
    TopicSpec(ANOMALIES, config=(("retention.ms", str(7 * 86_400_000)),)),
    TopicSpec(LABELS, partitions=1, config=(("cleanup.policy", "compact"),)),
)
