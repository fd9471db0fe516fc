"""`vigil generate`: file formats (byte-identical per seed), Kafka and the real HTTP API."""

from __future__ import annotations

import csv
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert

from core.contracts import Transaction
from core.settings import Settings
from core.topics import LABELS, TX_RAW
from ingestion import read_topic
from vigil.cli import cli
from vigil.generator import FILE_COLUMNS, GeneratorConfig, HttpSink, SyntheticStream, read_labels, stream_paced

START = "2026-03-02T08:00:00Z"


def generate(tmp: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> tuple[Path, Path, str]:
    out, labels = tmp / name, tmp / f"{name}.labels.csv"
    args = ["generate", "--to", "file", "--out", str(out), "--labels", str(labels), "--start", START, *extra]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output + result.stderr
    return out, labels, result.stderr


def test_rate_2000_for_10_seconds_gives_20000_transactions_with_the_fraud_share(tmp_path: Path) -> None:
    out, labels_path, report = generate(
        tmp_path, "tx.jsonl", "--rate", "2000", "--duration", "10", "--seed", "1", "--fraud-rate", "0.02"
    )
    lines = out.read_bytes().splitlines()
    assert len(lines) == 20_000
    labels = read_labels(labels_path)
    assert len(labels) / len(lines) == pytest.approx(0.02, abs=0.002)
    assert "20000 transactions" in report and "fraud" in report
    first = Transaction.model_validate_json(lines[0])
    assert first.occurred_at.isoformat().startswith("2026-03-02T08:00:00")
    ids = {orjson.loads(line)["transaction_id"] for line in lines}
    assert {label.transaction_id for label in labels} <= ids


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_the_same_seed_writes_byte_identical_files(tmp_path: Path, suffix: str) -> None:
    args = ("--rate", "1000", "--duration", "5", "--seed", "42", "--tenants", "2")
    first, first_labels, _ = generate(tmp_path, f"a.{suffix}", *args)
    second, second_labels, _ = generate(tmp_path, f"b.{suffix}", *args)
    other, _, _ = generate(tmp_path, f"c.{suffix}", "--rate", "1000", "--duration", "5", "--seed", "43")
    assert first.read_bytes() == second.read_bytes()
    assert first_labels.read_bytes() == second_labels.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_csv_and_parquet_carry_the_transaction_columns(tmp_path: Path) -> None:
    args = ("--rate", "500", "--duration", "4", "--seed", "3")
    as_csv, _, _ = generate(tmp_path, "t.csv", *args)
    as_parquet, _, _ = generate(tmp_path, "t.parquet", *args)
    as_jsonl, _, _ = generate(tmp_path, "t.jsonl", *args)
    with as_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = pq.read_table(as_parquet)
    records = [orjson.loads(line) for line in as_jsonl.read_bytes().splitlines()]
    assert tuple(rows[0]) == FILE_COLUMNS == tuple(table.column_names)
    assert len(rows) == table.num_rows == len(records) == 2000
    assert str(table.schema.field("occurred_at").type) == "timestamp[ms, tz=UTC]"
    for row, record in zip(rows, records, strict=True):
        assert row["transaction_id"] == record["transaction_id"]
        assert row["amount"] == record["amount"]
        assert (orjson.loads(row["attributes"]) if row["attributes"] else {}) == record.get("attributes", {})
    parquet_ids = table.column("transaction_id").to_pylist()
    assert parquet_ids == [r["transaction_id"] for r in records]


def test_file_output_needs_a_path_and_http_needs_a_token(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", "--to", "file"])
    assert result.exit_code == 2 and "--out" in result.stderr
    result = runner.invoke(cli, ["generate", "--to", "http", "--duration", "1"], env={"VIGIL_TOKEN": ""})
    assert result.exit_code == 2 and "--token" in result.stderr
    result = runner.invoke(cli, ["generate", "--to", "file", "--out", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and ".jsonl" in result.stderr
    result = runner.invoke(cli, ["generate", "--to", "file", "--out", str(tmp_path / "x.csv"), "--start", "2026-01-01"])
    assert result.exit_code == 2 and "UTC offset" in result.stderr


@pytest.mark.integration
def test_kafka_output_is_keyed_by_account_paced_and_labels_go_to_their_own_topic(
    topics: Settings, tmp_path: Path
) -> None:
    env = {"VIGIL_KAFKA_TOPIC_PREFIX": topics.kafka_topic_prefix, "VIGIL_KAFKA_PARTITIONS": "3"}
    labels_path = tmp_path / "labels.csv"
    started = time.monotonic()
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            *("--rate", "1000", "--duration", "2", "--seed", "5", "--fraud-rate", "0.05"),
            *("--labels", str(labels_path), "--labels-topic"),
        ],
        env=env,
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output + result.stderr
    assert elapsed >= 1.8  # 2000 transactions at 1000/s are paced, not dumped at once
    raw = read_topic(topics, topics.topic(TX_RAW))
    assert len(raw) == 2000
    for message in raw[:200]:
        record = orjson.loads(message.value() or b"")
        assert message.key() == record["account_id"].encode()
    labels = read_labels(labels_path)
    published = read_topic(topics, topics.topic(LABELS))
    assert len(published) == len(labels) > 0
    assert {orjson.loads(m.value() or b"")["transaction_id"] for m in published} == {
        label.transaction_id for label in labels
    }
    # Labels never travel inside the transactions.
    assert all(b"typology" not in (m.value() or b"") for m in raw)


# --- the real API over HTTP --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_api(topics: Settings, db: Engine) -> Iterator[tuple[str, str]]:
    """The real FastAPI app served by uvicorn on a free port, and an ingest client's token."""
    import uvicorn

    from api import ApiPorts, Principal, Role, create_app
    from core.schema import principals

    # A tight rate limit so the client meets 429 + Retry-After for real.
    settings = topics.model_copy(update={"api_rate_limit_per_second": 2.0, "api_rate_limit_burst": 2})
    app = create_app(settings, ports=ApiPorts(), engine=db)
    principal_id = f"generator-{uuid.uuid4().hex[:8]}"
    with db.begin() as connection:
        connection.execute(
            insert(principals).values(
                principal_id=principal_id, kind="client", secret_hash="unused", roles=["ingest"], tenants=["tenant-1"]
            )
        )
    principal = Principal(
        principal_id=principal_id, kind="client", roles=frozenset({Role("ingest")}), tenants=frozenset({"tenant-1"})
    )
    token = app.state.vigil.issuer.issue(principal)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "API did not start"
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.integration
def test_http_output_reaches_tx_raw_through_the_real_api_despite_rate_limits(
    topics: Settings, live_api: tuple[str, str]
) -> None:
    base_url, token = live_api
    stream = SyntheticStream(GeneratorConfig(rate=2500, duration=2, seed=9, fraud_rate=0.02))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    sink = HttpSink(base_url=base_url, token=token, sleep=sleep)
    try:
        sent = stream_paced(stream.batches(), sink, rate=100_000)
    finally:
        sink.close()
    assert sent == 5000
    assert sink.result.accepted == 5000 and sink.result.rejected == 0
    assert waits, "the rate limit never answered 429, so Retry-After handling went untested"
    raw = read_topic(topics, topics.topic(TX_RAW))
    assert len(raw) == 5000
    assert {orjson.loads(m.value() or b"")["tenant_id"] for m in raw} == {"tenant-1"}


@pytest.mark.integration
def test_an_endless_stream_stops_on_sigterm_and_reports_what_it_delivered(topics: Settings, tmp_path: Path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    labels_path = tmp_path / "labels.csv"
    env = {**os.environ, "VIGIL_KAFKA_TOPIC_PREFIX": topics.kafka_topic_prefix, "VIGIL_KAFKA_PARTITIONS": "3"}
    vigil = Path(sys.executable).with_name("vigil")
    process = subprocess.Popen(
        [
            *(str(vigil), "generate", "--rate", "400", "--duration", "0", "--seed", "3"),
            *("--fraud-rate", "0.1", "--labels", str(labels_path)),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    # Signal only once it is streaming: before that, a loaded machine may still be importing and has not
    # installed its SIGTERM handler yet.
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and not delivered(topics, topics.topic(TX_RAW)):
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()  # never leave an endless generator behind a failed test
            process.wait()
    assert process.returncode == 0, stderr.decode()
    match = re.search(r"sent (\d+) transactions \((\d+) fraud", stderr.decode())
    assert match, stderr.decode()
    sent, fraud = int(match.group(1)), int(match.group(2))
    raw = read_topic(topics, topics.topic(TX_RAW))
    assert 0 < sent == len(raw) < 4096  # stopped mid-chunk, and said so truthfully
    labels = read_labels(labels_path)
    assert len(labels) == fraud
    assert {label.transaction_id for label in labels} <= {orjson.loads(m.value() or b"")["transaction_id"] for m in raw}


def delivered(settings: Settings, topic: str) -> int:
    """Messages on `topic` so far (sum of high watermarks; 0 while it does not exist)."""
    from confluent_kafka import KafkaException, TopicPartition

    from core.kafka import make_consumer

    consumer = make_consumer(settings, group_id=f"probe-{time.time_ns()}")
    try:
        metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in metadata.partitions)
    except KafkaException:
        return 0  # just created: partition leaders are still being elected
    finally:
        consumer.close()
