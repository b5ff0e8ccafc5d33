"""The ``records`` row of a merge state, and records the hub has never held, in bulk.

Every column the hub derives from a record's state (shown values, digest, ``nik`` for the
duplicates page, ``status`` and ``lacking`` for the round's progress, ...) is worked out
in one place, :func:`record_row`, whichever way the record is written: merged one by one
(``HubStore.merge_changes``) or inserted in bulk (:func:`new_record_rows` and
:func:`insert_rows`, the first import of a district's registry extract, see
``docs/registry.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.changes import Value
from protocol.digest import first_versions_digest, record_digest, to_signed
from protocol.entities import household_of, shown_status
from protocol.jsonform import dump_first_versions, dump_json, dump_state
from protocol.merge import RecordState, open_conflicts, values
from protocol.registry import lacking
from protocol.schema import TOMBSTONE_FIELD

__all__ = ["COLUMNS", "NewRecord", "insert_rows", "new_record_rows", "record_row"]

#: The columns :func:`new_record_rows` fills, in the order of its tuples.
COLUMNS = (
    "id", "created_ms", "entity", "village", "household_id", "state", "data", "deleted",
    "conflicts", "log_seq", "writers", "updated_ms", "pending", "nik", "digest", "status",
    "lacking",
)  # fmt: skip


def record_row(
    entity: str,
    record_id: str,
    village: str,
    state: RecordState,
    *,
    log_seq: int,
    now: int,
    pending: bool,
) -> tuple[dict[str, Any], int]:
    """The derived columns of a record's row (all but ``id`` and ``created_ms``), and its
    digest (unsigned, for the village's root)."""
    shown = values(state)
    digest = record_digest(entity, record_id, state)
    row = {
        "entity": entity,
        "village": village,
        "household_id": household_of(entity, record_id, shown),
        "state": dump_state(state),
        "data": dump_json(shown),
        "deleted": shown.get(TOMBSTONE_FIELD) is True,
        "conflicts": len(open_conflicts(state)),
        "log_seq": log_seq,
        "writers": writers_of(state),
        "updated_ms": now,
        "pending": pending,
        "nik": active_nik(entity, shown),
        "digest": to_signed(digest),
        "status": shown_status(entity, shown),
        "lacking": lacking(entity, shown),
    }
    return row, digest


class NewRecord(NamedTuple):
    """A record the hub does not hold yet, written by one node: its field values."""

    entity: str
    record_id: str
    values: dict[str, Value]


def new_record_rows(
    records: Sequence[NewRecord],
    village: str,
    log_seq: int,
    *,
    stamp: int,
    node: str,
    now: int,
    pending: bool = False,
) -> tuple[list[tuple[Any, ...]], int, int]:
    """The rows (tuples in :data:`COLUMNS` order) of records that are not stored yet,
    distinct ids, each field a version of ``node`` at ``stamp`` that has seen nothing,
    numbered from ``log_seq + 1`` in order: the rows :func:`record_row` gives their merge
    state (one version per field, so no conflict; ``pending`` as given), worked out
    without building that state. Returns the rows, the last ``log_seq`` and the XOR of
    their digests."""
    rows: list[tuple[Any, ...]] = []
    delta = 0
    for entity, record_id, shown in records:
        log_seq += 1
        digest = first_versions_digest(entity, record_id, shown, stamp, node)
        delta ^= digest
        rows.append(
            (
                record_id, now, entity, village, household_of(entity, record_id, shown),
                dump_first_versions(shown, stamp, node), dump_json(shown),
                shown.get(TOMBSTONE_FIELD) is True, 0, log_seq, node if shown else "", now, pending,
                active_nik(entity, shown), to_signed(digest), shown_status(entity, shown),
                lacking(entity, shown),
            )
        )  # fmt: skip
    return rows, log_seq, delta


async def insert_rows(
    conn: AsyncConnection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (tuples of ``columns``) in the caller's transaction with the least
    work per row: PostgreSQL's binary ``COPY``, on SQLite one prepared statement run for
    every row (no SQLAlchemy compilation or type processing per row: the values must
    already be what the driver stores)."""
    if not rows:
        return
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        await driver.copy_records_to_table(table.name, records=rows, columns=list(columns))
        return
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    await driver.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)


def writers_of(state: RecordState) -> str:
    """The nodes whose versions a record's state holds, sorted and comma-separated (the
    downlink skips a record for a box that wrote all of it)."""
    return ",".join(sorted({v.node for frontier in state.values() for v in frontier}))


def active_nik(entity: str, shown: dict[str, Any]) -> str | None:
    """The NIK an active member holds (duplicates are found by it); ``None`` otherwise."""
    if entity != "member" or shown.get("status") != "aktif" or shown.get(TOMBSTONE_FIELD):
        return None
    nik = shown.get("nik")
    return nik if isinstance(nik, str) else None
