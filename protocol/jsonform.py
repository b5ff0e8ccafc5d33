"""The JSON form of merge state and changes, as the edge and the hub store them.

Compact and stable: a field version is ``[value, time, node, [[node, time], ...]]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from protocol.changes import Change, FieldVersion, Value
from protocol.merge import Frontier, RecordState

__all__ = [
    "dump_change",
    "dump_first_versions",
    "dump_json",
    "dump_state",
    "load_change",
    "load_state",
]


def _version(raw: list[Any]) -> FieldVersion:
    value, time, node, seen = raw
    return FieldVersion(value, time, node, tuple((n, t) for n, t in seen))


def dump_state(state: RecordState) -> str:
    """Merge state as compact JSON: field → [[value, time, node, [[node, time], ...]], ...]."""
    return dump_json(
        {
            name: [[v.value, v.time, v.node, v.seen] for v in frontier]
            for name, frontier in state.items()
        }
    )


def dump_first_versions(values: Mapping[str, Value], time: int, node: str) -> str:
    """:func:`dump_state` of a state whose every field has one version, of ``node`` at
    ``time``, that has seen nothing (a record just created by one writer), from its
    values: the same text, without building the state (a bulk import's hot path)."""
    return dump_json({name: [[value, time, node, []]] for name, value in values.items()})


def dump_json(value: Any) -> str:
    """``value`` as compact JSON text, non-ASCII kept (what the stores keep)."""
    return _COMPACT.encode(value).decode()


#: The text of ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` five times
#: faster (issue 18: the hub spent a third of a batch's time writing its records' JSON),
#: but for floats in exponent form (``1e16``, ``json`` writes ``1e+16``): the same numbers.
_COMPACT: Final = msgspec.json.Encoder()


def load_state(text: str) -> dict[str, Frontier]:
    """Inverse of :func:`dump_state`."""
    return {
        name: tuple(_version(raw) for raw in frontier)
        for name, frontier in json.loads(text).items()
    }


def dump_change(change: Change) -> str:
    """A change as JSON (an edge outbox row)."""
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


def load_change(text: str) -> Change:
    """Inverse of :func:`dump_change`."""
    raw = json.loads(text)
    return Change(
        raw["entity"],
        raw["record_id"],
        raw["village"],
        raw["origin"],
        {name: _version(version) for name, version in raw["fields"].items()},
    )
