"""Field-level merge: last writer wins on ``(time, node)``, concurrent writes are kept.

A record's state maps each field to its *frontier*: the versions of that field that no other
received version has seen (the maximal elements of the causal order), winner first. The
displayed value is the frontier's first version, which is always the received version with
the greatest ``(time, node)`` (a version can only have seen smaller stamps, so the greatest
one is never superseded): plain last-writer-wins, whatever the order of delivery.

A frontier with more than one version means concurrent writes: nobody wrote after seeing
all of them. When their values differ, that is a *conflict* for a person to review. Any new
write made after seeing the whole frontier (e.g. the hub's resolution) supersedes all of it
on every replica it reaches.

Merging a version into a frontier is a join in a semilattice (set union followed by keeping
the maximal elements), so it is commutative, associative and idempotent: replicas that
received the same versions hold the same state, whatever the order, duplication or
batching. Nothing needs to be held back for a missing predecessor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from protocol.changes import Change, FieldVersion, Seen, Value, seen_time
from protocol.clock import Timestamp
from protocol.schema import TOMBSTONE_FIELD

__all__ = [
    "Conflict",
    "Frontier",
    "MergeResult",
    "RecordState",
    "is_deleted",
    "join",
    "local_change",
    "merge",
    "merge_field",
    "open_conflicts",
    "seen_of",
    "values",
]

#: The versions of one field that no other received version has seen; winner first.
Frontier: TypeAlias = tuple[FieldVersion, ...]
#: A record: field name → frontier.
RecordState: TypeAlias = Mapping[str, Frontier]


@dataclass(frozen=True, slots=True)
class Conflict:
    """Concurrent writes with different values to one field; ``versions[0]`` is shown."""

    field: str
    versions: Frontier


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The new state, the fields whose frontier changed, and the conflicts the change made."""

    state: dict[str, Frontier]
    changed: tuple[str, ...]
    conflicts: tuple[Conflict, ...]


def _has_seen(later: FieldVersion, earlier: FieldVersion) -> bool:
    """Whether the writer of ``later`` had seen ``earlier``.

    A node sees all of its own earlier writes, so versions of one node are ordered by time
    (this also bounds a frontier to one version per node, whatever a faulty peer sends).
    """
    if later.node == earlier.node:
        return earlier.time < later.time
    return seen_time(later.seen, earlier.node) >= earlier.time


def _order(version: FieldVersion) -> tuple[int, str]:
    return (version.time, version.node)


def merge_field(frontier: Frontier, incoming: FieldVersion) -> Frontier | None:
    """The frontier after receiving ``incoming``, or ``None`` when nothing changes
    (a duplicate, or a version some frontier version has already seen)."""
    for current in frontier:
        if current.time == incoming.time and current.node == incoming.node:
            return None
        if _has_seen(current, incoming):
            return None
    kept = [current for current in frontier if not _has_seen(incoming, current)]
    if not kept:
        return (incoming,)
    kept.append(incoming)
    kept.sort(key=_order, reverse=True)
    return tuple(kept)


def _differs(frontier: Frontier, version: FieldVersion) -> bool:
    return any(other.value != version.value for other in frontier)


def merge(state: RecordState | None, change: Change) -> MergeResult:
    """Merge one change into a record's state (``None`` for a record not seen before).

    Returns the new state (the input is not modified), the fields whose frontier changed,
    and one :class:`Conflict` per field where the change's version now stands beside a
    concurrent version with a different value. A duplicate or superseded version changes
    nothing and reports nothing.
    """
    new_state: dict[str, Frontier] = dict(state) if state else {}
    changed: list[str] = []
    conflicts: list[Conflict] = []
    for name, version in change.fields.items():
        frontier = merge_field(new_state.get(name, ()), version)
        if frontier is None:
            continue
        new_state[name] = frontier
        changed.append(name)
        if len(frontier) > 1 and _differs(frontier, version):
            conflicts.append(Conflict(name, frontier))
    return MergeResult(new_state, tuple(changed), tuple(conflicts))


def join(left: RecordState, right: RecordState) -> dict[str, Frontier]:
    """The state that holds every version of both states (the semilattice join)."""
    result = dict(left)
    for name, frontier in right.items():
        merged = result.get(name, ())
        for version in frontier:
            merged = merge_field(merged, version) or merged
        result[name] = merged
    return result


def values(state: RecordState) -> dict[str, Value]:
    """The record as people see it: each field's winning value."""
    return {name: frontier[0].value for name, frontier in state.items() if frontier}


def is_deleted(state: RecordState) -> bool:
    """Whether the record is a tombstone (withdrawn; kept and replicated, never erased)."""
    frontier = state.get(TOMBSTONE_FIELD)
    return bool(frontier and frontier[0].value is True)


def open_conflicts(state: RecordState) -> tuple[Conflict, ...]:
    """Every field whose frontier holds concurrent versions with different values."""
    return tuple(
        Conflict(name, frontier)
        for name, frontier in state.items()
        if len(frontier) > 1 and _differs(frontier[1:], frontier[0])
    )


def seen_of(frontier: Iterable[FieldVersion]) -> Seen:
    """The version vector of a writer that has seen ``frontier`` (and so all it had seen)."""
    latest: dict[str, int] = {}
    for version in frontier:
        for node, time in version.seen:
            if time > latest.get(node, -1):
                latest[node] = time
        if version.time > latest.get(version.node, -1):
            latest[version.node] = version.time
    return tuple(sorted(latest.items()))


def local_change(
    state: RecordState | None,
    *,
    entity: str,
    record_id: str,
    village: str,
    stamp: Timestamp,
    new_values: Mapping[str, Value],
) -> Change | None:
    """The change for a person's edit of a record, stamped ``stamp``; ``None`` if it
    changes nothing.

    A field is included when its value differs from the shown one, or when the field is in
    conflict (saving any value then resolves the conflict: the new version has seen all the
    concurrent ones).
    """
    state = state or {}
    fields: dict[str, FieldVersion] = {}
    for name, value in new_values.items():
        frontier = state.get(name, ())
        unchanged = (len(frontier) == 1 and frontier[0].value == value) or (
            not frontier and value is None
        )
        if unchanged:
            continue
        fields[name] = FieldVersion(value, stamp.time, stamp.node, seen_of(frontier))
    if not fields:
        return None
    return Change(entity, record_id, village, stamp.node, fields)
