"""Schema owned by rules engine.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing yet: this area adds its tables here when it needs them."""


def downgrade() -> None:
    """Nothing to undo."""
