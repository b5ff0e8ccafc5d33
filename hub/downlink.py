"""The downlink: what each box has not seen yet, as stored, numbered down batches.

For node N of village V the device row keeps ``down_cursor``: the highest ``log_seq`` of V
already packed for N. :func:`fill` packs the records of V with a greater ``log_seq`` (but
those only N wrote: it has them), in ``log_seq`` order, into batches with N's next down
``seq``, stores them (encoded once) and advances the cursor in one transaction; the caller
publishes them. A stored batch is sent again until the box acks it (:func:`due`). A new
box starts at cursor 0: the same walk is its resync, batch by batch, each acked and so
resumable. See ``docs/replication.md``.

Of a record the walk sends only the fields the box lacks (issue 15: a newer registry
extract changes a few fields of many records). Each field belongs to the ``log_seq`` of
the write that last changed it (``records.field_seqs`` keeps those below the record's own
``log_seq``). A box sent by field (``devices.down_by_field``) holds every field of a
``log_seq`` up to its cursor, so a fill sends the fields above the cursor it began with.
That holds only because a write that moves a record on (from ``log_seq`` s to s') also
moves to s' every field of a seq above the lowest cursor of the village's boxes sent by
field (``HubStore._settled_cursor``): a box whose cursor had not reached s would otherwise
pass s with the record already gone from there, and never get those fields. A box whose
stream starts from 0 (new, restored, upgraded) is sent whole records until its walk
reaches the village's head; from then on it is sent by field.

Batches are encoded in the highest wire version the box's status reported (``known_wire``);
one stored before the box reported a higher one is resent as stored, which it still reads.
A box is sent only what its entity schema version knows (its status says which; a box
never heard of is sent nothing yet): fields, entities or enum codes added later are left
out of its batches, and sent when it reports the newer version (``HubStore.note_status``
starts its walk again). See ``protocol/SPEC.md`` §8.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub import db
from hub.store import HubStore, known_schema, known_wire
from protocol.changes import Batch, Change, Direction
from protocol.codec import Limits, encode
from protocol.delivery import pack
from protocol.entities import known_state
from protocol.jsonform import load_state
from protocol.merge import RecordState

__all__ = ["DownBatch", "due", "fill", "store_records"]


@dataclass(frozen=True, slots=True)
class DownBatch:
    """A stored down batch to publish."""

    node: str
    village: str
    seq: int
    payload: bytes


def _record_changes(
    entity: str, record_id: str, village: str, origin: str, state: RecordState
) -> Iterator[Change]:
    """A record's whole state as changes: one per depth of its deepest frontier, so every
    concurrent version travels and conflicts replicate too."""
    depth = max((len(frontier) for frontier in state.values()), default=0)
    for level in range(depth):
        fields = {name: f[level] for name, f in state.items() if len(f) > level}
        yield Change(entity, record_id, village, origin, fields)


def _unseen(row: Any, since: int) -> RecordState:
    """The fields of a ``records`` row a box lacks whose walk holds every field of a
    ``log_seq`` up to ``since``."""
    state = load_state(row.state)
    if not since or not row.field_seqs:
        return state
    seqs = json.loads(row.field_seqs)
    return {name: f for name, f in state.items() if seqs.get(name, row.log_seq) > since}


async def fill(store: HubStore, node: str, *, window: int, max_changes: int, max_bytes: int) -> int:
    """Pack and store new down batches for ``node`` until it has ``window`` unacked ones
    or nothing is left to send; returns how many were made (:func:`due` hands them out)."""
    device = await store.device(node)
    if device is None or device.status != "active" or known_schema(device.reported) == 0:
        return 0
    limits = Limits(max_frame_bytes=max_bytes, max_changes=max_changes)
    version = known_wire(device.reported)
    made = 0
    async with store.writing() as conn:
        head = await store.lock_village(conn, device.village)
        device = await store.device(node, conn)
        d = db.down_batches
        unacked = (
            await conn.execute(sa.select(sa.func.count()).select_from(d).where(d.c.node == node))
        ).scalar_one()
        cursor, seq = device.down_cursor, device.down_seq
        # Fields at or below the cursor it had when this fill began the box holds.
        since = cursor if device.down_by_field else 0
        while unacked + made < window:
            batches, cursor = await _next_batches(
                conn, device, cursor, since, head, seq, limits, version, store.node
            )
            if not batches:
                break
            seq = await _store(conn, node, batches, limits, version, store.wall())
            made += len(batches)
        # Its walk reached the head: the box holds every record as it is now.
        by_field = device.down_by_field or cursor == head
        if (cursor, by_field) != (device.down_cursor, device.down_by_field):
            await conn.execute(
                db.devices.update()
                .where(db.devices.c.node == node)
                .values(down_cursor=cursor, down_seq=seq, down_by_field=by_field)
            )
    return made


async def _store(
    conn: Any, node: str, batches: Sequence[Batch], limits: Limits, version: int, now: int
) -> int:
    """Store ``batches`` (encoded once, in wire ``version``) as down batches of ``node``;
    returns the last seq."""
    for batch in batches:
        await conn.execute(
            db.down_batches.insert().values(
                node=node,
                seq=batch.seq,
                payload=encode(batch, limits=limits, version=version),
                changes=len(batch.changes),
                created_ms=now,
            )
        )
    return batches[-1].seq


async def store_records(
    store: HubStore, node: str, record_ids: Sequence[str], *, max_changes: int, max_bytes: int
) -> int:
    """Store the whole state of ``record_ids`` (records of ``node``'s village) as down
    batches of ``node`` after its last one, whoever wrote them and whatever its cursor
    (anti-entropy's repair, ``hub/antientropy.py``); returns how many records went in."""
    device = await store.device(node)
    if device is None or device.status != "active":
        return 0
    limits = Limits(max_frame_bytes=max_bytes, max_changes=max_changes)
    schema, version = known_schema(device.reported), known_wire(device.reported)
    r = db.records
    sent = 0
    async with store.writing() as conn:
        await store.lock_village(conn, device.village)
        device = await store.device(node, conn)
        seq = device.down_seq
        for start in range(0, len(record_ids), max_changes):
            rows = (
                await conn.execute(
                    sa.select(r.c.id, r.c.entity, r.c.state).where(
                        r.c.village == device.village,
                        r.c.id.in_(record_ids[start : start + max_changes]),
                    )
                )
            ).all()
            changes = [
                change
                for row in rows
                for change in _record_changes(
                    row.entity,
                    row.id,
                    device.village,
                    store.node,
                    known_state(row.entity, load_state(row.state), schema),
                )
            ]
            if changes:
                batches = pack(
                    node, seq + 1, changes, direction=Direction.DOWN, limits=limits, version=version
                )
                seq = await _store(conn, node, batches, limits, version, store.wall())
                sent += len(rows)
        if seq != device.down_seq:
            await conn.execute(
                db.devices.update().where(db.devices.c.node == node).values(down_seq=seq)
            )
    return sent


async def _next_batches(
    conn: Any,
    device: Any,
    cursor: int,
    since: int,
    head: int,
    seq: int,
    limits: Limits,
    version: int,
    origin: str,
) -> tuple[list[Batch], int]:
    """The next batch (several only for one record too large for a frame) after ``cursor``,
    and the cursor after it (``head`` is the village's ``log_seq``). Of each record go the
    fields of a ``log_seq`` above ``since`` (0: whole records). Records written only by
    the node itself are skipped (it has them), except up to ``resync_until`` for a box
    restored from a backup (it lost those it wrote since)."""
    node, village = device.node, device.village
    schema = known_schema(device.reported)
    r = db.records
    mine = sa.and_(r.c.writers == node, r.c.log_seq > device.resync_until)
    changes: list[Change] = []
    owners: list[int] = []  # for each change, the log_seq of its record
    last = cursor
    while len(changes) < limits.max_changes:
        rows = (
            await conn.execute(
                sa.select(r.c.id, r.c.entity, r.c.state, r.c.log_seq, r.c.field_seqs)
                .where(r.c.village == village, r.c.log_seq > last, sa.not_(mine))
                .order_by(r.c.log_seq)
                .limit(limits.max_changes)
            )
        ).all()
        if not rows:
            last = head  # everything up to the village's head is sent or skipped
            break
        for row in rows:
            last = row.log_seq
            state = known_state(row.entity, _unseen(row, since), schema)
            for change in _record_changes(row.entity, row.id, village, origin, state):
                changes.append(change)
                owners.append(row.log_seq)
            if len(changes) >= limits.max_changes:
                break
    if not changes:
        return [], last
    batches = pack(node, seq + 1, changes, direction=Direction.DOWN, limits=limits, version=version)
    if len(batches) == 1:
        return batches, last
    # Records are sent whole: cut the first batch after the last record it holds
    # entirely; a single record larger than a frame (pack split its first change) goes
    # out as all of its batches.
    first = batches[0]
    taken = len(first.changes)
    if first.changes[0] is not changes[0]:
        whole = 0
    elif owners[taken] != owners[taken - 1]:
        whole = taken
    else:
        whole = owners.index(owners[taken - 1])
    if whole == 0:
        count = owners.count(owners[0])
        spread = pack(
            node, seq + 1, changes[:count], direction=Direction.DOWN, limits=limits, version=version
        )
        return spread, owners[0]
    return [Batch(node, seq + 1, tuple(changes[:whole]), Direction.DOWN)], owners[whole - 1]


async def due(
    store: HubStore, *, older_than_ms: int, node: str | None = None, limit: int = 1000
) -> list[DownBatch]:
    """Stored down batches (of ``node``, or of every box) never sent or last sent before
    ``older_than_ms``, oldest first; marks them sent now (the caller publishes them)."""
    d = db.down_batches
    query = (
        sa.select(d.c.node, d.c.seq, d.c.payload, db.devices.c.village)
        .join(db.devices, db.devices.c.node == d.c.node)
        .where(
            db.devices.c.status == "active",
            sa.or_(d.c.sent_ms.is_(None), d.c.sent_ms < older_than_ms),
        )
        .order_by(d.c.node, d.c.seq)
        .limit(limit)
    )
    if node is not None:
        query = query.where(d.c.node == node)
    async with store.writing() as conn:
        rows = (await conn.execute(query)).all()
        if rows:
            now = store.wall()
            # In node order: two workers sweeping at once take their row locks in the same
            # order and cannot deadlock.
            for node in sorted({row.node for row in rows}):
                seqs = [row.seq for row in rows if row.node == node]
                await conn.execute(
                    d.update().where(d.c.node == node, d.c.seq.in_(seqs)).values(sent_ms=now)
                )
    return [DownBatch(row.node, row.village, row.seq, bytes(row.payload)) for row in rows]
