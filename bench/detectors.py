"""Statistical detector throughput and anomaly-writer rows/s on this machine.

Run: .venv/bin/python -m bench.detectors   (needs `vigil stack up`)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

from bench._common import report, scratch_database
from core.contracts import Anomaly
from core.db import make_engine
from core.detection import AnomalyWriter, FeatureBatch, Thresholds, detect
from core.kafka import DeliveringProducer, ensure_topics
from core.topics import STREAM_TOPICS
from detectors import statistical_detectors
from tests.detectors.factories import labelled_batch


def bench_statistical(batch_size: int = 5000, rounds: int = 20) -> None:
    from core.settings import load_settings

    vectors, _ = labelled_batch(seed=1, size=batch_size)
    detectors = statistical_detectors(settings=load_settings())
    detect(detectors=detectors, batch=FeatureBatch(vectors), thresholds=Thresholds())  # warm up
    started = time.perf_counter()
    for _ in range(rounds):
        detect(detectors=detectors, batch=FeatureBatch(vectors), thresholds=Thresholds())
    elapsed = time.perf_counter() - started
    report(f"statistical detectors ({len(detectors)}), batch {batch_size}", rounds * batch_size / elapsed, "tx/s")


def bench_writer(rows: int = 100_000, batch: int = 5000) -> None:
    with scratch_database() as settings:
        ensure_topics(settings, STREAM_TOPICS)
        engine = make_engine(settings)
        vectors, _ = labelled_batch(seed=2, size=batch)
        template = detect(
            detectors=statistical_detectors(settings=settings),
            batch=FeatureBatch(vectors),
            thresholds=Thresholds(warning=0),
        )
        rng = np.random.default_rng(0)
        batches = []
        for round_ in range(rows // batch):
            items = []
            for i in range(batch):
                base = template[i % len(template)]
                items.append(
                    Anomaly.build(
                        detected_at=datetime.now(UTC),
                        **{
                            **base.model_dump(exclude={"anomaly_id", "detected_at", "schema_version"}),
                            "transaction_id": f"tx-{round_}-{i}-{rng.integers(1 << 30)}",
                        },
                    )
                )
            batches.append(items)
        for publish in (False, True):
            writer = AnomalyWriter(
                engine=engine,
                producer=DeliveringProducer(settings, service="bench"),
                settings=settings,
                service="bench",
            )
            started = time.perf_counter()
            written = sum(writer.write(items, publish=publish) for items in batches)
            elapsed = time.perf_counter() - started
            what = "insert + publish" if publish else "insert only"
            report(f"anomaly writer, {what} ({written:,} new rows)", rows / elapsed, "rows/s", ">= 50,000")
            with engine.begin() as connection:
                from sqlalchemy import text

                connection.execute(text("TRUNCATE anomalies, cases"))
        engine.dispose()


if __name__ == "__main__":
    bench_statistical()
    bench_writer()
