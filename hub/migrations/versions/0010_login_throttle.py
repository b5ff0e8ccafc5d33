"""Failed sign-ins to the review UI are counted per (user name, address) and per address in
their own table (``puskesos.throttle``), no longer per account: the account lock, which
anyone on the LAN could keep on ``admin``, goes with its two columns. A lock running at the
upgrade ends.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("name_hash", sa.Text, primary_key=True),
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_ms", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locked_until_ms")
        batch.drop_column("failed_logins")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until_ms", sa.BigInteger))
    op.drop_table("login_throttle")
