"""The hub's audit trail becomes a hash chain, as a box's is (``hub/audit.py``): every row
gets its place (``seq``) and ``hash``, the existing rows in the order they were written, so
an edit made by someone who drops the append-only triggers of migration 0008 shows.

The triggers are set aside while the existing rows get their links, then put back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from protocol.auditchain import GENESIS, AuditEntry, seal

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: Audit rows read and chained at a time.
_CHUNK = 2_000
#: Migration 0008's triggers on SQLite (a table rebuilt by a batch loses its triggers).
_SQLITE_TRIGGERS = {
    verb: f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END"
    for verb in ("UPDATE", "DELETE")
}


def _set_triggers(enabled: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        verb = "ENABLE" if enabled else "DISABLE"
        op.execute(f"ALTER TABLE audit {verb} TRIGGER audit_no_change")
        return
    for verb, create in _SQLITE_TRIGGERS.items():
        op.execute(create if enabled else f"DROP TRIGGER audit_no_{verb.lower()}")


def upgrade() -> None:
    _set_triggers(False)
    op.add_column("audit", sa.Column("seq", sa.BigInteger))
    op.add_column("audit", sa.Column("hash", sa.LargeBinary))
    conn = op.get_bind()
    previous, seq, after = GENESIS, 0, 0
    # Years of views and API reads make a long trail: read and write it in pages.
    while rows := conn.execute(
        sa.text(
            "SELECT id, at_ms, actor, action, subject, detail "
            "FROM audit WHERE id > :after ORDER BY id LIMIT :n"
        ),
        {"after": after, "n": _CHUNK},
    ).all():
        links = []
        for row in rows:
            seq += 1
            entry = seal(
                previous,
                AuditEntry(
                    seq, row.at_ms, row.actor, row.action, None, row.subject, row.detail, ""
                ),
            )
            links.append({"seq": seq, "hash": entry.hash, "id": row.id})
            previous = entry.hash
        conn.execute(sa.text("UPDATE audit SET seq = :seq, hash = :hash WHERE id = :id"), links)
        after = rows[-1].id
    with op.batch_alter_table("audit") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger, nullable=False)
        batch.alter_column("hash", existing_type=sa.LargeBinary, nullable=False)
        batch.create_index("ix_audit_seq", ["seq"], unique=True)
    _set_triggers(True)


def downgrade() -> None:
    _set_triggers(False)
    with op.batch_alter_table("audit") as batch:
        batch.drop_index("ix_audit_seq")
        batch.drop_column("hash")
        batch.drop_column("seq")
    _set_triggers(True)
