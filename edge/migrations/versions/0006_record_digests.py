"""Record digests for anti-entropy (protocol/digest.py): a ``digest`` per record, and the
box's root and record count in ``meta``, computed here for the records a box already holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from protocol.digest import record_digest, to_signed
from protocol.jsonform import load_state

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CHUNK = 2000


def upgrade() -> None:
    op.add_column("records", sa.Column("digest", sa.BigInteger, nullable=False, server_default="0"))
    conn = op.get_bind()
    root, count, after = 0, 0, ""
    while True:
        rows = conn.execute(
            sa.text("SELECT id, entity, state FROM records WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": _CHUNK},
        ).all()
        if not rows:
            break
        updates = []
        for row in rows:
            digest = record_digest(row.entity, row.id, load_state(row.state))
            root ^= digest
            updates.append({"d": to_signed(digest), "i": row.id})
        conn.execute(sa.text("UPDATE records SET digest = :d WHERE id = :i"), updates)
        count += len(rows)
        after = rows[-1].id
    if count:  # no key means an empty box (edge.digest.read_root)
        conn.execute(
            sa.text("INSERT INTO meta(key, value) VALUES ('digest', :v)"),
            {"v": json.dumps({"root": root, "records": count})},
        )


def downgrade() -> None:
    op.execute("DELETE FROM meta WHERE key IN ('digest', 'digest_check')")
    op.drop_column("records", "digest")
