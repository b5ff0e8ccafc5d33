"""Conflicts settled by a later save on a box get a JSON resolution, like those a person
resolved: ``{"superseded": true}`` instead of the bare word ``superseded``, which the API
could not read (issue 14: ``GET /api/v1/conflicts?resolved=true`` answered 500).

No schema change; existing rows of hubs in the field are rewritten.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out rather than imported: a migration keeps meaning what it meant when written.
_OLD = "superseded"
_NEW = '{"superseded": true}'


def _rewrite(old: str, new: str) -> None:
    op.get_bind().execute(
        sa.text("UPDATE conflicts SET resolution = :new WHERE resolution = :old"),
        {"old": old, "new": new},
    )


def upgrade() -> None:
    _rewrite(_OLD, _NEW)


def downgrade() -> None:
    _rewrite(_NEW, _OLD)
