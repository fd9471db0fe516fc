"""Sustained throughput of `vigil run ingest`: Kafka in, Kafka (tx.valid, tx.dlq) and PostgreSQL out.

Pre-loads tx.raw with synthetic transactions (plus a share of malformed ones), starts the
real service as a subprocess against a throw-away database and topic prefix, and measures
committed progress of its consumer group until it has caught up. Prints the figures, then
checks exactly-once (rows and tx.valid messages equal the valid input) and cleans up.

    .venv/bin/python -m bench.ingest [--transactions 300000] [--invalid-share 0.01] [--batch-size 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.kafka import DeliveringProducer, client_config, ensure_topics
from core.migrate import upgrade
from core.settings import Settings, load_settings
from core.topics import STREAM_TOPICS, TX_DLQ, TX_RAW, TX_VALID
from ingestion import consumer_group, read_topic
from vigil.generator import GeneratorConfig, SyntheticStream

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, *, thread: int | None = None) -> float:
    """CPU seconds of a process (all threads) or of one of its threads."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _threads_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds per thread of a process: {thread id: (thread name, seconds)}."""
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            name = (task / "comm").read_text().strip()
            threads[int(task.name)] = (name, _cpu_seconds(pid, thread=int(task.name)))
    return threads


def _by_role(pid: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two snapshots by thread role (librdkafka names its threads rdk:*)."""
    roles: dict[str, float] = {}
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        if tid == pid:
            role = "batch loop"
        elif name.startswith("rdk:"):
            role = "librdkafka"
        else:
            role = "other Python threads"  # the database writer, the DLQ depth probe
        roles[role] = roles.get(role, 0.0) + spent
    return roles


def _others_cpu(admin_url: str, database: str, kafka_pid: int | None) -> tuple[float, float]:
    """CPU seconds so far of the PostgreSQL backends serving `database`, and of the Kafka broker."""
    backends = 0.0
    with create_engine(admin_url).connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
            {"db": database},
        ).scalars()
        for pid in pids:
            with contextlib.suppress(OSError):  # a backend that just ended, or another machine's
                backends += _cpu_seconds(int(pid))
    broker = 0.0
    if kafka_pid is not None:
        with contextlib.suppress(OSError):
            broker = _cpu_seconds(kafka_pid)
    return backends, broker


def _kafka_pid(settings: Settings) -> int | None:
    pidfile = settings.state_dir / "pids" / "kafka.pid"
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _preload(settings: Settings, *, count: int, invalid_share: float) -> tuple[int, int, float]:
    """Produce `count` records to tx.raw; returns (valid, invalid, seconds)."""
    start = datetime.now(UTC) - timedelta(hours=1)
    stream = SyntheticStream(
        GeneratorConfig(rate=count, duration=1, seed=2024, start=start, event_rate=count / 3600, accounts=20_000)
    )
    producer = DeliveringProducer(settings, service="bench")
    topic = settings.topic(TX_RAW)
    every = int(1 / invalid_share) if invalid_share > 0 else 0
    valid = invalid = 0
    began = time.perf_counter()
    for batch in stream.batches():
        for record in batch.transactions:
            if every and (valid + invalid) % every == every - 1:
                producer.produce(topic, orjson.dumps({**record, "currency": "QQQ"}), key=record["account_id"])
                invalid += 1
            else:
                producer.produce(topic, orjson.dumps(record), key=record["account_id"])
                valid += 1
    producer.flush_or_raise()
    return valid, invalid, time.perf_counter() - began


def _committed(settings: Settings, consumer: Consumer, partitions: list[TopicPartition]) -> int:
    done = 0
    for position in consumer.committed(partitions, timeout=10):
        done += max(position.offset, 0)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--invalid-share", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--profile", type=Path, help="run the service under cProfile, writing stats to this file")
    args = parser.parse_args()

    base = load_settings(environment="test", log_format="text")
    database = f"vigil_bench_{os.getpid()}"
    admin_url = make_url(base.database_url)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    url = admin_url.set(database=database).render_as_string(hide_password=False)
    settings = base.model_copy(
        update={
            "database_url": url,
            "kafka_topic_prefix": f"bench{uuid.uuid4().hex[:8]}.",
            "kafka_partitions": args.partitions,
            "batch_size": args.batch_size,
        }
    )
    process: subprocess.Popen[bytes] | None = None
    try:
        upgrade(url)
        ensure_topics(settings, STREAM_TOPICS)
        valid, invalid, produce_seconds = _preload(settings, count=args.transactions, invalid_share=args.invalid_share)
        total = valid + invalid
        print(f"preloaded {total:,} records ({invalid:,} malformed) in {produce_seconds:.1f}s")

        env = {
            **os.environ,
            "VIGIL_ENVIRONMENT": "test",
            "VIGIL_DATABASE_URL": url,
            "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "VIGIL_KAFKA_PARTITIONS": str(args.partitions),
            "VIGIL_BATCH_SIZE": str(args.batch_size),
            "VIGIL_LOG_LEVEL": "WARNING",
        }
        vigil = Path(sys.executable).with_name("vigil")
        command = [str(vigil), "run", "ingest", "--instance-id", "bench"]
        if args.profile is not None:
            # The batch-loop (main) thread only: cProfile does not follow other threads.
            command = [sys.executable, "-m", "cProfile", "-o", str(args.profile), *command]
        process = subprocess.Popen(command, env=env)
        probe = Consumer(client_config(settings, **{"group.id": consumer_group(settings)}))
        topic = settings.topic(TX_RAW)
        partitions = [TopicPartition(topic, p) for p in range(args.partitions)]
        samples: list[tuple[float, int, float, float]] = []
        threads: list[dict[int, tuple[str, float]]] = []
        others: list[tuple[float, float]] = []
        bench_url = admin_url.set(database=database).render_as_string(hide_password=False)
        kafka_pid = _kafka_pid(settings)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = _committed(settings, probe, partitions)
            # The main thread runs the batch loop; librdkafka's threads make up the rest of the process.
            samples.append(
                (time.monotonic(), done, _cpu_seconds(process.pid), _cpu_seconds(process.pid, thread=process.pid))
            )
            if (done > 0 and not others) or done >= total:
                others.append(_others_cpu(bench_url, database, kafka_pid))
                threads.append(_threads_cpu(process.pid))
            if done >= total:
                break
            if process.poll() is not None:
                raise SystemExit(f"ingest exited early with {process.returncode}")
            time.sleep(0.5)
        probe.close()
        # Sustained: from the first committed batch to the end (start-up and group join excluded).
        first = next(s for s in samples if s[1] > 0)
        last = samples[-1]
        seconds = last[0] - first[0]
        records = last[1] - first[1]
        cpu = last[2] - first[2]
        loop_cpu = last[3] - first[3]
        print(f"ingest: {records:,} records in {seconds:.1f}s = {records / seconds:,.0f} records/s sustained (wall)")
        print(
            f"ingest process CPU: {cpu:.1f}s = {cpu / seconds:.2f} cores busy; "
            f"{records / cpu:,.0f} records per CPU-second"
        )
        print(
            f"batch-loop thread CPU: {loop_cpu:.1f}s; {records / loop_cpu:,.0f} records per CPU-second of that thread"
        )
        if len(threads) == 2:
            roles = sorted(_by_role(process.pid, *threads).items(), key=lambda item: -item[1])
            shares = ", ".join(f"{role} {spent:.1f}s" for role, spent in roles if spent >= 0.05)
            print(f"ingest CPU by thread: {shares}")
        if len(others) == 2:
            pg_cpu = others[1][0] - others[0][0]
            broker_cpu = others[1][1] - others[0][1]
            print(
                f"meanwhile: PostgreSQL backend {pg_cpu:.1f}s ({pg_cpu / seconds:.2f} cores), "
                f"Kafka broker {broker_cpu:.1f}s ({broker_cpu / seconds:.2f} cores)"
                + ("" if kafka_pid else " (broker pid unknown)")
            )
        with open("/proc/loadavg") as handle:
            print(f"machine load average during the run: {handle.read().split()[0]} on {os.cpu_count()} CPUs")

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        with create_engine(url).connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM transactions")).scalar_one()
        out = len(read_topic(settings, settings.topic(TX_VALID), timeout=120))
        dead = len(read_topic(settings, settings.topic(TX_DLQ), timeout=60))
        print(f"check: rows={rows:,} tx.valid={out:,} dlq={dead:,} (expected {valid:,}/{valid:,}/{invalid:,})")
        if (rows, out, dead) != (valid, valid, invalid):
            raise SystemExit("exactly-once check FAILED")
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        AdminClient(client_config(settings)).delete_topics([settings.topic(spec.name) for spec in STREAM_TOPICS])
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
