"""The records' field values read in SQL, on SQLite and PostgreSQL alike: what the box's
and the hub's counts of the verification round share (``docs/registry.md`` section 5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from protocol.registry import RANKING_FIELDS

__all__ = ["Field", "json_fields", "lacks_ranking"]

#: A field name → its value in the JSON column, as text (SQL NULL when absent or null).
Field = Callable[[str], Any]


def json_fields(column: Any, dialect: str) -> Field:
    """Read fields of the JSON text ``column`` with the database's own JSON functions."""
    if dialect == "postgresql":
        return lambda name: sa.cast(column, JSONB)[name].astext
    return lambda name: sa.func.json_extract(column, f"$.{name}")


def lacks_ranking(value: Field, entity: str) -> sa.ColumnElement[bool]:
    """The record lacks a ranking variable: ``protocol.registry.missing_fields`` in SQL."""
    return sa.or_(*(sa.or_(value(n).is_(None), value(n) == "") for n in RANKING_FIELDS[entity]))
