"""API tokens get a scope, the villages they may see and an expiry (hub/tokens.py). Tokens
made before keep what they could do: write, every village, no expiry.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("scope", sa.Text, nullable=False, server_default="read"))
    op.add_column("api_tokens", sa.Column("villages", sa.Text, nullable=False, server_default=""))
    op.add_column("api_tokens", sa.Column("expires_ms", sa.BigInteger))
    op.execute("UPDATE api_tokens SET scope = 'write'")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_ms")
        batch.drop_column("villages")
        batch.drop_column("scope")
