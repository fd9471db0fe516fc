"""The ingest service on the real Kafka and PostgreSQL: routing, reasons, duplicates, replays."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from confluent_kafka import Consumer
from sqlalchemy import Engine, text

from core.contracts import Transaction
from core.kafka import DLQ_REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, client_config
from core.settings import Settings
from core.topics import TX_DLQ, TX_RAW, TX_VALID
from ingestion import REPLAY_HEADER, TimeWindow
from ingestion.service import DlqDepthMonitor
from ingestion.store import source_ref
from tests.ingestion.helpers import (
    body,
    committed_lag,
    encode,
    header,
    produce_raw,
    row_counts,
    running_ingest,
    topic_messages,
    transaction,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MALFORMED: dict[str, bytes] = {
    "empty_message": b"",
    "invalid_json": b'{"transaction_id": "x",',
    "not_an_object": b"[1, 2, 3]",
    "non_finite_number": b'{"transaction_id": "tx-nan", "amount": NaN}',
    "number_out_of_range": b'{"transaction_id": "tx-big", "amount": 1e400}',
    "unsupported_schema_version": encode(transaction(900_001, schema_version=2)),
    "missing_field": encode({k: v for k, v in transaction(900_002).items() if k != "merchant_id"}),
    "unknown_field": encode(transaction(900_003, colour="red")),
    "wrong_type": encode(transaction(900_004, card_id=12345)),
    "invalid_value": encode(transaction(900_005, merchant_category="54a1")),
    "invalid_timestamp": encode(transaction(900_006, occurred_at="2026-01-01T10:00:00")),
    "amount_out_of_range": encode(transaction(900_007, amount="1000000000000")),
    "amount_precision": encode(transaction(900_008, amount="10.001")),
    "unknown_currency": encode(transaction(900_009, currency="XYZ")),
    "unknown_country": encode(transaction(900_010, country="XX")),
    "too_many_attributes": encode(transaction(900_011, attributes={f"k{i}": i for i in range(17)})),
    "occurred_at_in_future": encode(
        transaction(900_012, occurred_at=(datetime.now(UTC) + timedelta(days=2)).isoformat())
    ),
    "occurred_at_too_old": encode(transaction(900_013, occurred_at="2001-01-01T00:00:00Z")),
}


def test_valid_rows_and_messages_once_malformed_to_the_dlq_with_reasons(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 50, "max_message_bytes": 4096})
    valid = [transaction(n) for n in range(300)]
    malformed = {**MALFORMED, "message_too_large": b" " * 5000}
    produce_raw(settings, [encode(p) for p in valid[:150]])
    produce_raw(settings, malformed.values())
    produce_raw(settings, [encode(p) for p in valid[150:]])

    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="ingest to commit every record")

    assert row_counts(db) == (300, 300)
    out = topic_messages(settings, TX_VALID)
    assert len(out) == 300
    by_id = {orjson.loads(body(m))["transaction_id"]: m for m in out}
    assert set(by_id) == {p["transaction_id"] for p in valid}
    for payload in valid[:20]:
        message = by_id[payload["transaction_id"]]
        assert message.key() == payload["account_id"].encode()
        parsed = Transaction.model_validate_json(body(message))
        assert parsed.ingested_at is not None
        assert parsed.amount == Transaction.model_validate(payload).amount

    dead = topic_messages(settings, TX_DLQ)
    assert len(dead) == len(malformed)
    reasons = {header(m, DLQ_REASON): m for m in dead}
    assert set(reasons) == set(malformed)
    for reason, original in malformed.items():
        letter = reasons[reason]
        assert (letter.value() or b"") == original, reason
        assert header(letter, SOURCE_TOPIC) == settings.topic(TX_RAW)
        assert int(header(letter, SOURCE_OFFSET) or -1) >= 0
        assert header(letter, SOURCE_PARTITION) is not None


def test_a_second_record_reusing_an_id_is_a_duplicate_and_earlier_attempts_are_reproduced(
    topics: Settings, db: Engine
) -> None:
    settings = topics.model_copy(update={"batch_size": 20})
    first = transaction(1)
    produce_raw(settings, [encode(first)], key=b"k")
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="first record")
    # Same id again (a producer retry that re-sent it), and again in another form within one batch.
    produce_raw(settings, [encode(first), encode({**first, "amount": "2.00"})], key=b"k")
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the duplicates")
    assert row_counts(db) == (1, 1)
    assert len(topic_messages(settings, TX_VALID)) == 1
    dead = topic_messages(settings, TX_DLQ)
    assert [header(m, DLQ_REASON) for m in dead] == ["duplicate_transaction_id"] * 2
    assert all("already ingested from" in (header(m, "vigil.dlq.detail") or "") for m in dead)


def test_ids_are_unique_per_tenant_so_another_tenants_id_is_no_duplicate(topics: Settings, db: Engine) -> None:
    """Two tenants may both send `tx-000001` (ADR 0013); within one tenant it is still a duplicate."""
    settings = topics.model_copy(update={"batch_size": 20})
    acme = transaction(1)
    globex = {**transaction(1), "tenant_id": "globex", "amount": "7.00"}
    produce_raw(settings, [encode(acme)], key=b"k")
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="acme's record")
    # The other tenant's record with the same id, in a later batch and within one batch, then acme's again.
    produce_raw(settings, [encode(globex), encode({**globex, "tenant_id": "initech"}), encode(acme)], key=b"k")
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the other tenants' records")
    with db.connect() as connection:
        stored = connection.execute(text("SELECT tenant_id, transaction_id FROM transactions ORDER BY 1")).all()
    assert [tuple(row) for row in stored] == [("acme", "tx-000001"), ("globex", "tx-000001"), ("initech", "tx-000001")]
    valid = [orjson.loads(body(m)) for m in topic_messages(settings, TX_VALID)]
    assert sorted((v["tenant_id"], v["amount"]) for v in valid) == [
        ("acme", acme["amount"]),
        ("globex", "7.00"),
        ("initech", "7.00"),
    ]
    dead = topic_messages(settings, TX_DLQ)
    assert [(header(m, DLQ_REASON), orjson.loads(body(m))["tenant_id"]) for m in dead] == [
        ("duplicate_transaction_id", "acme")
    ]


def test_rows_stored_by_an_attempt_that_died_before_its_kafka_commit_are_produced_once(
    topics: Settings, db: Engine
) -> None:
    """The window the exactly-once design exists for: DB committed, Kafka transaction not."""
    settings = topics.model_copy(update={"batch_size": 100})
    payloads = [transaction(n) for n in range(40)]
    produce_raw(settings, [encode(p) for p in payloads], key=b"one-partition")
    raw = topic_messages(settings, TX_RAW)
    assert len(raw) == 40
    # What the dead attempt left behind: the rows with their own records' coordinates.
    with db.begin() as connection:
        for message in raw:
            payload = orjson.loads(body(message))
            connection.execute(
                text(
                    "INSERT INTO transactions (transaction_id, occurred_at, tenant_id, account_id, merchant_id, "
                    "merchant_category, amount, currency, channel, country, ingested_at, source_ref) VALUES "
                    "(:id, :at, 'acme', :acct, 'm', '5411', 1, 'EUR', 'atm', 'DE', :ingested, :ref)"
                ),
                {
                    "id": payload["transaction_id"],
                    "at": payload["occurred_at"],
                    "acct": payload["account_id"],
                    "ingested": "2026-01-02T03:04:05Z",
                    "ref": source_ref(message.topic() or "", message.partition() or 0, message.offset() or 0),
                },
            )
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the replay")
    assert row_counts(db) == (40, 40)
    out = topic_messages(settings, TX_VALID)
    assert sorted(orjson.loads(body(m))["transaction_id"] for m in out) == sorted(p["transaction_id"] for p in payloads)
    # The re-produced message carries the ingested_at the first attempt stored.
    assert {orjson.loads(body(m))["ingested_at"] for m in out} == {"2026-01-02T03:04:05Z"}
    assert topic_messages(settings, TX_DLQ) == []


def test_resubmitting_the_same_dead_letter_twice_is_skipped_silently(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 10})
    payload = encode(transaction(7))
    replay = [(REPLAY_HEADER, b"t.tx.dlq/0/12")]
    produce_raw(settings, [payload], headers=replay)
    produce_raw(settings, [payload], headers=replay)
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="both re-submissions")
    assert row_counts(db) == (1, 1)
    assert len(topic_messages(settings, TX_VALID)) == 1
    assert topic_messages(settings, TX_DLQ) == []


def test_the_time_window_follows_the_record_timestamp_not_the_wall_clock(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 10})
    last_year = datetime.now(UTC) - timedelta(days=365)
    # A record produced (stamped) last year about a payment of last year is in its window.
    produce_raw(
        settings,
        [encode(transaction(1, occurred_at=last_year.isoformat()))],
        timestamp_ms=int(last_year.timestamp() * 1000),
    )
    produce_raw(settings, [encode(transaction(2, occurred_at=(datetime.now(UTC) + timedelta(minutes=3)).isoformat()))])
    produce_raw(settings, [encode(transaction(3, occurred_at=(datetime.now(UTC) + timedelta(minutes=30)).isoformat()))])
    with running_ingest(settings, window=TimeWindow(max_future_seconds=600, max_age_seconds=86_400)):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the window decisions")
    with db.connect() as connection:
        ids = sorted(connection.execute(text("SELECT transaction_id FROM transactions")).scalars())
    assert ids == ["tx-000001", "tx-000002"]
    dead = topic_messages(settings, TX_DLQ)
    assert [header(m, DLQ_REASON) for m in dead] == ["occurred_at_in_future"]


def test_metrics_count_accepted_and_rejected_by_reason(topics: Settings, db: Engine) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    settings = topics.model_copy(update={"batch_size": 50})
    accepted_before = sample("vigil_transactions_accepted_total", {"source": "kafka"})
    rejected_before = sample("vigil_transactions_rejected_total", {"source": "kafka", "reason": "unknown_currency"})
    latency_before = sample("vigil_ingest_latency_seconds_count", {})
    produce_raw(settings, [encode(transaction(n)) for n in range(25)] + [MALFORMED["unknown_currency"]])
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the batch")
    assert sample("vigil_transactions_accepted_total", {"source": "kafka"}) - accepted_before == 25
    assert (
        sample("vigil_transactions_rejected_total", {"source": "kafka", "reason": "unknown_currency"}) - rejected_before
        == 1
    )
    assert sample("vigil_ingest_latency_seconds_count", {}) - latency_before == 25
    # One dead letter (plus its transaction's commit marker) sits in this test's own DLQ.
    probe = Consumer(client_config(settings, **{"group.id": "dlq-depth-test"}))
    try:
        depth = DlqDepthMonitor(settings).measure(probe)
    finally:
        probe.close()
    assert depth is not None and 1 <= depth <= 2
    assert sample("vigil_dlq_depth", {"topic": settings.topic(TX_DLQ)}) == depth


def test_dead_letter_details_are_json_safe_and_bounded(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 10})
    produce_raw(settings, [encode(transaction(1, attributes={f"k{i}": "v" * 200 for i in range(40)}))])
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the dead letter")
    (letter,) = topic_messages(settings, TX_DLQ)
    detail = header(letter, "vigil.dlq.detail") or ""
    assert 0 < len(detail) <= 2000
    assert json.loads(json.dumps(detail)) == detail
    assert header(letter, DLQ_REASON) == "too_many_attributes"


def test_free_text_reaches_the_table_exactly(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 10})
    tricky = {"note": 'tab\there, newline\nhere, back\\slash, "quotes", \\N, ünïcödé ✓', "flag": True, "n": -(2**63)}
    replay = [(REPLAY_HEADER, b"odd\tdlq\\ref\n/0/1")]
    produce_raw(settings, [encode(transaction(1, attributes=tricky, lat=-33.5, lon=151.25))], headers=replay)
    produce_raw(settings, [encode(transaction(1, attributes=tricky, lat=-33.5, lon=151.25))], headers=replay)
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the records")
    with db.connect() as connection:
        row = connection.execute(text("SELECT attributes, lat, lon, source_ref, card_id FROM transactions")).one()
    assert row.attributes == tricky
    assert (row.lat, row.lon, row.card_id) == (-33.5, 151.25, "card-001")
    assert "odd_dlq_ref_/0/1" in row.source_ref
    # The second copy of the same re-submitted dead letter was recognised despite the odd header.
    assert row_counts(db) == (1, 1)
    assert topic_messages(settings, TX_DLQ) == []


def test_duplicates_across_the_slices_of_one_large_batch(topics: Settings, db: Engine) -> None:
    """Batches are written in pipelined slices; an id reused in a later slice is still a duplicate."""
    settings = topics.model_copy(update={"batch_size": 5000})
    payloads = [transaction(n) for n in range(2000)]
    payloads[1700] = {**payloads[10], "amount": "99.99"}  # same id, other record, a later slice
    payloads[1900] = payloads[1800]  # same record content sent twice within the last slice
    produce_raw(settings, [encode(p) for p in payloads], key=b"one-partition")
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the batch")
    assert row_counts(db) == (1998, 1998)
    assert len(topic_messages(settings, TX_VALID)) == 1998
    dead = topic_messages(settings, TX_DLQ)
    assert sorted(header(m, DLQ_REASON) or "" for m in dead) == ["duplicate_transaction_id"] * 2
    assert {orjson.loads(body(m))["transaction_id"] for m in dead} == {"tx-000010", "tx-001800"}


def test_a_batch_that_fails_holds_back_the_batches_behind_it_until_all_are_written_once(
    topics: Settings, db: Engine
) -> None:
    """Batch N+1 is validated while batch N is written; if N fails, N+1 must not commit past it.

    A real PostgreSQL CHECK constraint refuses one record, so every attempt at its batch fails at
    the COPY; the batches behind it are validated (pipelined) but must neither store rows nor
    commit offsets. Once the constraint is gone, everything is stored and produced exactly once.
    """
    from prometheus_client import REGISTRY

    settings = topics.model_copy(update={"batch_size": 50})
    payloads = [transaction(n) for n in range(400)]
    poison = 175  # a few batches in (one partition: the order is fixed)
    payloads[poison] = transaction(poison, merchant_id="m-poison")
    produce_raw(settings, [encode(p) for p in payloads], key=b"one-partition")
    failures_before = REGISTRY.get_sample_value("vigil_batch_failures_total", {"service": "ingest"}) or 0.0
    with db.begin() as connection:
        connection.execute(
            text("ALTER TABLE transactions ADD CONSTRAINT test_poison CHECK (merchant_id <> 'm-poison')")
        )
    try:
        with running_ingest(settings):
            wait_for(
                lambda: (
                    (REGISTRY.get_sample_value("vigil_batch_failures_total", {"service": "ingest"}) or 0.0)
                    >= failures_before + 2
                ),
                timeout=60,
                what="the poisoned batch to fail twice",
            )
            with db.connect() as connection:
                stored = sorted(connection.execute(text("SELECT transaction_id FROM transactions")).scalars())
            # Only batches before the poisoned one; nothing of it or behind it, and offsets held back.
            assert 0 < len(stored) <= poison
            assert stored == [p["transaction_id"] for p in payloads[: len(stored)]]
            assert committed_lag(settings) == len(payloads) - len(stored)
            assert len(topic_messages(settings, TX_VALID)) == len(stored)
            with db.begin() as connection:
                connection.execute(text("ALTER TABLE transactions DROP CONSTRAINT test_poison"))
            wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the retried batches")
    finally:
        with db.begin() as connection:
            connection.execute(text("ALTER TABLE transactions DROP CONSTRAINT IF EXISTS test_poison"))
    assert row_counts(db) == (400, 400)
    out = topic_messages(settings, TX_VALID)
    assert sorted(orjson.loads(body(m))["transaction_id"] for m in out) == sorted(p["transaction_id"] for p in payloads)
    assert topic_messages(settings, TX_DLQ) == []


def test_an_id_spelled_null_is_still_found_by_the_duplicate_check(topics: Settings, db: Engine) -> None:
    """Ids travel to the lookup as one comma-separated text; "NULL" must stay an id, not become NULL."""
    settings = topics.model_copy(update={"batch_size": 10})
    later = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    produce_raw(settings, [encode(transaction(1, transaction_id="NULL"))], key=b"k")
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the first record")
    produce_raw(settings, [encode(transaction(2, transaction_id="NULL", occurred_at=later))], key=b"k")
    with running_ingest(settings):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the second record")
    assert row_counts(db) == (1, 1)
    assert [header(m, DLQ_REASON) for m in topic_messages(settings, TX_DLQ)] == ["duplicate_transaction_id"]
