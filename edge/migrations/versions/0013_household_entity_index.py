"""The household index also holds each record's entity: the village pages read a batch of
households' members and visits (``household_id IN (...) AND entity IN (...)``), and with
``household_id`` alone SQLite fetched every record of those households from the table to
look at its entity, a year of Posyandu services included (on an encrypted box each of
those pages is decrypted too). The planner's fixed statistics (revision 0003) get a row
for the wider index.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: About six records per household, about two of one entity (revision 0003's box).
_STAT = "100000 6 2"


def upgrade() -> None:
    op.drop_index("ix_records_household", "records")
    op.create_index("ix_records_household", "records", ["household_id", "entity"])
    _statistics(_STAT)


def downgrade() -> None:
    op.drop_index("ix_records_household", "records")
    op.create_index("ix_records_household", "records", ["household_id"])
    _statistics("100000 6")


def _statistics(stat: str) -> None:
    op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'records' AND idx = 'ix_records_household'")
    op.execute(
        "INSERT INTO sqlite_stat1 (tbl, idx, stat) "
        f"VALUES ('records', 'ix_records_household', '{stat}')"
    )
