"""Migration 0011: transaction ids are unique per tenant (ADR 0013)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import IntegrityError

from core.db import temporary_database
from core.migrate import downgrade, upgrade
from core.settings import Settings

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 12, 1, 9, tzinfo=UTC)
_OLD_KEYS = {"transactions": "transaction_id, occurred_at", "anomaly_features": "transaction_id, event_time"}
_NEW_KEYS = {
    "transactions": "PRIMARY KEY (transaction_id, tenant_id, occurred_at)",
    "anomaly_features": "PRIMARY KEY (transaction_id, tenant_id, event_time)",
}


@pytest.fixture
def empty_database(stack: Settings) -> Iterator[str]:
    with temporary_database(stack.database_url, prefix="vigil_mig", migrate=False) as url:
        yield url


def _keys(connection: Connection) -> dict[str, str]:
    query = text(
        "SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.contype = 'p' AND c.conrelid IN ('transactions'::regclass, 'anomaly_features'::regclass)"
    )
    return {str(row[0]): str(row[1]) for row in connection.execute(query)}


def _store(connection: Connection, tenant: str, transaction_id: str) -> None:
    connection.execute(
        text(
            "INSERT INTO transactions (transaction_id, occurred_at, tenant_id, account_id, merchant_id, "
            "merchant_category, amount, currency, channel, country) "
            "VALUES (:tx, :when, :tenant, 'acc-1', 'm-1', '5411', 10, 'EUR', 'ecommerce', 'DE')"
        ),
        {"tx": transaction_id, "when": WHEN, "tenant": tenant},
    )
    connection.execute(
        text(
            "INSERT INTO anomaly_features (tenant_id, transaction_id, event_time, features) "
            "VALUES (:tenant, :tx, :when, CAST('{\"amount\": 10.0}' AS json))"
        ),
        {"tx": transaction_id, "when": WHEN, "tenant": tenant},
    )


def test_keys_gain_the_tenant_keep_the_rows_and_come_back(empty_database: str) -> None:
    upgrade(empty_database, "0010")
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        # A database from before 0011 has the old keys; a fresh one renders today's `transactions` in 0001.
        for table, columns in _OLD_KEYS.items():
            connection.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey"))
            connection.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({columns})"))
        _store(connection, "acme", "tx-1")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        _store(connection, "globex", "tx-1")  # what the old keys refused
    engine.dispose()

    upgrade(empty_database, "head")
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        assert _keys(connection) == _NEW_KEYS
        _store(connection, "globex", "tx-1")
        stored = connection.execute(text("SELECT tenant_id FROM transactions ORDER BY tenant_id")).scalars().all()
        assert stored == ["acme", "globex"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        _store(connection, "globex", "tx-1")  # still one row per tenant, id and time
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM anomaly_features WHERE tenant_id = 'globex'"))
        connection.execute(text("DELETE FROM transactions WHERE tenant_id = 'globex'"))
    engine.dispose()

    downgrade(empty_database, "0010")
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        assert _keys(connection) == {table: f"PRIMARY KEY ({columns})" for table, columns in _OLD_KEYS.items()}
        assert connection.execute(text("SELECT count(*) FROM transactions")).scalar_one() == 1
    engine.dispose()


def test_a_fresh_database_gets_the_new_keys(empty_database: str) -> None:
    upgrade(empty_database, "head")
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        assert _keys(connection) == _NEW_KEYS
    engine.dispose()
