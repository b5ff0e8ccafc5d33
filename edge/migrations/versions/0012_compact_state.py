"""Compact storage (``docs/storage.md`` §4, issue 18): a record's merge state no longer
repeats the values its ``data`` holds, and the stamp most of its fields share is written
once; an outbox change writes its shared stamp once. A household of 4 members took about
5 KB of state; it now takes about 300 bytes.

Every row is rewritten, a page at a time, inside the migration's one transaction: a power
cut leaves the box on revision 0011 with every row as it was. The forms of revision 0011 are
read here by this file's own readers, so later changes to ``protocol.jsonform`` cannot
change what this migration reads.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from protocol.changes import Change, FieldVersion
from protocol.jsonform import (
    dump_change,
    dump_compact_state,
    dump_json,
    load_change,
    load_compact_state,
)
from protocol.merge import Frontier

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: Rows read and rewritten at a time.
_CHUNK = 2_000


def _old_version(raw: list[Any]) -> FieldVersion:
    value, time, node, seen = raw
    return FieldVersion(value, time, node, tuple((n, t) for n, t in seen))


def _old_state(text: str) -> dict[str, Frontier]:
    return {
        name: tuple(_old_version(raw) for raw in frontier)
        for name, frontier in json.loads(text).items()
    }


def _dump_old_state(state: dict[str, Frontier]) -> str:
    return dump_json(
        {
            name: [[v.value, v.time, v.node, v.seen] for v in frontier]
            for name, frontier in state.items()
        }
    )


def _old_change(text: str) -> Change:
    raw = json.loads(text)
    fields = {name: _old_version(version) for name, version in raw["fields"].items()}
    return Change(raw["entity"], raw["record_id"], raw["village"], raw["origin"], fields)


def _dump_old_change(change: Change) -> str:
    return json.dumps(
        {
            "entity": change.entity,
            "record_id": change.record_id,
            "village": change.village,
            "origin": change.origin,
            "fields": {n: [v.value, v.time, v.node, v.seen] for n, v in change.fields.items()},
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _rewrite(table: str, column: str, convert: Callable[[Any], str], *extra: str) -> None:
    """Every row's ``column`` through ``convert`` (given the row), a page at a time."""
    conn = op.get_bind()
    columns = ", ".join((column, *extra))
    after = -1
    while rows := conn.execute(
        sa.text(
            f"SELECT rowid AS rid, {columns} FROM {table} "
            "WHERE rowid > :after ORDER BY rowid LIMIT :n"
        ),
        {"after": after, "n": _CHUNK},
    ).all():
        conn.execute(
            sa.text(f"UPDATE {table} SET {column} = :text WHERE rowid = :rid"),
            [{"text": convert(row), "rid": row.rid} for row in rows],
        )
        after = rows[-1].rid


def _compact_state(row: Any) -> str:
    return dump_compact_state(_old_state(row.state), json.loads(row.data))


def _wide_state(row: Any) -> str:
    return _dump_old_state(load_compact_state(row.state, json.loads(row.data)))


def upgrade() -> None:
    _rewrite("records", "state", _compact_state, "data")
    _rewrite("outbox", "change", lambda row: dump_change(_old_change(row.change)))


def downgrade() -> None:
    _rewrite("records", "state", _wide_state, "data")
    _rewrite("outbox", "change", lambda row: _dump_old_change(load_change(row.change)))
