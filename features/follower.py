"""A read-only follower of the features stage's state, for synchronous scoring (docs/adr/0010).

`FeatureFollower` restores the newest features snapshot of any replica (each is the full
replicated state with offsets for every partition, docs/adr/0002), then reads every
partition of `tx.valid` on a background thread through the same `Sequencer` rules as the
stage and applies what it releases to its own `FeatureEngine`. It never commits, produces
or snapshots: it is a private copy of the stream's state.

`peek(transaction)` answers "what would the stream compute for this transaction now" without
changing that state: the touched entities (and their pairs) are copied into a small scratch
engine together with the events the stream has read but not yet applied that share an entity
with the transaction and come before it in release order, and one row is computed there.

Locking: the follower applies released events in chunks of `_APPLY_CHUNK` (a few hundred
microseconds each) and lets waiting requests in between, so a peek waits about a chunk at most.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from sqlalchemy import Engine

from core import metrics
from core.contracts import Transaction
from core.kafka import make_consumer
from core.memory import freeze_long_lived
from core.settings import Settings
from core.topics import TX_VALID
from features.codec import MalformedTransactionError, Tx, batch_of, decode_transaction
from features.engine import Batch, FeatureEngine, entity_key, epoch_seconds
from features.errors import FeaturesError, IncompatibleStateError
from features.ordering import Entry, Sequencer
from features.registry import ENTITY_KINDS
from features.service import StageOptions, unpack_state
from features.store import SnapshotStore

log = logging.getLogger(__name__)

_PEEK_WAIT: Final = metrics.SCORE_PEEK_WAIT
_STAGE: Final = StageOptions()  # the stage's defaults: lateness (a snapshot carries its own) and idle rule
_APPLY_CHUNK: Final = 32  # events applied per lock hold (~0.1-0.5 ms)
_OFFER_CHUNK: Final = 256  # events sequenced and indexed per lock hold
_CONSUME_BATCH: Final = 2_000
_CONSUME_TIMEOUT: Final = 0.1
_WATERMARK_REFRESH_SECONDS: Final = 0.25
_METADATA_TIMEOUT: Final = 10.0
_RETRY_SECONDS: Final = 1.0
_SCRATCH_CAPACITY: Final = 16
# An event is indexed under each of its entities: (kind index, key).
EntityKey = tuple[int, str]
_Position = tuple[int, int]  # (partition, offset): unique per message


@dataclass(frozen=True, slots=True)
class FollowerStatus:
    """What `GET /v1/system/status`, metrics and tests read."""

    ready: bool
    lag: int  # messages behind the log ends at the last check (-1: not known yet)
    applied: int  # events folded into the state (including the snapshot's)
    unapplied: int  # events read but not yet applied (waiting for the watermark)
    snapshot_id: int | None  # the snapshot restored (None: started from the beginning)
    error: str | None  # why the follower stopped, if it did


def _entity_keys(tx: Tx) -> list[EntityKey]:
    """The event's entities as the engine keys them (`entity_key`: scoped by tenant), as `peek` looks them up."""
    tenant = tx.tenant_id
    keys: list[EntityKey] = [(0, entity_key(tenant, tx.account_id)), (2, entity_key(tenant, tx.merchant_id))]
    if tx.card_id is not None:
        keys.append((1, entity_key(tenant, tx.card_id)))
    if tx.device_id is not None:
        keys.append((3, entity_key(tenant, tx.device_id)))
    if tx.ip is not None:
        keys.append((4, entity_key(tenant, tx.ip)))
    return keys


class FeatureFollower:
    """The features stage's state, followed from `tx.valid` in this process; `peek` reads it."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Engine,
        allowed_lateness: float = _STAGE.allowed_lateness,
        idle_seconds: float = _STAGE.idle_seconds,
    ) -> None:
        self._settings = settings
        self._database = database
        self._source = settings.topic(TX_VALID)
        self._lateness = allowed_lateness
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._waiting = 0  # peeks waiting for the lock: the follower yields to them between chunks
        self._version = 0  # even: stable; odd: the follower is changing the state (see `peek`)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine = FeatureEngine(capacities=dict.fromkeys(ENTITY_KINDS, 1))
        self._sequencer: Sequencer[Tx] = Sequencer(partitions=(), allowed_lateness=allowed_lateness)
        # Events read but not applied yet (buffered by the sequencer, or released and waiting for their
        # chunk), by entity: what a peek must add to the state to see what the stream will have seen.
        self._unapplied: dict[EntityKey, dict[_Position, Entry[Tx]]] = {}
        self._unapplied_count = 0
        self._scratch: queue.SimpleQueue[FeatureEngine] = queue.SimpleQueue()
        self._partitions: list[int] = []
        self._targets: dict[int, int] = {}  # log ends seen at start: ready once read up to them
        self._low: dict[int, int] = {}
        self._high: dict[int, int] = {}
        self._last_seen: dict[int, float] = {}
        self._all_idle = False
        self._high_refreshed = 0.0
        self._ready = False
        self._lag = -1
        self._snapshot_id: int | None = None
        self._error: str | None = None
        self.skipped = 0  # malformed records passed over (the stage dead-letters them)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Restore and follow on a background thread; returns at once (see `ready`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="feature-follower", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._ready = False

    @property
    def ready(self) -> bool:
        """True once everything on `tx.valid` when it started has been read, while it keeps following."""
        return self._ready

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._ready and time.monotonic() < deadline and self._error is None:
            time.sleep(0.02)
        return self._ready

    def status(self) -> FollowerStatus:
        return FollowerStatus(
            ready=self._ready,
            lag=self._lag,
            applied=self._engine.processed,
            unapplied=self._unapplied_count,
            snapshot_id=self._snapshot_id,
            error=self._error,
        )

    # --- peek ------------------------------------------------------------------------------

    def peek(self, transaction: Transaction) -> np.ndarray:
        """The feature row the stream would compute for `transaction` now; the state is not changed.

        Includes the events already read that share an entity with it and come before it in
        release order (time, id), as the stream will apply them first. A transaction at or
        behind what the stream has released would be late there: computed without being folded
        in, after everything released, like the stage does.
        """
        batch = Batch.empty()
        batch.append_transaction(transaction)
        at = (epoch_seconds(transaction.occurred_at), transaction.transaction_id)
        keys: list[EntityKey] = [(0, batch.accounts[0]), (2, batch.merchants[0])]
        for index, key in ((1, batch.cards[0]), (3, batch.devices[0]), (4, batch.ips[0])):
            if key is not None:
                keys.append((index, key))
        try:
            scratch = self._scratch.get_nowait()
        except queue.Empty:
            scratch = FeatureEngine(capacities=dict.fromkeys(ENTITY_KINDS, _SCRATCH_CAPACITY))
        try:
            # Optimistic first (a seqlock): read without the lock and keep the copy if the follower
            # changed nothing meanwhile, so concurrent peeks never queue behind each other. A change
            # (or anything a half-changed state raises) means: copy again under the lock.
            waited = 0.0
            version = self._version
            copied = False
            if not version & 1:
                try:
                    batch = self._gather(transaction, at, keys)
                    self._engine.copy_entities(batch, into=scratch)
                    copied = self._version == version
                except Exception:  # a torn read of a state being changed: copied again under the lock
                    copied = False
            if not copied:
                self._waiting += 1
                asked = time.perf_counter()
                with self._lock:
                    waited = time.perf_counter() - asked
                    self._waiting -= 1
                    batch = self._gather(transaction, at, keys)
                    self._engine.copy_entities(batch, into=scratch)
            row: np.ndarray = scratch.compute(batch)[-1]
        finally:
            self._scratch.put(scratch)
        _PEEK_WAIT.observe(waited)
        return row

    def _gather(self, transaction: Transaction, at: tuple[float, str], keys: list[EntityKey]) -> Batch:
        """The unapplied events the stream applies before `transaction` that share an entity with it, then it."""
        last = self._sequencer.last_released
        late = last is not None and at <= last
        before: dict[_Position, Entry[Tx]] = {}
        for entity in keys:
            for position, entry in self._unapplied.get(entity, {}).items():
                order = (entry[0], entry[1])
                if order < at or (late and last is not None and order <= last):
                    before[position] = entry
        events = sorted(before.values(), key=lambda entry: (entry[0], entry[1]))
        batch = batch_of([entry[4] for entry in events], [True] * len(events))
        batch.append_transaction(transaction, apply=not late)
        return batch

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the lock and mark the state as changing (odd version) for optimistic peeks."""
        with self._lock:
            self._version += 1
            try:
                yield
            finally:
                self._version += 1

    # --- the follower thread ---------------------------------------------------------------

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = make_consumer(self._settings, group_id=self._settings.topic("vigil-score-follower"))
            if not self._restore(consumer):
                return
            while not self._stop.is_set():
                self._step(consumer)
        except Exception as exc:  # the scorer falls back to replaying history; say why
            self._error = f"{type(exc).__name__}: {exc}"
            self._ready = False
            log.exception("feature follower stopped; scoring replays history instead")
        finally:
            if consumer is not None:
                consumer.close()

    def _restore(self, consumer: Consumer) -> bool:
        """Newest snapshot of any replica (or nothing), assign every partition from its offsets."""
        partitions = self._discover(consumer)
        if not partitions:
            return False
        store = SnapshotStore(self._database, source_topic=self._source)
        engine, sequencer = FeatureEngine(), Sequencer[Tx](partitions=partitions, allowed_lateness=self._lateness)
        for attempt in range(3):
            snapshots = store.list()
            if not snapshots:
                break
            newest = snapshots[0]
            try:
                engine, sequencer, _ = unpack_state(
                    store.load_state(newest.snapshot_id), partitions=partitions, load=store.load_state
                )
            except IncompatibleStateError:
                # Written before an upgrade that keys state differently: follow from the beginning instead
                # (with the fresh engine and sequencer made above).
                log.warning("newest feature snapshot is from an incompatible version; following from the start")
                break
            except FeaturesError:  # pruned between listing and loading (a newer one exists): list again
                if attempt == 2:
                    raise
                continue
            self._snapshot_id = newest.snapshot_id
            break
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self._source, partition), timeout=_METADATA_TIMEOUT, cached=False
            )
            self._low[partition], self._high[partition], self._targets[partition] = low, high, high
        assignment = [
            TopicPartition(self._source, p, n if (n := sequencer.partitions[p].next_offset) >= 0 else OFFSET_BEGINNING)
            for p in partitions
        ]
        with self._changing():
            self._engine, self._sequencer, self._partitions = engine, sequencer, partitions
            self._index([(e.time, e.transaction_id, e.partition, e.offset, e.item) for e in sequencer.pending()])
        consumer.assign(assignment)
        self._last_seen = dict.fromkeys(partitions, time.monotonic())
        freeze_long_lived()  # the restored key maps
        log.info(
            "feature follower restored",
            extra={"snapshot_id": self._snapshot_id, "processed": engine.processed, "partitions": len(partitions)},
        )
        self._check_ready()
        return True

    def _discover(self, consumer: Consumer) -> list[int]:
        """Partitions of tx.valid, waiting for the topic (the API may start before the stream topics exist)."""
        while not self._stop.is_set():
            topic = consumer.list_topics(self._source, timeout=_METADATA_TIMEOUT).topics.get(self._source)
            if topic is not None and topic.error is None and topic.partitions:
                return sorted(topic.partitions)
            self._stop.wait(_RETRY_SECONDS)
        return []

    def _step(self, consumer: Consumer) -> None:
        messages = consumer.consume(num_messages=_CONSUME_BATCH, timeout=_CONSUME_TIMEOUT)
        now = time.monotonic()
        entries: list[Entry[Tx]] = []
        skipped: list[tuple[int, int]] = []
        for message in messages:
            if message.error() is not None:
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            self._last_seen[partition] = now
            try:
                tx = decode_transaction(message.value() or b"")
            except MalformedTransactionError:
                skipped.append((partition, offset))
                continue
            entries.append((tx.time, tx.transaction_id, partition, offset, tx))
        if messages and self._all_idle:
            # Same rule as the stage: after a pause every partition gets a fresh grace period.
            self._last_seen = dict.fromkeys(self._partitions, now)
            self._all_idle = False
        idle = self._idle(consumer, now)
        self._all_idle = len(idle) == len(self._partitions)
        sequencer = self._sequencer
        # In chunks, so a peek waits for one chunk at most; a peek between chunks sees the follower
        # as if it had read only the messages before the chunk, which is a consistent state.
        for start in range(0, len(entries), _OFFER_CHUNK):
            chunk = entries[start : start + _OFFER_CHUNK]
            if self._waiting:
                time.sleep(0)
            with self._changing():
                late = sequencer.offer_entries(chunk)  # late events are not folded into state: dropped
                if late:
                    dropped = set(map(id, late))
                    chunk = [entry for entry in chunk if id(entry) not in dropped]
                self._index(chunk)
        with self._changing():
            for partition, offset in skipped:
                sequencer.skip(partition=partition, offset=offset)
            released = sequencer.release_entries(idle)
        self.skipped += len(skipped)
        for start in range(0, len(released), _APPLY_CHUNK):
            if self._waiting:
                time.sleep(0)  # let a waiting peek take the lock first
            chunk = released[start : start + _APPLY_CHUNK]
            with self._changing():
                self._engine.compute(batch_of([entry[4] for entry in chunk], [True] * len(chunk)))
                self._unindex(chunk)
        if not self._ready:
            self._check_ready()

    def _index(self, entries: Iterable[Entry[Tx]]) -> None:
        unapplied = self._unapplied
        count = 0
        for entry in entries:
            tx = entry[4]
            position = (entry[2], entry[3])
            for key in _entity_keys(tx):
                found = unapplied.get(key)
                if found is None:
                    unapplied[key] = {position: entry}
                else:
                    found[position] = entry
            count += 1
        self._unapplied_count += count

    def _unindex(self, entries: list[Entry[Tx]]) -> None:
        unapplied = self._unapplied
        for entry in entries:
            position = (entry[2], entry[3])
            for key in _entity_keys(entry[4]):
                found = unapplied.get(key)
                if found is not None:
                    found.pop(position, None)
                    if not found:
                        del unapplied[key]
        self._unapplied_count -= len(entries)

    def _idle(self, consumer: Consumer, now: float) -> list[int]:
        """Partitions read up to their log end and silent for `idle_seconds` (the stage's rule); refreshes lag."""
        if now - self._high_refreshed >= _WATERMARK_REFRESH_SECONDS:
            for partition in self._partitions:
                try:
                    # The consumer's cached log end, updated by every fetch response: no broker round trip.
                    _, high = consumer.get_watermark_offsets(TopicPartition(self._source, partition), cached=True)
                    if high < 0:
                        _, high = consumer.get_watermark_offsets(
                            TopicPartition(self._source, partition), timeout=_METADATA_TIMEOUT, cached=False
                        )
                except KafkaException:
                    continue
                self._high[partition] = high
            self._high_refreshed = now
            self._lag = sum(max(0, self._high.get(p, 0) - self._position(p)) for p in self._partitions)
            metrics.SCORE_FOLLOWER_LAG.set(self._lag)
        return [
            partition
            for partition in self._partitions
            if now - self._last_seen.get(partition, now) >= self._idle_seconds
            and self._position(partition) >= self._high.get(partition, math.inf)
        ]

    def _position(self, partition: int) -> int:
        """Next offset to read (the log start while nothing was read, as the stage counts it)."""
        offset = self._sequencer.partitions[partition].next_offset
        return offset if offset >= 0 else self._low.get(partition, 0)

    def _check_ready(self) -> None:
        if all(self._position(p) >= self._targets[p] for p in self._partitions):
            # What catching up built (the stream since the snapshot) is long-lived too: out of the
            # collector's sight before the first peek, or every full collection scans it (45-170 ms
            # pauses of the event loop measured with 150,000 events caught up from the log).
            freeze_long_lived()
            self._ready = True
            log.info("feature follower caught up", extra={"processed": self._engine.processed})
