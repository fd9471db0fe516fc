"""The online stage against the real Kafka and PostgreSQL: same features as offline, kill -9 safe."""

from __future__ import annotations

import csv
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import TopicPartition
from sqlalchemy import Engine

from core.contracts import FeatureVector, Transaction
from core.errors import KafkaDeliveryError
from core.kafka import (
    DLQ_REASON,
    BatchProducer,
    ensure_topics,
    header_pairs,
    make_consumer,
    read_all,
)
from core.settings import Settings
from core.topics import TX_DLQ, TX_FEATURES, TX_VALID, TopicSpec
from features.offline import replay
from features.registry import FEATURE_NAMES
from features.service import SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER
from tests.features.generator import generate, produce, store_stale_snapshot, to_csv_rows

pytestmark = pytest.mark.integration
LATENESS = 10.0


def _shuffled_within_lateness(transactions: list[Transaction]) -> list[Transaction]:
    """Production order with neighbours swapped when they are close in time (realistic disorder)."""
    out = list(transactions)
    for i in range(0, len(out) - 1, 3):
        gap = (out[i + 1].occurred_at - out[i].occurred_at).total_seconds()
        if gap < LATENESS - 1:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _offline(tmp_path: Path, transactions: list[Transaction]) -> dict[str, dict[str, float | None]]:
    source = tmp_path / "transactions.csv"
    rows = to_csv_rows(transactions)
    with source.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    output = tmp_path / "features.parquet"
    replay(input_path=source, output_path=output)
    table = pq.read_table(output).to_pylist()
    return {row["transaction_id"]: {name: row[name] for name in FEATURE_NAMES} for row in table}


class _Stage:
    """`vigil run features` as a real subprocess (so kill -9 is a real kill -9)."""

    def __init__(self, settings: Settings, log: Path, *extra: str) -> None:
        env = dict(os.environ)
        env.update(
            VIGIL_KAFKA_TOPIC_PREFIX=settings.kafka_topic_prefix,
            VIGIL_DATABASE_URL=settings.database_url,
            VIGIL_ENVIRONMENT="test",
            VIGIL_LOG_FORMAT="text",
            VIGIL_BATCH_TIMEOUT_MS="100",
        )
        self.log = log
        self._handle = log.open("ab")
        arguments = [
            "run",
            "features",
            "--idle-seconds",
            "1",
            "--snapshot-interval",
            "0.5",
            "--allowed-lateness",
            str(LATENESS),
            *extra,
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from vigil.cli import main; main()", *arguments],
            env=env,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._handle.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=20)
        self._handle.close()
        return code


@pytest.fixture
def stages() -> Iterator[list[_Stage]]:
    started: list[_Stage] = []
    yield started
    for stage in started:
        if stage.process.poll() is None:
            stage.kill()


def _outputs(settings: Settings, expected: int, timeout: float) -> list[FeatureVector]:
    deadline = time.monotonic() + timeout
    messages = []
    while time.monotonic() < deadline:
        messages = read_all(settings, settings.topic(TX_FEATURES), timeout=5)
        if len(messages) >= expected:
            break
        time.sleep(0.5)
    return [FeatureVector.model_validate_json(m.value() or b"") for m in messages]


def _settled_outputs(settings: Settings, expected: int, timeout: float) -> list[FeatureVector]:
    """Every expected output, then a pause and a second read: a duplicate would have arrived by then."""
    _outputs(settings, expected, timeout=timeout)
    time.sleep(2.5)
    return _outputs(settings, expected, timeout=10)


def _assert_same_features(online: list[FeatureVector], offline: dict[str, dict[str, float | None]]) -> None:
    by_id = {vector.transaction.transaction_id: vector for vector in online}
    assert len(by_id) == len(online), "duplicate transaction ids on tx.features"
    assert set(by_id) == set(offline), "online and offline saw different transactions"
    for txid, vector in by_id.items():
        assert not vector.late, txid
        for name in FEATURE_NAMES:
            got, want = vector.features[name], offline[txid][name]
            if want is None or (isinstance(want, float) and math.isnan(want)):
                assert got is None, (txid, name, got)
            else:
                assert got == want, (txid, name, got, want)  # bit-identical, not approximately equal


def test_online_with_three_partitions_equals_offline_replay(
    topics: Settings, db: object, tmp_path: Path, stages: list[_Stage]
) -> None:
    transactions = generate(1500, seed=11)
    produce(topics, _shuffled_within_lateness(transactions))
    stages.append(_Stage(topics, tmp_path / "stage.log"))
    online = _outputs(topics, len(transactions), timeout=120)
    assert stages[0].stop() == 0, (tmp_path / "stage.log").read_text()
    _assert_same_features(online, _offline(tmp_path, transactions))
    partitions = {m.partition() for m in read_all(topics, topics.topic(TX_FEATURES))}
    assert len(partitions) > 1  # keyed by account over several partitions
    # Progress is committed to the group for lag monitoring (snapshots hold the real offsets).
    consumer = make_consumer(topics, group_id=topics.topic("vigil-features"))
    try:
        source = topics.topic(TX_VALID)
        committed = consumer.committed([TopicPartition(source, p) for p in range(3)], timeout=10)
        ends = [consumer.get_watermark_offsets(TopicPartition(source, p), timeout=10)[1] for p in range(3)]
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == ends


@pytest.mark.parametrize("snapshot_interval", ["0.5", "3600"], ids=["from-snapshot", "no-snapshot-yet"])
def test_kill_minus_nine_mid_stream_gives_identical_output_without_gaps_or_duplicates(
    topics: Settings, db: object, tmp_path: Path, stages: list[_Stage], snapshot_interval: str
) -> None:
    transactions = generate(4000, seed=12)
    waves = [transactions[i : i + 500] for i in range(0, len(transactions), 500)]
    log = tmp_path / "stage.log"
    options = ("--snapshot-interval", snapshot_interval)
    produce(topics, _shuffled_within_lateness(waves[0]))
    stages.append(_Stage(topics, log, *options))
    assert len(_outputs(topics, 1, timeout=60)) >= 1, log.read_text()
    for wave in waves[1:4]:
        produce(topics, _shuffled_within_lateness(wave))
        time.sleep(0.3)
    stages[0].kill()  # mid-stream: some of waves 1-3 emitted, some not
    before = len(read_all(topics, topics.topic(TX_FEATURES)))
    for wave in waves[4:6]:
        produce(topics, _shuffled_within_lateness(wave))
    stages.append(_Stage(topics, log, *options))
    for wave in waves[6:]:
        produce(topics, _shuffled_within_lateness(wave))
        time.sleep(0.2)
    online = _settled_outputs(topics, len(transactions), timeout=180)
    assert stages[1].stop() == 0, log.read_text()
    assert 0 < before < len(transactions), "the kill did not land mid-stream"
    text = log.read_text()
    suppressed = [int(m) for m in re.findall(r"(\d+) outputs already emitted after the snapshot", text)]
    if snapshot_interval == "3600":
        # No snapshot before the kill: the restart replays everything and must hold back all it had sent.
        assert "no snapshot" in text
        assert suppressed == [before], text
    else:
        assert "restored snapshot" in text
    assert len(online) == len(transactions)
    _assert_same_features(online, _offline(tmp_path, transactions))


def test_a_snapshot_from_an_incompatible_version_means_starting_from_the_beginning(
    topics: Settings, db: Engine, tmp_path: Path, stages: list[_Stage]
) -> None:
    store_stale_snapshot(db, topics, allowed_lateness=LATENESS)  # what an upgrade finds
    transactions = generate(600, seed=13)
    produce(topics, transactions)
    stages.append(_Stage(topics, tmp_path / "stage.log"))
    online = _outputs(topics, len(transactions), timeout=120)
    assert stages[0].stop() == 0, (tmp_path / "stage.log").read_text()
    assert "is from an incompatible version: starting from the beginning" in (tmp_path / "stage.log").read_text()
    assert len(online) == len(transactions)
    _assert_same_features(online, _offline(tmp_path, transactions))


def test_malformed_messages_are_dead_lettered_and_the_stream_goes_on(
    topics: Settings, db: object, tmp_path: Path, stages: list[_Stage]
) -> None:
    transactions = generate(30, seed=13)
    produce(topics, transactions, extra=[b"{broken", b'{"schema_version": 1, "transaction_id": "x"}'])
    stages.append(_Stage(topics, tmp_path / "stage.log"))
    online = _outputs(topics, len(transactions), timeout=60)
    assert stages[0].stop() == 0
    assert len(online) == len(transactions)
    dead = read_all(topics, topics.topic(TX_DLQ))
    reasons = sorted(dict(header_pairs(m))[DLQ_REASON].decode() for m in dead)
    assert reasons == ["invalid_json", "missing_field"]
    assert {m.value() for m in dead} == {b"{broken", b'{"schema_version": 1, "transaction_id": "x"}'}


def test_two_replicas_share_the_output_and_agree_with_offline(
    topics: Settings, db: object, tmp_path: Path, stages: list[_Stage]
) -> None:
    transactions = generate(1200, seed=14, merchants=6, devices=5)  # merchants and devices span partitions
    produce(topics, _shuffled_within_lateness(transactions))
    log = tmp_path / "stage.log"
    stages.append(_Stage(topics, log, "--replicas", "2", "--replica-index", "0"))
    stages.append(_Stage(topics, log, "--replicas", "2", "--replica-index", "1"))
    online = _settled_outputs(topics, len(transactions), timeout=120)
    assert [stage.stop() for stage in stages] == [0, 0], log.read_text()
    assert len(online) == len(transactions)
    _assert_same_features(online, _offline(tmp_path, transactions))
    sources = {
        int(dict(header_pairs(m))["vigil.features.source.partition"])
        for m in read_all(topics, topics.topic(TX_FEATURES))
    }
    assert sources == {0, 1, 2}


def test_kill_minus_nine_after_delta_snapshots_gives_identical_output(
    topics: Settings, db: object, tmp_path: Path, stages: list[_Stage]
) -> None:
    # Many entities first (one full snapshot of them), then a few busy accounts: later snapshots are
    # deltas, and the restart must rebuild the state from a full snapshot plus a delta.
    history = generate(1500, seed=15, accounts=1500, devices=1500)
    later = generate(2000, seed=16, accounts=20, devices=10, start=history[-1].occurred_at + timedelta(hours=1))
    transactions = history + later
    waves = [later[i : i + 250] for i in range(0, len(later), 250)]
    log = tmp_path / "stage.log"
    produce(topics, _shuffled_within_lateness(history))
    stages.append(_Stage(topics, log))
    assert len(_outputs(topics, len(history), timeout=120)) == len(history), log.read_text()
    time.sleep(1.5)  # a full snapshot of the history is written
    for wave in waves[:4]:
        produce(topics, _shuffled_within_lateness(wave))
        time.sleep(0.8)  # snapshots every 0.5 s: deltas of the few busy accounts
    stages[0].kill()
    before = len(read_all(topics, topics.topic(TX_FEATURES)))
    stages.append(_Stage(topics, log))
    for wave in waves[4:]:
        produce(topics, _shuffled_within_lateness(wave))
        time.sleep(0.2)
    online = _settled_outputs(topics, len(transactions), timeout=180)
    assert stages[1].stop() == 0, log.read_text()
    assert len(history) < before < len(transactions), "the kill did not land mid-stream"
    assert re.search(r"restored snapshot \d+ \(\d+ events processed, delta of full snapshot \d+\)", log.read_text())
    assert len(online) == len(transactions)
    _assert_same_features(online, _offline(tmp_path, transactions))


def test_the_batch_producer_delivers_everything_and_still_reports_failures(topics: Settings) -> None:
    # Success reports are switched off (delivery.report.only.error): flush_or_raise must still
    # raise for a failed message, and every other message must arrive with its key and headers.
    producer = BatchProducer(topics, service="test", **{"compression.type": "none"})
    target = topics.topic(TX_FEATURES)
    values = [b'{"n":%d}' % i for i in range(500)]
    headers = [[(SOURCE_PARTITION_HEADER, b"1"), (SOURCE_OFFSET_HEADER, b"%d" % i)] for i in range(500)]
    producer.produce_batch(target, values, [f"acc-{i % 7}" for i in range(500)], headers)
    producer.flush_or_raise()
    received = read_all(topics, target)
    assert sorted(m.value() or b"" for m in received) == sorted(values)
    assert {(m.key(), dict(header_pairs(m))[SOURCE_OFFSET_HEADER]) for m in received} == {
        (f"acc-{i % 7}".encode(), b"%d" % i) for i in range(500)
    }
    # A topic whose size limit the broker enforces: the send fails in delivery, not in produce().
    ensure_topics(topics, [TopicSpec("small", partitions=1, config=(("max.message.bytes", "1000"),))])
    producer.produce_batch(topics.topic("small"), [b"x" * 5_000, b"{}"], ["acc-0", "acc-1"], [[], []])
    with pytest.raises(KafkaDeliveryError, match=r"messages failed: .*too large"):
        producer.flush_or_raise()
    producer.produce_batch(target, [b"{}"], ["acc-0"], [[]])
    producer.flush_or_raise()  # the failure was reported once; later sends go on
