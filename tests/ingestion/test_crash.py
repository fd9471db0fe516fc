"""`vigil run ingest` as a real process, killed with SIGKILL mid-batch and restarted: still exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from core.kafka import DLQ_REASON
from core.settings import Settings
from core.topics import TX_DLQ, TX_VALID
from tests.ingestion.helpers import (
    body,
    committed_lag,
    encode,
    header,
    produce_raw,
    row_counts,
    topic_messages,
    transaction,
)
from tests.ingestion.test_service import MALFORMED
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

VIGIL = Path(sys.executable).with_name("vigil")


def start_ingest(
    settings: Settings, log: Path, *, instance: str = "crash-test", metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VIGIL_ENVIRONMENT": "test",
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "VIGIL_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "VIGIL_BATCH_SIZE": str(settings.batch_size),
        "VIGIL_LOG_FORMAT": "text",
        "VIGIL_METRICS_PORT": str(metrics_port),
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [str(VIGIL), "run", "ingest", "--instance-id", instance],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_when_rows_change(process: subprocess.Popen[bytes], db: Engine, *, timeout: float = 60) -> int:
    """SIGKILL the moment a database commit lands: the Kafka transaction of that batch is still open."""
    before, _ = row_counts(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows, _ = row_counts(db)
        if rows != before:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            return rows
        assert process.poll() is None, "ingest exited on its own"
        time.sleep(0.002)
    raise AssertionError("no batch was committed to the database in time")


@pytest.mark.parametrize("batch_size", [250, 2500], ids=["one-slice", "pipelined-slices"])
def test_sigkill_mid_batch_and_restart_loses_nothing_and_doubles_nothing(
    topics: Settings, db: Engine, tmp_path: Path, batch_size: int
) -> None:
    settings = topics.model_copy(update={"batch_size": batch_size})
    # Enough batches that each of the four kills still finds work to interrupt.
    valid = [transaction(n) for n in range(24 * batch_size)]
    malformed = list(MALFORMED.values())
    step = len(valid) // 6
    for number, chunk in enumerate(range(0, len(valid), step)):
        produce_raw(settings, [encode(p) for p in valid[chunk : chunk + step]])
        produce_raw(settings, malformed[number::6])
    log = tmp_path / "ingest.log"

    hits_between_commits = kills = 0
    # At least four kills; on a loaded machine the window between the two commits is narrow, so keep
    # killing (up to 12, while work remains) until one has landed in it.
    while kills < 4 or (hits_between_commits == 0 and kills < 12 and committed_lag(settings) > 0):
        kills += 1
        process = start_ingest(settings, log)
        try:
            rows_at_kill = kill_when_rows_change(process, db)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        # More rows than visible tx.valid messages: the kill landed between the two commits.
        if rows_at_kill > len(topic_messages(settings, TX_VALID)):
            hits_between_commits += 1

    process = start_ingest(settings, log)
    try:
        wait_for(lambda: committed_lag(settings) == 0, timeout=120, what="the last run to finish")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()

    print(f"kills between the database and the Kafka commit: {hits_between_commits} of {kills}")
    assert hits_between_commits >= 1, "no kill landed between the database and the Kafka commit"
    assert row_counts(db) == (len(valid), len(valid))
    out = topic_messages(settings, TX_VALID)
    ids = Counter(orjson.loads(body(m))["transaction_id"] for m in out)
    assert len(out) == len(valid), f"{len(out) - len(valid)} extra tx.valid messages"
    assert set(ids) == {p["transaction_id"] for p in valid}
    assert max(ids.values()) == 1
    dead = topic_messages(settings, TX_DLQ)
    assert len(dead) == len(malformed)
    assert Counter(header(m, DLQ_REASON) for m in dead) == Counter(MALFORMED.keys())
    assert "Traceback" not in log.read_text()


def test_a_second_process_with_the_same_instance_id_fences_the_first_which_stops(
    topics: Settings, db: Engine, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"batch_size": 100})
    produce_raw(settings, [encode(transaction(n)) for n in range(200)])
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_ingest(settings, first_log, instance="twin")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the first process")
        second = start_ingest(settings, second_log, instance="twin")
        assert first.wait(timeout=60) == 2, first_log.read_text()[-2000:]
        assert "fenced" in first_log.read_text().lower() or "fatal" in first_log.read_text().lower()
        produce_raw(settings, [encode(transaction(n)) for n in range(200, 400)])
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the second process")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0, second_log.read_text()[-2000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    assert row_counts(db) == (400, 400)
    assert len(topic_messages(settings, TX_VALID)) == 400


def test_the_process_serves_metrics_and_health_while_it_runs(topics: Settings, db: Engine, tmp_path: Path) -> None:
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    produce_raw(topics, [encode(transaction(n)) for n in range(30)] + [MALFORMED["unknown_country"]])
    log = tmp_path / "ingest.log"
    process = start_ingest(topics, log, instance="metrics-test", metrics_port=port)
    try:
        wait_for(lambda: committed_lag(topics) == 0, timeout=60, what="ingest")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": True}
        exposition = httpx.get(f"{base}/metrics").text
        assert 'vigil_transactions_accepted_total{source="kafka"} 30.0' in exposition
        assert 'vigil_transactions_rejected_total{reason="unknown_country",source="kafka"} 1.0' in exposition
        assert "vigil_ingest_latency_seconds_count 30.0" in exposition
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
