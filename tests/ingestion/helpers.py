"""Helpers for ingestion tests on the real stack: produce raw records, wait for the group, count effects."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, TopicPartition
from sqlalchemy import Engine, text

from core.kafka import DeliveringProducer, StopFlag, client_config, header_pairs
from core.settings import Settings
from core.topics import TX_RAW
from ingestion import TimeWindow, consumer_group, run_ingest
from ingestion.dlq import read_topic


def transaction(number: int, **overrides: Any) -> dict[str, Any]:
    """A valid raw transaction with a unique id, happening now."""
    payload: dict[str, Any] = {
        "transaction_id": f"tx-{number:06d}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "tenant_id": "acme",
        "account_id": f"acct-{number % 17:03d}",
        "card_id": f"card-{number % 17:03d}",
        "merchant_id": f"m-{number % 5}",
        "merchant_category": "5411",
        "amount": f"{1 + number % 900}.{number % 100:02d}",
        "currency": "EUR",
        "channel": "card_present",
        "country": "DE",
        "attributes": {"terminal_id": f"t-{number % 3}"},
    }
    payload.update(overrides)
    return payload


def produce_raw(
    settings: Settings,
    values: Iterable[bytes],
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    timestamp_ms: int | None = None,
) -> int:
    """Produce raw values to tx.raw and wait for the broker to acknowledge them all."""
    producer = DeliveringProducer(settings, service="test")
    topic = settings.topic(TX_RAW)
    count = 0
    for value in values:
        if timestamp_ms is None:
            producer.produce(topic, value, key=key, headers=headers)
        else:
            pairs: list[tuple[str, str | bytes | None]] = list(headers or [])
            producer._producer.produce(topic, value=value, key=key, headers=pairs, timestamp=timestamp_ms)
        count += 1
    producer.flush_or_raise()
    return count


def encode(payload: Any) -> bytes:
    return orjson.dumps(payload)


def committed_lag(settings: Settings) -> int:
    """Records of tx.raw the ingest group has not committed yet."""
    topic = settings.topic(TX_RAW)
    consumer = Consumer(client_config(settings, **{"group.id": consumer_group(settings), "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = [TopicPartition(topic, p) for p in partitions]
        committed = consumer.committed(wanted, timeout=10)
        lag = 0
        for position in committed:
            _, high = consumer.get_watermark_offsets(position, timeout=10)
            done = position.offset if position.offset >= 0 else 0
            lag += high - done
        return lag
    finally:
        consumer.close()


@contextmanager
def running_ingest(settings: Settings, *, window: TimeWindow | None = None) -> Iterator[StopFlag]:
    """The ingest service in a thread of this process; stopped (and joined) on exit."""
    stop = StopFlag()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run_ingest(settings=settings, stop=stop, window=window, instance_id="test")
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="ingest", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "ingest did not stop within 30 s"
    if failure:
        raise failure[0]


def row_counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        rows, distinct = connection.execute(
            text("SELECT count(*), count(DISTINCT transaction_id) FROM transactions")
        ).one()
    return int(rows), int(distinct)


def topic_messages(settings: Settings, name: str) -> list[Message]:
    # Not core.kafka.read_all: it waits for an offset that, on transactional topics, is a commit marker.
    return read_topic(settings, settings.topic(name), timeout=20)


def header(message: Message, name: str) -> str | None:
    for key, value in header_pairs(message):
        if key == name:
            return value.decode()
    return None


def body(message: Message) -> bytes:
    return message.value() or b""
