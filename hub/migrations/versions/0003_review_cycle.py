"""Review and the monthly cycle: approved values and review flags on records, decisions,
periods, copy-on-write snapshot rows, accounts, sessions and the audit trail
(docs/cycle.md).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "records", sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false())
    )
    for name, kind in (
        ("approved", sa.Text),
        ("approved_seq", sa.BigInteger),
        ("first_approved_seq", sa.BigInteger),
        ("approved_status", sa.Text),
        ("nik", sa.Text),
    ):
        op.add_column("records", sa.Column(name, kind))
    op.create_index("ix_records_pending", "records", ["pending", "village", "household_id"])
    op.create_index("ix_records_approved", "records", ["approved_seq"])
    op.create_index("ix_records_nik", "records", ["nik"])
    _backfill()
    op.create_table(
        "counters",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("household_id", sa.Text, nullable=False),
        sa.Column("village", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("decided_ms", sa.BigInteger, nullable=False),
        sa.Column("approval_seq", sa.BigInteger, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
    )
    op.create_index("ix_decisions_household", "decisions", ["household_id", "decided_ms"])
    op.create_index("ix_decisions_seq", "decisions", ["approval_seq"])
    op.create_table(
        "periods",
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("cutoff_ms", sa.BigInteger, nullable=False),
        sa.Column("frozen_seq", sa.BigInteger),
        sa.Column("frozen_ms", sa.BigInteger),
        sa.Column("frozen_by", sa.Text),
        sa.Column("submitted_ms", sa.BigInteger),
        sa.Column("submitted_by", sa.Text),
        sa.Column("signed_ms", sa.BigInteger),
        sa.Column("signed_by", sa.Text),
        sa.Column("dataset", sa.Text),
        sa.Column("manifest_sha256", sa.Text),
        sa.Column("forward_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("forward_error", sa.Text),
        sa.Column("next_forward_ms", sa.BigInteger),
        sa.Column("forwarded_ms", sa.BigInteger),
        sa.Column("receipt", sa.Text),
        sa.Column("published_ms", sa.BigInteger),
        sa.Column("published_by", sa.Text),
        sa.Column("published_count", sa.BigInteger),
    )
    op.create_table(
        "period_villages",
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("village", sa.Text, primary_key=True),
        sa.Column("frozen_seq", sa.BigInteger),
        sa.Column("returned_ms", sa.BigInteger),
        sa.Column("returned_by", sa.Text),
        sa.Column("return_note", sa.Text),
        sa.Column("totals", sa.Text),
    )
    op.create_table(
        "snapshot_rows",
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("record_id", sa.Text, primary_key=True),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("village", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("status", sa.Text),
    )
    op.create_index("ix_snapshot_rows_village", "snapshot_rows", ["period", "village"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.Text, nullable=False, unique=True),
        sa.Column("full_name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until_ms", sa.BigInteger),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_audit_at", "audit", ["at_ms"])
    op.create_index("ix_audit_subject", "audit", ["subject", "at_ms"])


def _backfill() -> None:
    """A hub upgraded in place: every household and member awaits its first review, and
    active members get their NIK column."""
    bind = op.get_bind()
    bind.execute(
        sa.text("UPDATE records SET pending = :yes WHERE entity IN ('household', 'member')"),
        {"yes": True},
    )
    rows = bind.execute(
        sa.text("SELECT id, data FROM records WHERE entity = 'member' AND NOT deleted")
    ).all()
    updates = []
    for record_id, data in rows:
        values = json.loads(data)
        if values.get("nik") and values.get("status") in (None, "aktif"):
            updates.append({"id": record_id, "nik": values["nik"]})
    if updates:
        bind.execute(sa.text("UPDATE records SET nik = :nik WHERE id = :id"), updates)


def downgrade() -> None:
    for table in (
        "audit",
        "sessions",
        "users",
        "snapshot_rows",
        "period_villages",
        "periods",
        "decisions",
        "counters",
    ):
        op.drop_table(table)
    for index in ("ix_records_nik", "ix_records_approved", "ix_records_pending"):
        op.drop_index(index, table_name="records")
    for name in ("nik", "approved_status", "first_approved_seq", "approved_seq", "approved"):
        op.drop_column("records", name)
    op.drop_column("records", "pending")
