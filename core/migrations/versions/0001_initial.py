"""Initial schema: transactions and anomalies (time series), cases, labels, audit, rules, principals.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from core.schema import metadata
from core.timeseries import TIME_SERIES_TABLES, finish_time_series, partition_clause

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_PLAIN_TABLES = ("cases", "case_notes", "labels", "audit_log", "rules", "rule_versions", "principals")


def upgrade() -> None:
    connection = op.get_bind()
    for series in TIME_SERIES_TABLES:
        table = metadata.tables[series.name]
        # Render the table from the shared definition, then add the partitioning suffix.
        from sqlalchemy.schema import CreateTable

        ddl = str(CreateTable(table).compile(dialect=connection.dialect)).rstrip()
        op.execute(ddl + partition_clause(connection, series))
        finish_time_series(connection, series)
    op.create_index("transactions_account_time", "transactions", ["tenant_id", "account_id", "occurred_at"])
    op.create_index("transactions_id", "transactions", ["transaction_id"])
    op.create_index("transactions_merchant_time", "transactions", ["tenant_id", "merchant_id", "occurred_at"])
    op.create_index("anomalies_tenant_time", "anomalies", ["tenant_id", "event_time", "anomaly_id"])
    op.create_index("anomalies_detected", "anomalies", ["detected_at"])
    op.create_index("anomalies_transaction", "anomalies", ["transaction_id"])
    op.create_index("anomalies_entity", "anomalies", ["tenant_id", "entity_type", "entity_id", "event_time"])

    metadata.create_all(connection, tables=[metadata.tables[name] for name in _PLAIN_TABLES])
    op.create_index("cases_queue", "cases", ["tenant_id", "status", "event_time"])
    op.create_index("labels_transaction", "labels", ["transaction_id"])
    op.create_index("audit_object", "audit_log", ["object_type", "object_id", "at"])
    # The audit log is append-only: history that can be edited is not history.
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    for name in (*reversed(_PLAIN_TABLES), "anomalies", "transactions"):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
