"""Schema owned by alerting (notification log, silences, pending groups).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing yet: this area adds its tables here when it needs them."""


def downgrade() -> None:
    """Nothing to undo."""
