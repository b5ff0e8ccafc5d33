"""The JSON form of merge state and changes, as the edge and the hub store them.

Stable: a field version is ``[value, time, node, [[node, time], ...]]``. The hub keeps a
record's state in that form (:func:`dump_state`). The box keeps the compact forms of
``docs/storage.md`` §4: a record's state without the shown values (they are in the row's
``data``) and with the stamp most of its fields share written once (:func:`dump_compact_state`),
and an outbox change with its shared stamp written once (:func:`dump_change`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from protocol.changes import Change, FieldVersion, Seen, Value
from protocol.merge import Frontier, RecordState

#: A stamp without its value: ``(time, node, seen)``.
_Stamp = tuple[int, str, Seen]

__all__ = [
    "common_stamp",
    "dump_change",
    "dump_compact_state",
    "dump_first_versions",
    "dump_json",
    "dump_state",
    "load_change",
    "load_compact_state",
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
    # Tuples are written as the same arrays as lists, and are cheaper to build.
    return dump_json({name: ((value, time, node, ()),) for name, value in values.items()})


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


def _seen(raw: list[Any]) -> Seen:
    return tuple((node, time) for node, time in raw)


def common_stamp(stamps: Iterable[_Stamp]) -> _Stamp:
    """The stamp most of ``stamps`` have (the one a form save gave every field it wrote);
    the box's stored forms and wire version 2 write it once per record or change."""
    counted = Counter(stamps).most_common(1)
    return counted[0][0] if counted else (0, "", ())


def dump_compact_state(state: RecordState, shown: Mapping[str, Value]) -> str:
    """A record's state without the values ``shown`` holds: ``[time, node, seen,
    exceptions]``, where ``time, node, seen`` is the stamp most fields have, and
    ``exceptions`` names only the fields that differ from "one version, stamped so, whose
    value is the shown one": ``[time, node, seen]`` for one version stamped otherwise, the
    whole frontier ``[[value, time, node, seen], ...]`` for concurrent versions (or a
    value that is not the shown one), ``null`` for a shown field the state does not hold.

    :func:`load_compact_state` with the same ``shown`` gives ``state`` back, whatever the
    two hold. A record saved by one form save is about 50 bytes instead of a kilobyte.
    """
    singles = {
        name: (frontier[0].time, frontier[0].node, frontier[0].seen)
        for name, frontier in state.items()
        if len(frontier) == 1 and name in shown and frontier[0].value == shown[name]
    }
    time, node, seen = common = common_stamp(singles.values())
    exceptions: dict[str, Any] = {}
    for name, frontier in state.items():
        stamp = singles.get(name)
        if stamp is None:
            exceptions[name] = [[v.value, v.time, v.node, v.seen] for v in frontier]
        elif stamp != common:
            exceptions[name] = list(stamp)
    for name in shown.keys() - state.keys():
        exceptions[name] = None
    return dump_json([time, node, seen, exceptions])


def load_compact_state(text: str, shown: Mapping[str, Value]) -> dict[str, Frontier]:
    """Inverse of :func:`dump_compact_state` (``shown`` is the row's ``data``)."""
    time, node, raw_seen, exceptions = _DECODE(text)
    seen = _seen(raw_seen)
    state: dict[str, Frontier] = {}
    for name, value in shown.items():
        if name not in exceptions:
            state[name] = (FieldVersion(value, time, node, seen),)
            continue
        raw = exceptions.pop(name)
        if raw is None:
            continue
        if not raw or isinstance(raw[0], list):
            state[name] = tuple(_version(version) for version in raw)
        else:
            state[name] = (FieldVersion(value, raw[0], raw[1], _seen(raw[2])),)
    for name, raw in exceptions.items():  # fields the shown values lack
        state[name] = tuple(_version(version) for version in raw)
    return state


_DECODE: Final = msgspec.json.Decoder().decode


def dump_change(change: Change) -> str:
    """A change as JSON (an edge outbox row): ``[entity, record_id, village, origin, time,
    node, seen, values, exceptions]``, where ``time, node, seen`` is the stamp most of its
    fields have (a local save stamps every field it writes alike), ``values`` the values
    of the fields stamped so, and ``exceptions`` the other fields' whole versions."""
    common = common_stamp((v.time, v.node, v.seen) for v in change.fields.values())
    values: dict[str, Value] = {}
    exceptions: dict[str, Any] = {}
    for name, v in change.fields.items():
        if (v.time, v.node, v.seen) == common:
            values[name] = v.value
        else:
            exceptions[name] = [v.value, v.time, v.node, v.seen]
    head = [change.entity, change.record_id, change.village, change.origin]
    return dump_json([*head, *common, values, exceptions])


def load_change(text: str) -> Change:
    """Inverse of :func:`dump_change`."""
    entity, record_id, village, origin, time, node, raw_seen, values, exceptions = _DECODE(text)
    seen = _seen(raw_seen)
    fields = {name: FieldVersion(value, time, node, seen) for name, value in values.items()}
    fields.update((name, _version(raw)) for name, raw in exceptions.items())
    return Change(entity, record_id, village, origin, fields)
