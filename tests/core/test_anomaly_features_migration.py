"""Migration 0010: snapshots move from `anomalies.features` to `anomaly_features` and back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import create_engine, text

from core.db import temporary_database
from core.migrate import downgrade, upgrade
from core.settings import Settings

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
def empty_database(stack: Settings) -> Iterator[str]:
    """A database of its own: this test moves the schema up and down."""
    with temporary_database(stack.database_url, prefix="vigil_mig", migrate=False) as url:
        yield url


def _anomaly(transaction_id: str, detector: str, features: dict[str, float], detected: int) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "tx": transaction_id,
        "detector": detector,
        "features": orjson.dumps(features).decode(),
        "detected": WHEN + timedelta(seconds=detected),
    }


def test_snapshots_move_once_per_transaction_and_come_back(empty_database: str) -> None:
    upgrade(empty_database, "0009")
    engine = create_engine(empty_database)
    rows = [
        _anomaly("tx-1", "amount_zscore", {"amount": 1.0, "old": 9.0}, 1),
        _anomaly("tx-1", "rule:burst", {"amount": 1.0}, 2),  # the newest detection's snapshot wins
        _anomaly("tx-2", "amount_zscore", {"amount": 2.0}, 3),
        _anomaly("tx-3", "aggregate", {}, 4),  # no snapshot: nothing to store
    ]
    with engine.begin() as connection:
        # A database from before 0010 has the column; a fresh one renders today's schema without it.
        connection.execute(text("ALTER TABLE anomalies ADD COLUMN features JSONB NOT NULL DEFAULT '{}'::jsonb"))
        connection.execute(
            text(
                "INSERT INTO anomalies (anomaly_id, event_time, detected_at, tenant_id, transaction_id, entity_type, "
                "entity_id, detector_family, detector_name, detector_version, score_raw, score, severity, reasons, "
                "features) VALUES (:id, :when, :detected, 'acme', :tx, 'account', 'acc-1', 'statistical', "
                ":detector, '1', 1.0, 60.0, 'warning', '[]', CAST(:features AS jsonb))"
            ),
            [{**row, "when": WHEN} for row in rows],
        )
    engine.dispose()

    upgrade(empty_database, "0010")
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        query = text("SELECT transaction_id, features FROM anomaly_features")
        moved: dict[str, object] = dict(connection.execute(query).all())
        assert moved == {"tx-1": {"amount": 1.0}, "tx-2": {"amount": 2.0}}
        columns = set(
            connection.execute(
                text("SELECT column_name FROM information_schema.columns WHERE table_name = 'anomalies'")
            ).scalars()
        )
        assert "features" not in columns
        assert connection.execute(text("SELECT count(*) FROM anomalies")).scalar_one() == len(rows)
    engine.dispose()

    downgrade(empty_database, "0009")
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        restored = {
            (tx, detector): features
            for tx, detector, features in connection.execute(
                text("SELECT transaction_id, detector_name, features FROM anomalies")
            ).all()
        }
        # Every anomaly of a transaction gets the transaction's one snapshot back.
        assert restored == {
            ("tx-1", "amount_zscore"): {"amount": 1.0},
            ("tx-1", "rule:burst"): {"amount": 1.0},
            ("tx-2", "amount_zscore"): {"amount": 2.0},
            ("tx-3", "aggregate"): {},
        }
        assert connection.execute(text("SELECT to_regclass('anomaly_features')")).scalar_one() is None
    engine.dispose()
    upgrade(empty_database)  # and up again: the migration runs on a database it already shaped once
