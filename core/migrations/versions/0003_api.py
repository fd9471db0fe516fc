"""Indexes the API's queries need to stay fast on large tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

- anomalies_time: admins list every tenant's anomalies in event-time order (keyset) without a sort.
- anomalies_tenant_score: `sort=-score` pages with a keyset on (score, event_time, anomaly_id).
- transactions_{card,device,ip}_time: entity timelines for entities that are not account/merchant.
- cases_tenant_time / cases_entity: the analyst queue and per-entity grouping.
- case_notes_case, audit_tenant: case detail and the tenant-scoped audit log.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INDEXES = (
    ("anomalies_time", "anomalies", ["event_time", "anomaly_id"], None),
    ("anomalies_tenant_score", "anomalies", ["tenant_id", "score", "event_time", "anomaly_id"], None),
    ("transactions_card_time", "transactions", ["tenant_id", "card_id", "occurred_at"], "card_id IS NOT NULL"),
    ("transactions_device_time", "transactions", ["tenant_id", "device_id", "occurred_at"], "device_id IS NOT NULL"),
    ("transactions_ip_time", "transactions", ["tenant_id", "ip", "occurred_at"], "ip IS NOT NULL"),
    ("cases_tenant_time", "cases", ["tenant_id", "event_time", "case_id"], None),
    ("cases_entity", "cases", ["tenant_id", "entity_type", "entity_id", "event_time"], None),
    ("case_notes_case", "case_notes", ["case_id", "note_id"], None),
    ("audit_tenant", "audit_log", ["tenant_id", "audit_id"], None),
)


def upgrade() -> None:
    for name, table, columns, where in _INDEXES:
        op.create_index(name, table, columns, postgresql_where=where)


def downgrade() -> None:
    for name, table, _columns, _where in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
