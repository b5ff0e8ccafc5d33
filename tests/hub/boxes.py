"""Boxes as the hub sees them in tests: nodes that stamp edits and number their batches."""

from __future__ import annotations

from hub import downlink
from hub.devices import add_device
from hub.store import HubStore
from protocol.changes import Ack, Batch, Change, Direction
from protocol.clock import HybridClock
from protocol.codec import decode
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

    async def pull(self, store: HubStore, *, max_changes: int, window: int = 1) -> list[Change]:
        """Fill this box's down batches, apply them to its states as the box would and ack
        them; returns the changes it got."""
        await downlink.fill(
            store, self.node, window=window, max_changes=max_changes, max_bytes=65536
        )
        got: list[Change] = []
        for stored in await downlink.due(store, older_than_ms=store.wall() + 1, node=self.node):
            batch = decode(stored.payload)
            for change in batch.changes:
                self.states[change.record_id] = merge(
                    self.states.get(change.record_id), change
                ).state
                got.append(change)
            await store.note_down_ack(Ack(self.node, batch.seq, batch.seq, Direction.DOWN))
        return got

    async def drain(self, store: HubStore) -> list[Change]:
        """:meth:`pull` until the hub has nothing more for this box; returns every change."""
        got: list[Change] = []
        while pulled := await self.pull(store, max_changes=500, window=10):
            got += pulled
        return got


async def enrol(store: HubStore, *boxes: Box, schema: int = SCHEMA_VERSION) -> None:
    """Register ``boxes`` and let each say hello, as a box of entity schema ``schema``
    (the hub sends a box nothing before it has heard what the box knows)."""
    for box in boxes:
        await add_device(store.engine, village=box.village, node=box.node, now_ms=store.wall())
        await store.note_status(box.node, Status("offline", schema=schema), retained=True)
