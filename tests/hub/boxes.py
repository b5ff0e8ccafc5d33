"""Boxes as the hub sees them in tests: nodes that stamp edits and number their batches."""

from __future__ import annotations

from hub.devices import add_device
from hub.store import HubStore
from protocol.changes import Batch, Change, Direction
from protocol.clock import HybridClock
from protocol.entities import SCHEMA_VERSION
from protocol.merge import local_change, merge
from protocol.status import Status
from tests.factories import DEFAULT_VILLAGE

__all__ = ["Box", "enrol"]


class Box:
    """A box as the hub sees it: a node that stamps edits and numbers its batches."""

    def __init__(self, node: str, village: str = DEFAULT_VILLAGE) -> None:
        self.node = node
        self.village = village
        self.clock = HybridClock(node)
        self.states: dict[str, dict] = {}
        self.seq = 0

    def edit(
        self, record_id: str, wall_ms: int, *, entity: str = "household", **values: object
    ) -> Change:
        change = local_change(
            self.states.get(record_id),
            entity=entity,
            record_id=record_id,
            village=self.village,
            stamp=self.clock.now(wall_ms),
            new_values=values,
        )
        assert change is not None
        self.states[record_id] = merge(self.states.get(record_id), change).state
        return change

    def batch(self, *changes: Change) -> Batch:
        self.seq += 1
        return Batch(self.node, self.seq, changes, Direction.UP)


async def enrol(store: HubStore, *boxes: Box, schema: int = SCHEMA_VERSION) -> None:
    """Register ``boxes`` and let each say hello, as a box of entity schema ``schema``
    (the hub sends a box nothing before it has heard what the box knows)."""
    for box in boxes:
        await add_device(store.engine, village=box.village, node=box.node, now_ms=store.wall())
        await store.note_status(box.node, Status("offline", schema=schema), retained=True)
