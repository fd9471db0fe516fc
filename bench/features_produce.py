"""CPU cost of producing feature vectors, by compression type (where the stage's Kafka time goes).

Usage: .venv/bin/python -m bench.features_produce [--messages 50000]

Produces ~5.6 KB FeatureVector-sized JSON (real encoder, random feature values) with the project's
producer settings except compression, pinned to one core, and prints CPU microseconds per message.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench._common import pin_to_one_core
from bench.features import START, make_transactions
from core.kafka import PRODUCER_DEFAULTS
from core.settings import load_settings
from features.codec import encode_vectors
from features.registry import FEATURE_NAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()
    pin_to_one_core()
    settings = load_settings()
    topic = f"bench-produce-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    raws = make_transactions(args.messages, accounts=1000, merchants=100, seed=1, start=START)
    rows = np.random.default_rng(1).random((args.messages, len(FEATURE_NAMES))) * 1000
    values = encode_vectors(raws, rows, [False] * args.messages)
    print(f"vector size: {sum(map(len, values)) / len(values):,.0f} bytes")
    try:
        for compression in ("lz4", "none", "zstd"):
            config: dict[str, Any] = {
                **PRODUCER_DEFAULTS,
                "bootstrap.servers": settings.kafka_bootstrap,
                "compression.type": compression,
            }
            producer = Producer(config)
            failures: list[str] = []

            def delivered(error: KafkaError | None, _message: Message, failures: list[str] = failures) -> None:
                if error is not None:
                    failures.append(error.str())

            cpu, wall = time.process_time(), time.perf_counter()
            for index, value in enumerate(values):
                while True:
                    try:
                        producer.produce(
                            topic,
                            value,
                            key=b"acc-%d" % (index % 1000),
                            headers=[("p", b"0"), ("o", b"%d" % index)],
                            on_delivery=delivered,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.flush(60)
            assert not failures, failures[:3]
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"compression {compression}: {cpu / len(values) * 1e6:.1f} us CPU per vector, "
                f"{len(values) / wall:,.0f} vectors/s wall-clock (load average {os.getloadavg()[0]:.1f})"
            )
    finally:
        admin.delete_topics([topic], operation_timeout=30)[topic].result()


if __name__ == "__main__":
    main()
