"""Transaction ids are unique per tenant, not across tenants.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08

Until now one tenant's `tx-1001` made another tenant's `tx-1001` a dead letter (and told it the id
existed elsewhere). The keys that assumed global ids gain the tenant (docs/adr/0013-tenant-scoped-transaction-ids.md):
- transactions_pkey: (transaction_id, occurred_at) -> (transaction_id, tenant_id, occurred_at);
- anomaly_features_pkey: (transaction_id, event_time) -> (transaction_id, tenant_id, event_time).
`transaction_id` stays the leading column, so lookups by id alone (ingestion's duplicate check, an
admin's transaction detail) still use the key and no index is added. Anomaly ids now hash the tenant
too (core.contracts.anomaly_id_for); rows stored before keep their ids, which is why the detectors
are stopped (offsets committed) before this migration runs (the ADR's upgrade note).
A fresh database renders `transactions` in 0001 from today's core.schema, so its key may already be
the new one: each key is only rebuilt where it differs.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Connection, text

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_KEYS = {
    "transactions": (("transaction_id", "occurred_at"), ("transaction_id", "tenant_id", "occurred_at")),
    "anomaly_features": (("transaction_id", "event_time"), ("transaction_id", "tenant_id", "event_time")),
}


def primary_key_columns(connection: Connection, table: str) -> tuple[str, ...]:
    """The columns of `table`'s primary key, in key order."""
    query = text(
        "SELECT a.attname FROM pg_index i "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = CAST(:table AS regclass) AND i.indisprimary ORDER BY k.position"
    )
    return tuple(connection.execute(query, {"table": table}).scalars())


def _rekey(table: str, columns: tuple[str, ...]) -> None:
    connection = op.get_bind()
    if primary_key_columns(connection, table) == columns:
        return
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({', '.join(columns)})")


def upgrade() -> None:
    for table, (_old, new) in _KEYS.items():
        _rekey(table, new)


def downgrade() -> None:
    # Fails (unique violation) once two tenants share an id: that data has no place in the old key.
    for table, (old, _new) in _KEYS.items():
        _rekey(table, old)
