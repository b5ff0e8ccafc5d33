"""The audit trail becomes a hash chain (``protocol/auditchain.py``): every row gets its
place (``seq``) and ``hash``, the existing rows in the order they were written, so the hub
can tell when a row is later changed, removed or slipped in.

The append-only triggers are set aside while the existing rows get their links, then put
back as migration 0001 made them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from protocol.auditchain import GENESIS, AuditEntry, seal

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: Audit rows read and chained at a time.
_CHUNK = 2_000
_TRIGGERS = (
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END",
)


def upgrade() -> None:
    op.execute("DROP TRIGGER audit_no_update")
    op.execute("DROP TRIGGER audit_no_delete")
    op.add_column("audit", sa.Column("seq", sa.BigInteger))
    op.add_column("audit", sa.Column("hash", sa.LargeBinary))
    conn = op.get_bind()
    previous, seq, after = GENESIS, 0, 0
    # A year of views is a long trail on a box with 1 GB: read and write it in pages.
    while rows := conn.execute(
        sa.text(
            "SELECT id, at_ms, actor, action, entity, record_id, detail, address "
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
                    seq,
                    row.at_ms,
                    row.actor,
                    row.action,
                    row.entity,
                    row.record_id,
                    row.detail,
                    row.address,
                ),
            )
            links.append({"seq": seq, "hash": entry.hash, "id": row.id})
            previous = entry.hash
        conn.execute(sa.text("UPDATE audit SET seq = :seq, hash = :hash WHERE id = :id"), links)
        after = rows[-1].id
    op.create_index("ix_audit_seq", "audit", ["seq"], unique=True)
    for trigger in _TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_no_update")
    op.execute("DROP TRIGGER audit_no_delete")
    op.drop_index("ix_audit_seq", "audit")
    op.drop_column("audit", "hash")
    op.drop_column("audit", "seq")
    for trigger in _TRIGGERS:
        op.execute(trigger)
