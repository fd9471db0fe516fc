"""The batch loop against the real broker: round trip, dead letters, commit-after-durable."""

from __future__ import annotations

import threading
import uuid

import orjson
import pytest
from confluent_kafka import Message
from prometheus_client import REGISTRY

from core.contracts import Transaction
from core.kafka import (
    DLQ_REASON,
    SOURCE_OFFSET,
    SOURCE_TOPIC,
    BatchLoop,
    DeadLetter,
    DeliveringProducer,
    StopFlag,
    make_consumer,
    read_all,
    send_dead_letters,
)
from core.settings import Settings
from core.topics import TX_DLQ, TX_RAW
from tests.core.test_contracts import valid_payload

pytestmark = pytest.mark.integration


class CollectingHandler:
    """Keeps valid transactions; dead-letters the rest; can be told to fail N times."""

    def __init__(self, settings: Settings, producer: DeliveringProducer, *, failures: int = 0) -> None:
        self.settings = settings
        self.producer = producer
        self.seen: list[Transaction] = []
        self.failures = failures
        self.attempts = 0
        self.closed = False

    def process(self, messages: list[Message]) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("transient failure")
        letters = []
        for message in messages:
            try:
                self.seen.append(Transaction.model_validate_json(message.value() or b""))
            except ValueError as exc:
                letters.append(DeadLetter.of(message, reason="contract_violation", detail=str(exc)))
        send_dead_letters(self.producer, self.settings, letters, service="test")
        self.producer.flush_or_raise()

    def close(self) -> None:
        self.closed = True


def produce(settings: Settings, values: list[bytes]) -> None:
    producer = DeliveringProducer(settings, service="test")
    for value in values:
        producer.produce(settings.topic(TX_RAW), value, key=b"acc-1")
    producer.flush_or_raise()


def run_until(loop: BatchLoop, stop: StopFlag, done: threading.Event, timeout: float = 30) -> None:
    thread = threading.Thread(target=loop.run)
    thread.start()
    done.wait(timeout)
    stop.set()
    thread.join(15)
    assert not thread.is_alive(), "loop did not stop within 15 s of the stop flag"


def make_loop(
    settings: Settings, handler: CollectingHandler, stop: StopFlag, group: str, *, batch_size: int = 500
) -> BatchLoop:
    return BatchLoop(
        consumer=make_consumer(settings, group_id=group),
        topics=[settings.topic(TX_RAW)],
        handler=handler,
        service="test",
        batch_size=batch_size,
        batch_timeout=0.2,
        stop=stop,
    )


def test_round_trip_and_dead_letters_keep_the_consumer_going(topics: Settings) -> None:
    settings = topics
    good = [orjson.dumps(valid_payload(transaction_id=f"tx-{i}")) for i in range(50)]
    bad = [b"{not json", orjson.dumps(valid_payload(amount="-1")), b""]
    produce(settings, good[:25] + bad + good[25:])

    stop, done = StopFlag(), threading.Event()
    handler = CollectingHandler(settings, DeliveringProducer(settings, service="test"))
    original = handler.process

    def process(messages: list[Message]) -> None:
        original(messages)
        if len(handler.seen) >= 50:
            done.set()

    handler.process = process  # type: ignore[method-assign]
    group = f"g-{uuid.uuid4().hex}"
    run_until(make_loop(settings, handler, stop, group), stop, done)

    assert sorted(t.transaction_id for t in handler.seen) == sorted(f"tx-{i}" for i in range(50))
    assert handler.closed
    letters = read_all(settings, settings.topic(TX_DLQ))
    assert len(letters) == 3
    assert sorted(m.value() or b"" for m in letters) == sorted(bad)
    for letter in letters:
        headers = dict(letter.headers() or [])
        assert headers[DLQ_REASON] == b"contract_violation"
        assert headers[SOURCE_TOPIC] == settings.topic(TX_RAW).encode()
        assert int(headers[SOURCE_OFFSET] or b"-1") >= 0

    # Offsets were committed after the work: the same group sees nothing new.
    consumer = make_consumer(settings, group_id=group)
    consumer.subscribe([settings.topic(TX_RAW)])
    leftovers = [m for m in consumer.consume(num_messages=100, timeout=5) if m.error() is None]
    consumer.close()
    assert leftovers == []


def test_failed_batches_are_retried_not_skipped(topics: Settings) -> None:
    settings = topics
    produce(settings, [orjson.dumps(valid_payload(transaction_id=f"tx-{i}")) for i in range(10)])
    stop, done = StopFlag(), threading.Event()
    handler = CollectingHandler(settings, DeliveringProducer(settings, service="test"), failures=2)
    original = handler.process

    def process(messages: list[Message]) -> None:
        original(messages)
        if len(handler.seen) >= 10:
            done.set()

    handler.process = process  # type: ignore[method-assign]
    run_until(make_loop(settings, handler, stop, f"g-{uuid.uuid4().hex}"), stop, done)
    assert handler.attempts >= 3
    assert sorted(t.transaction_id for t in handler.seen) == sorted(f"tx-{i}" for i in range(10))


def test_uncommitted_work_is_replayed_after_a_stop(topics: Settings) -> None:
    """A batch that never succeeded is not committed: the next consumer in the group gets it again."""
    settings = topics
    produce(settings, [orjson.dumps(valid_payload(transaction_id=f"tx-{i}")) for i in range(5)])
    group = f"g-{uuid.uuid4().hex}"
    stop, attempted = StopFlag(), threading.Event()
    failing = CollectingHandler(settings, DeliveringProducer(settings, service="test"), failures=10**6)
    original = failing.process

    def process(messages: list[Message]) -> None:
        attempted.set()
        original(messages)

    failing.process = process  # type: ignore[method-assign]
    run_until(make_loop(settings, failing, stop, group), stop, attempted)
    assert failing.seen == []

    stop2, done = StopFlag(), threading.Event()
    healthy = CollectingHandler(settings, DeliveringProducer(settings, service="test"))
    original2 = healthy.process

    def process2(messages: list[Message]) -> None:
        original2(messages)
        if len(healthy.seen) >= 5:
            done.set()

    healthy.process = process2  # type: ignore[method-assign]
    run_until(make_loop(settings, healthy, stop2, group), stop2, done)
    assert len(healthy.seen) == 5


def test_consumer_lag_gauge_counts_what_the_group_has_not_consumed(topics: Settings) -> None:
    settings = topics
    produce(settings, [orjson.dumps(valid_payload(transaction_id=f"tx-{i}")) for i in range(10)])
    stop, done = StopFlag(), threading.Event()
    handler = CollectingHandler(settings, DeliveringProducer(settings, service="test"))
    original = handler.process

    def process(messages: list[Message]) -> None:
        original(messages)
        stop.set()  # one batch only: the rest stays behind as lag
        done.set()

    handler.process = process  # type: ignore[method-assign]
    group = f"g-{uuid.uuid4().hex}"
    loop = make_loop(settings, handler, stop, group, batch_size=4)
    run_until(loop, stop, done)

    consumed = len(handler.seen)
    assert 1 <= consumed <= 4
    lag = REGISTRY.get_sample_value("vigil_consumer_lag", {"group": group, "topic": settings.topic(TX_RAW)})
    assert lag == 10 - consumed
