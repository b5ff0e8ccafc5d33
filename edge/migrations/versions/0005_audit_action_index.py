"""Index the audit trail by action: the box's telemetry counts failed logins every report.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Fixed planner statistics, as migration 0003 gives the other indexes: a few dozen actions,
#: so an action alone narrows little; the record index stays the better choice for a record.
STATISTIC = ("audit", "ix_audit_action", "100000 5000")


def upgrade() -> None:
    op.create_index("ix_audit_action", "audit", ["action"])
    table, index, stat = STATISTIC
    op.execute(f"INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('{table}', '{index}', '{stat}')")


def downgrade() -> None:
    op.execute("DELETE FROM sqlite_stat1 WHERE idx = 'ix_audit_action'")
    op.drop_index("ix_audit_action", "audit")
