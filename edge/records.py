"""Records as the edge stores them, and their conversion to and from database rows.

A :class:`Record` is a record of any entity with its shown values and its merge state; the
shown values are stored as JSON (``data``), the merge state in its compact form beside them
(``state``: no values, the shared stamp once, ``docs/storage.md`` §4). :func:`to_row`,
:func:`from_row` and :func:`stored_state` are the only places that know those columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.changes import Value
from protocol.digest import from_signed, record_digest, to_signed
from protocol.entities import household_of, shown_status
from protocol.jsonform import dump_compact_state, load_compact_state
from protocol.merge import Frontier, RecordState, open_conflicts, values
from protocol.registry import lacking
from protocol.schema import TOMBSTONE_FIELD
from puskesos.search import search_key

__all__ = [
    "AuditEntry",
    "Edit",
    "Record",
    "audit_row",
    "build_record",
    "from_row",
    "head_of",
    "stored_state",
    "to_row",
]


@dataclass(frozen=True, slots=True)
class Record:
    """A record as stored: shown values plus bookkeeping."""

    id: str
    entity: str
    village: str
    values: Mapping[str, Value]
    state: RecordState
    household_id: str | None
    created_ms: int
    updated_ms: int
    deleted: bool
    conflicts: int
    #: The state's digest (``protocol.digest.record_digest``), kept for anti-entropy.
    digest: int

    def get(self, name: str, default: Value = None) -> Value:
        """A field's shown value."""
        return self.values.get(name, default)


@dataclass(frozen=True, slots=True)
class Edit:
    """What a person changes in one record (a new record when it does not exist yet)."""

    entity: str
    record_id: str
    new_values: Mapping[str, Value]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit trail."""

    actor: str
    action: str
    entity: str | None = None
    record_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    address: str = ""


def build_record(
    entity: str,
    record_id: str,
    village: str,
    state: RecordState,
    *,
    created_ms: int,
    updated_ms: int,
) -> Record:
    """The record a merge state makes: its shown values, household, tombstone flag and
    number of fields in conflict (for a local save and a change from the hub alike)."""
    shown = values(state)
    return Record(
        id=record_id,
        entity=entity,
        village=village,
        values=shown,
        state=state,
        household_id=household_of(entity, record_id, shown),
        created_ms=created_ms,
        updated_ms=updated_ms,
        deleted=shown.get(TOMBSTONE_FIELD) is True,
        conflicts=len(open_conflicts(state)),
        digest=record_digest(entity, record_id, state),
    )


def to_row(record: Record) -> dict[str, Any]:
    """The ``records`` row of a record."""
    shown = record.values
    nik = shown.get("nik") if record.entity == "member" else None
    kk = shown.get("kk_number") if record.entity == "household" else None
    return {
        "id": record.id,
        "entity": record.entity,
        "village": record.village,
        "household_id": record.household_id,
        "state": dump_compact_state(record.state, shown),
        "data": json.dumps(shown, separators=(",", ":"), ensure_ascii=False),
        "nik": nik if isinstance(nik, str) else None,
        "kk": kk if isinstance(kk, str) else None,
        "search_key": search_key(record.entity, shown),
        "status": shown_status(record.entity, shown),
        "deleted": record.deleted,
        "conflicts": record.conflicts,
        "created_ms": record.created_ms,
        "updated_ms": record.updated_ms,
        "digest": to_signed(record.digest),
        "lacking": lacking(record.entity, shown),
    }


def from_row(row: Any) -> Record:
    shown = json.loads(row.data)
    return Record(
        id=row.id,
        entity=row.entity,
        village=row.village,
        values=shown,
        state=load_compact_state(row.state, shown),
        household_id=row.household_id,
        created_ms=row.created_ms,
        updated_ms=row.updated_ms,
        deleted=bool(row.deleted),
        conflicts=row.conflicts,
        digest=from_signed(row.digest),
    )


def stored_state(state: str, data: str) -> dict[str, Frontier]:
    """A record's merge state from its row's ``state`` and ``data`` columns."""
    return load_compact_state(state, json.loads(data))


def audit_row(entry: AuditEntry, at_ms: int) -> dict[str, Any]:
    return {
        "at_ms": at_ms,
        "actor": entry.actor,
        "action": entry.action,
        "entity": entry.entity,
        "record_id": entry.record_id,
        "detail": json.dumps(dict(entry.detail), ensure_ascii=False),
        "address": entry.address,
    }


def head_of(members: list[Record]) -> Record | None:
    """The household's active head, else its first member (for lists and printouts)."""
    for member in members:
        if member.get("relation_to_head") == "kepala_keluarga" and member.get("status") in (
            None,
            "aktif",
        ):
            return member
    return members[0] if members else None
