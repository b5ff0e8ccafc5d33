"""The downlink sends a box only the fields of a record it lacks, not the whole record
(issue 15: a newer registry extract changes a few fields of many records, over 2G).

``records.field_seqs`` keeps, per record, the ``log_seq`` of the fields that belong to an
earlier write than the record's own ``log_seq``; ``devices.down_by_field`` says a box's
walk may leave out the fields it holds (hub/downlink.py has the rules). Records already
held start with every field at their ``log_seq`` (NULL), which is what the whole-record
downlink of the previous release sent. The boxes it served hold every record at or below
their cursor as it is now (it sent records whole, at their current ``log_seq``), so they
walk by field from the start; a box added later starts with whole records.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("records", sa.Column("field_seqs", sa.Text))
    op.add_column(
        "devices",
        sa.Column("down_by_field", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.execute(sa.text("UPDATE devices SET down_by_field = :yes").bindparams(yes=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("down_by_field")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("field_seqs")
