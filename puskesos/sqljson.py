"""The records' field values read in SQL, on SQLite and PostgreSQL alike (a visit's date
for the verification round's counts, ``docs/registry.md`` section 5). Slow on a whole
district or village: each read parses the record's JSON (SQLite 3.40 has no parse cache);
what is counted over every record belongs in a column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["Field", "json_fields"]

#: A field name → its value in the JSON column, as text (SQL NULL when absent or null).
Field = Callable[[str], Any]


def json_fields(column: Any, dialect: str) -> Field:
    """Read fields of the JSON text ``column`` with the database's own JSON functions."""
    if dialect == "postgresql":
        return lambda name: sa.cast(column, JSONB)[name].astext
    return lambda name: sa.func.json_extract(column, f"$.{name}")
