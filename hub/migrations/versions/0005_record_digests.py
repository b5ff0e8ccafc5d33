"""Anti-entropy (protocol/digest.py): a digest per record, the root and record count per
village, and each box's last comparison, computed here for the records a hub already holds.

The digests use the code's ``record_digest``: it must stay what both sides compute, so a
change to it needs a migration that computes them again (on the boxes too). On PostgreSQL
the backfill reads and writes every record once (about 8 minutes for 8 million records
on the test machine); run it in the upgrade window.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from protocol.digest import record_digest, to_signed
from protocol.jsonform import load_state

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CHUNK = 5000


def _bigint(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0")


def upgrade() -> None:
    op.add_column("records", _bigint("digest"))
    op.add_column("villages", _bigint("digest"))
    op.add_column("villages", _bigint("records"))
    op.add_column("devices", sa.Column("digest_state", sa.Text))
    for column in ("digest_ms", "digest_told_ms"):
        op.add_column("devices", sa.Column(column, sa.BigInteger))
    op.add_column("devices", _bigint("divergences"))
    op.add_column("devices", _bigint("repaired"))
    conn = op.get_bind()
    roots: dict[str, tuple[int, int]] = {}
    after = ""
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, entity, village, state FROM records WHERE id > :after "
                "ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": _CHUNK},
        ).all()
        if not rows:
            break
        updates = []
        for row in rows:
            digest = record_digest(row.entity, row.id, load_state(row.state))
            root, count = roots.get(row.village, (0, 0))
            roots[row.village] = (root ^ digest, count + 1)
            updates.append({"d": to_signed(digest), "i": row.id})
        conn.execute(sa.text("UPDATE records SET digest = :d WHERE id = :i"), updates)
        after = rows[-1].id
    for village, (root, count) in roots.items():
        conn.execute(
            sa.text("UPDATE villages SET digest = :d, records = :n WHERE code = :v"),
            {"d": to_signed(root), "n": count, "v": village},
        )


def downgrade() -> None:
    for column in ("digest_state", "digest_ms", "digest_told_ms", "divergences", "repaired"):
        op.drop_column("devices", column)
    op.drop_column("villages", "records")
    op.drop_column("villages", "digest")
    op.drop_column("records", "digest")
