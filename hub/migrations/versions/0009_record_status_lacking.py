"""Records keep their shown status and how many ranking variables they lack, as the box's
do: the round's progress (hub/progress.py) counts a district without parsing every
record's JSON. Computed here for the records a hub already holds (one read and write of
every household and member).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from protocol.entities import shown_status
from protocol.registry import lacking

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CHUNK = 5000


def upgrade() -> None:
    op.add_column("records", sa.Column("status", sa.Text))
    op.add_column("records", sa.Column("lacking", sa.Integer))
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.text("SELECT id, entity, data FROM records WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": _CHUNK},
        ).all()
        if not rows:
            break
        updates = []
        for row in rows:
            shown = json.loads(row.data)
            updates.append(
                {"s": shown_status(row.entity, shown), "l": lacking(row.entity, shown), "i": row.id}
            )
        conn.execute(sa.text("UPDATE records SET status = :s, lacking = :l WHERE id = :i"), updates)
        after = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_column("lacking")
        batch.drop_column("status")
