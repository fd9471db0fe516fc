"""`vigil run features`: tx.valid -> FeatureVector on tx.features, with snapshots for restarts.

Design (docs/adr/0002-feature-state-and-partitioning.md): every replica reads
*every* partition of tx.valid and keeps the whole feature state, so merchant,
device and ip features see all their transactions whatever the partitioning;
the deterministic sequencer makes that state identical on every replica. Each
replica *emits* only for the partitions it owns (partition % replicas == index).

Checkpoint order: flush the producer (outputs durable) -> write the snapshot
(state + input offsets + output log ends) to PostgreSQL. A restart restores the
snapshot, re-reads the input from its offsets and suppresses the outputs that
already reached tx.features after it (found by reading the output topic back),
so a kill -9 produces neither gaps nor duplicates.
"""

from __future__ import annotations

import gc
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from sqlalchemy import Engine

from core import metrics
from core.kafka import BatchProducer, DeadLetter, StopFlag, make_consumer, send_dead_letters
from core.settings import Settings
from core.topics import TX_FEATURES, TX_VALID
from features.codec import VECTOR_FORMS, Tx, VectorEncoder, batch_of, decode_transaction, decode_transactions
from features.engine import FeatureEngine, StateCopy, StateMark
from features.errors import FeaturesError, IncompatibleStateError
from features.ordering import Entry, Sequencer
from features.store import SnapshotStore, choose_snapshot, pack_snapshot, unpack_snapshot

log = logging.getLogger(__name__)

SERVICE: Final = "features"
SOURCE_PARTITION_HEADER: Final = "vigil.features.source.partition"
SOURCE_OFFSET_HEADER: Final = "vigil.features.source.offset"
_WATERMARK_REFRESH_SECONDS: Final = 0.25
_METADATA_TIMEOUT: Final = 10.0
_DELTA_LIMIT: Final = 0.5  # above this share of changed entities a full snapshot is cheaper to restore
COMPRESSION_TYPES: Final = ("none", "lz4", "zstd", "snappy", "gzip")
_GC_YOUNG_THRESHOLD: Final = 50_000
_ID: Final = itemgetter(0)  # Tx.transaction_id (also Entry's time: see _ENTRY_*)
_TIME: Final = itemgetter(1)  # Tx.time
_ACCOUNT: Final = itemgetter(2)  # Tx.account_id
_RAW: Final = itemgetter(11)  # Tx.raw
_PARTITION: Final = itemgetter(2)  # Entry's partition
_OFFSET: Final = itemgetter(3)  # Entry's offset
_ITEM: Final = itemgetter(4)  # Entry's item (a Tx)


@dataclass(frozen=True, slots=True)
class StageOptions:
    """Knobs of the online stage (CLI options; defaults documented in docs/features.md)."""

    replica_index: int = 0
    replicas: int = 1
    allowed_lateness: float = 10.0
    idle_seconds: float = 2.0
    snapshot_interval: float = 30.0
    # Named vectors were ~5.3 KB of JSON (compact ~2 KB): lz4 made producing them 2.6x dearer in CPU
    # (bench/features_produce.py) for fewer bytes on the broker; "none" spends network and disk
    # instead (docs/features.md).
    output_compression: str = "none"
    # "compact" vectors carry values in registry order (~2.0 KB); "named" (~5.3 KB) is for consumers
    # that predate the compact form (core.contracts.FeatureVector reads both).
    vector_form: str = "compact"

    def __post_init__(self) -> None:
        if not 0 <= self.replica_index < self.replicas:
            raise FeaturesError(f"replica index {self.replica_index} is not in 0..{self.replicas - 1}")
        if self.allowed_lateness < 0 or self.idle_seconds <= 0 or self.snapshot_interval <= 0:
            raise FeaturesError("allowed lateness must be >= 0, idle and snapshot intervals > 0")
        if self.output_compression not in COMPRESSION_TYPES:
            raise FeaturesError(f"output compression must be one of {', '.join(COMPRESSION_TYPES)}")
        if self.vector_form not in VECTOR_FORMS:
            raise FeaturesError(f"vector form must be one of {', '.join(VECTOR_FORMS)}")

    @property
    def owner(self) -> str:
        return f"{self.replica_index}/{self.replicas}"


def _encode_item(tx: Tx) -> str:
    return tx.raw.decode()


def _decode_item(raw: str) -> Tx:
    return decode_transaction(raw.encode())


def pack_state(engine: FeatureEngine, sequencer: Sequencer[Tx]) -> bytes:
    """Engine and sequencer in one blob (both exact; a full state)."""
    return _pack(engine.copy_state(), sequencer.state(_encode_item), base_id=None)


def _pack(engine_state: StateCopy, ordering_state: dict[str, Any], *, base_id: int | None) -> bytes:
    ordering = zlib.compress(orjson.dumps(ordering_state), 1)
    return pack_snapshot(base_id=base_id, engine=engine_state.to_bytes(), ordering=ordering)


def unpack_state(
    blob: bytes, *, partitions: Iterable[int], load: Callable[[int], bytes] | None = None
) -> tuple[FeatureEngine, Sequencer[Tx], StateMark | None]:
    """Engine and sequencer from a stored blob; a delta's base is fetched with `load(snapshot_id)`.

    Also returns the mark of the full state the engine was rebuilt from, so the stage can go on
    writing deltas against it.
    """
    base_id, engine_bytes, ordering = unpack_snapshot(blob)
    if base_id is None:
        engine = FeatureEngine.from_bytes(engine_bytes)
        mark = engine.mark()
    else:
        if load is None:
            raise FeaturesError("a delta snapshot needs its base snapshot")
        base_base, base_bytes, _ = unpack_snapshot(load(base_id))
        if base_base is not None:
            raise FeaturesError(f"snapshot {base_id} is not a full state")
        engine = FeatureEngine.from_bytes(base_bytes)
        mark = engine.mark()
        engine.apply_delta(engine_bytes)
    state = orjson.loads(zlib.decompress(ordering))
    return engine, Sequencer.from_state(state, _decode_item, partitions=partitions), mark


class FeatureStage:
    """The online features stage: one instance per process."""

    def __init__(
        self,
        *,
        settings: Settings,
        options: StageOptions,
        database: Engine,
        stop: StopFlag,
        health: metrics.Health | None = None,
    ) -> None:
        self._settings = settings
        self._options = options
        self._stop = stop
        self._health = health or metrics.Health()
        self._source = settings.topic(TX_VALID)
        self._target = settings.topic(TX_FEATURES)
        self._store = SnapshotStore(database, source_topic=self._source)
        # Offsets live in the snapshots; the group only carries the owned partitions' progress so
        # consumer-lag monitoring and autoscaling see this stage like any other.
        self._reader: Consumer = make_consumer(settings, group_id=settings.topic("vigil-features"))
        self._probe: Consumer = make_consumer(settings, group_id=f"{settings.topic('vigil-features')}-probe")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-snapshots")
        self._writing: Future[tuple[int, StateMark | None]] | None = None
        # The full snapshot deltas are taken against: (snapshot id, what it covered).
        self._base: tuple[int, StateMark] | None = None
        # Buffers full copies reuse (one snapshot is in flight at a time, so one set suffices).
        self._copies: dict[str, np.ndarray] = {}
        self._producer = BatchProducer(settings, service=SERVICE, **{"compression.type": options.output_compression})
        self._partitions: list[int] = []
        self._output_partitions: list[int] = []
        self._owned: tuple[int, ...] = ()
        self._engine = FeatureEngine()
        self._encoder = VectorEncoder(options.vector_form)
        self._sequencer: Sequencer[Tx] = Sequencer(partitions=(), allowed_lateness=options.allowed_lateness)
        self._suppress: dict[int, set[int]] = {}
        self._last_seen: dict[int, float] = {}
        self._high: dict[int, tuple[int, int]] = {}
        self._high_refreshed = 0.0
        self._all_idle = False
        self._last_snapshot = time.monotonic()
        self.emitted = 0
        self.snapshots = 0

    # --- start-up ------------------------------------------------------------------------

    def _discover(self) -> None:
        topics = self._reader.list_topics(timeout=_METADATA_TIMEOUT).topics
        for name in (self._source, self._target):
            if name not in topics or topics[name].error is not None:
                raise FeaturesError(f"topic {name!r} does not exist; create the stream topics first")
        self._partitions = sorted(topics[self._source].partitions)
        self._output_partitions = sorted(topics[self._target].partitions)
        self._owned = tuple(p for p in self._partitions if p % self._options.replicas == self._options.replica_index)

    def _restore(self) -> None:
        chosen = choose_snapshot(self._store.list(), owner=self._options.owner, owned=self._owned)
        blob, restored = b"", None
        if chosen is not None:
            blob = self._store.load_state(chosen.snapshot_id)
            try:
                restored = unpack_state(blob, partitions=self._partitions, load=self._store.load_state)
            except IncompatibleStateError:
                log.warning(
                    "snapshot %d is from an incompatible version: starting from the beginning of the input",
                    chosen.snapshot_id,
                    extra={"snapshot_id": chosen.snapshot_id},
                )
                chosen = None
        if chosen is None or restored is None:
            log.info("no snapshot: starting from the beginning of the input", extra={"owned": self._owned})
            self._engine = FeatureEngine()
            self._sequencer = Sequencer(partitions=self._partitions, allowed_lateness=self._options.allowed_lateness)
            scan_from: dict[int, int] = {}
        else:
            self._engine, self._sequencer, mark = restored
            base_id, _, _ = unpack_snapshot(blob)
            if chosen.owner == self._options.owner and mark is not None:
                # Go on with deltas against the same full state (pruning keeps it: it is ours).
                self._base = (base_id or chosen.snapshot_id, mark)
            if self._sequencer.allowed_lateness != self._options.allowed_lateness:
                log.warning("allowed lateness differs from the snapshot's; keeping the snapshot's")
            scan_from = chosen.output_offsets
            log.info(
                "restored snapshot %d (%d events processed, %s)",
                chosen.snapshot_id,
                chosen.processed,
                "full state" if base_id is None else f"delta of full snapshot {base_id}",
                extra={"snapshot_id": chosen.snapshot_id, "processed": chosen.processed, "owner": chosen.owner},
            )
        self._suppress = self._already_emitted(scan_from)
        assignment = []
        for partition in self._partitions:
            progress = self._sequencer.partitions[partition]
            offset = progress.next_offset if progress.next_offset >= 0 else OFFSET_BEGINNING
            assignment.append(TopicPartition(self._source, partition, offset))
        self._reader.assign(assignment)
        now = time.monotonic()
        self._last_seen = dict.fromkeys(self._partitions, now)

    def _already_emitted(self, scan_from: dict[int, int]) -> dict[int, set[int]]:
        """Source offsets of our partitions already on tx.features after the snapshot (not to repeat)."""
        emitted: dict[int, set[int]] = {p: set() for p in self._owned}
        reader = make_consumer(self._settings, group_id=f"{self._settings.topic('vigil-features')}-scan")
        try:
            ranges = {}
            for partition in self._output_partitions:
                low, high = reader.get_watermark_offsets(
                    TopicPartition(self._target, partition), timeout=_METADATA_TIMEOUT
                )
                start = max(scan_from.get(partition, low), low)
                if high > start:
                    ranges[partition] = (start, high)
            if not ranges:
                return emitted
            reader.assign([TopicPartition(self._target, p, start) for p, (start, _) in ranges.items()])
            remaining = dict(ranges)
            deadline = time.monotonic() + 120.0
            while remaining and time.monotonic() < deadline:
                for message in reader.consume(num_messages=10_000, timeout=0.5):
                    if message.error() is not None:
                        continue
                    partition = message.partition() or 0
                    headers = dict(message.headers() or ())
                    source = headers.get(SOURCE_PARTITION_HEADER)
                    offset = headers.get(SOURCE_OFFSET_HEADER)
                    if source is not None and offset is not None and int(source) in emitted:
                        emitted[int(source)].add(int(offset))
                    if (message.offset() or 0) + 1 >= remaining.get(partition, (0, 0))[1]:
                        remaining.pop(partition, None)
            if remaining:
                raise FeaturesError(f"could not read back tx.features partitions {sorted(remaining)}")
        finally:
            reader.close()
        count = sum(map(len, emitted.values()))
        log.info("%d outputs already emitted after the snapshot will not be repeated", count, extra={"count": count})
        return emitted

    def settle_memory(self) -> None:
        """Take everything alive now (the state's key maps above all) out of the cyclic GC's scans.

        Full collections traverse every tracked container: with ~400k entity keys in the slot
        maps they cost ~0.1 s each and came to ~5 us per transaction. Nothing the stage keeps
        forms reference cycles, so the collector has nothing to find there; garbage is still
        freed by reference counting. Called after a restore and after every snapshot. Process-wide,
        like the GC itself: the stage owns its process.
        """
        gc.collect()
        gc.freeze()
        # Each micro-batch keeps ~20k young containers alive (messages, transactions, entries)
        # while it is processed; at the default threshold of 700 the young-generation
        # collections traversed them over and over (~7% of the stage's CPU in `perf`, ~2% now).
        gc.set_threshold(_GC_YOUNG_THRESHOLD, 20, 100)

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Run until the stop flag is set; always flushes, snapshots and closes."""
        self._discover()
        self._restore()
        self.settle_memory()
        self._health.set_ready(True)
        clean = False
        try:
            while not self._stop.is_set:
                self._health.tick()
                self.step()
            clean = True
        finally:
            self._health.set_ready(False)
            try:
                if clean:
                    self._snapshot(wait=True)
            finally:
                self._writer.shutdown(wait=True)
                self._reader.close()
                self._probe.close()
            log.info("stopped cleanly" if clean else "stopped on error", extra={"service": SERVICE})

    def step(self) -> None:
        """Consume one micro-batch, release what the watermark allows, emit, maybe snapshot."""
        settings = self._settings
        messages = self._reader.consume(num_messages=settings.batch_size, timeout=settings.batch_timeout_ms / 1000)
        now = time.monotonic()
        sequencer = self._sequencer
        entries: list[Entry[Tx]] = []
        dead: list[DeadLetter] = []
        if messages:
            # Whole-batch calls (C-level maps, one decoder pass): per-message Python was a large
            # share of the stage's CPU.
            if any(map(Message.error, messages)):
                for message in messages:
                    error = message.error()
                    if error is not None:
                        log.warning("consume error", extra={"error": error.str()})
                messages = [message for message in messages if message.error() is None]
            values: list[Any] = list(map(Message.value, messages))
            if None in values:
                values = [value or b"" for value in values]
            partitions: list[Any] = list(map(Message.partition, messages))
            offsets: list[Any] = list(map(Message.offset, messages))
            for partition in set(partitions):
                self._last_seen[partition] = now
            transactions, malformed = decode_transactions(values)
            if malformed:
                for index, exc in malformed.items():
                    sequencer.skip(partition=partitions[index], offset=offsets[index])
                    if partitions[index] in self._owned:  # only the owner dead-letters: replicas do not repeat it
                        dead.append(DeadLetter.of(messages[index], reason=exc.reason, detail=exc.detail))
                kept = [index for index in range(len(values)) if index not in malformed]
                partitions = [partitions[index] for index in kept]
                offsets = [offsets[index] for index in kept]
            times, ids = map(_TIME, transactions), map(_ID, transactions)
            entries = list(zip(times, ids, partitions, offsets, transactions, strict=True))
        late = sequencer.offer_entries(entries)
        if messages:
            metrics.MESSAGES_CONSUMED.labels(SERVICE, self._source).inc(len(messages))
        if messages and self._all_idle:
            # The stream resumes after a pause: producers write bursts to every partition, not all at
            # the same instant, so give each partition a fresh grace period before it may be skipped.
            self._last_seen = dict.fromkeys(self._partitions, now)
            self._all_idle = False
        idle = self._idle(now)
        self._all_idle = len(idle) == len(self._partitions)
        self._process(sequencer.release_entries(idle), late)
        if dead:
            send_dead_letters(self._producer, settings, dead, service=SERVICE)
        self._producer.poll(0)
        metrics.FEATURES_BUFFERED.set(len(sequencer))
        if now - self._last_snapshot >= self._options.snapshot_interval:
            self._snapshot()

    def _process(self, released: list[Entry[Tx]], late: list[Entry[Tx]]) -> None:
        if not released and not late:
            return
        events = released + late
        batch = batch_of([entry[4] for entry in events], [True] * len(released) + [False] * len(late))
        rows = self._engine.compute(batch)
        if late:
            metrics.FEATURES_LATE.inc(len(late))
        owned = self._owned
        suppress = self._suppress
        if len(owned) == len(self._partitions) and not any(suppress.values()):
            picks = list(range(len(events)))  # one replica, nothing to hold back: emit everything
        else:
            picks = []
            for index, entry in enumerate(events):
                partition, offset = entry[2], entry[3]
                if partition not in owned:
                    continue
                held = suppress.get(partition)
                if held and offset in held:
                    held.discard(offset)
                    continue
                picks.append(index)
        if not picks:
            return
        n_released = len(released)
        if len(picks) == len(events):
            chosen, chosen_rows = events, rows
        else:
            chosen, chosen_rows = [events[i] for i in picks], rows[picks]
        transactions = list(map(_ITEM, chosen))
        vectors = self._encoder.encode(list(map(_RAW, transactions)), chosen_rows, [i >= n_released for i in picks])
        headers = [
            [(SOURCE_PARTITION_HEADER, b"%d" % partition), (SOURCE_OFFSET_HEADER, b"%d" % offset)]
            for partition, offset in zip(map(_PARTITION, chosen), map(_OFFSET, chosen), strict=True)
        ]
        self._producer.produce_batch(self._target, vectors, list(map(_ACCOUNT, transactions)), headers)
        self.emitted += len(picks)

    def _idle(self, now: float) -> list[int]:
        """Partitions caught up with their log end and silent for `idle_seconds`."""
        silent = [
            partition
            for partition in self._partitions
            if now - self._last_seen.get(partition, now) >= self._options.idle_seconds
        ]
        if not silent:
            return []  # every partition spoke recently: no broker round trip needed
        if now - self._high_refreshed >= _WATERMARK_REFRESH_SECONDS:
            # The probe is a consumer that fetches nothing, so it answers in ~1 ms (the reader
            # answers only between its fetches).
            for partition in silent:
                self._high[partition] = self._probe.get_watermark_offsets(
                    TopicPartition(self._source, partition), timeout=_METADATA_TIMEOUT, cached=False
                )
            self._high_refreshed = now
        idle = []
        for partition in silent:
            low, high = self._high.get(partition, (0, 1))
            progress = self._sequencer.partitions[partition]
            position = progress.next_offset if progress.next_offset >= 0 else low
            if position >= high:
                idle.append(partition)
        return idle

    def _commit_progress(self, *, wait: bool = False) -> None:
        """Commit the owned partitions' consumed offsets to the group (informational, for lag metrics)."""
        offsets = [
            TopicPartition(self._source, p, self._sequencer.partitions[p].next_offset)
            for p in self._owned
            if self._sequencer.partitions[p].next_offset >= 0
        ]
        if not offsets:
            return
        try:
            if wait:
                self._reader.commit(offsets=offsets, asynchronous=False)
            else:
                self._reader.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # lag reporting must never stop the stage
            log.warning("progress commit failed", extra={"error": str(exc)})

    def _snapshot(self, *, wait: bool = False) -> None:
        """Checkpoint: flush outputs, note the output log ends, copy state; write it in the background.

        Only the copy happens between batches; serialising, compressing and storing run on a
        writer thread while the stage goes on. One snapshot is in flight at a time; a failed
        write is raised here on the next call, so the process restarts from the previous one.
        """
        if self._writing is not None:
            if not self._writing.done() and not wait:
                return
            self._written(self._writing.result())
        started = time.monotonic()
        self._producer.flush_or_raise()
        offsets = {}
        for partition in self._output_partitions:
            _, high = self._probe.get_watermark_offsets(
                TopicPartition(self._target, partition), timeout=_METADATA_TIMEOUT, cached=False
            )
            offsets[partition] = high
        self._commit_progress(wait=wait)
        # A delta while less than half the entities changed since the last full snapshot: then a
        # snapshot costs in proportion to what is active, not to the whole state.
        base = self._base
        if base is not None and self._engine.changed_share(base[1]) <= _DELTA_LIMIT:
            engine_state, base_id = self._engine.copy_delta(base[1]), base[0]
        else:
            engine_state, base_id = self._engine.copy_state(into=self._copies), None
        ordering_state = self._sequencer.state(_encode_item)
        processed = self._engine.processed
        self._last_snapshot = time.monotonic()
        log.info(
            "snapshot taken",
            extra={
                "processed": processed,
                "delta": base_id is not None,
                "pause_seconds": round(self._last_snapshot - started, 3),
            },
        )
        for kind, count in self._engine.entity_counts().items():
            metrics.FEATURES_ENTITIES.labels(kind).set(count)
        self.settle_memory()

        def write() -> tuple[int, StateMark | None]:
            begun = time.monotonic()
            state = _pack(engine_state, ordering_state, base_id=base_id)
            snapshot_id = self._store.save(
                owner=self._options.owner,
                owned=self._owned,
                processed=processed,
                output_offsets=offsets,
                state=state,
            )
            log.info(
                "snapshot saved",
                extra={
                    "snapshot_id": snapshot_id,
                    "processed": processed,
                    "seconds": round(time.monotonic() - begun, 3),
                    "bytes": len(state),
                    "delta": base_id is not None,
                },
            )
            return snapshot_id, engine_state.mark

        self._writing = self._writer.submit(write)
        self.snapshots += 1
        if wait:
            self._written(self._writing.result())

    def _written(self, result: tuple[int, StateMark | None]) -> None:
        """A snapshot write finished: a full one becomes the base of the next deltas."""
        snapshot_id, mark = result
        if mark is not None:
            self._base = (snapshot_id, mark)
        self._writing = None
