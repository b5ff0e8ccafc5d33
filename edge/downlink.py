"""The box's down stream: batches from the hub merged into the records, once each.

:func:`apply_remote` merges every change of a down batch into the records, records the
batch's ``seq`` in the persisted ``down_applied`` (:class:`~protocol.delivery.AppliedSeqs`)
and moves the box's clock past every stamp received, in ONE write transaction. A batch
already applied changes nothing and is acked again. Changes from the hub make no outbox
rows (the hub has them); each record they change gets a ``sync`` audit row naming the
node the change came from (``actor``: the hub worker) and, in its ``detail``, the fields
it changed (``fields``), the node that wrote each one's winning version (``by``: the hub,
the registry import, another box of the village) and the batch's ``seq``: the
Sinkronisasi page lists what came down from there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edge import auditchain, db
from edge.outbox import DOWN_APPLIED, LAST_CONTACT, load_applied
from edge.records import Record, build_record, from_row
from edge.store import Store, save_records
from protocol.changes import Batch, Direction
from protocol.merge import merge

__all__ = ["Applied", "apply_remote"]

log = logging.getLogger("puskesos.edge.downlink")

#: The audit action of a change received from the hub.
SYNC_ACTION = "sync"


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a down batch did: ``fresh`` is False for a batch applied before;
    ``watermark`` is the down stream's contiguous watermark to ack with."""

    fresh: bool
    watermark: int
    records: int


async def apply_remote(store: Store, batch: Batch) -> Applied:
    """Apply a down batch of this box's stream (see the module docstring)."""
    if batch.direction is not Direction.DOWN or batch.node != store.node:
        raise ValueError(f"batch {batch.seq} is not of this box's down stream")
    now = store.now_ms()
    return await store.run_write(lambda conn: _apply(store, conn, batch, now))


def _apply(store: Store, conn: sa.Connection, batch: Batch, now: int) -> Applied:
    db.put_meta(conn, LAST_CONTACT, str(now))
    applied = load_applied(conn)
    if batch.seq in applied:
        return Applied(False, applied.watermark, 0)
    ids = sorted({change.record_id for change in batch.changes})
    found = conn.execute(sa.select(db.records).where(db.records.c.id.in_(ids))).all()
    stored: dict[str, Record] = {row.id: from_row(row) for row in found}
    current = dict(stored)
    changed: dict[str, dict[str, str]] = {}  # record id → field → its winner's writer
    actors: dict[str, str] = {}
    newest = 0
    for change in batch.changes:
        newest = max([newest, *(version.time for version in change.fields.values())])
        before = current.get(change.record_id)
        if before is not None and before.entity != change.entity:
            log.warning(
                "down batch %s: record %s is a %s here, not a %s; change skipped",
                batch.seq,
                change.record_id,
                before.entity,
                change.entity,
            )
            continue
        result = merge(before.state if before else None, change)
        if not result.changed:
            continue
        current[change.record_id] = build_record(
            change.entity,
            change.record_id,
            before.village if before else change.village,
            result.state,
            created_ms=before.created_ms if before else now,
            updated_ms=now,
        )
        changed.setdefault(change.record_id, {}).update(
            (name, result.state[name][0].node) for name in result.changed
        )
        actors[change.record_id] = change.origin
    save_records(conn, (current[i] for i in changed), existing=stored)
    auditchain.append(
        conn, [_audit(current[i], fields, actors[i], batch, now) for i, fields in changed.items()]
    )
    # The hub is the time reference: a box that booted in 1970 must still stamp its next
    # edits after what it received, so no drift check here.
    if newest > store.clock.state:
        store.set_clock_state(newest)
        db.put_meta(conn, "clock", str(newest))
    applied = applied.add(batch.seq)
    db.put_meta(conn, DOWN_APPLIED, json.dumps(applied.to_state()))
    return Applied(True, applied.watermark, len(changed))


def _audit(
    record: Record, writers: dict[str, str], actor: str, batch: Batch, now: int
) -> dict[str, Any]:
    detail = {"fields": sorted(writers), "by": dict(sorted(writers.items())), "seq": batch.seq}
    return {
        "at_ms": now,
        "actor": actor,
        "action": SYNC_ACTION,
        "entity": record.entity,
        "record_id": record.id,
        "detail": json.dumps(detail),
        "address": "",
    }
