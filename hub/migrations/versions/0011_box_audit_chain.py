"""The boxes' audit chains (``protocol/auditchain.py``): ``box_audit`` holds every entry a
box sent, append-only in SQL like ``audit`` (migration 0008); each device row keeps where
the hub's check of its chain stands.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_MESSAGE = "box audit trail is append-only"
_DEVICE_COLUMNS = (
    ("audit_seq", sa.BigInteger, {"nullable": False, "server_default": "0"}),
    ("audit_hash", sa.LargeBinary, {}),
    ("audit_state", sa.Text, {}),
    ("audit_breaks", sa.BigInteger, {"nullable": False, "server_default": "0"}),
    ("audit_problem", sa.Text, {}),
    ("audit_problem_seq", sa.BigInteger, {}),
    ("audit_problem_ms", sa.BigInteger, {}),
)


def upgrade() -> None:
    op.create_table(
        "box_audit",
        sa.Column("node", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("entity", sa.Text),
        sa.Column("record_id", sa.Text),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
    )
    for name, kind, options in _DEVICE_COLUMNS:
        op.add_column("devices", sa.Column(name, kind, **options))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION box_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER box_audit_no_change BEFORE UPDATE OR DELETE ON box_audit "
            "FOR EACH ROW EXECUTE FUNCTION box_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER box_audit_no_truncate BEFORE TRUNCATE ON box_audit "
            "FOR EACH STATEMENT EXECUTE FUNCTION box_audit_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER box_audit_no_{verb.lower()} BEFORE {verb} ON box_audit "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        for name, _kind, _options in reversed(_DEVICE_COLUMNS):
            batch.drop_column(name)
    op.drop_table("box_audit")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION box_audit_append_only()")
