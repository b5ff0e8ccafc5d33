"""What the box's and the hub's counts of the verification round (``docs/registry.md``
section 5) read in SQL from their ``records`` tables, on SQLite and PostgreSQL alike: a
household that still lacks ranking data, and a record's field from its JSON (a visit's
date). Reading JSON is slow on a whole district or village: each read parses the record
(SQLite 3.40 has no parse cache); what is counted over every record belongs in a column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["Field", "incomplete_household", "json_fields"]

#: A field name → its value in the JSON column, as text (SQL NULL when absent or null).
Field = Callable[[str], Any]


def json_fields(column: Any, dialect: str) -> Field:
    """Read fields of the JSON text ``column`` with the database's own JSON functions."""
    if dialect == "postgresql":
        return lambda name: sa.cast(column, JSONB)[name].astext
    return lambda name: sa.func.json_extract(column, f"$.{name}")


def incomplete_household(records: sa.Table) -> sa.ColumnElement[bool]:
    """For a household row of ``records``: it, or one of its active members, lacks a
    ranking variable (the ``lacking`` and ``status`` columns written with each record)."""
    member = records.alias("member")
    member_lacks = (
        sa.select(sa.literal(1))
        .where(
            member.c.household_id == records.c.id,
            member.c.entity == "member",
            member.c.deleted.is_(False),
            sa.or_(member.c.status.is_(None), member.c.status == "aktif"),
            member.c.lacking > 0,
        )
        .exists()
    )
    return sa.or_(records.c.lacking > 0, member_lacks)
