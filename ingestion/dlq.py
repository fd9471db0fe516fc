"""Dead-letter tools (`vigil dlq inspect|replay`) and a committed-topic reader."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from core.kafka import make_consumer
from core.settings import Settings
from ingestion.errors import DeadLetterError


def read_topic(settings: Settings, topic: str, *, timeout: float = 30.0, idle: float = 3.0) -> list[Message]:
    """Every committed record of `topic`, from the beginning, without committing offsets.

    Ends when each partition's position reaches its high watermark. Positions, not the
    last offset seen, because transactional topics end in commit markers that are never
    delivered; `idle` bounds the wait when an open transaction holds readers back.
    """
    consumer = make_consumer(settings, group_id=f"vigil-reader-{time.time_ns()}")
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise DeadLetterError(f"topic {topic!r} does not exist")
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in ends])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        while ends and time.monotonic() < deadline and time.monotonic() - last_progress < idle:
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            for message in batch:
                if message.error() is None:
                    messages.append(message)
            positions = consumer.position([TopicPartition(topic, partition) for partition in ends])
            for position in positions:
                if position.offset >= ends[position.partition]:
                    ends.pop(position.partition)
                    last_progress = time.monotonic()
            if batch:
                last_progress = time.monotonic()
        return messages
    finally:
        consumer.close()
