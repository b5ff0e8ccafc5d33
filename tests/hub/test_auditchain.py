"""The hub keeps each box's audit chain and checks it: a chain that links up stays "ok"
however its batches arrive; an entry changed on the box, one removed from it, or a chain
restarted below what was sent marks the box broken, on both databases; and the stored
entries cannot be changed or removed at the hub."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from hub import db
from hub.auditchain import check_all, receive
from protocol.auditchain import GENESIS, AuditAck, AuditBatch, AuditEntry, seal
from protocol.codec import decode, encode, frame_version
from tests.hub.boxes import Box, enrol

GRACE_MS = 60_000


def chain(count: int, *, actor: str = "admin", start: int = 1) -> list[AuditEntry]:
    entries, previous = [], GENESIS
    for seq in range(1, start + count):
        entry = seal(
            previous, AuditEntry(seq, 1_000 * seq, actor, "view", "household", None, "{}", "")
        )
        if seq >= start:
            entries.append(entry)
        previous = entry.hash
    return entries


async def send(store, node: str, entries: list[AuditEntry]) -> AuditAck | None:
    return await receive(store, node, AuditBatch(node, tuple(entries)), grace_ms=GRACE_MS)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def test_a_chain_that_links_up_is_ok_however_its_batches_arrive(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    assert (await hub_store.device(box.node)).audit_state is None  # "tidak ada rantai audit"
    entries = chain(10)
    assert await send(hub_store, box.node, entries[5:]) == AuditAck(box.node, 10)
    assert await send(hub_store, box.node, entries[:5]) == AuditAck(box.node, 5)
    assert await send(hub_store, box.node, entries[2:7]) == AuditAck(box.node, 7)  # a resend
    device = await hub_store.device(box.node)
    assert (device.audit_state, device.audit_seq, device.audit_breaks) == ("ok", 10, 0)


async def test_an_entry_changed_on_the_box_before_it_was_sent_breaks_the_chain(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    entries = chain(6)
    entries[3] = dataclasses.replace(entries[3], actor="someone else")
    await send(hub_store, box.node, entries)
    device = await hub_store.device(box.node)
    assert (device.audit_state, device.audit_problem, device.audit_problem_seq) == (
        "broken",
        "break",
        4,
    )
    assert (device.audit_seq, device.audit_breaks) == (6, 1)


async def test_an_entry_removed_on_the_box_is_a_gap_once_its_grace_has_passed(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    clock = Clock(hub_store.wall())
    hub_store.wall = clock
    entries = chain(6)
    await send(hub_store, box.node, entries[:3] + entries[4:])
    await check_all(hub_store, grace_ms=GRACE_MS)
    device = await hub_store.device(box.node)
    assert (device.audit_state, device.audit_seq) == ("ok", 3)  # seq 4 may still come
    clock.now += GRACE_MS
    await check_all(hub_store, grace_ms=GRACE_MS)
    device = await hub_store.device(box.node)
    assert (device.audit_state, device.audit_problem, device.audit_problem_seq) == (
        "broken",
        "gap",
        4,
    )
    assert (device.audit_seq, device.audit_breaks) == (6, 1)


async def test_a_chain_restarted_below_what_was_sent_is_a_fork_and_the_hub_keeps_its_copy(
    hub_store,
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    await send(hub_store, box.node, chain(5))
    # The box's trail wiped (or restored from an older backup): it numbers from 1 again.
    assert await send(hub_store, box.node, chain(2, actor="intruder")) == AuditAck(box.node, 2)
    await send(hub_store, box.node, chain(3, actor="intruder", start=3))  # the same restart
    device = await hub_store.device(box.node)
    assert (device.audit_state, device.audit_problem, device.audit_problem_seq) == (
        "broken",
        "fork",
        1,
    )
    assert device.audit_breaks == 1
    b = db.box_audit
    async with hub_store.engine.connect() as conn:
        actors = (await conn.execute(sa.select(b.c.actor).where(b.c.node == box.node))).all()
    assert {row.actor for row in actors} == {"admin"}


async def test_an_unregistered_box_gets_no_ack_and_stores_nothing(hub_store):
    assert await send(hub_store, "edge-unknown", chain(2)) is None
    async with hub_store.engine.connect() as conn:
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(db.box_audit))
        ).scalar() == 0


@pytest.mark.parametrize("statement", ["UPDATE box_audit SET actor = 'x'", "DELETE FROM box_audit"])
async def test_the_hubs_copy_of_a_box_chain_refuses_update_and_delete(hub_store, statement):
    box = Box("edge-a")
    await enrol(hub_store, box)
    await send(hub_store, box.node, chain(2))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with hub_store.engine.begin() as conn:
            await conn.execute(sa.text(statement))


async def test_version_3_messages_without_hashes_are_stored_and_checked_as_the_box_holds_them(
    hub_store,
):
    """Wire version 3 leaves the hashes out; the hub computes them from ``previous``: the
    same entries, the same verdicts as with the hashes (a ``previous`` other than the hub's
    own hash of the entry before is a break at the first entry, as in version 2)."""
    box = Box("edge-a")
    await enrol(hub_store, box)
    entries = chain(9)

    async def send_3(batch: AuditBatch) -> AuditAck | None:
        frame = encode(batch, version=3)
        assert frame_version(frame) == 3
        received = decode(frame)
        assert isinstance(received, AuditBatch)
        return await receive(hub_store, box.node, received, grace_ms=GRACE_MS)

    assert await send_3(AuditBatch(box.node, tuple(entries[:4]), GENESIS)) == AuditAck(box.node, 4)
    assert await send_3(AuditBatch(box.node, tuple(entries[4:6]), entries[3].hash))
    device = await hub_store.device(box.node)
    assert (device.audit_state, device.audit_seq, bytes(device.audit_hash)) == (
        "ok",
        6,
        entries[5].hash,
    )
    b = db.box_audit
    async with hub_store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(b.c.seq, b.c.hash).where(b.c.node == box.node))).all()
    assert {row.seq: bytes(row.hash) for row in rows} == {e.seq: e.hash for e in entries[:6]}
    # A run that links up, but to another past: its first entry does not follow the hub's.
    other = chain(9, actor="intruder")
    await send_3(AuditBatch(box.node, tuple(other[6:]), other[5].hash))
    device = await hub_store.device(box.node)
    assert (device.audit_state, device.audit_problem, device.audit_problem_seq) == (
        "broken",
        "break",
        7,
    )
    assert (device.audit_seq, device.audit_breaks) == (9, 1)
