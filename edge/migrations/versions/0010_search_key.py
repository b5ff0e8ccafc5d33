"""A household search matches any part of a member's name, the address and the RT/RW:
``name_key`` (a member's lower-cased name) becomes ``search_key`` (``puskesos.search``), folded
without Latin accents, and households get one (address, RT, RW). Keys are computed here for
the records a box already holds. The new index gets the fixed planner statistics the old
one had (migration 0003; dropping an index drops its row): without them SQLite takes
``entity = 'household' AND id IN (...)`` for a walk of the index, every household.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from puskesos.search import search_key

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_CHUNK = 2000
_STATISTIC = "100000 20000 3 1"


def _fill(column: str, key: Callable[[str, dict[str, Any]], str | None]) -> None:
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, entity, data FROM records WHERE id > :after "
                "AND entity IN ('household', 'member', 'complaint') ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": _CHUNK},
        ).all()
        if not rows:
            break
        conn.execute(
            sa.text(f"UPDATE records SET {column} = :k WHERE id = :i"),
            [{"k": key(row.entity, json.loads(row.data)), "i": row.id} for row in rows],
        )
        after = rows[-1].id


def _name_key(entity: str, shown: dict[str, Any]) -> str | None:
    name = shown.get("name") if entity == "member" else shown.get("reporter_name")
    return name.casefold() if isinstance(name, str) and name else None


def _index(name: str, column: str) -> None:
    op.create_index(name, "records", ["entity", column, "household_id"])
    op.execute(
        f"INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('records', '{name}', '{_STATISTIC}')"
    )


def upgrade() -> None:
    op.drop_index("ix_records_name", "records")
    op.execute("ALTER TABLE records RENAME COLUMN name_key TO search_key")
    _fill("search_key", search_key)
    _index("ix_records_search", "search_key")


def downgrade() -> None:
    op.drop_index("ix_records_search", "records")
    op.execute("ALTER TABLE records RENAME COLUMN search_key TO name_key")
    _fill("name_key", _name_key)
    _index("ix_records_name", "name_key")
