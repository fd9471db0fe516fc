"""Statistical detector throughput and anomaly-writer rows/s on this machine.

Run: .venv/bin/python -m bench.detectors [--rows 100000] [--batch 5000] [--connections N] [--services 2]
     (needs `vigil stack up`)

Writer figures, each over `--rows` new anomalies in batches of `--batch`, into a
scratch database migrated to head (all of `anomalies`' indexes in place):
  - rows/s wall clock, and rows per CPU-second of this process plus the PostgreSQL
    backends that served it (read from /proc, so the load of other work on the
    machine does not count against the writer); the writer uses `--connections`
    backends at once (default: the setting the detector services use, 2);
  - the streaming path (`write_detections`, COPY rows built from detector columns)
    with the bench's 8-feature snapshots and with full 141-feature snapshots, the
    path for already built `Anomaly` models (`write`), and a replay of stored rows.
Every transaction here is flagged by ~3 detectors; its feature snapshot is stored once
(`anomaly_features`, docs/adr/0011-anomaly-feature-snapshots.md), so each figure also
says how many snapshots its rows carried.
The load average is printed with every figure: on a shared 2-core machine it matters.

Then `--services` (default 2) detector services write at once, each a process with its own writer
(as deployed: statistical, rules, ML), the same transactions' anomalies: their aggregate rows/s.

`--split` instead prints where a row's CPU goes: client and PostgreSQL backend CPU per anomaly
row of each step of the writer, run one after the other (8-feature rows, best of 3), with
`anomalies` as migrated and with index variants (each in a scratch database of its own).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

import psycopg
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text

from bench._common import report, scratch_database
from core.contracts import FeatureVector, anomaly_ids
from core.db import make_engine
from core.detection import (
    AnomalyRecords,
    AnomalyWriter,
    Detections,
    FeatureBatch,
    Thresholds,
    detect,
    detect_batch,
)
from core.kafka import BatchProducer, client_config, ensure_topics
from core.settings import Settings, load_settings
from core.topics import STREAM_TOPICS
from detectors import statistical_detectors
from tests.detectors.factories import labelled_batch


def bench_statistical(batch_size: int = 5000, rounds: int = 20) -> None:
    vectors, _ = labelled_batch(seed=1, size=batch_size)
    detectors = statistical_detectors(settings=load_settings())
    detect(detectors=detectors, batch=FeatureBatch(vectors), thresholds=Thresholds())  # warm up
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        detect_batch(detectors=detectors, batch=FeatureBatch(vectors), thresholds=Thresholds())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    report(f"statistical detectors ({len(detectors)}), batch {batch_size}", rounds * batch_size / elapsed, "tx/s")
    report(f"  per CPU-second ({_load()})", rounds * batch_size / cpu, "tx/cpu-s")


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _backend_cpu(*pids: int) -> float:
    """CPU seconds (user + system) of PostgreSQL backends, from /proc (same machine)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _backend_pids(engine: Engine, connections: int) -> list[int]:
    """The backends of every pooled connection: all of them checked out at once, then returned to the pool."""
    with ExitStack() as stack:
        held = [stack.enter_context(engine.connect()) for _ in range(connections)]
        return [int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one()) for connection in held]


@dataclass
class _Measured:
    rows: int
    inserted: int
    snapshots: int  # transactions whose feature snapshot was written (one per transaction, not per row)
    wall: float
    client_cpu: float
    server_cpu: float


@contextmanager
def _measure(pids: list[int]) -> Iterator[_Measured]:
    measured = _Measured(0, 0, 0, 0.0, 0.0, 0.0)
    wall, cpu, server = time.perf_counter(), time.process_time(), _backend_cpu(*pids)
    yield measured
    measured.wall = time.perf_counter() - wall
    measured.client_cpu = time.process_time() - cpu
    measured.server_cpu = _backend_cpu(*pids) - server


def _print(name: str, m: _Measured) -> None:
    report(f"{name} ({m.inserted:,} new, {m.snapshots:,} snapshots)", m.rows / m.wall, "rows/s", ">= 50,000")
    report(
        f"  per CPU-s (client {m.client_cpu:.2f} s + server {m.server_cpu:.2f} s, {_load()})",
        m.rows / (m.client_cpu + m.server_cpu),
        "rows/cpu-s",
    )


def _batches(*, settings: Settings, rounds: int, size: int, wide: bool) -> list[Detections]:
    """Detections of `rounds` batches with distinct transaction ids; every row flagged by 4 detectors."""
    vectors, _ = labelled_batch(seed=2, size=size // 4)
    if wide:
        from features import FEATURE_NAMES

        vectors = [
            v.model_copy(update={"features": {name: float(i) for i, name in enumerate(FEATURE_NAMES)} | v.features})
            for v in vectors
        ]
    detectors = statistical_detectors(settings=settings)
    out = []
    for round_ in range(rounds):
        renamed = [
            FeatureVector.model_construct(
                transaction=v.transaction.model_copy(update={"transaction_id": f"tx-{wide:d}-{round_}-{i}"}),
                features=v.features,
                feature_set_version=1,
            )
            for i, v in enumerate(vectors)
        ]
        # Warning at 0: every judged row is flagged, so one batch of vectors yields ~4x its size in anomalies.
        out.append(detect_batch(detectors=detectors, batch=FeatureBatch(renamed), thresholds=Thresholds(warning=0)))
    return out


def bench_writer(rows: int = 100_000, batch: int = 5000, connections: int | None = None) -> None:
    with scratch_database() as settings:
        ensure_topics(settings, STREAM_TOPICS)
        connections = connections or settings.anomaly_writer_connections
        print(f"anomaly writer over {connections} connection(s) (backends), as the detector services have it")
        try:
            engine = make_engine(settings, pool_size=connections)  # the backends whose CPU we read
            pids = _backend_pids(engine, connections)
            producer = BatchProducer(settings, service="bench")  # as `run_detection_service` has it
            writer = AnomalyWriter(
                engine=engine, producer=producer, settings=settings, service="bench", connections=connections
            )
            rounds = max(1, rows // batch)
            for wide in (False, True):
                detections = _batches(settings=settings, rounds=rounds, size=batch, wide=wide)
                # The prepared batches live through the run; in a service a batch lives for one write.
                # Frozen, the collector does not walk them again and again (core/memory.py).
                gc.collect()
                gc.freeze()
                width = "141-feature" if wide else "8-feature"
                for publish in (False, True):
                    _truncate(engine)
                    with _measure(pids) as m:
                        for item in detections:
                            m.rows += len(item)
                            m.snapshots += len({i for f in item.flagged for i in f.rows})
                            m.inserted += writer.write_detections(item, publish=publish)
                    what = "insert + publish" if publish else "insert only"
                    _print(f"writer, detections, {width}, {what}", m)
                if not wide:
                    with _measure(pids) as m:  # the rows are stored: every batch takes the idempotent path
                        for item in detections:
                            m.rows += len(item)
                            m.snapshots += len({i for f in item.flagged for i in f.rows})
                            m.inserted += writer.write_detections(item, publish=False)
                    _print("writer, detections, replay of stored rows", m)
                    models = [item.anomalies() for item in detections]
                    gc.collect()
                    gc.freeze()
                    _truncate(engine)
                    with _measure(pids) as m:
                        for anomalies in models:
                            m.rows += len(anomalies)
                            m.snapshots += len({a.transaction_id for a in anomalies})
                            m.inserted += writer.write(anomalies, publish=False)
                    _print("writer, Anomaly models, insert only", m)
                    del models
                del detections
                gc.unfreeze()
            writer.close()
            engine.dispose()
        finally:
            _delete_topics(settings)


def _as_service(records: AnomalyRecords, service: str) -> AnomalyRecords:
    """The same transactions' anomalies as another detector service writes them (its own detector names)."""
    rows = [(*row[:8], f"{row[8]}@{service}", *row[9:]) for row in records.rows]
    by_detector: dict[tuple[str, str], list[int]] = {}
    for position, row in enumerate(rows):
        by_detector.setdefault((row[8], row[9]), []).append(position)
    for (name, version), positions in by_detector.items():
        ids = anomaly_ids(
            tenant_ids=[rows[p][3] for p in positions],
            transaction_ids=[rows[p][4] for p in positions],
            detector_name=name,
            detector_version=version,
        )
        for p, anomaly_id in zip(positions, ids, strict=True):
            rows[p] = (anomaly_id, *rows[p][1:])
    return AnomalyRecords(rows=rows, snapshots=records.snapshots)


def _service_writer(
    settings: Settings, service: str, rounds: int, batch: int, publish: bool, start: Any, done: Any
) -> None:
    """One detector service's writer (a process of its own), writing when every service is ready."""
    records = [
        _as_service(item.records(), service)
        for item in _batches(settings=settings, rounds=rounds, size=batch, wide=False)
    ]
    gc.collect()
    gc.freeze()
    engine = make_engine(settings, pool_size=settings.anomaly_writer_connections)
    producer = BatchProducer(settings, service=service)
    writer = AnomalyWriter(engine=engine, producer=producer, settings=settings, service=service)
    start.wait()
    began = time.perf_counter()
    inserted = sum(writer.write_records(item, publish=publish) for item in records)
    done.put((inserted, began, time.perf_counter()))
    writer.close()
    engine.dispose()


def bench_services(rows: int = 100_000, batch: int = 5000, services: int = 2) -> None:
    """`services` detector services writing at once, as deployed (statistical, rules, ...): aggregate rows/s.

    Each writes its own detectors' anomalies for the *same* transactions, so their snapshots
    and cases meet in the database as they do in production.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process that ran librdkafka threads
    print(f"{services} detector services writing at once, each over its anomaly_writer_connections:")
    for publish in (False, True):
        with scratch_database() as settings:
            ensure_topics(settings, STREAM_TOPICS)
            try:
                start, done = context.Barrier(services), context.Queue()
                rounds = max(1, rows // batch // services)
                workers = [
                    context.Process(
                        target=_service_writer,
                        args=(settings, f"service-{n}", rounds, batch, publish, start, done),
                    )
                    for n in range(services)
                ]
                for worker in workers:
                    worker.start()
                results = [done.get(timeout=600) for _ in workers]
                for worker in workers:
                    worker.join()
                inserted = sum(r[0] for r in results)
                wall = max(r[2] for r in results) - min(r[1] for r in results)
                engine = make_engine(settings, pool_size=1)
                with engine.connect() as connection:
                    counted = connection.execute(text("SELECT sum(anomaly_count) FROM cases")).scalar_one()
                engine.dispose()
                assert counted == inserted, f"cases count {counted} anomalies, {inserted} were stored"
                what = "insert + publish" if publish else "insert only"
                report(
                    f"  {services} services, 8-feature, {what} ({inserted:,} new, {_load()})",
                    inserted / wall,
                    "rows/s",
                    ">= 50,000",
                )
            finally:
                _delete_topics(settings)


# Index variants of `anomalies` for --split: statements run on a freshly migrated scratch database.
_VARIANTS: Final = {
    "as migrated (primary key + 6 indexes)": (),
    "natural primary key, id index": (
        "ALTER TABLE anomalies DROP CONSTRAINT anomalies_pkey",
        "ALTER TABLE anomalies ADD CONSTRAINT anomalies_pkey "
        "PRIMARY KEY (transaction_id, detector_name, detector_version, event_time)",
        "DROP INDEX anomalies_transaction",
        "CREATE INDEX anomalies_id ON anomalies (anomaly_id)",
    ),
    "without anomalies_transaction": ("DROP INDEX anomalies_transaction",),
    "without the 6 secondary indexes": tuple(
        f"DROP INDEX anomalies_{name}"
        for name in ("transaction", "detected", "entity", "time", "tenant_time", "tenant_score")
    ),
}
_STEPS: Final = ("rows", "snapshot rows", "messages", "snapshots stmt", "copy", "cases", "commit")
_T = TypeVar("_T")


class _StepClock:
    """Client and backend CPU seconds per named step, summed over its calls."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.spent = dict.fromkeys(_STEPS, (0.0, 0.0))

    def run(self, name: str, work: Callable[[], _T]) -> _T:
        client, server = time.process_time(), _backend_cpu(self.pid)
        result = work()
        before = self.spent[name]
        self.spent[name] = (before[0] + time.process_time() - client, before[1] + _backend_cpu(self.pid) - server)
        return result


def bench_writer_split(rows: int = 100_000, batch: int = 5000) -> None:
    from core import detection  # the writer's steps one by one: private on purpose, measured apart

    detections = _batches(settings=load_settings(), rounds=max(1, rows // batch), size=batch, wide=False)
    total = sum(len(item) for item in detections)
    print(f"per anomaly row, CPU us client / backend, best of 3 ({total:,} rows, {len(detections)} batches):")
    for variant, statements in _VARIANTS.items():
        with scratch_database() as settings:
            engine = make_engine(settings, pool_size=1)
            with engine.begin() as connection:
                for statement in statements:
                    connection.execute(text(statement))
                pid = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            best: dict[str, tuple[float, float]] = {}
            for _ in range(3):
                _truncate(engine)
                clock = _StepClock(pid)
                for item in detections:
                    built = clock.run("rows", item.rows)
                    snapshots = clock.run("snapshot rows", item.snapshots)
                    clock.run("messages", partial(detection.anomaly_messages, built, snapshots))
                    with engine.connect() as connection:
                        raw = connection.connection.driver_connection
                        assert isinstance(raw, psycopg.Connection)
                        with raw.cursor() as cursor:
                            cursor.adapters.register_dumper(bytes, detection._EncodedJsonbDumper)
                            clock.run("snapshots stmt", partial(detection._store_snapshots, cursor, snapshots))
                            new = clock.run("copy", partial(detection._insert, cursor, built))
                            clock.run("cases", partial(detection._upsert_cases, cursor, new))
                        clock.run("commit", connection.commit)
                for name, (client, server) in clock.spent.items():
                    best[name] = min(best.get(name, (client, server)), (client, server), key=sum)
            engine.dispose()
        cells = "  ".join(f"{name} {c / total * 1e6:.1f}/{s / total * 1e6:.1f}" for name, (c, s) in best.items())
        print(f"  {variant} ({_load()}): {cells}")
        backend = sum(s for _, s in best.values()) / total * 1e6
        client = sum(c for c, _ in best.values()) / total * 1e6
        print(f"    total client {client:.1f} us + backend {backend:.1f} us per row")


def _delete_topics(settings: Settings) -> None:
    # Topics of this run only (prefixed): the shared broker keeps nothing of a benchmark.
    admin = AdminClient(client_config(settings))  # kept alive until the deletions are answered
    deleting = admin.delete_topics([settings.topic(spec.name) for spec in STREAM_TOPICS], operation_timeout=30)
    for future in deleting.values():
        future.result()


def _truncate(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE anomalies, anomaly_features, cases"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="anomalies per writer figure")
    parser.add_argument("--batch", type=int, default=5000, help="anomalies per write")
    parser.add_argument("--skip-statistical", action="store_true")
    parser.add_argument("--split", action="store_true", help="CPU per row of each writer step, index variants")
    parser.add_argument("--connections", type=int, help="writer connections (default: the setting, 2)")
    parser.add_argument("--services", type=int, default=2, help="detector services writing at once (0: skip)")
    args = parser.parse_args(argv)
    steps: list[Callable[[], None]] = [] if args.skip_statistical else [bench_statistical]
    if args.split:
        steps.append(lambda: bench_writer_split(rows=args.rows, batch=args.batch))
    else:
        steps.append(lambda: bench_writer(rows=args.rows, batch=args.batch, connections=args.connections))
        if args.services:
            steps.append(lambda: bench_services(rows=args.rows, batch=args.batch, services=args.services))
    print(f"{os.cpu_count()} cores, {_load()} at start")
    for step in steps:
        step()


if __name__ == "__main__":
    main()
