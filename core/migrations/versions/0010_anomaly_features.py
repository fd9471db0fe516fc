"""Anomalies: the feature snapshot once per transaction (`anomaly_features`), not on every anomaly.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

Every detector of a transaction scores the same feature vector, yet each anomaly row carried its own
copy of the snapshot (141 features, ~6.6 kB of jsonb, parsed and TOAST-compressed once per anomaly):
most of the PostgreSQL time of the anomaly writer. The snapshot moves to `anomaly_features`, one row
per transaction, a time series like `anomalies`, as `json` (stored and returned whole: cheaper to
store than `jsonb`) (docs/adr/0011-anomaly-feature-snapshots.md).

Indexes on `anomalies`: each of the seven serves a query that EXPLAIN shows using it (ADR 0011):
- anomalies_pkey: detail by id, and the writer's idempotency (ON CONFLICT);
- anomalies_tenant_time / anomalies_tenant_score: one tenant's list by time / by score (keyset);
- anomalies_time: the all-tenant (admin) list by time;
- anomalies_transaction: a transaction's verdicts (transaction and case detail, decisions, labelling);
- anomalies_entity: entity timelines and the entity filter;
- anomalies_detected: "anomalies detected in the last minute" (system status; a seq scan without it).
None is dropped. On TimescaleDB the hypertable's own `event_time DESC` index duplicates the leading
column of anomalies_time and is dropped; `anomaly_features` is only read by key, so its default time
index is dropped too.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Connection, text

from core.timeseries import TimeSeriesTable, finish_time_series, has_timescaledb, partition_clause

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ANOMALY_FEATURES = TimeSeriesTable("anomaly_features", "event_time", "tenant_id")

_CREATE = """
CREATE TABLE anomaly_features (
    tenant_id VARCHAR(64) NOT NULL,
    transaction_id VARCHAR(128) NOT NULL,
    event_time TIMESTAMP WITH TIME ZONE NOT NULL,
    features JSON NOT NULL,
    CONSTRAINT anomaly_features_pkey PRIMARY KEY (transaction_id, event_time)
)"""

# Newest detection's snapshot wins when anomalies of one transaction disagree (they should not).
_MOVE = """
INSERT INTO anomaly_features (tenant_id, transaction_id, event_time, features)
SELECT DISTINCT ON (transaction_id, event_time) tenant_id, transaction_id, event_time, features::json
FROM anomalies WHERE features <> '{}'::jsonb
ORDER BY transaction_id, event_time, detected_at DESC
ON CONFLICT DO NOTHING
"""

_RESTORE = """
UPDATE anomalies a SET features = f.features::jsonb FROM anomaly_features f
WHERE f.transaction_id = a.transaction_id AND f.tenant_id = a.tenant_id AND f.event_time = a.event_time
"""


def _has_features_column(connection: Connection) -> bool:
    # A fresh database renders `anomalies` in 0001 from today's core.schema, which has no such column.
    query = text(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'anomalies' AND column_name = 'features'"
    )
    return connection.execute(query).first() is not None


def upgrade() -> None:
    connection = op.get_bind()
    timescale = has_timescaledb(connection)
    op.execute(_CREATE + partition_clause(connection, ANOMALY_FEATURES))
    finish_time_series(connection, ANOMALY_FEATURES)
    if timescale:
        # Looked up by key only: the hypertable's default time index would be pure upkeep.
        op.execute("DROP INDEX IF EXISTS anomaly_features_event_time_idx")
        op.execute("DROP INDEX IF EXISTS anomalies_event_time_idx")  # anomalies_time leads with event_time
    if _has_features_column(connection):
        op.execute(_MOVE)
        op.execute("ALTER TABLE anomalies DROP COLUMN features")


def downgrade() -> None:
    connection = op.get_bind()
    if has_timescaledb(connection):
        op.execute("CREATE INDEX IF NOT EXISTS anomalies_event_time_idx ON anomalies (event_time DESC)")
    op.execute("ALTER TABLE anomalies ADD COLUMN features JSONB NOT NULL DEFAULT '{}'::jsonb")
    op.execute(_RESTORE)
    op.execute("DROP TABLE anomaly_features CASCADE")
