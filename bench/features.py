"""Sustained throughput of the features stage on one core, snapshots included, and its state size.

Usage: .venv/bin/python -m bench.features [--transactions 300000] [--stream-transactions 1200000]
       [--snapshot-every-tx 600000] [--vector-form compact|named] [--accounts 100000] [--merchants 10000]

Prints, all on one core (the process is pinned with sched_setaffinity, librdkafka's threads and the
snapshot writer thread included):
  1. compute: decode + order + features + encode, in process, no broker;
  2. state size per 100k entities (live arrays, compressed full snapshot, deltas);
  3. stage: the real FeatureStage through the local Kafka (tx.valid -> tx.features, 3 partitions),
     from the first consume until every vector is acknowledged *and every snapshot is stored*, with a
     snapshot every `--snapshot-every-tx` transactions (600,000 = the default 30 s interval at the
     20,000 tx/s target; wall-clock intervals would follow the machine's load instead). The CPU counted
     is the process's (all threads) plus any child processes';
  4. the detectors' decode cost (`core.detection.decode_feature_vectors`) for both vector forms.
Needs the local stack (`vigil stack up`); uses its own topics and a scratch database.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import random
import resource
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar, cast

import numpy as np
import orjson
from confluent_kafka.admin import AdminClient

from bench._common import pin_to_one_core
from core.db import make_engine, temporary_database
from core.detection import decode_feature_vectors
from core.kafka import DeliveringProducer, StopFlag, client_config, ensure_topics
from core.settings import Settings, load_settings
from core.topics import STREAM_TOPICS, TX_VALID
from features.codec import VECTOR_FORMS, Tx, batch_of, decode_transaction, decode_transactions, encode_vectors
from features.engine import FeatureEngine
from features.ordering import Sequencer
from features.service import FeatureStage, StageOptions, pack_state

START = datetime(2026, 5, 1, tzinfo=UTC)
T = TypeVar("T")


def make_transactions(count: int, *, accounts: int, merchants: int, seed: int, start: datetime) -> list[bytes]:
    """Contract-shaped JSON as ingestion writes it, in event-time order (~100 tx per second of event time)."""
    rng = random.Random(seed)
    out = []
    moment = start
    for i in range(count):
        moment += timedelta(microseconds=rng.randrange(0, 20_000))
        account = rng.randrange(accounts)
        located = rng.random() < 0.5
        data = {
            "schema_version": 1,
            "transaction_id": f"b{seed}-{i}",
            "occurred_at": moment.isoformat().replace("+00:00", "Z"),
            "tenant_id": "bench",
            "account_id": f"acc-{account}",
            "card_id": f"card-{account}" if rng.random() < 0.8 else None,
            "merchant_id": f"m-{int(merchants * rng.random() ** 3)}",  # skewed: a few big merchants
            "merchant_category": "5411",
            "amount": f"{rng.randrange(100, 100_000) / 100:.2f}",
            "currency": "EUR",
            "channel": "ecommerce",
            "country": rng.choice(("DE", "DE", "FR", "NL", "US")),
            "device_id": f"dev-{rng.randrange(accounts * 12 // 10)}" if rng.random() < 0.7 else None,
            "ip": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(64)}" if rng.random() < 0.7 else None,
            "lat": 48 + rng.random() * 5 if located else None,
            "lon": 2 + rng.random() * 10 if located else None,
            "attributes": {},
            "ingested_at": moment.isoformat().replace("+00:00", "Z"),
        }
        # A copy of exactly its size: each orjson result kept ~4 KB of heap (2.4 GB per 300k messages).
        out.append(bytes(memoryview(orjson.dumps(data))))
    return out


def compute_only(engine: FeatureEngine, messages: list[bytes], batch_size: int) -> tuple[float, float]:
    """(wall, CPU) seconds to decode, order, compute and encode `messages` in micro-batches (no broker).

    The same calls as `FeatureStage.step` without the broker: decode, sequence, compute, encode.
    """
    sequencer: Sequencer[Tx] = Sequencer(partitions=[0], allowed_lateness=10.0)
    started, cpu = time.perf_counter(), time.process_time()
    for begin in range(0, len(messages), batch_size):
        chunk = messages[begin : begin + batch_size]
        transactions, malformed = decode_transactions(chunk)
        assert not malformed
        offsets = range(begin, begin + len(chunk))
        entries = [(tx.time, tx.transaction_id, 0, o, tx) for tx, o in zip(transactions, offsets, strict=True)]
        sequencer.offer_entries(entries)
        released = [e[4] for e in sequencer.release_entries(idle=[0] if begin + batch_size >= len(messages) else [])]
        rows = engine.compute(batch_of(released, [True] * len(released)))
        encode_vectors([tx.raw for tx in released], rows, [False] * len(released))
    return time.perf_counter() - started, time.process_time() - cpu


def cpu_seconds() -> float:
    """CPU of this process (every thread) plus its finished children (none today; counted if any appear)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def through_kafka(
    settings: Settings,
    messages: list[bytes],
    database_url: str,
    engine: FeatureEngine | None = None,
    snapshot_every: int = 0,
    vector_form: str = "compact",
    profile: str | None = None,
) -> tuple[float, float, FeatureStage]:
    """(wall, CPU) seconds for the real stage to turn every message on tx.valid into acknowledged vectors.

    With `snapshot_every`, the stage snapshots (its own `_snapshot`, writer thread included) each time
    that many more vectors were emitted, and the last snapshot's write is inside the measurement.
    """
    ensure_topics(settings, STREAM_TOPICS)
    producer = DeliveringProducer(settings, service="bench")
    topic = settings.topic(TX_VALID)
    for raw in messages:
        key = raw[raw.index(b'"account_id":"') + 14 : raw.index(b'","card_id"')]
        producer.produce(topic, raw, key=key)
    producer.flush_or_raise()
    database = make_engine(settings.model_copy(update={"database_url": database_url}), pool_size=1)
    stage = FeatureStage(
        settings=settings,
        # The stage's own clock never fires: the bench triggers snapshots by count (see above).
        options=StageOptions(idle_seconds=0.5, snapshot_interval=1e9, vector_form=vector_form),
        database=database,
        stop=StopFlag(),
    )
    stage._discover()
    stage._restore()
    if engine is not None:
        stage._engine = engine  # warm state: every account and merchant already known (sustained rate)
    stage.settle_memory()  # as `FeatureStage.run` does after a restore
    if snapshot_every:
        # Steady state: a stage that has run longer than one interval already owns its snapshot buffers.
        stage._snapshot(wait=True)
        stage.snapshots = 0
    due = len(messages) // snapshot_every if snapshot_every else 0
    profiler = cProfile.Profile() if profile else None  # the main thread only (not the snapshot writer)
    if profiler is not None:
        profiler.enable()
    started, cpu = time.perf_counter(), cpu_seconds()
    while stage.emitted < len(messages):
        stage.step()
        if stage.snapshots < min(due, stage.emitted // snapshot_every if snapshot_every else 0):
            stage._snapshot()  # as the stage's timer does: skipped while the previous one is still being written
    while stage.snapshots < due:
        stage._snapshot(wait=True)  # the one due at the end of the stream
    stage._producer.flush_or_raise()
    if stage._writing is not None:
        stage._written(stage._writing.result())  # a snapshot being written is part of the work
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    database.dispose()  # the scratch database is dropped at the end; hold no connection to it
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    return wall, cpu, stage


class _Message:
    """Just what `decode_feature_vectors` reads of a consumed message."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value


def decode_cost(engine: FeatureEngine, messages: list[bytes]) -> None:
    """The detectors' decode (`core.detection.decode_feature_vectors`) of the same vectors in each form."""
    released = [decode_transaction(raw) for raw in messages]
    rows = engine.compute(batch_of(released, [False] * len(released)))  # not applied: state unchanged
    for form in VECTOR_FORMS:
        vectors = cast(Any, [_Message(v) for v in encode_vectors(messages, rows, [False] * len(messages), form=form)])
        decode_feature_vectors(vectors[:1000])  # warm
        cpu = time.process_time()
        decoded, letters = decode_feature_vectors(vectors)
        spent = time.process_time() - cpu
        assert len(decoded) == len(messages) and not letters
        size = sum(len(v.value()) for v in vectors) / len(vectors)
        print(
            f"detectors' decode, {form} form: {spent / len(messages) * 1e6:.1f} us of CPU per vector "
            f"({size:,.0f} bytes per vector, {len(messages):,} vectors, load average {os.getloadavg()[0]:.1f})"
        )


def _timed(work: Callable[[], T]) -> tuple[T, str]:
    """Result and "X s CPU (Y s wall)": on a shared machine wall-clock mostly measures the neighbours."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, f"{time.process_time() - cpu:.2f} s CPU ({time.perf_counter() - wall:.2f} s wall)"


def _report(what: str, count: int, wall: float, cpu: float) -> None:
    # CPU seconds of this process (every thread, pinned to one core) are what a core costs; wall-clock
    # also counts time the core spent on other processes (the machine is shared), so print both.
    print(
        f"{what}: {count / cpu:,.0f} tx per CPU-second; {count / wall:,.0f} tx/s wall-clock "
        f"({count:,} transactions, {cpu:.1f} s CPU, {wall:.1f} s wall, load average {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--merchants", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--skip-kafka", action="store_true", help="Only the in-process figures.")
    parser.add_argument(
        "--stream-transactions",
        type=int,
        default=1_200_000,
        help="Transactions through the real stage (long enough for the snapshot cadence).",
    )
    parser.add_argument(
        "--snapshot-every-tx",
        type=int,
        default=600_000,
        help="A snapshot per this many transactions (600,000 = the default 30 s interval at 20,000 tx/s; 0 = none).",
    )
    parser.add_argument("--vector-form", choices=VECTOR_FORMS, default="compact")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the stage run into FILE (slows it down).")
    args = parser.parse_args()
    pin_to_one_core()

    print(f"generating {args.transactions:,} warm-up + {args.transactions:,} measured transactions ...")
    warmup = make_transactions(args.transactions, accounts=args.accounts, merchants=args.merchants, seed=1, start=START)
    measured = make_transactions(
        args.transactions, accounts=args.accounts, merchants=args.merchants, seed=2, start=START + timedelta(days=2)
    )
    engine = FeatureEngine()
    compute_only(engine, warmup[:20_000], args.batch_size)  # JIT warm-up (cached kernels load)
    engine = FeatureEngine()
    compute_only(engine, warmup, args.batch_size)  # state for every account/merchant exists
    gc.collect()
    gc.freeze()  # as the stage does after a restore and after each snapshot (FeatureStage.settle_memory)
    wall, cpu = compute_only(engine, measured, args.batch_size)
    _report("compute (one core, no broker)", len(measured), wall, cpu)

    counts = engine.entity_counts()
    entities = sum(counts.values())
    live = engine.state_bytes()
    copy, pause = _timed(engine.copy_state)
    blob, packing = _timed(copy.to_bytes)
    print(f"entities: {counts} (total {entities:,}); pair maps: {sum(len(p) for p in engine.pairs.values()):,}")
    print(
        f"state: {live / 1e6:,.0f} MB live = {live / entities * 100_000 / 1e6:,.1f} MB per 100k entities; "
        f"full snapshot {len(blob) / 1e6:,.1f} MB compressed ({len(blob) / entities * 100_000 / 1e6:,.1f} MB "
        f"per 100k entities); copying it pauses the stage for {pause}, a writer thread compresses it in {packing}"
    )
    pool: dict[str, np.ndarray] = {}
    engine.copy_state(into=pool)
    _, reused = _timed(partial(engine.copy_state, into=pool))
    print(f"every later full snapshot copies into the stage's reused buffers: the pause is {reused}")
    assert copy.mark is not None
    mark = copy.mark
    for hour, extra in enumerate((2_000, 20_000)):  # event time keeps moving forward, as in release order
        more = make_transactions(
            extra,
            accounts=args.accounts,
            merchants=args.merchants,
            seed=4 + hour,
            start=START + timedelta(days=3, hours=hour),
        )
        compute_only(engine, more, args.batch_size)
        share = engine.changed_share(mark)
        delta, pause = _timed(partial(engine.copy_delta, mark))
        delta_blob, packing = _timed(delta.to_bytes)
        print(
            f"delta snapshot after {extra:,} more transactions ({share:.1%} of entities changed): "
            f"{len(delta_blob) / 1e6:,.1f} MB compressed; copying pauses the stage for {pause}, "
            f"compressing takes {packing}"
        )
    decode_cost(
        engine, make_transactions(20_000, accounts=args.accounts, merchants=args.merchants, seed=9, start=START)
    )
    if args.skip_kafka:
        return

    base = load_settings(log_format="text")
    settings = base.model_copy(update={"kafka_topic_prefix": f"bench-{uuid.uuid4().hex[:8]}.", "kafka_partitions": 3})
    # 120 drop attempts (60 s): autovacuum may be busy with the snapshots written there.
    with temporary_database(base.database_url, prefix="vigil_bench", drop_attempts=120) as url:
        try:
            stream = make_transactions(
                args.stream_transactions,
                accounts=args.accounts,
                merchants=args.merchants,
                seed=3,
                start=START + timedelta(days=4),
            )
            del warmup, measured, copy, blob, pool, delta, delta_blob  # ~2 GB of state copies at the default size
            gc.collect()
            wall, cpu, stage = through_kafka(
                settings, stream, url, engine, args.snapshot_every_tx, args.vector_form, args.profile
            )
            cadence = f"one per {args.snapshot_every_tx:,} tx" if args.snapshot_every_tx else "none"
            _report(
                f"stage through Kafka (one core, 3 partitions, warm state, {args.vector_form} vectors, "
                f"{stage.snapshots} snapshots in the run: {cadence})",
                len(stream),
                wall,
                cpu,
            )
            counts = stage._engine.entity_counts()
            entities = sum(counts.values())
            live = stage._engine.state_bytes()
            per_100k = live / entities * 100_000 / 1e6
            print(f"stage state: {per_100k:,.1f} MB live per 100k entities ({entities:,} entities)")
            started = time.perf_counter()
            blob = pack_state(stage._engine, stage._sequencer)
            print(
                f"snapshot of the stage: {len(blob) / 1e6:,.1f} MB ({len(blob) / entities * 100_000 / 1e6:,.1f} MB "
                f"per 100k entities) in {time.perf_counter() - started:.2f}s"
            )
        finally:
            topics = [settings.topic(spec.name) for spec in STREAM_TOPICS]
            admin_client = AdminClient(client_config(settings))
            for future in admin_client.delete_topics(topics, operation_timeout=30).values():
                future.result()


if __name__ == "__main__":
    main()
