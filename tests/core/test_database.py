"""Migrations, time partitioning and the unified anomaly writer against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, text

from core import schema
from core.contracts import (
    Anomaly,
    DetectorFamily,
    EntityType,
    FeatureVector,
    Reason,
    Severity,
    Transaction,
)
from core.detection import AnomalyWriter, FeatureBatch, Scores, Thresholds, detect
from core.kafka import DeliveringProducer, ensure_topics, read_all
from core.settings import Settings
from core.timeseries import MAINTAINED_TABLES, TIME_SERIES_TABLES, drop_expired_partitions, ensure_partitions, maintain
from core.topics import ANOMALIES, STREAM_TOPICS
from tests.core.test_contracts import valid_payload

pytestmark = pytest.mark.integration


def test_time_series_tables_are_partitioned_natively_without_timescaledb(db: Engine) -> None:
    with db.connect() as connection:
        modes: dict[str, str] = dict(
            connection.execute(
                text("SELECT c.relname, p.partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid")
            ).all()
        )
        assert modes == {"transactions": "r", "anomalies": "r", "anomaly_features": "r"}
        this_month = f"anomalies_{datetime.now(UTC):%Y%m}"
        children = set(
            connection.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'anomalies'"
                )
            ).scalars()
        )
        assert {this_month, "anomalies_default"} <= children


def test_partitions_move_rows_out_of_default_and_expire(db: Engine) -> None:
    table = next(t for t in TIME_SERIES_TABLES if t.name == "transactions")
    old = datetime(2019, 3, 15, tzinfo=UTC)
    row = Transaction.model_validate(valid_payload(transaction_id="old", occurred_at=old.isoformat()))
    with db.begin() as connection:
        connection.execute(schema.transactions.insert().values(**_tx_row(row)))
        created = ensure_partitions(connection, table, today=date(2019, 3, 20), months_behind=0, months_ahead=0)
        assert created == ["transactions_201903"]
        in_partition = connection.execute(text("SELECT count(*) FROM transactions_201903")).scalar()
        assert in_partition == 1
        dropped = drop_expired_partitions(connection, table, retention_days=90, today=date(2019, 8, 1))
        assert dropped == ["transactions_201903"]
        assert connection.execute(text("SELECT count(*) FROM transactions")).scalar() == 0


def test_maintenance_keeps_every_partitioned_table_including_feature_snapshots(db: Engine) -> None:
    with db.begin() as connection:
        report = maintain(connection)
        partitioned = set(
            connection.execute(
                text("SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid")
            ).scalars()
        )
    # Every partitioned table gets monthly partitions ahead and expiry; a forgotten one fills DEFAULT forever.
    assert {table.name for table in MAINTAINED_TABLES} == partitioned
    assert {f"{name}:{step}" for name in partitioned for step in ("created", "dropped")} == set(report)


def test_audit_log_is_append_only(db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(
            schema.audit_log.insert().values(actor="alice", action="case.update", object_type="case", object_id="1")
        )
    with pytest.raises(Exception, match="append-only"), db.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'mallory'"))
    with pytest.raises(Exception, match="append-only"), db.begin() as connection:
        connection.execute(text("DELETE FROM audit_log"))


def _tx_row(transaction: Transaction) -> dict[str, object]:
    row = transaction.model_dump(exclude={"schema_version", "ingested_at"})
    row["ip"] = None
    row["channel"] = transaction.channel.value
    return row


class AmountDetector:
    """A tiny real detector for framework tests: the amount itself, scaled."""

    family = DetectorFamily.STATISTICAL
    name = "test_amount"
    version = "1"

    def score(self, batch: FeatureBatch) -> Scores:
        amount = batch.field("amount").astype(np.float64)
        return Scores(raw=amount, normalised=np.minimum(amount / 10.0, 100.0))

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        return [Reason(feature="amount", value=float(batch.field("amount")[index]), text="Large amount.")]


def _vectors(amounts: list[str]) -> list[FeatureVector]:
    start = datetime.now(UTC) - timedelta(hours=1)
    return [
        FeatureVector(
            transaction=Transaction.model_validate(
                valid_payload(
                    transaction_id=f"tx-{i}",
                    amount=amount,
                    occurred_at=(start + timedelta(seconds=i)).isoformat(),
                )
            ),
            features={"account_count_1h": float(i)},
            feature_set_version=1,
        )
        for i, amount in enumerate(amounts)
    ]


def test_thresholds_split_severity_bands() -> None:
    batch = FeatureBatch(_vectors(["100", "600", "900", "5"]))
    anomalies = detect(detectors=[AmountDetector()], batch=batch, thresholds=Thresholds(warning=50, critical=80))
    assert [(a.transaction_id, a.severity) for a in anomalies] == [
        ("tx-1", Severity.WARNING),
        ("tx-2", Severity.CRITICAL),
    ]
    assert anomalies[1].score == 90.0
    assert anomalies[1].reasons[0].value == 900.0
    assert anomalies[1].features == {"account_count_1h": 2.0}
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(warning=90, critical=80)


def test_writer_is_idempotent_keeps_cases_and_publishes(db: Engine, settings: Settings) -> None:
    ensure_topics(settings, STREAM_TOPICS)
    batch = FeatureBatch(_vectors(["600", "900", "950"]))
    anomalies = detect(detectors=[AmountDetector()], batch=batch, thresholds=Thresholds())
    writer = AnomalyWriter(
        engine=db, producer=DeliveringProducer(settings, service="test"), settings=settings, service="test"
    )
    assert writer.write(anomalies) == 3
    assert writer.write(anomalies) == 0, "a replay must not insert twice"

    with db.connect() as connection:
        assert connection.execute(select(func.count()).select_from(schema.anomalies)).scalar() == 3
        cases = connection.execute(select(schema.cases).order_by(schema.cases.c.transaction_id)).mappings().all()
    assert [c["anomaly_count"] for c in cases] == [1, 1, 1], "replays must not inflate case counts"
    assert [c["max_severity"] for c in cases] == ["warning", "critical", "critical"]

    # A second detector on the same transaction joins the same case and can raise its severity.
    second = Anomaly.build(
        detected_at=datetime.now(UTC),
        **{
            **anomalies[0].model_dump(exclude={"anomaly_id", "detected_at", "schema_version"}),
            "detector_name": "other",
            "severity": Severity.CRITICAL,
            "score": 99.0,
        },
    )
    assert writer.write([second]) == 1
    with db.connect() as connection:
        case = connection.execute(select(schema.cases).where(schema.cases.c.transaction_id == "tx-0")).mappings().one()
    assert (case["anomaly_count"], case["max_severity"], case["max_score"]) == (2, "critical", 99.0)

    published = read_all(settings, settings.topic(ANOMALIES))
    ids = [Anomaly.model_validate_json(m.value() or b"").anomaly_id for m in published]
    assert len(ids) == 7  # every write publishes its whole batch; consumers dedup by id
    assert set(ids) == {a.anomaly_id for a in anomalies} | {second.anomaly_id}


def test_entity_and_amount_are_stored(db: Engine, settings: Settings) -> None:
    ensure_topics(settings, STREAM_TOPICS)
    anomalies = detect(detectors=[AmountDetector()], batch=FeatureBatch(_vectors(["777.77"])), thresholds=Thresholds())
    AnomalyWriter(engine=db, producer=DeliveringProducer(settings, service="t"), settings=settings, service="t").write(
        anomalies
    )
    with db.connect() as connection:
        row = connection.execute(select(schema.anomalies)).mappings().one()
    assert row["entity_type"] == EntityType.ACCOUNT.value
    assert row["entity_id"] == "acc-1"
    assert row["amount"] == Decimal("777.77")
    assert row["reasons"][0]["text"] == "Large amount."
