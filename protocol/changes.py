"""The change model: field versions, changes, batches, acks and rejections.

A *field version* is one write of one field: its value, the HLC stamp of the write, and
``seen``: the versions of that field the writer had seen when it wrote (the generalisation
of "the version it was based on", see ``protocol/SPEC.md``, "Merge"). ``seen`` is a version
vector: for each node, the greatest packed time of that node's versions of the field that
the writer had seen, as a tuple of ``(node, time)`` pairs sorted by node. An empty ``seen``
means the writer saw no earlier version: a new field.

A *change* groups field versions of one record; a *batch* carries a node's changes with a
gap-free sequence number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple, TypeAlias

from protocol.clock import Timestamp

__all__ = [
    "REGISTRY_NODE",
    "Ack",
    "Batch",
    "Change",
    "Direction",
    "FieldVersion",
    "Reject",
    "Seen",
    "Value",
    "seen_time",
]

#: What a field may hold on the wire (see :mod:`protocol.schema`).
Value: TypeAlias = str | int | float | bool | list[str] | None
#: A version vector: ``(node, packed time)`` pairs sorted by node, one per node.
Seen: TypeAlias = tuple[tuple[str, int], ...]
#: The writer of every version the hub imports from the district's registry extract: a
#: node of its own, so the import's history of a field can be told from what boxes and
#: the district wrote (``hub/registry.py``; a box names it on its Sinkronisasi page).
REGISTRY_NODE = "registry"


class FieldVersion(NamedTuple):
    """One write of one field."""

    value: Value
    time: int
    node: str
    seen: Seen = ()

    @property
    def stamp(self) -> Timestamp:
        """The write's HLC stamp."""
        return Timestamp(self.time, self.node)


def seen_time(seen: Seen, node: str) -> int:
    """The greatest time of ``node`` in a version vector, or -1 when it has none."""
    for entry_node, time in seen:
        if entry_node == node:
            return time
    return -1


@dataclass(frozen=True, slots=True)
class Change:
    """Versions of some fields of one record.

    ``origin`` is the node that sent the change; for a change a node made itself every
    version's ``node`` is the origin. The hub relays versions of other nodes unchanged.
    """

    entity: str
    record_id: str
    village: str
    origin: str
    fields: Mapping[str, FieldVersion]


class Direction(IntEnum):
    """Which way a batch travels; part of the envelope so a batch cannot be replayed the
    other way."""

    UP = 1
    DOWN = 2


@dataclass(frozen=True, slots=True)
class Batch:
    """A unit of delivery: ``seq`` is gap-free per (``node``, ``direction``), from 1.

    ``node`` is always the edge node whose stream this is: the sender for ``UP``, the
    recipient for ``DOWN``.
    """

    node: str
    seq: int
    changes: tuple[Change, ...]
    direction: Direction = Direction.UP


@dataclass(frozen=True, slots=True)
class Ack:
    """Application-level acknowledgement: batch ``seq`` of ``node``'s stream is applied
    and committed. ``watermark`` is the receiver's greatest ``n`` such that 1..n are all
    applied."""

    node: str
    seq: int
    watermark: int
    direction: Direction = Direction.UP


@dataclass(frozen=True, slots=True)
class Reject:
    """A batch was refused; ``reason`` is machine-readable, ``detail`` for people and logs.

    ``reason`` is one of :class:`~protocol.errors.Reason`'s values; a receiver keeps an
    unknown code as it is (newer hubs may add codes).
    """

    node: str
    seq: int
    reason: str
    detail: str
    direction: Direction = Direction.UP
