"""Initial hub schema: villages, records, conflicts, devices, down batches,
clocks, API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "villages",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("log_seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("village", sa.Text, nullable=False),
        sa.Column("household_id", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("conflicts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("log_seq", sa.BigInteger, nullable=False),
        sa.Column("writers", sa.Text, nullable=False, server_default=""),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_records_village_log", "records", ["village", "log_seq"])
    op.create_index("ix_records_village_entity", "records", ["village", "entity", "updated_ms"])
    op.create_index("ix_records_household", "records", ["household_id"])
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("village", sa.Text, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("detected_ms", sa.BigInteger, nullable=False),
        sa.Column("resolved_ms", sa.BigInteger),
        sa.Column("resolved_by", sa.Text),
        sa.Column("resolution", sa.Text),
    )
    op.create_index("ix_conflicts_open", "conflicts", ["resolved_ms", "village"])
    op.create_index("ix_conflicts_record_field", "conflicts", ["record_id", "field"])
    op.create_table(
        "devices",
        sa.Column("node", sa.Text, primary_key=True),
        sa.Column("village", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("broker_hash", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger),
        sa.Column("up_watermark", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("up_above", sa.Text, nullable=False, server_default="[]"),
        sa.Column("down_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("down_cursor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("down_watermark", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("down_above", sa.Text, nullable=False, server_default="[]"),
        sa.Column("epoch", sa.Text),
        sa.Column("resync_until", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_seen_ms", sa.BigInteger),
        sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reported", sa.Text),
        sa.Column("clock_offset_ms", sa.BigInteger),
        sa.Column("changes_applied", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_reject", sa.Text),
    )
    op.create_index("ix_devices_village", "devices", ["village"])
    op.create_table(
        "down_batches",
        sa.Column("node", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("changes", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("sent_ms", sa.BigInteger),
    )
    op.create_table(
        "clocks",
        sa.Column("node", sa.Text, primary_key=True),
        sa.Column("state", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    for table in (
        "api_tokens",
        "clocks",
        "down_batches",
        "devices",
        "conflicts",
        "records",
        "villages",
    ):
        op.drop_table(table)
