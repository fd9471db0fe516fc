"""Kafka plumbing: client configuration, topic creation, dead letters and the batch loop.

The loop's checkpoint order is the contract every stream service relies on:

    consume a micro-batch -> process it (effects made durable: DB commit,
    produced messages acknowledged) -> commit the batch's offsets.

A crash anywhere before the commit replays the batch, so every effect must be
idempotent on a natural key. Nothing is committed for work not yet durable.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from core import metrics
from core.errors import KafkaDeliveryError
from core.settings import Settings
from core.topics import TX_DLQ, TopicSpec

log = logging.getLogger(__name__)

# librdkafka defaults chosen on purpose:
# idempotence + acks=all: a retried send is never written twice and survives a leader change.
# linger 5 ms: batches sends so throughput does not collapse to one request per message.
# lz4: cheap on CPU, roughly halves JSON on the wire.
PRODUCER_DEFAULTS: Final[dict[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
    "message.max.bytes": 10_485_760,
    "queue.buffering.max.messages": 500_000,
}
# Manual commits only (after effects are durable); cooperative rebalancing so a new replica
# does not stop the whole group; a fresh group starts from the beginning so nothing is skipped.
CONSUMER_DEFAULTS: Final[dict[str, Any]] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 10_000,
    "max.poll.interval.ms": 300_000,
    "fetch.max.bytes": 52_428_800,
    "enable.partition.eof": False,
}
FLUSH_TIMEOUT_SECONDS: Final = 30.0


def client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Base librdkafka configuration shared by every client."""
    return {"bootstrap.servers": settings.kafka_bootstrap, "client.id": "vigil", **overrides}


class DeliveringProducer:
    """A producer that knows whether everything it sent was acknowledged.

    `flush_or_raise()` is the durability point: after it returns, every message
    produced since the last call is on the broker's in-sync replicas.
    """

    _count_on_produce = False  # successes are counted from their delivery reports

    def __init__(self, settings: Settings, *, service: str, **overrides: Any) -> None:
        self._producer = Producer(client_config(settings, **{**PRODUCER_DEFAULTS, **overrides}))
        self._service = service
        self._failures: list[str] = []
        self._sent: dict[str, int] = {}

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        topic = message.topic() or "?"
        if error is not None:
            self._failures.append(f"{topic}: {error.str()}")
            if self._count_on_produce:
                self._sent[topic] = self._sent.get(topic, 0) - 1
        else:
            self._sent[topic] = self._sent.get(topic, 0) + 1

    def produce(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self._produce_waiting(topic, value, key, list(headers or ()))
        if self._count_on_produce:
            self._sent[topic] = self._sent.get(topic, 0) + 1

    def produce_batch(self, topic: str, values: list[bytes], keys: list[str], headers: list[Any]) -> None:
        """Produce `values[i]` with `keys[i]` and `headers[i]`: one Python call for a micro-batch."""
        produce, report = self._producer.produce, self._on_delivery
        for value, key, header in zip(values, keys, headers, strict=True):
            try:
                produce(topic, value, key, headers=header, on_delivery=report)
            except BufferError:
                self._produce_waiting(topic, value, key, header)
        if self._count_on_produce:
            self._sent[topic] = self._sent.get(topic, 0) + len(values)

    def _produce_waiting(self, topic: str, value: bytes, key: bytes | str | None, headers: list[Any]) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery reports to make room (backpressure, not loss).
                self._producer.poll(0.05)

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def flush_or_raise(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Wait for every pending message; raise if any was not acknowledged."""
        remaining = self._producer.flush(timeout)
        failures, self._failures = self._failures, []
        for topic, count in self._sent.items():
            metrics.MESSAGES_PRODUCED.labels(self._service, topic).inc(count)
        self._sent.clear()
        if remaining:
            raise KafkaDeliveryError(f"{remaining} messages not acknowledged within {timeout}s")
        if failures:
            raise KafkaDeliveryError(f"{len(failures)} messages failed: {failures[0]}")


class BatchProducer(DeliveringProducer):
    """A `DeliveringProducer` for high rates: delivery reports for failures only.

    A success report costs a Python `Message` and a callback, ~1-2 us per message (the features
    stage's rate makes that count). Durability is the same: `flush_or_raise` still waits for every
    message, and failures are still reported (`delivery.report.only.error`); the produced-messages
    metric is counted at produce time and corrected for failures. Pair with `produce_batch`.
    """

    _count_on_produce = True

    def __init__(self, settings: Settings, *, service: str, **overrides: Any) -> None:
        super().__init__(settings, service=service, **{"delivery.report.only.error": True, **overrides})


class GroupConsumer(Consumer):
    """A Consumer that remembers its group id: librdkafka offers no getter, and lag is reported per group."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.group_id = str(config["group.id"])


def make_consumer(settings: Settings, *, group_id: str, **overrides: Any) -> GroupConsumer:
    """A consumer for the batch loop: manual commits, cooperative rebalancing."""
    return GroupConsumer(client_config(settings, **{**CONSUMER_DEFAULTS, "group.id": group_id, **overrides}))


def ensure_topics(settings: Settings, specs: Iterable[TopicSpec], *, timeout: float = 30.0) -> list[str]:
    """Create missing topics (with the configured prefix); returns the names created."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(
            settings.topic(spec.name),
            num_partitions=spec.partitions or settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            config=dict(spec.config),
        )
        for spec in specs
        if settings.topic(spec.name) not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


# --- dead letters -------------------------------------------------------------------------

DLQ_REASON: Final = "vigil.dlq.reason"
DLQ_DETAIL: Final = "vigil.dlq.detail"
DLQ_SERVICE: Final = "vigil.dlq.service"
DLQ_AT: Final = "vigil.dlq.at"
SOURCE_TOPIC: Final = "vigil.source.topic"
SOURCE_PARTITION: Final = "vigil.source.partition"
SOURCE_OFFSET: Final = "vigil.source.offset"
SOURCE_TIMESTAMP: Final = "vigil.source.timestamp"


def header_pairs(message: Message) -> tuple[tuple[str, bytes], ...]:
    """A message's headers as (name, bytes) pairs, whatever form the client returned."""
    raw = message.headers() or ()
    items = raw.items() if isinstance(raw, dict) else raw
    return tuple((name, value.encode() if isinstance(value, str) else (value or b"")) for name, value in items)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be processed, with a machine-readable reason."""

    value: bytes
    reason: str
    detail: str
    key: bytes | None = None
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1
    source_timestamp_ms: int = -1
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, message: Message, *, reason: str, detail: str) -> DeadLetter:
        """Dead letter for a consumed message, keeping its bytes, key and headers."""
        _, timestamp = message.timestamp()
        return cls(
            value=message.value() or b"",
            reason=reason,
            detail=detail,
            key=message.key(),
            source_topic=message.topic() or "",
            source_partition=message.partition() or 0,
            source_offset=message.offset() or 0,
            source_timestamp_ms=timestamp,
            headers=header_pairs(message),
        )

    def kafka_headers(self, service: str) -> list[tuple[str, bytes]]:
        own = [
            (DLQ_REASON, self.reason.encode()),
            (DLQ_DETAIL, self.detail[:2000].encode()),
            (DLQ_SERVICE, service.encode()),
            (DLQ_AT, datetime.now(UTC).isoformat().encode()),
            (SOURCE_TOPIC, self.source_topic.encode()),
            (SOURCE_PARTITION, str(self.source_partition).encode()),
            (SOURCE_OFFSET, str(self.source_offset).encode()),
            (SOURCE_TIMESTAMP, str(self.source_timestamp_ms).encode()),
        ]
        # Keep the producer's own headers (trace ids, content type) after ours.
        return own + [(k, v) for k, v in self.headers if not k.startswith("vigil.")]


def send_dead_letters(
    producer: DeliveringProducer, settings: Settings, letters: Iterable[DeadLetter], *, service: str
) -> int:
    """Produce dead letters to the DLQ topic (durable once the producer is flushed)."""
    count = 0
    topic = settings.topic(TX_DLQ)
    for letter in letters:
        producer.produce(topic, letter.value, key=letter.key, headers=letter.kafka_headers(service))
        metrics.DEAD_LETTERS.labels(service, letter.reason).inc()
        count += 1
    return count


# --- the batch loop -------------------------------------------------------------------------


class BatchHandler(Protocol):
    """What a stream service plugs into `BatchLoop`."""

    def process(self, messages: list[Message]) -> None:
        """Handle a micro-batch; return only once every effect is durable.

        Raise to have the same batch retried (transient failure). Malformed input
        must be dead-lettered by the handler, never raised.
        """

    def close(self) -> None:
        """Flush and release resources on shutdown."""


@dataclass
class StopFlag:
    """Set by SIGTERM/SIGINT; the loop finishes its batch, commits and exits."""

    event: threading.Event = field(default_factory=threading.Event)

    def install(self) -> None:
        def _handle(signum: int, _frame: FrameType | None) -> None:
            log.info("stop requested", extra={"signal": signal.Signals(signum).name})
            self.event.set()

        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)

    @property
    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()


def offsets_after(messages: Iterable[Message]) -> list[TopicPartition]:
    """The commit position (last offset + 1) per partition of a batch."""
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        if offset >= highest.get(key, -1):
            highest[key] = offset
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]


class BatchLoop:
    """Consume micro-batches, hand them to a handler, commit only after success.

    A failing batch is retried with capped exponential backoff and is never
    skipped; malformed messages are the handler's to dead-letter.
    """

    def __init__(
        self,
        *,
        consumer: Consumer,
        topics: Sequence[str],
        handler: BatchHandler,
        service: str,
        batch_size: int,
        batch_timeout: float,
        stop: StopFlag,
        health: metrics.Health | None = None,
        on_idle: Callable[[], None] | None = None,
        pause_before_commit: float = 0.0,
    ) -> None:
        self._consumer = consumer
        self._pause_before_commit = pause_before_commit
        self._topics = list(topics)
        self._handler = handler
        self._service = service
        self._batch_size = batch_size
        self._batch_timeout = batch_timeout
        self._stop = stop
        self._health = health or metrics.Health()
        self._on_idle = on_idle
        self._group = getattr(consumer, "group_id", service)
        self._next_lag_report = 0.0

    def run(self) -> None:
        """Run until stopped; always commits finished work and closes the consumer."""
        self._consumer.subscribe(self._topics)
        self._health.set_ready(True)
        try:
            while not self._stop.is_set:
                self._health.tick()
                messages = self._consume()
                if not messages:
                    if self._on_idle is not None:
                        self._on_idle()
                    self._report_lag()
                    continue
                if self._process_with_retry(messages):
                    if self._pause_before_commit:
                        time.sleep(self._pause_before_commit)  # a test's failpoint: widen the replay window
                    self._commit(messages)
                    self._report_lag()
        finally:
            self._health.set_ready(False)
            self._report_lag(force=True)
            try:
                self._handler.close()
            finally:
                self._consumer.close()
            log.info("stopped cleanly", extra={"service": self._service})

    def _consume(self) -> list[Message]:
        raw = self._consumer.consume(num_messages=self._batch_size, timeout=self._batch_timeout)
        messages = []
        for message in raw:
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                # Broker-side errors on fetch are reported, not data: librdkafka retries them.
                log.warning("consume error", extra={"error": error.str()})
        return messages

    def _process_with_retry(self, messages: list[Message]) -> bool:
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                self._handler.process(messages)
            except Exception:
                metrics.BATCH_FAILURES.labels(self._service).inc()
                log.exception("batch failed; retrying", extra={"messages": len(messages), "retry_in": delay})
                if self._stop.event.wait(delay):
                    return False  # stop requested: leave the batch uncommitted for the next owner
                delay = min(delay * 2, 10.0)
                self._health.tick()
                continue
            elapsed = time.perf_counter() - started
            metrics.BATCHES.labels(self._service).inc()
            metrics.BATCH_DURATION.labels(self._service).observe(elapsed)
            metrics.BATCH_SIZE.labels(self._service).observe(len(messages))
            for topic, count in Counter(m.topic() for m in messages).items():
                metrics.MESSAGES_CONSUMED.labels(self._service, topic or "?").inc(count)
            return True

    def _report_lag(self, *, force: bool = False) -> None:
        """Set `vigil_consumer_lag` for the partitions this member owns, at most once a second.

        Uses the watermarks cached from fetch responses (no broker round trip). On
        transactional topics the last commit marker counts as 1 per partition.
        """
        now = time.monotonic()
        if now < self._next_lag_report and not force:
            return
        self._next_lag_report = now + 1.0
        try:
            positions = self._consumer.position(self._consumer.assignment())
        except KafkaException:
            return
        lag_by_topic = dict.fromkeys(self._topics, 0)
        for partition in positions:
            _low, high = self._consumer.get_watermark_offsets(partition, cached=True)
            if high < 0:
                continue  # no fetch response yet: unknown, not zero
            consumed = partition.offset if partition.offset >= 0 else 0
            topic = partition.topic or "?"
            lag_by_topic[topic] = lag_by_topic.get(topic, 0) + max(high - consumed, 0)
        for topic, lag in lag_by_topic.items():
            metrics.CONSUMER_LAG.labels(self._group, topic).set(lag)

    def _commit(self, messages: list[Message]) -> None:
        try:
            self._consumer.commit(offsets=offsets_after(messages), asynchronous=False)
        except KafkaException as exc:
            # Lost the partitions in a rebalance: the new owner replays; effects are idempotent.
            log.warning("commit failed; batch will be replayed by the partition owner", extra={"error": str(exc)})


def read_all(settings: Settings, topic: str, *, timeout: float = 10.0, group_id: str | None = None) -> list[Message]:
    """Read a whole topic from the beginning without committing (inspection and tests)."""
    consumer = make_consumer(settings, group_id=group_id or f"vigil-reader-{time.time_ns()}")
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=timeout)[1] for p in partitions}
        consumer.assign(partitions)
        messages: list[Message] = []
        remaining = {p: end for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                if message.error() is not None:
                    continue
                messages.append(message)
                partition = message.partition() or 0
                if (message.offset() or 0) + 1 >= remaining.get(partition, 0):
                    remaining.pop(partition, None)
            # Transactional topics end in commit markers that are never delivered: compare positions too.
            for position in consumer.position([TopicPartition(topic, p) for p in list(remaining)]):
                if position.offset >= remaining.get(position.partition, 0):
                    remaining.pop(position.partition, None)
        return messages
    finally:
        consumer.close()
