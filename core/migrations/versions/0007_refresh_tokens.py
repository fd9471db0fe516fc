"""Dashboard sessions: rotating refresh tokens (hashed), grouped in families for reuse detection.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from core.schema import metadata

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=[metadata.tables["refresh_tokens"]])
    op.create_index("refresh_tokens_family", "refresh_tokens", ["family_id"])
    # Pruning expired sessions scans by expiry.
    op.create_index("refresh_tokens_expires", "refresh_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_table("refresh_tokens")
