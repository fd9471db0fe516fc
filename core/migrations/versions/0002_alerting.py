"""Alerting: silences and the notification log.

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

_TABLES = ("silences", "notifications")


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=[metadata.tables[name] for name in _TABLES])
    op.create_index("notifications_tenant_time", "notifications", ["tenant_id", "created_at"])
    op.create_index("silences_active", "silences", ["ends_at"], postgresql_where="expired_at IS NULL")


def downgrade() -> None:
    for name in reversed(_TABLES):
        op.drop_table(name)
