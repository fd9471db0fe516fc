"""kill -9 the real `vigil run detect-statistical` mid-batch, restart it: exactly the rows of an uninterrupted run.

Feature vectors with known anomalies go to the test's `tx.features`; the detector
runs as a subprocess and is SIGKILLed while it writes (anywhere in a batch), restarted,
and SIGKILLed again after a batch's rows were committed but before its offsets were
(the replay window, where a duplicate could appear; a failpoint holds it open, so the
kill lands there every time), then runs to the end. The table must hold exactly the anomalies that scoring the
same vectors in process yields (0 lost, 0 duplicated), the cases must count each
anomaly once, and every anomaly must have been published.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.contracts import Anomaly, FeatureVector
from core.detection import FeatureBatch, Thresholds, detect
from core.kafka import DeliveringProducer, read_all
from core.settings import Settings
from core.topics import ANOMALIES, TX_FEATURES
from detectors import statistical_detectors
from tests.detectors.factories import labelled_batch
from tests.detectors.pipeline import caught_up, committed, ends_of
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

VIGIL = str(Path(sys.executable).with_name("vigil"))
VECTORS = 30_000
BATCH_SIZE = 500  # many batches, so kills land at different points of the write
# Unaided, the window between a batch's commit and its offsets is a few ms: random kills missed it
# 12 times in a row in 3 of 10 runs. VIGIL_FAILPOINT_PAUSE_BEFORE_COMMIT_SECONDS holds it open.
WINDOW = 1.0
GROUP = "vigil-detect-statistical"


def _start(settings: Settings, log: Path, *, window: float = 0.0) -> subprocess.Popen[bytes]:
    env = {
        "VIGIL_FAILPOINT_PAUSE_BEFORE_COMMIT_SECONDS": str(window),
        **os.environ,
        "VIGIL_ENVIRONMENT": "test",
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "VIGIL_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "VIGIL_BATCH_SIZE": str(BATCH_SIZE),
        "VIGIL_LOG_FORMAT": "text",
        "VIGIL_METRICS_PORT": "0",
    }
    with log.open("ab") as handle:
        return subprocess.Popen([VIGIL, "run", "detect-statistical"], env=env, stdout=handle, stderr=subprocess.STDOUT)


def _stored(db: Engine) -> set[str]:
    with db.connect() as connection:
        return set(connection.execute(text("SELECT DISTINCT transaction_id FROM anomalies")).scalars())


def _wrote(process: subprocess.Popen[bytes], db: Engine, before: int, log: Path) -> bool:
    assert process.poll() is None, f"detect-statistical exited: {log.read_text()[-2000:]}"
    return len(_stored(db)) > before


def test_sigkill_mid_batch_and_restart_store_exactly_the_uninterrupted_rows(
    topics: Settings, db: Engine, tmp_path: Path
) -> None:
    settings = topics
    vectors, _ = labelled_batch(seed=5, size=VECTORS, outlier_share=0.3)
    producer = DeliveringProducer(settings, service="test")
    for v in vectors:
        producer.produce(settings.topic(TX_FEATURES), v.model_dump_json().encode(), key=v.transaction.account_id)
    producer.flush_or_raise()
    expected = detect(
        detectors=statistical_detectors(settings=settings), batch=FeatureBatch(vectors), thresholds=Thresholds()
    )
    assert len(expected) > 10_000, "the run must write long enough to be killed while writing"
    where = {
        (m.partition() or 0, m.offset() or 0): FeatureVector.model_validate_json(m.value() or b"").transaction
        for m in read_all(settings, settings.topic(TX_FEATURES), timeout=20)
    }
    ends = ends_of(list(where))
    group = f"{settings.kafka_topic_prefix}{GROUP}"
    log = tmp_path / "detect-statistical.log"

    kills: list[int] = []
    # First anywhere while batches are being written, then inside the held-open replay window.
    for window, delay in ((0.0, 0.03), (WINDOW, 0.0)):
        before = len(_stored(db))
        process = _start(settings, log, window=window)
        # Kill once this run has committed rows of its own: it is then writing batch after batch.
        wait_for(partial(_wrote, process, db, before, log), timeout=120, what="new rows", every=0.02)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        offsets = committed(settings, group=group, topic=settings.topic(TX_FEATURES), partitions=3)
        pending = {tx.transaction_id for (p, o), tx in where.items() if o >= max(offsets.get(p, 0), 0)}
        kills.append(len(pending & _stored(db)))
    print(f"rows stored but not yet committed as consumed, per kill: {kills}")
    assert kills[-1] > 0, f"the kill in the held-open window left nothing to replay ({kills})"

    process = _start(settings, log)
    try:
        wait_for(lambda: caught_up(settings, group=group, ends=ends), timeout=240, what="the restarted detector")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)

    with db.connect() as connection:
        stored = connection.execute(
            text("SELECT anomaly_id, transaction_id, detector_name, detector_version, severity, score FROM anomalies")
        ).all()
        cases: dict[str, int] = dict(connection.execute(text("SELECT transaction_id, anomaly_count FROM cases")).all())
    want = {
        (a.anomaly_id, a.transaction_id, a.detector_name, a.detector_version, a.severity.value, a.score)
        for a in expected
    }
    got = [tuple(row) for row in stored]
    keys = Counter((tx, name, version) for _, tx, name, version, _, _ in got)
    assert not [key for key, n in keys.items() if n > 1], "duplicated anomalies"
    assert set(got) == want, f"lost {len(want - set(got))}, unexpected {len(set(got) - want)}"
    assert cases == dict(Counter(a.transaction_id for a in expected)), "a replay inflated or dropped case counts"
    published = {
        Anomaly.model_validate_json(m.value() or b"").anomaly_id
        for m in read_all(settings, settings.topic(ANOMALIES), timeout=30)
    }
    assert published >= {a.anomaly_id for a in expected}, "an anomaly stored before a kill was never published"
    print(f"\n{len(kills)} kill(s); stored rows found again on replay per kill: {kills}; {len(want):,} anomalies exact")
