"""The hub's side of the boxes' audit chains (``protocol/auditchain.py``): store what a box
sends, check that it links up, and mark the box when it does not.

:func:`receive` stores an :class:`~protocol.auditchain.AuditBatch` in ``box_audit``
(append-only; idempotent by ``(node, seq)``) and answers with the ack the box resumes
after. :func:`check` walks each box's chain from its verified head (``devices.audit_seq``
and ``audit_hash``) over the entries that arrived, and records a *problem* (counted in
``audit_breaks``, the last one kept, the box marked ``broken``) when:

- ``break``: an entry's hash is not ``SHA-256(previous hash || its content)``: it, or the
  one before it, was changed on the box before it was sent;
- ``gap``: a seq is missing while later ones have waited ``audit_gap_grace_s`` (a row was
  removed before it was sent; the grace lets a batch resent out of order arrive first);
- ``fork``: a seq the hub holds arrives again with another hash: the box's chain restarted
  below what it had sent (a restore from an older backup, a wiped or rewritten trail).
  The hub keeps its copy: what was sent before cannot be erased from the box.

A broken chain stays marked: it is evidence for a person to look into (see
``monitoring/RUNBOOK.md``, "PuskesosBoxAuditChainBroken").
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import db
from hub.store import HubStore
from protocol.auditchain import GENESIS, AuditAck, AuditBatch, AuditEntry, follow

__all__ = ["check", "check_all", "receive"]

log = logging.getLogger("puskesos.hub.auditchain")

#: Entries read at a time while walking a chain.
_PAGE = 1000


async def receive(
    store: HubStore, node: str, batch: AuditBatch, *, grace_ms: int
) -> AuditAck | None:
    """Store ``batch`` of ``node``'s chain and check the chain, in one transaction; the ack
    to send (``None`` for a box that is not an active registered one)."""
    d, b = db.devices, db.box_audit
    seqs = [entry.seq for entry in batch.entries]
    now = store.wall()
    async with store.writing() as conn:
        device = (
            await conn.execute(sa.select(d).where(d.c.node == node).with_for_update())
        ).first()
        if device is None or device.status != "active":
            return None
        query = sa.select(b.c.seq, b.c.hash).where(b.c.node == node, b.c.seq.in_(seqs))
        held = {row.seq: bytes(row.hash) for row in await conn.execute(query)}
        fresh = [e for e in batch.entries if e.seq not in held]
        forked = [e.seq for e in batch.entries if e.seq in held and held[e.seq] != e.hash]
        if fresh:
            await conn.execute(b.insert(), [_row(node, e, now) for e in fresh])
        values: dict[str, Any] = {}
        if device.audit_state is None:
            values["audit_state"] = "ok"
        # The later batches of one restart fork again at higher seqs: counted once.
        if forked and not (device.audit_problem == "fork" and device.audit_problem_seq < forked[0]):
            log.warning("the audit chain of %s restarted: seq %s came again", node, forked[0])
            values.update(_problem(device, values, "fork", forked[0], now))
        if values:
            await conn.execute(d.update().where(d.c.node == node).values(values))
        await _walk(conn, node, now, grace_ms)
    return AuditAck(node, seqs[-1])


async def check_all(store: HubStore, *, grace_ms: int) -> None:
    """:func:`check` every box whose chain has entries beyond its verified head (the sweep:
    a gap is found once its grace has passed, even when the box sends nothing more)."""
    d, b = db.devices, db.box_audit
    waiting = sa.select(d.c.node).where(
        sa.exists().where(b.c.node == d.c.node, b.c.seq > d.c.audit_seq)
    )
    async with store.engine.connect() as conn:
        nodes = [row.node for row in await conn.execute(waiting)]
    for node in nodes:
        await check(store, node, grace_ms=grace_ms)


async def check(store: HubStore, node: str, *, grace_ms: int) -> None:
    """Walk ``node``'s chain from its verified head over what has arrived."""
    d = db.devices
    async with store.writing() as conn:
        locked = sa.select(d.c.node).where(d.c.node == node).with_for_update()
        if (await conn.execute(locked)).first() is not None:
            await _walk(conn, node, store.wall(), grace_ms)


async def _walk(conn: AsyncConnection, node: str, now: int, grace_ms: int) -> None:
    d, b = db.devices, db.box_audit
    device = (await conn.execute(sa.select(d).where(d.c.node == node))).one()
    seq, previous = device.audit_seq, bytes(device.audit_hash or GENESIS)
    values: dict[str, Any] = {}
    while True:
        start = seq
        rows = (
            await conn.execute(
                sa.select(b).where(b.c.node == node, b.c.seq > seq).order_by(b.c.seq).limit(_PAGE)
            )
        ).all()
        if not rows:
            break
        if rows[0].seq != seq + 1:
            if now - min(row.received_ms for row in rows) < grace_ms:
                break  # what is missing may still come
            log.warning("the audit chain of %s lacks seq %s", node, seq + 1)
            values.update(_problem(device, values, "gap", seq + 1, now))
            # Nothing links the first entry after the gap: take it as it is.
            seq, previous = rows[0].seq, bytes(rows[0].hash)
            rows = rows[1:]
        run = []
        for row in rows:
            if row.seq != seq + 1 + len(run):
                break
            run.append(_entry(row))
        seq, previous, breaks = follow(seq, previous, run)
        for broken in breaks:
            log.warning("the audit chain of %s breaks at seq %s", node, broken)
            values.update(_problem(device, values, "break", broken, now))
        if seq == start:
            break
    if seq != device.audit_seq:
        values.update(audit_seq=seq, audit_hash=previous)
    if values:
        await conn.execute(d.update().where(d.c.node == node).values(values))


def _problem(device: Any, pending: dict[str, Any], kind: str, seq: int, now: int) -> dict[str, Any]:
    breaks = pending.get("audit_breaks", device.audit_breaks)
    return {
        "audit_state": "broken",
        "audit_breaks": breaks + 1,
        "audit_problem": kind,
        "audit_problem_seq": seq,
        "audit_problem_ms": now,
    }


def _row(node: str, entry: AuditEntry, now: int) -> dict[str, Any]:
    return asdict(entry) | {"node": node, "received_ms": now}


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        row.seq,
        row.at_ms,
        row.actor,
        row.action,
        row.entity,
        row.record_id,
        row.detail,
        row.address,
        bytes(row.hash),
    )
