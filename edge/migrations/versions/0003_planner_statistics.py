"""Give SQLite's query planner fixed statistics about the records table.

Without statistics SQLite assumes an equality on any indexed column narrows a query to a
few rows, so for ``entity = 'household' AND id IN (...)`` it may walk the entity index
(every household: 37 ms with 20,000 of them) instead of looking the ids up (1 ms). Running
``ANALYZE`` on a young box would record a tiny table and mislead it later. These rows
describe a box in the field (about 100,000 records, a handful of entities, a NIK or family
card on one record, about six records per household), as SQLite's documentation suggests
for fixed statistics; they only rank indexes, so they need not match the real counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATISTICS = (
    ("records", "sqlite_autoindex_records_1", "100000 1"),
    ("records", "ix_records_entity_updated", "100000 20000 1"),
    ("records", "ix_records_household", "100000 6"),
    ("records", "ix_records_nik", "100000 2"),
    ("records", "ix_records_kk", "100000 2"),
    ("records", "ix_records_name", "100000 20000 3 1"),
    ("audit", "ix_audit_record", "100000 10"),
    ("audit", "ix_audit_at", "100000 1"),
)


def upgrade() -> None:
    op.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1 when missing
    for table, index, stat in STATISTICS:
        op.execute(f"DELETE FROM sqlite_stat1 WHERE tbl = '{table}' AND idx = '{index}'")
        op.execute(
            f"INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('{table}', '{index}', '{stat}')"
        )


def downgrade() -> None:
    for table, index, _ in STATISTICS:
        op.execute(f"DELETE FROM sqlite_stat1 WHERE tbl = '{table}' AND idx = '{index}'")
