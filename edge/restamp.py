"""Clock wrong: re-stamping the box's own versions the hub refused as ``clock_ahead``.

A box whose wall clock ran ahead stamped changes in the future; the hub refuses them
(``clock_ahead``) and the box keeps them. Once its wall clock is right again (its persisted
clock is then ahead of the wall clock by more than the drift) and its last refusal was
``clock_ahead``, :func:`restamp_if_due` gives every version of its own node in the unacked
batches and the outbox whose time is ahead of the wall clock a fresh stamp, in their
original order, in the records and the queue alike, in ONE transaction, and sets the
clock back. The hub never applied those batches, so nothing anywhere refers to the old
stamps; the rewritten batches keep their ``seq``. See ``docs/replication.md``.

The fresh stamps start above every stamp that stays: versions of other nodes, and the
box's own versions the hub did accept, whatever the wall clock says (a box that booted in
1970 still stamps after them). The same old stamp gets the same new one everywhere, and
``seen`` vectors are rewritten with it, so what saw what is unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import sqlalchemy as sa

from edge import db
from edge.outbox import LAST_REJECT, LAST_RESTAMP, read_reject
from edge.records import Record, build_record, from_row, stored_state
from edge.store import Store, save_records
from protocol.changes import Batch, Change, FieldVersion
from protocol.clock import HybridClock, pack
from protocol.codec import decode, encode, frame_version
from protocol.errors import Reason
from protocol.jsonform import dump_change, load_change
from protocol.merge import Frontier, join

__all__ = ["Restamped", "restamp_due", "restamp_if_due"]

log = logging.getLogger("puskesos.edge.restamp")


@dataclass(frozen=True, slots=True)
class Restamped:
    """What a re-stamp rewrote."""

    stamps: int
    batches: int
    outbox_rows: int
    records: int


def restamp_due(store: Store, last_reason: str | None, now: int) -> bool:
    """Whether the box should re-stamp: its last refusal was ``clock_ahead`` and its clock
    is ahead of the wall clock by more than the drift."""
    ahead = store.clock.ahead_ms(now) > store.config.max_clock_drift_ms
    return last_reason == Reason.CLOCK_AHEAD.value and ahead


async def restamp_if_due(store: Store) -> Restamped | None:
    """Re-stamp when :func:`restamp_due` (checked again inside the transaction); ``None``
    when it is not due."""
    now = store.now_ms()
    previous = store.clock
    try:
        result = await store.run_write(lambda conn: _restamp(store, conn, now))
    except BaseException:
        # The clock was set back inside a transaction that did not commit.
        store.clock = previous
        raise
    if result is not None:
        log.warning(
            "clock corrected: re-stamped %s stamps in %s batches and %s outbox rows",
            result.stamps,
            result.batches,
            result.outbox_rows,
        )
    return result


def _restamp(store: Store, conn: sa.Connection, now: int) -> Restamped | None:
    reject = read_reject(conn)
    if not restamp_due(store, reject.reason if reject else None, now):
        return None
    node = store.node
    ahead = pack(now + 1, 0)  # the first time whose milliseconds are past the wall clock
    b, o = db.up_batches, db.outbox
    batches: list[Batch] = []
    versions: dict[int, int] = {}  # seq → wire version: re-encoded in the one it had
    for row in conn.execute(sa.select(b.c.payload).order_by(b.c.seq)):
        batch = decode(row.payload)
        assert isinstance(batch, Batch)
        batches.append(batch)
        versions[batch.seq] = frame_version(row.payload)
    rows = [
        (row.id, load_change(row.change))
        for row in conn.execute(sa.select(o.c.id, o.c.change).order_by(o.c.id))
    ]
    queued = [change for batch in batches for change in batch.changes] + [c for _, c in rows]
    old = sorted(
        {v.time for c in queued for v in c.fields.values() if v.node == node and v.time >= ahead}
    )
    bad = set(old)
    # Above every stamp that keeps its time: in the records, and the seen vectors of the
    # versions being moved (they may name a version superseded since).
    floor = pack(now, 0)
    for row in conn.execute(sa.select(db.records.c.state, db.records.c.data)):
        for frontier in stored_state(row.state, row.data).values():
            for version in frontier:
                if version.time >= ahead and not (version.node == node and version.time in bad):
                    floor = max(floor, version.time)
    for change in queued:
        for version in change.fields.values():
            for seen_node, seen_time in version.seen:
                if not (seen_node == node and seen_time in bad):
                    floor = max(floor, seen_time)
    clock = HybridClock(node, state=floor, max_drift_ms=store.config.max_clock_drift_ms)
    new = {time: clock.now(now).time for time in old}

    rewritten = [batch for batch in batches if _touches(batch.changes, node, new)]
    for batch in rewritten:
        fresh = replace(batch, changes=tuple(_change(c, node, new) for c in batch.changes))
        payload = encode(fresh, version=versions[batch.seq])
        conn.execute(sa.update(b).where(b.c.seq == batch.seq).values(payload=payload, sent_ms=None))
    moved_rows = [(i, c) for i, c in rows if _touches((c,), node, new)]
    for row_id, change in moved_rows:
        text = dump_change(_change(change, node, new))
        conn.execute(sa.update(o).where(o.c.id == row_id).values(change=text))
    ids = sorted({change.record_id for change in queued})
    found = conn.execute(sa.select(db.records).where(db.records.c.id.in_(ids))).all()
    records: list[Record] = []
    stored = {row.id: from_row(row) for row in found}
    for record in stored.values():
        state = {name: _frontier(f, node, new) for name, f in record.state.items()}
        if state != dict(record.state):
            records.append(
                build_record(
                    record.entity,
                    record.id,
                    record.village,
                    join({}, state),
                    created_ms=record.created_ms,
                    updated_ms=record.updated_ms,
                )
            )
    save_records(conn, records, existing=stored)
    store.set_clock_state(clock.state)
    db.put_meta(conn, "clock", str(clock.state))
    conn.execute(sa.delete(db.meta).where(db.meta.c.key == LAST_REJECT))
    summary = {"at": now, "stamps": len(new), "batches": len(rewritten), "rows": len(moved_rows)}
    db.put_meta(conn, LAST_RESTAMP, json.dumps(summary))
    return Restamped(len(new), len(rewritten), len(moved_rows), len(records))


def _version(version: FieldVersion, node: str, new: Mapping[int, int]) -> FieldVersion:
    time = new.get(version.time, version.time) if version.node == node else version.time
    seen = tuple((n, new.get(t, t) if n == node else t) for n, t in version.seen)
    return FieldVersion(version.value, time, version.node, seen)


def _change(change: Change, node: str, new: Mapping[int, int]) -> Change:
    fields = {name: _version(v, node, new) for name, v in change.fields.items()}
    return replace(change, fields=fields)


def _frontier(frontier: Frontier, node: str, new: Mapping[int, int]) -> Frontier:
    return tuple(_version(v, node, new) for v in frontier)


def _touches(changes: Iterable[Change], node: str, new: Mapping[int, int]) -> bool:
    return any(
        (v.node == node and v.time in new) or any(n == node and t in new for n, t in v.seen)
        for change in changes
        for v in change.fields.values()
    )
