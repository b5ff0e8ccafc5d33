"""The ``lacking`` column of records: how many ranking variables a household or member
lacks (``protocol.registry.lacking``), for the round's progress without JSON parsing; counted
here for the records a box already holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from protocol.registry import lacking

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_CHUNK = 2000


def upgrade() -> None:
    op.add_column("records", sa.Column("lacking", sa.Integer))
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, entity, data FROM records WHERE id > :after "
                "AND entity IN ('household', 'member') ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": _CHUNK},
        ).all()
        if not rows:
            break
        conn.execute(
            sa.text("UPDATE records SET lacking = :n WHERE id = :i"),
            [{"n": lacking(row.entity, json.loads(row.data)), "i": row.id} for row in rows],
        )
        after = rows[-1].id


def downgrade() -> None:
    op.drop_column("records", "lacking")
