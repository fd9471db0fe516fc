"""`vigil run ingest`: tx.raw -> validate -> transactions table + tx.valid, or tx.dlq.

Per micro-batch (the checkpoint order every step relies on):

1. validate every record (exact fast path, pydantic for the rest) and apply the time window;
2. open a Kafka transaction;
3. write new rows to PostgreSQL in one database transaction (`TransactionStore`); while the
   rows stream in, produce their `tx.valid` messages into the open Kafka transaction (not
   visible to read_committed readers yet); commit the database transaction;
4. add dead letters and the consumer offsets to the Kafka transaction; commit it.

Steps 2-4 run on one writer thread, one batch at a time in consumption order, while the
batch-loop thread validates the next batch (`IngestHandler`); a batch whose effects fail
holds back every batch behind it until it is written.

A crash before the database commit replays the batch from scratch, and the next instance
aborts the open Kafka transaction. A crash between the two commits leaves rows whose
`source_ref` names their own record, so the replay produces them again instead of calling
them duplicates. After the Kafka commit nothing replays. Hence exactly one row and one
visible `tx.valid` message per accepted transaction, and one dead letter per refused record
(docs/adr/0003-ingestion-exactly-once.md).
"""

from __future__ import annotations

import bisect
import gc
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from queue import SimpleQueue
from typing import Any, Final, NamedTuple

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from core import metrics
from core.db import database_ready, make_engine
from core.kafka import (
    CONSUMER_DEFAULTS,
    BatchLoop,
    DeadLetter,
    StopFlag,
    client_config,
    ensure_topics,
    header_pairs,
    offsets_after,
    send_dead_letters,
)
from core.settings import Settings
from core.topics import STREAM_TOPICS, TX_DLQ, TX_RAW, TX_VALID
from ingestion.errors import FatalIngestionError, IngestionError
from ingestion.producer import TransactionalProducer
from ingestion.reasons import RejectReason
from ingestion.store import Candidate, Decision, Outcome, TransactionStore, source_ref
from ingestion.validate import Invalid, TimeWindow, Valid, encode_valid, fast_path, parse_transaction, utc_text

log = logging.getLogger(__name__)

SERVICE: Final = "ingest"
SOURCE: Final = "kafka"  # label of TRANSACTIONS_ACCEPTED/REJECTED; the HTTP API uses its own
REPLAY_HEADER: Final = "vigil.replay.of"  # set by `vigil dlq replay`: the dead letter re-submitted
_TIMESTAMP_NOT_AVAILABLE: Final = 0
_DLQ_DEPTH_EVERY_SECONDS: Final = 15.0
# Validation of one slice overlaps the database write of the previous one.
_SLICES: Final = 4
_MIN_SLICE: Final = 500
_INGEST_TOPICS: Final = (TX_RAW, TX_VALID, TX_DLQ)
_GC_YOUNG_THRESHOLD: Final = 10_000  # allocations between young collections (CPython's default: 700)


class _Letter(NamedTuple):
    message: Message
    reason: str
    detail: str


def consumer_group(settings: Settings) -> str:
    """The ingest consumer group (prefixed like topics, so test runs never share offsets)."""
    return f"{settings.kafka_topic_prefix}vigil-ingest"


def default_instance_id() -> str:
    """Stable per host/pod name: a restarted instance fences and aborts its predecessor's transaction."""
    return socket.gethostname()


class _Batch:
    """One batch on its way from the batch-loop thread (validation) to the writer thread (effects)."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.ingested_at = datetime.now(UTC)
        # Validated slices, in order, then _END (all fed) or _ABANDON (validation itself failed).
        self.slices: SimpleQueue[tuple[list[Candidate], list[Message]] | str] = SimpleQueue()
        # Set by the batch-loop thread before it puts _END (the queue orders the hand-over).
        self.letters: list[_Letter] = []
        self.offsets: list[TopicPartition] = []
        self.group_metadata: object = None


_END: Final = "end"
_ABANDON: Final = "abandon"


class _AbandonedError(IngestionError):
    """A batch not written because validation or an earlier batch failed (it is processed again)."""


class IngestHandler:
    """The `BatchHandler` of the ingest service (see the module docstring for the protocol).

    Two threads: the batch-loop thread validates batch N+1 while one writer thread makes
    batch N's effects durable (database write and commit, then the Kafka commit). Effects stay
    strictly ordered: the writer runs one batch at a time, in consumption order, so every
    batch still commits its rows before its Kafka transaction, and no Kafka transaction
    commits offsets past a batch whose own transaction did not commit (see `process`).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        consumer: Consumer,
        producer: TransactionalProducer,
        store: TransactionStore,
        window: TimeWindow,
        stop: StopFlag,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._store = store
        self._window = window
        self._stop = stop
        self._valid_topic = settings.topic(TX_VALID)
        self._max_bytes = settings.max_message_bytes
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-db")
        self._pending: tuple[_Batch, Future[None]] | None = None  # handed to the writer, not yet confirmed
        self._redo: list[Message] = []  # the first batch whose effects failed: written again before anything
        self._failed = False  # set by the writer when a batch fails; later batches are abandoned
        self.fatal: FatalIngestionError | None = None

    def process(self, messages: list[Message]) -> None:
        """Validate `messages` and hand them to the writer; returns once the previous batch is durable.

        So when this returns, this batch's effects may still be in flight: `BatchLoop`'s own
        offset commit is skipped (`_IngestConsumer`), offsets only ever commit inside the Kafka
        transaction of the batch that produced the output. If the previous batch failed, this
        one was abandoned unwritten (its offsets would cover the failed records): the failed
        batch is written again first, on its own, and then this one when `BatchLoop` retries.
        """
        if self.fatal is not None:
            raise self.fatal
        if self._redo:
            self._write_redo()
        handed = self._hand_over(messages)
        previous, self._pending = self._pending, handed
        if previous is not None and previous[1].exception() is not None:  # waits for it
            self._settle(previous)
            raise IngestionError("the previous batch failed; it is written again before this one")
        if self.fatal is not None:
            raise self.fatal

    def idle(self) -> None:
        """`BatchLoop`'s idle hook: with no new records to trigger it, retry a batch that failed."""
        pending = self._pending
        if pending is not None and pending[1].done():
            self._settle(pending)
        if self._redo and self.fatal is None:
            try:
                self._write_redo()
            except Exception as exc:  # logged by the writer; retried at the next idle or batch
                log.debug("retrying the failed batch did not succeed", extra={"error": repr(exc)})

    def _hand_over(self, messages: list[Message]) -> tuple[_Batch, Future[None]]:
        batch = _Batch(messages)
        future = self._writer.submit(self._write, batch)
        try:
            # The writer starts on slice k while this thread validates slice k+1.
            for chunk in _slices(messages):
                candidates, sources, refused = self._validate(chunk)
                batch.letters.extend(refused)
                batch.slices.put((candidates, sources))
            batch.offsets = offsets_after(messages)
            batch.group_metadata = self._consumer.consumer_group_metadata()
        except BaseException:
            batch.slices.put(_ABANDON)
            self._settle(self._pending)  # not handed over: BatchLoop retries the same records
            raise
        batch.slices.put(_END)
        return batch, future

    def _write_redo(self) -> None:
        """Write the failed batch again, alone, and wait for it: what follows it waits until it succeeds."""
        handed = self._hand_over(self._redo)  # nothing is pending while there is something to redo
        wait([handed[1]])
        self._settle(handed)
        if self._redo:
            raise IngestionError("the failed batch failed again")

    def _settle(self, previous: tuple[_Batch, Future[None]] | None) -> None:
        """Wait until the writer is idle; if `previous` failed, it is the batch to write again."""
        self._pending = None
        self._writer.submit(_nothing).result()  # the writer runs in order: all earlier work is over
        if previous is not None:
            failed = previous[1].exception() is not None
            self._redo = previous[0].messages if failed else []
        self._failed = False

    def _write(self, batch: _Batch) -> None:
        """The writer thread's part: database, then Kafka; one batch at a time, in order."""
        if self._failed:
            raise _AbandonedError("an earlier batch failed; this one is processed again after it")
        try:
            self._write_batch(batch)
        except BaseException as exc:
            self._failed = True  # before this future completes, so the next batch sees it
            if not isinstance(exc, _AbandonedError):  # BatchLoop counts the failure when `process` reports it
                log.warning("batch failed; it is processed again: %r", exc)
            raise

    def _write_batch(self, batch: _Batch) -> None:
        producer = self._producer
        send = producer.send
        topic = self._valid_topic
        ingested_at = batch.ingested_at
        batch_time = utc_text(ingested_at)

        def publish(candidate: Candidate, stored_at: datetime) -> None:
            # Invisible until the Kafka commit below, which only happens after the database commit.
            valid = candidate.valid
            stamp = batch_time if stored_at is ingested_at else utc_text(stored_at)
            send(topic, encode_valid(valid, ingested_at=stamp), key=valid.account_id)

        session = self._store.session(ingested_at=ingested_at, publish=publish)
        try:
            producer.begin()
            written: list[tuple[list[Candidate], list[Message], list[Decision]]] = []
            while True:
                item = batch.slices.get()
                if item == _END:
                    break
                if isinstance(item, str):
                    raise _AbandonedError("validation of the batch failed")
                candidates, sources = item
                written.append((candidates, sources, session.write(candidates)))
            session.commit()
            letters = batch.letters
            inserted: list[Valid] = []
            replayed = 0
            for candidates, sources, decisions in written:
                for candidate, message, decision in zip(candidates, sources, decisions, strict=True):
                    outcome = decision.outcome
                    if outcome is Outcome.INSERTED:
                        inserted.append(candidate.valid)
                    elif outcome is Outcome.REPLAYED:
                        replayed += 1
                    elif outcome is Outcome.DUPLICATE:
                        letters.append(_Letter(message, RejectReason.DUPLICATE_TRANSACTION_ID, decision.detail))
            self._finish(batch, letters)
        except BaseException as exc:
            try:
                session.rollback()
            except Exception as rollback_error:  # closing the connection discards the transaction anyway
                log.warning("database rollback failed", extra={"error": str(rollback_error)})
            if isinstance(exc, FatalIngestionError):
                self._fail(exc)
            elif isinstance(exc, Exception):
                try:
                    producer.abort()
                except Exception as abort_error:
                    self._fail(FatalIngestionError(f"cannot abort the Kafka transaction: {abort_error}"))
            raise
        finally:
            session.close()
        self._record(inserted, letters, replayed=replayed, ingested_at=ingested_at)

    def _validate(self, messages: Sequence[Message]) -> tuple[list[Candidate], list[Message], list[_Letter]]:
        candidates: list[Candidate] = []
        sources: list[Message] = []
        letters: list[_Letter] = []
        window = self._window
        future = window.max_future_seconds
        age = window.max_age_seconds
        now = time.time()
        max_bytes = self._max_bytes
        loads = orjson.loads
        for message in messages:
            raw = message.value()
            verdict: Valid | Invalid | None = None
            # parse_transaction's common case, inlined: it runs for every record.
            if raw and len(raw) <= max_bytes:
                try:
                    value = loads(raw)
                except orjson.JSONDecodeError:
                    value = None
                if type(value) is dict:
                    verdict = fast_path(value)
            if verdict is None:
                verdict = parse_transaction(raw, max_bytes=max_bytes)
            if type(verdict) is Invalid:
                letters.append(_Letter(message, verdict.reason, verdict.detail))
                continue
            valid: Valid = verdict  # type: ignore[assignment]
            kind, stamp = message.timestamp()
            reference = stamp / 1000.0 if kind != _TIMESTAMP_NOT_AVAILABLE else now
            if not reference - age <= valid.occurred_at.timestamp() <= reference + future:
                refused = window.check(valid.occurred_at, reference=reference)
                if refused is not None:
                    letters.append(_Letter(message, refused.reason, refused.detail))
                    continue
            if message.headers():
                replay_of = _replay_of(header_pairs(message))
                ref = source_ref(
                    message.topic() or "", message.partition() or 0, message.offset() or 0, replay_of=replay_of
                )
            else:
                ref = f"{message.topic()}/{message.partition()}/{message.offset()}"  # source_ref(), inlined
            candidates.append(Candidate(valid, ref))
            sources.append(message)
        return candidates, sources, letters

    def _finish(self, batch: _Batch, letters: Sequence[_Letter]) -> None:
        """Dead letters and offsets join the open transaction, which then commits."""
        if letters:
            dead = [DeadLetter.of(letter.message, reason=letter.reason, detail=letter.detail) for letter in letters]
            send_dead_letters(self._producer, self._settings, dead, service=SERVICE)
        self._producer.commit(batch.offsets, batch.group_metadata)

    def _record(
        self, inserted: Sequence[Valid], letters: Sequence[_Letter], *, replayed: int, ingested_at: datetime
    ) -> None:
        if inserted:
            metrics.TRANSACTIONS_ACCEPTED.labels(SOURCE).inc(len(inserted))
            durable = ingested_at.timestamp()
            observe_many(metrics.INGEST_LATENCY, [durable - valid.occurred_at.timestamp() for valid in inserted])
        for reason, count in Counter(letter.reason for letter in letters).items():
            metrics.TRANSACTIONS_REJECTED.labels(SOURCE, str(reason)).inc(count)
        if replayed:
            log.info("re-produced rows an earlier attempt stored before it stopped", extra={"rows": replayed})

    def _fail(self, exc: FatalIngestionError) -> None:
        log.error("fatal: stopping so a fresh instance can take over", extra={"error": str(exc)})
        self.fatal = exc
        self._stop.set()
        raise exc

    def close(self) -> None:
        """Let the batch in flight finish (or fail: then it is replayed by the next owner), then stop."""
        if self._pending is not None:
            batch, future = self._pending
            self._pending = None
            wait([future])
            error = future.exception()
            if error is not None:
                log.warning(
                    "the last batch did not commit; it is replayed on restart",
                    extra={"error": str(error), "messages": len(batch.messages)},
                )
        self._writer.shutdown(wait=True)
        try:
            self._producer.abort()
        except Exception as exc:  # shutting down anyway: the next instance aborts it
            log.warning("could not abort the open transaction on close", extra={"error": str(exc)})


def _nothing() -> None:
    return None


def _slices(messages: Sequence[Message]) -> list[Sequence[Message]]:
    """A batch cut into up to `_SLICES` ordered slices of at least `_MIN_SLICE` records."""
    size = max(_MIN_SLICE, -(-len(messages) // _SLICES))
    return [messages[first : first + size] for first in range(0, len(messages), size)]


def _replay_of(headers: Sequence[tuple[str, bytes]]) -> str | None:
    for name, value in headers:
        if name == REPLAY_HEADER and value:
            return value.decode(errors="replace")
    return None


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """`histogram.observe` for many values under one pass (per-value observe costs ~2 µs here).

    Same effect as calling `observe` for each value: prometheus_client keeps per-bucket
    (non-cumulative) counts and a sum, which is what is incremented.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    counts: Counter[int] = Counter(bisect.bisect_left(bounds, value) for value in values)
    for index, count in counts.items():
        buckets[index].inc(count)
    total.inc(sum(values))


class _IngestConsumer(Consumer):
    """The ingest service's consumer: reports fatal errors; offsets commit only in Kafka transactions.

    `BatchLoop` logs error messages and carries on, which is right for transient ones; a fatal
    one (this static member was fenced) would otherwise leave the process consuming nothing.
    And after each batch it commits the batch's offsets itself. Here they are committed by the
    batch's Kafka transaction, atomically with its output, possibly after `process` returned
    (`IngestHandler`): a plain commit could run ahead of that transaction and, if it then
    failed, skip records whose output was discarded. So `commit` is a no-op.
    """

    def __init__(self, config: dict[str, Any], *, on_fatal: Callable[[KafkaError], None]) -> None:
        super().__init__(config)
        self._on_fatal = on_fatal

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        messages = super().consume(num_messages=num_messages, timeout=timeout)
        for message in messages:
            error = message.error()
            if error is not None and (error.fatal() or error.code() == KafkaError._FATAL):
                self._on_fatal(error)
        return messages

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        offsets = kwargs.get("offsets")
        return list(offsets) if offsets is not None else None


class DlqDepthMonitor:
    """Sets `vigil_dlq_depth` every `every` seconds from a thread of its own.

    Its own client and thread, so a slow broker answer never stalls the ingest loop. The
    value is log end minus log start: transaction commit markers take offsets too, so it is
    an upper bound on the records retained; what alerts care about is that it grows.
    """

    def __init__(self, settings: Settings, *, every: float = _DLQ_DEPTH_EVERY_SECONDS) -> None:
        self._settings = settings
        self._topic = settings.topic(TX_DLQ)
        self._every = every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dlq-depth", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        consumer = Consumer(client_config(self._settings, **{"group.id": f"{consumer_group(self._settings)}-probe"}))
        try:
            while not self._stopped.is_set():
                self.measure(consumer)
                self._stopped.wait(self._every)
        finally:
            consumer.close()

    def measure(self, consumer: Consumer) -> int | None:
        try:
            metadata = consumer.list_topics(self._topic, timeout=10).topics.get(self._topic)
            if metadata is None or metadata.error is not None:
                return None
            depth = 0
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(self._topic, partition), timeout=10)
                depth += max(high - low, 0)
        except KafkaException as exc:
            log.warning("could not read the DLQ depth", extra={"error": str(exc)})
            return None
        metrics.DLQ_DEPTH.labels(self._topic).set(depth)
        return depth


def run_ingest(
    *,
    settings: Settings,
    stop: StopFlag,
    window: TimeWindow | None = None,
    instance_id: str | None = None,
    health: metrics.Health | None = None,
) -> None:
    """Run the ingest service until `stop` is set; raise `FatalIngestionError` if it had to give up."""
    health = health or metrics.Health()
    ensure_topics(settings, [spec for spec in STREAM_TOPICS if spec.name in _INGEST_TOPICS])
    engine = make_engine(settings, pool_size=1)
    health.add_check("database", lambda: database_ready(engine))
    group = consumer_group(settings)
    instance = instance_id or default_instance_id()
    transactional_id = f"{group}-{instance}"
    producer = TransactionalProducer(settings, service=SERVICE, transactional_id=transactional_id)
    producer.init_transactions()
    fatal: list[FatalIngestionError] = []

    def on_fatal(error: KafkaError) -> None:
        # E.g. another process joined with our instance id. It never heals: stop, so the
        # orchestrator restarts us, rather than consume errors forever.
        log.error("fatal Kafka consumer error; stopping", extra={"error": error.str()})
        fatal.append(FatalIngestionError(f"fatal Kafka consumer error: {error.str()}"))
        stop.set()

    # Static membership: a restarted replica takes its partitions back at once instead of
    # waiting a session timeout for the dead member to be evicted.
    consumer = _IngestConsumer(
        client_config(settings, **CONSUMER_DEFAULTS, **{"group.id": group, "group.instance.id": instance}),
        on_fatal=on_fatal,
    )
    handler = IngestHandler(
        settings=settings,
        consumer=consumer,
        producer=producer,
        store=TransactionStore(engine),
        window=window or TimeWindow(),
        stop=stop,
    )
    monitor = DlqDepthMonitor(settings)
    monitor.start()
    log.info(
        "ingesting",
        extra={"topic": settings.topic(TX_RAW), "group": group, "transactional_id": transactional_id},
    )
    # Start-up objects (modules, clients) live as long as the process: freezing them spares every
    # full collection a walk over them, and batches form no reference cycles, so young collections
    # can be rarer. In a validation micro-benchmark the collector took ~25% of the CPU before this.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        BatchLoop(
            consumer=consumer,
            topics=[settings.topic(TX_RAW)],
            handler=handler,
            service=SERVICE,
            batch_size=settings.batch_size,
            batch_timeout=settings.batch_timeout_ms / 1000,
            stop=stop,
            health=health,
            on_idle=handler.idle,
        ).run()
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        monitor.stop()
        try:
            producer.flush_or_raise()
        except Exception as exc:  # nothing committed depends on it; do not mask why we stopped
            log.warning("producer flush on shutdown failed", extra={"error": str(exc)})
        engine.dispose()
    if handler.fatal is not None:
        raise handler.fatal
    if fatal:
        raise fatal[0]
