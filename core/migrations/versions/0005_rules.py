"""Rules: versions are immutable and always belong to a rule; severities are the known three.

The `rules` and `rule_versions` tables come from 0001. This revision makes the
database enforce what the rules package promises: a published version is never
edited or deleted (history an analyst can trust), every version belongs to an
existing rule, and severity is one of info/warning/critical.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_foreign_key(
        "rule_versions_rule_fkey", "rule_versions", "rules", ["rule_id"], ["rule_id"], ondelete="RESTRICT"
    )
    op.create_check_constraint(
        "rule_versions_severity_check", "rule_versions", "severity IN ('info', 'warning', 'critical')"
    )
    op.create_check_constraint("rules_current_version_check", "rules", "current_version >= 1")
    op.create_index("rules_tenant", "rules", ["tenant_id"])
    op.execute(
        """
        CREATE FUNCTION rule_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'rule versions are immutable; publish a new version instead'; END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER rule_versions_no_change BEFORE UPDATE OR DELETE ON rule_versions "
        "FOR EACH ROW EXECUTE FUNCTION rule_versions_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS rule_versions_no_change ON rule_versions")
    op.execute("DROP FUNCTION IF EXISTS rule_versions_immutable()")
    op.drop_index("rules_tenant", table_name="rules")
    op.drop_constraint("rules_current_version_check", "rules", type_="check")
    op.drop_constraint("rule_versions_severity_check", "rule_versions", type_="check")
    op.drop_constraint("rule_versions_rule_fkey", "rule_versions", type_="foreignkey")
