"""Helpers for detector tests that run the real services: topic contents, committed offsets, waiting."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from core.contracts import FeatureVector
from core.kafka import make_consumer, read_all
from core.settings import Settings
from core.topics import TX_FEATURES


def feature_vectors(settings: Settings) -> dict[tuple[int, int], FeatureVector]:
    """Every vector on the test's `tx.features`, by (partition, offset)."""
    return {
        (m.partition() or 0, m.offset() or 0): FeatureVector.model_validate_json(m.value() or b"")
        for m in read_all(settings, settings.topic(TX_FEATURES), timeout=20)
    }


def ends_of(positions: list[tuple[int, int]]) -> dict[int, int]:
    """Offset after the last message per partition: where a consumer that read everything commits."""
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def committed(settings: Settings, *, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (-1001 where none)."""
    consumer = make_consumer(settings, group_id=group)
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def caught_up(settings: Settings, *, group: str, ends: dict[int, int]) -> bool:
    offsets = committed(settings, group=group, topic=settings.topic(TX_FEATURES), partitions=settings.kafka_partitions)
    return all(offsets.get(partition, -1) >= end for partition, end in ends.items())
