"""Schema owned by features: feature state snapshots stored with their offsets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from core.schema import metadata

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=[metadata.tables["feature_snapshots"]])
    op.create_index(
        "feature_snapshots_lookup", "feature_snapshots", ["source_topic", "feature_set_version", "snapshot_id"]
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS feature_snapshots CASCADE")
