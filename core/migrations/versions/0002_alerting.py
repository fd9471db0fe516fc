"""Alerting: silences, the notification log, seen alerts and pending aggregation groups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from core.schema import metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = ("silences", "notifications", "alerts", "alert_groups", "alert_group_members")


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=[metadata.tables[name] for name in _TABLES])
    op.create_index("notifications_tenant_time", "notifications", ["tenant_id", "created_at"])
    # The dispatcher's queue: only pending rows, oldest due first.
    op.create_index("notifications_due", "notifications", ["next_attempt_at"], postgresql_where="status = 'pending'")
    op.create_index("silences_active", "silences", ["ends_at"], postgresql_where="expired_at IS NULL")
    op.create_index("alerts_received", "alerts", ["tenant_id", "received_at"])
    op.create_index("alerts_ends", "alerts", ["ends_at"])
    # Inhibition looks up active source alerts by label containment (labels @> {...}).
    op.create_index("alerts_labels", "alerts", ["labels"], postgresql_using="gin")
    op.create_index("alert_groups_due", "alert_groups", ["next_flush_at"])
    op.create_index(
        "alert_group_members_pending",
        "alert_group_members",
        ["group_key"],
        postgresql_where="notified_seq IS NULL",
    )
    op.create_index("alert_group_members_alert", "alert_group_members", ["alert_id"])


def downgrade() -> None:
    for name in reversed(_TABLES):
        op.drop_table(name)
