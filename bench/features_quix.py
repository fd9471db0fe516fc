"""Can Quix Streams carry the features stage? Throughput of its per-message pipeline on one core.

Usage: `make bench-quix` (Quix Streams is not a project dependency: the target installs the version
ADR 0002 measured into a virtualenv of its own under ~/.cache/vigil and runs this script; pass
options by running that interpreter directly: `~/.cache/vigil/quixstreams-3.28.1/bin/python -m
bench.features_quix --transactions 200000`).

Measures, through the local Kafka on one pinned core, a lower bound for what the
features stage would cost on Quix Streams:
  1. stateless: JSON in -> JSON out (the framework's per-message floor);
  2. keyed state: per-account running count/sum for four windows in RocksDB state;
  3. repartition: the same keyed state re-keyed by merchant with `group_by` (what
     merchant/device/ip features need), i.e. one of the three extra hops.
The real stage computes ~140 features over five entities, so it would be slower
than every figure printed here. Compare with bench/features.py (target 20,000 tx/s).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from quixstreams import Application, State  # type: ignore[import-not-found,unused-ignore]

from bench._common import pin_to_one_core

BOOTSTRAP = os.environ.get("VIGIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
WINDOWS = (("1h", 3_600), ("24h", 86_400), ("7d", 604_800), ("30d", 2_592_000))


def _produce(topic: str, count: int) -> None:
    rng = random.Random(5)
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5, "compression.type": "lz4"})
    for i in range(count):
        account = f"acc-{rng.randrange(100_000)}"
        value = {
            "transaction_id": f"q-{i}",
            "occurred_at_s": 1_780_000_000 + i * 0.01,
            "account_id": account,
            "merchant_id": f"m-{int(10_000 * rng.random() ** 3)}",
            "amount": rng.randrange(100, 100_000) / 100,
            "country": "DE",
        }
        while True:
            try:
                producer.produce(topic, orjson.dumps(value), key=account)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def _run(variant: str, source: str, count: int) -> tuple[float, float]:
    done = {"n": 0, "first": 0.0, "cpu": 0.0}
    holder: dict[str, Any] = {}

    def processed(topic: str, partition: int, offset: int) -> None:
        # Count where the last stateful step runs: the source, or the repartition topic.
        if (topic == source) == (variant == "repartition"):
            return
        if done["n"] == 0:
            done["first"] = time.perf_counter()
            done["cpu"] = time.process_time()
        done["n"] += 1
        if done["n"] >= count:
            holder["app"].stop()

    with tempfile.TemporaryDirectory() as state_dir:
        app = Application(
            on_message_processed=processed,
            broker_address=BOOTSTRAP,
            consumer_group=f"bench-quix-{variant.replace(' ', '-')}-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
            commit_interval=5.0,
        )
        sdf = app.dataframe(app.topic(source, value_deserializer="json"))

        def windows(value: dict[str, Any], state: State) -> dict[str, Any]:
            for name, _ in WINDOWS:
                count_key, sum_key = f"count_{name}", f"sum_{name}"
                state.set(count_key, state.get(count_key, 0) + 1)
                state.set(sum_key, state.get(sum_key, 0.0) + value["amount"])
                value[f"account_{count_key}"] = state.get(count_key)
            return value

        if variant == "keyed state":
            sdf = sdf.update(windows, stateful=True)
        elif variant == "repartition":
            sdf = sdf.group_by("merchant_id").update(windows, stateful=True)
        sdf.to_topic(app.topic(f"{source}.out-{variant.replace(' ', '-')}", value_serializer="json"))
        holder["app"] = app
        app.run()
        return count / (time.process_time() - done["cpu"]), count / (time.perf_counter() - done["first"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=200_000)
    args = parser.parse_args()
    pin_to_one_core()
    source = f"bench-quix-{uuid.uuid4().hex[:8]}.tx.valid"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(source, num_partitions=3, replication_factor=1)]).values():
        future.result()
    try:
        _produce(source, args.transactions)
        for variant in ("stateless", "keyed state", "repartition"):
            per_cpu, wall = _run(variant, source, args.transactions)
            print(
                f"quix streams, {variant} (one core): {per_cpu:,.0f} tx per CPU-second, {wall:,.0f} tx/s wall-clock "
                f"({args.transactions:,} transactions, load average {os.getloadavg()[0]:.1f})"
            )
    finally:
        topics = [name for name in admin.list_topics(timeout=10).topics if name.startswith(source)]
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()


if __name__ == "__main__":
    main()
