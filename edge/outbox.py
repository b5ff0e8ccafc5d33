"""The box's up stream: outbox rows sealed into stored, numbered batches, retired on the ack.

:func:`seal` takes outbox rows in order, packs them into batches with the next ``seq`` of
the up stream, encodes each batch once and stores it in ``up_batches``, deletes the rows it
took and advances the ``up_seq`` meta key, in ONE transaction, before anything is
published. A resend (after a reconnect, a timeout or a restart) publishes the stored
bytes, so one ``seq`` always carries the same content. :func:`retire` deletes what the
hub's ack covers. Every function runs its statements on the store's writer thread (writes)
or a reader thread (reads). See ``docs/replication.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

import sqlalchemy as sa

from edge import db
from edge.digest import Check, read_check, read_root
from edge.packing import Packed, pack_rows
from edge.store import Store, pending_changes
from protocol.changes import Ack, Reject
from protocol.codec import DEFAULT_LIMITS, Limits
from protocol.delivery import AppliedSeqs

__all__ = [
    "DOWN_APPLIED",
    "LAST_ACK",
    "LAST_CONTACT",
    "LAST_REJECT",
    "LAST_RESTAMP",
    "UP_SEQ",
    "LastReject",
    "QueueState",
    "StoredBatch",
    "load_applied",
    "mark_sent",
    "queue_state",
    "read_reject",
    "record_reject",
    "retire",
    "seal",
    "stored",
    "unacked",
]

log = logging.getLogger("puskesos.edge.outbox")

#: ``meta`` keys of the replication state.
UP_SEQ = "up_seq"
DOWN_APPLIED = "down_applied"
LAST_ACK = "last_ack_ms"
LAST_CONTACT = "last_hub_contact_ms"
LAST_REJECT = "last_reject"
LAST_RESTAMP = "last_restamp"


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A sealed up batch the hub has not acked yet."""

    seq: int
    payload: bytes
    changes: int
    sent_ms: int | None


@dataclass(frozen=True, slots=True)
class LastReject:
    """The hub's latest refusal of an up batch (``seq`` 0: it could not read which)."""

    seq: int
    reason: str
    detail: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class QueueState:
    """What the box knows of its replication, read in one transaction."""

    pending: int
    oldest_ms: int | None
    unacked_batches: int
    up_seq: int
    #: The lowest seq the box may still send: every seq below it is acked (or was lost
    #: with a restore) and will never be sent again.
    up_floor: int
    down_watermark: int
    last_ack_ms: int | None
    last_hub_contact_ms: int | None
    last_reject: LastReject | None
    last_restamp_ms: int | None
    #: The root of the box's record digest, how many records it holds, and what the hub's
    #: last probe said (``edge.digest``).
    digest_root: int
    records: int
    check: Check | None


# --- sealing --------------------------------------------------------------------------------


async def seal(
    store: Store,
    *,
    max_changes: int,
    max_bytes: int,
    max_batches: int,
    packer: Executor | None = None,
    version: int = 1,
) -> int:
    """Seal up to ``max_batches`` batches from the outbox, encoded in wire ``version``;
    returns how many were made.

    Each batch holds at most ``max_changes`` changes and encodes within ``max_bytes`` (both
    capped at the wire limits). Only rows wholly inside the sealed batches leave the outbox;
    a row too large for one batch is spread over several (``protocol.delivery.pack``).

    The rows are read on a reader thread and packed and encoded (about 50 ms for 500
    changes) in ``packer`` (the sync client's worker process, ``edge.packing``; without
    one, the loop's default thread pool), so saves do not queue behind them; the write
    transaction then checks that the rows and ``up_seq`` are still the ones packed, and
    inserts the batches, deletes the rows and advances ``up_seq`` together. When something
    changed meanwhile it seals nothing and the next round packs again.
    """
    limits = Limits(
        max_frame_bytes=min(max_bytes, DEFAULT_LIMITS.max_frame_bytes),
        max_changes=min(max_changes, DEFAULT_LIMITS.max_changes),
    )
    if max_batches < 1:
        return 0
    up_seq, rows = await store.read(lambda conn: _queue(conn, limits.max_changes * max_batches))
    if not rows:
        return 0
    count, batches = await asyncio.get_running_loop().run_in_executor(
        packer,
        pack_rows,
        store.node,
        up_seq + 1,
        [(change, created_ms) for _, change, created_ms in rows],
        limits,
        max_batches,
        version,
    )
    plan = _Sealed(up_seq, [(row_id, change) for row_id, change, _ in rows[:count]], batches)
    now = store.now_ms()
    return await store.run_write(lambda conn: _store(conn, plan, now))


@dataclass(frozen=True, slots=True)
class _Sealed:
    """Batches packed from the outbox rows ``taken`` (id, change text), ready to store."""

    up_seq: int
    taken: list[tuple[int, str]]
    rows: list[Packed]


def waiting(conn: sa.Connection, limit: int) -> tuple[int, int | None]:
    """How many outbox rows wait to be sealed, counted up to ``limit``, and when the
    first of them was made (ms; ``None`` when none wait)."""
    o = db.outbox
    rows = sa.select(o.c.id).limit(limit).subquery()
    count = conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one()
    first = conn.execute(sa.select(o.c.created_ms).order_by(o.c.id).limit(1)).scalar()
    return int(count), first


def _queue(conn: sa.Connection, limit: int) -> tuple[int, list[tuple[int, str, int]]]:
    """``up_seq`` and the first ``limit`` outbox rows (id, change text, ``created_ms``)."""
    o = db.outbox
    query = sa.select(o.c.id, o.c.change, o.c.created_ms).order_by(o.c.id).limit(limit)
    rows = [(row.id, row.change, row.created_ms) for row in conn.execute(query)]
    return int(db.read_meta(conn, UP_SEQ) or 0), rows


def _store(conn: sa.Connection, plan: _Sealed, now: int) -> int:
    o = db.outbox
    last = plan.taken[-1][0]
    current = conn.execute(
        sa.select(o.c.id, o.c.change).where(o.c.id <= last).order_by(o.c.id)
    ).all()
    unchanged = [(row.id, row.change) for row in current] == plan.taken
    if not unchanged or int(db.read_meta(conn, UP_SEQ) or 0) != plan.up_seq:
        return 0
    conn.execute(db.up_batches.insert(), [row | {"created_ms": now} for row in plan.rows])
    conn.execute(sa.delete(o).where(o.c.id <= last))
    db.put_meta(conn, UP_SEQ, str(plan.up_seq + len(plan.rows)))
    return len(plan.rows)


# --- sending and acks -----------------------------------------------------------------------


async def unacked(store: Store, limit: int | None = None) -> list[int]:
    """The ``seq`` of every stored batch the hub has not acked, lowest first."""
    b = db.up_batches
    query = sa.select(b.c.seq).order_by(b.c.seq)
    if limit is not None:
        query = query.limit(limit)
    return await store.read(lambda conn: list(conn.execute(query).scalars()))


async def stored(store: Store, seqs: Collection[int]) -> list[StoredBatch]:
    """These stored batches (those still waiting), with their bytes, in ``seq`` order."""
    b = db.up_batches
    query = (
        sa.select(b.c.seq, b.c.payload, b.c.changes, b.c.sent_ms)
        .where(b.c.seq.in_(sorted(seqs)))
        .order_by(b.c.seq)
    )
    rows = await store.read(lambda conn: conn.execute(query).all())
    return [StoredBatch(row.seq, row.payload, row.changes, row.sent_ms) for row in rows]


async def mark_sent(store: Store, seqs: Iterable[int], now: int) -> None:
    """Note when these batches were last handed to the broker (not durable: a note)."""
    wanted = sorted(set(seqs))
    if not wanted:
        return
    b = db.up_batches
    statement = sa.update(b).where(b.c.seq.in_(wanted)).values(sent_ms=now)
    await store.run_write(lambda conn: conn.execute(statement), durable=False)


async def retire(store: Store, ack: Ack, now: int) -> int:
    """Delete the batches the hub's ack covers (its ``seq`` and all up to its watermark);
    returns how many there were.

    An ack above the box's own ``up_seq`` means the box was restored from an older backup
    after the hub had applied later batches: ``up_seq`` moves past it, so new batches never
    reuse a number the hub has applied.

    Not durable (``Store.run_write``): a power cut that takes it back costs a resend of
    what the hub has, which it acks again and applies no second time; and no batch is
    sealed from the moved ``up_seq`` before a durable commit has kept this one too.
    """
    return await store.run_write(lambda conn: _retire(conn, ack, now), durable=False)


def _retire(conn: sa.Connection, ack: Ack, now: int) -> int:
    b = db.up_batches
    covered = sa.or_(b.c.seq == ack.seq, b.c.seq <= ack.watermark)
    retired = conn.execute(sa.delete(b).where(covered)).rowcount
    highest = max(ack.seq, ack.watermark)
    up_seq = int(db.read_meta(conn, UP_SEQ) or 0)
    if highest > up_seq:
        log.warning(
            "the hub has applied up to seq %s but this box had numbered only to %s "
            "(restored from a backup?): continuing after %s",
            highest,
            up_seq,
            highest,
        )
        db.put_meta(conn, UP_SEQ, str(highest))
    reject = _reject_of(db.read_meta(conn, LAST_REJECT))
    if (
        reject is not None
        and reject.seq > 0
        and (reject.seq == ack.seq or reject.seq <= ack.watermark)
    ):
        # The refused batch went through after all (e.g. re-stamped): nothing to show.
        conn.execute(sa.delete(db.meta).where(db.meta.c.key == LAST_REJECT))
    db.put_meta(conn, LAST_ACK, str(now))
    db.put_meta(conn, LAST_CONTACT, str(now))
    return int(retired)


async def record_reject(store: Store, reject: Reject, now: int) -> bool:
    """Keep the hub's refusal for people to see (the batch stays and is sent again);
    False when it names a batch that is no longer waiting (acked meanwhile)."""
    return await store.run_write(lambda conn: _record_reject(conn, reject, now))


def _record_reject(conn: sa.Connection, reject: Reject, now: int) -> bool:
    db.put_meta(conn, LAST_CONTACT, str(now))
    if reject.seq:
        b = db.up_batches
        waiting = conn.execute(sa.select(b.c.seq).where(b.c.seq == reject.seq)).first()
        if waiting is None:
            return False
    document = {"seq": reject.seq, "reason": reject.reason, "detail": reject.detail, "at": now}
    db.put_meta(conn, LAST_REJECT, json.dumps(document, ensure_ascii=False))
    return True


def read_reject(conn: sa.Connection) -> LastReject | None:
    """The stored last refusal, inside the caller's transaction."""
    return _reject_of(db.read_meta(conn, LAST_REJECT))


def _reject_of(text: str | None) -> LastReject | None:
    if not text:
        return None
    raw = json.loads(text)
    return LastReject(int(raw["seq"]), str(raw["reason"]), str(raw["detail"]), int(raw["at"]))


def load_applied(conn: sa.Connection) -> AppliedSeqs:
    """The applied down batches (``down_applied``), inside the caller's transaction."""
    text = db.read_meta(conn, DOWN_APPLIED)
    if not text:
        return AppliedSeqs()
    watermark, above = json.loads(text)
    return AppliedSeqs.from_state(watermark, above)


# --- what people and the hub are told -------------------------------------------------------


async def queue_state(store: Store) -> QueueState:
    """The replication state for the sync page, the API, the status and the metrics."""
    b = db.up_batches
    sealed = sa.select(sa.func.count(), sa.func.min(b.c.seq)).select_from(b)

    def read(conn: sa.Connection) -> QueueState:
        pending, oldest = pending_changes(conn)

        def number(key: str) -> int | None:
            value = db.read_meta(conn, key)
            return int(value) if value else None

        restamp = db.read_meta(conn, LAST_RESTAMP)
        unacked, lowest = conn.execute(sealed).one()
        up_seq = number(UP_SEQ) or 0
        root, records = read_root(conn)
        return QueueState(
            pending=pending,
            oldest_ms=oldest,
            unacked_batches=unacked,
            up_seq=up_seq,
            up_floor=lowest if lowest is not None else up_seq + 1,
            down_watermark=load_applied(conn).watermark,
            last_ack_ms=number(LAST_ACK),
            last_hub_contact_ms=number(LAST_CONTACT),
            last_reject=read_reject(conn),
            last_restamp_ms=int(json.loads(restamp)["at"]) if restamp else None,
            digest_root=root,
            records=records,
            check=read_check(conn),
        )

    return await store.read(read)
