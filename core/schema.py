"""Table definitions (SQLAlchemy Core) shared by every service.

The migrations in `core/migrations` create these tables; services use the
`Table` objects for typed, multi-row statements. Time-series tables
(`transactions`, `anomalies`) are hypertables on TimescaleDB and natively
range-partitioned tables elsewhere, so their primary keys include the time column.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB, UUID

metadata: Final = MetaData()


def _tstz(name: str, *, nullable: bool = False, default_now: bool = False) -> Column[object]:
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=text("now()") if default_now else None,
    )


transactions: Final = Table(
    "transactions",
    metadata,
    Column("transaction_id", String(64), nullable=False),
    _tstz("occurred_at"),
    Column("tenant_id", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("card_id", String(64)),
    Column("merchant_id", String(64), nullable=False),
    Column("merchant_category", String(4), nullable=False),
    Column("amount", Numeric(20, 4), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("device_id", String(64)),
    Column("ip", String(45)),
    Column("lat", Double),
    Column("lon", Double),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _tstz("ingested_at", default_now=True),
    # Kafka coordinates (topic/partition/offset) that first brought this row: tells a replay of the
    # same record (ignored) from a second record reusing the id (dead-lettered as a duplicate).
    Column("source_ref", String(200)),
    # Ids are unique per tenant (ADR 0013); transaction_id leads so lookups by id alone use this key too.
    PrimaryKeyConstraint("transaction_id", "tenant_id", "occurred_at", name="transactions_pkey"),
)

anomalies: Final = Table(
    "anomalies",
    metadata,
    Column("anomaly_id", UUID(as_uuid=True), nullable=False),
    _tstz("event_time"),
    _tstz("detected_at"),
    Column("tenant_id", String(64), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("entity_type", String(16), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("detector_family", String(16), nullable=False),
    Column("detector_name", String(100), nullable=False),
    Column("detector_version", String(50), nullable=False),
    Column("score_raw", Double, nullable=False),
    Column("score", Double, nullable=False),
    Column("severity", String(8), nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("amount", Numeric(20, 4)),
    Column("currency", String(3)),
    Column("status", String(16), nullable=False, server_default="open"),
    PrimaryKeyConstraint("anomaly_id", "event_time", name="anomalies_pkey"),
)

cases: Final = Table(
    "cases",
    metadata,
    Column("case_id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("entity_type", String(16), nullable=False),
    Column("entity_id", String(128), nullable=False),
    _tstz("event_time"),
    Column("status", String(20), nullable=False, server_default="open"),
    Column("assignee", String(128)),
    Column("max_severity", String(8), nullable=False),
    Column("max_score", Double, nullable=False),
    Column("anomaly_count", Integer, nullable=False),
    _tstz("opened_at", default_now=True),
    _tstz("updated_at", default_now=True),
    UniqueConstraint("tenant_id", "transaction_id", name="cases_tenant_transaction_key"),
)

case_notes: Final = Table(
    "case_notes",
    metadata,
    Column("note_id", BigInteger, primary_key=True, autoincrement=True),
    Column("case_id", UUID(as_uuid=True), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("author", String(128), nullable=False),
    Column("body", Text, nullable=False),
    _tstz("created_at", default_now=True),
)

labels: Final = Table(
    "labels",
    metadata,
    Column("label_id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("label", String(20), nullable=False),
    Column("source", String(20), nullable=False),
    Column("author", String(128), nullable=False),
    Column("reason", Text),
    _tstz("event_time", nullable=True),
    _tstz("labelled_at", default_now=True),
    UniqueConstraint("tenant_id", "transaction_id", "source", name="labels_tenant_transaction_source_key"),
)

audit_log: Final = Table(
    "audit_log",
    metadata,
    Column("audit_id", BigInteger, primary_key=True, autoincrement=True),
    _tstz("at", default_now=True),
    Column("actor", String(128), nullable=False),
    Column("tenant_id", String(64)),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(128), nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)

rules: Final = Table(
    "rules",
    metadata,
    Column("rule_id", String(64), primary_key=True),
    Column("tenant_id", String(64)),
    Column("name", String(200), nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    _tstz("created_at", default_now=True),
    _tstz("updated_at", default_now=True),
)

rule_versions: Final = Table(
    "rule_versions",
    metadata,
    Column("rule_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("expression", Text, nullable=False),
    Column("severity", String(8), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("author", String(128), nullable=False),
    _tstz("created_at", default_now=True),
    PrimaryKeyConstraint("rule_id", "version", name="rule_versions_pkey"),
)

principals: Final = Table(
    "principals",
    metadata,
    Column("principal_id", String(128), primary_key=True),
    Column("kind", String(10), nullable=False),  # user | client
    Column("secret_hash", Text, nullable=False),
    Column("roles", ARRAY(String(16)), nullable=False),
    Column("tenants", ARRAY(String(64)), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    _tstz("created_at", default_now=True),
)

# --- alerting (owned by alerting/; read by api/) -------------------------------------------

silences: Final = Table(
    "silences",
    metadata,
    Column("silence_id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", String(64)),  # None = applies to every tenant (admin only)
    # [{"label": "merchant_id", "op": "=", "value": "m-1"}]; ops: = != =~ !~ (Alertmanager semantics)
    Column("matchers", JSONB, nullable=False),
    _tstz("starts_at"),
    _tstz("ends_at"),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    _tstz("created_at", default_now=True),
    _tstz("expired_at", nullable=True),
    Column("expired_by", String(128)),
)

notifications: Final = Table(
    "notifications",
    metadata,
    Column("notification_id", BigInteger, primary_key=True, autoincrement=True),
    # Unique per (group, receiver, send window): a replay or a second replica cannot send it twice.
    Column("dedup_key", String(300), nullable=False, unique=True),
    Column("group_key", String(300), nullable=False),
    Column("receiver", String(100), nullable=False),
    Column("tenant_id", String(64)),
    Column("severity", String(8), nullable=False),
    Column("status", String(12), nullable=False),  # pending | sent | failed | suppressed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("anomaly_count", Integer, nullable=False, server_default=text("0")),
    Column("title", Text, nullable=False, server_default=""),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("last_error", Text),
    _tstz("created_at", default_now=True),
    _tstz("last_attempt_at", nullable=True),
    _tstz("sent_at", nullable=True),
    # Retry schedule and a delivery lease: a replica that dies mid-send releases the row on expiry.
    _tstz("next_attempt_at", nullable=True),
    _tstz("lease_until", nullable=True),
)

# One row per anomaly (or system alert) the alerting service has seen: the dedup record for
# replays, and the labels that routing, silences and inhibition match on.
alerts: Final = Table(
    "alerts",
    metadata,
    Column("alert_id", UUID(as_uuid=True), primary_key=True),  # = anomaly_id for anomaly alerts
    Column("tenant_id", String(64)),
    Column("kind", String(10), nullable=False),  # anomaly | system
    Column("severity", String(8), nullable=False),
    Column("score", Double, nullable=False),
    Column("labels", JSONB, nullable=False),
    Column("summary", JSONB, nullable=False),  # transaction, amount, top reason: what a message shows
    _tstz("starts_at"),
    _tstz("ends_at"),  # active until then (anomalies are events: they expire, they do not resolve)
    _tstz("received_at"),
)

# Aggregation groups waiting for group_wait / group_interval / repeat_interval (Alertmanager).
# Persisted so a restart or kill -9 mid-group loses nothing and any replica can flush them.
alert_groups: Final = Table(
    "alert_groups",
    metadata,
    Column("group_key", String(300), primary_key=True),
    Column("route_id", String(100), nullable=False),
    Column("receiver", String(100), nullable=False),
    Column("tenant_id", String(64)),
    Column("labels", JSONB, nullable=False),  # the group_by label values
    Column("group_wait_s", Double, nullable=False),
    Column("group_interval_s", Double, nullable=False),
    Column("repeat_interval_s", Double, nullable=False),
    Column("seq", Integer, nullable=False, server_default=text("0")),  # notifications sent so far
    _tstz("created_at"),
    _tstz("next_flush_at"),
    _tstz("last_notified_at", nullable=True),
)

alert_group_members: Final = Table(
    "alert_group_members",
    metadata,
    Column("group_key", String(300), nullable=False),
    Column("alert_id", UUID(as_uuid=True), nullable=False),
    _tstz("added_at"),
    Column("notified_seq", Integer),  # the group notification that first carried it; None = pending
    PrimaryKeyConstraint("group_key", "alert_id", name="alert_group_members_pkey"),
)

# --- features (owned by features/) -----------------------------------------------------------

feature_snapshots: Final = Table(
    "feature_snapshots",
    metadata,
    Column("snapshot_id", BigInteger, primary_key=True, autoincrement=True),
    # Full name of the input topic (prefix included): one stream's snapshots never mix with another's.
    Column("source_topic", String(255), nullable=False),
    Column("owner", String(32), nullable=False),  # "<replica index>/<replica count>"
    Column("owned", ARRAY(Integer), nullable=False),  # input partitions this replica emits for
    Column("processed", BigInteger, nullable=False),  # events applied: progress, equal across replicas
    Column("output_offsets", JSONB, nullable=False),  # tx.features log end per partition at snapshot time
    Column("feature_set_version", Integer, nullable=False),
    Column("state", LargeBinary, nullable=False),  # engine + sequencer, exact
    _tstz("created_at", default_now=True),
)

# --- dashboard sessions (owned by api/) -----------------------------------------------------------

refresh_tokens: Final = Table(
    "refresh_tokens",
    metadata,
    # SHA-256 of the opaque token: the database never holds a usable refresh token.
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", UUID(as_uuid=True), nullable=False),  # one login; rotation keeps the family
    Column("principal_id", String(128), nullable=False),
    _tstz("issued_at", default_now=True),
    _tstz("expires_at"),
    _tstz("used_at", nullable=True),  # rotated: presenting it again is reuse
    _tstz("revoked_at", nullable=True),  # logout or detected reuse (the whole family)
)

# --- the feature snapshot behind a transaction's anomalies (written by core/detection.py) ----------

# Every detector of a transaction scores the same feature vector, so the snapshot is stored once per
# transaction, not on each of its anomalies (docs/adr/0011-anomaly-feature-snapshots.md). A time series
# like `anomalies` (hypertable or monthly partitions, same retention), hence event_time in the key.
# `json`, not `jsonb`: stored and returned whole, never queried inside, and PostgreSQL stores a
# 141-feature snapshot as json for ~40 % of the CPU it spends building jsonb (ADR 0011).
anomaly_features: Final = Table(
    "anomaly_features",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    _tstz("event_time"),
    Column("features", JSON, nullable=False),
    PrimaryKeyConstraint("transaction_id", "tenant_id", "event_time", name="anomaly_features_pkey"),
)
