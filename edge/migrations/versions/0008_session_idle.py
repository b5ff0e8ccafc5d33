"""Sessions remember their last request, so that an idle login ends (``edge.session_idle_s``);
a session open at the upgrade counts from its start.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sessions", sa.Column("last_seen_ms", sa.BigInteger, nullable=False, server_default="0")
    )
    op.execute("UPDATE sessions SET last_seen_ms = created_ms")


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_seen_ms")
