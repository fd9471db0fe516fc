"""Ingestion: drop the redundant `transactions_id` index.

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-23

`transactions_pkey` is `(transaction_id, occurred_at)`, so its leading column already serves every
lookup by `transaction_id` alone (ingestion's duplicate check, the API's transaction detail and
decision endpoints). The second index cost PostgreSQL one more B-tree insertion per ingested row
for nothing (docs/adr/0003-ingestion-exactly-once.md, "Throughput").
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("transactions_id", table_name="transactions")


def downgrade() -> None:
    op.create_index("transactions_id", "transactions", ["transaction_id"])
