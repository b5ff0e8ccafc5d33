"""Fleet monitoring: each box's latest health report, and when each village's data last
changed (see monitoring/METRICS.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("villages", sa.Column("last_change_ms", sa.BigInteger))
    op.add_column("devices", sa.Column("telemetry", sa.Text))
    op.add_column("devices", sa.Column("telemetry_ms", sa.BigInteger))
    # A hub upgraded in place: the newest record of a village is when its data last changed.
    op.execute(
        "UPDATE villages SET last_change_ms = "
        "(SELECT MAX(updated_ms) FROM records WHERE records.village = villages.code)"
    )


def downgrade() -> None:
    op.drop_column("devices", "telemetry_ms")
    op.drop_column("devices", "telemetry")
    op.drop_column("villages", "last_change_ms")
