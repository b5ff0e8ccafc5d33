"""The district's registry extract (docs/registry.md): imports, the link of each record
imported to its extract id with the values last imported, and the civil registry's
extract for matching members.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_imports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_ms", sa.BigInteger),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("summary", sa.Text),
    )
    op.create_table(
        "registry_rows",
        sa.Column("entity", sa.Text, primary_key=True),
        sa.Column("registry_id", sa.Text, primary_key=True),
        sa.Column("record_id", sa.Text, nullable=False),
        sa.Column("village", sa.Text, nullable=False),
        sa.Column("imported", sa.Text, nullable=False),
        sa.Column("import_id", sa.Integer, nullable=False),
        sa.Column("missing", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_registry_rows_village", "registry_rows", ["village", "import_id"])
    op.create_table(
        "civil_rows",
        sa.Column("nik", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("birth_date", sa.Text, nullable=False, server_default=""),
        sa.Column("sex", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("civil_rows")
    op.drop_index("ix_registry_rows_village", "registry_rows")
    op.drop_table("registry_rows")
    op.drop_table("registry_imports")
