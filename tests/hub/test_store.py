"""The hub applies what boxes send exactly once, refuses what it must, keeps conflicts for
people, and hands each box what it lacks (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json

import sqlalchemy as sa

from hub import db, downlink
from hub.devices import revoke_device
from hub.record_rows import record_row
from hub.store import HubStore, Outcome
from protocol.changes import Ack, Batch, Direction
from protocol.codec import decode
from protocol.digest import from_signed
from protocol.errors import Reason
from protocol.merge import merge
from protocol.status import Status
from tests.factories import DEFAULT_VILLAGE, make_household, make_member, new_id
from tests.hub.boxes import Box, enrol

OTHER_VILLAGE = "3201022002"


async def shown(store: HubStore, record_id: str) -> dict:
    rows = await store.records(DEFAULT_VILLAGE)
    return next(row["values"] for row in rows if row["id"] == record_id)


async def test_a_batch_is_applied_once_however_often_it_arrives(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    record = new_id()
    batch = box.batch(box.edit(record, hub_store.wall(), address="Jl. Mawar 1", rt="001"))

    first = await hub_store.apply(batch, "edge-a")
    again = await hub_store.apply(batch, "edge-a")

    assert first.outcome is Outcome.APPLIED and first.ack == Ack("edge-a", 1, 1)
    assert again.outcome is Outcome.DUPLICATE and again.ack == Ack("edge-a", 1, 1)
    assert await shown(hub_store, record) == {"address": "Jl. Mawar 1", "rt": "001"}
    device = await hub_store.device("edge-a")
    assert device.changes_applied == 1  # not counted twice


async def test_batches_arriving_out_of_order_are_all_applied_and_the_watermark_closes(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    now = hub_store.wall()
    one = box.batch(box.edit(new_id(), now, address="satu"))
    two = box.batch(box.edit(new_id(), now, address="dua"))

    late = await hub_store.apply(two, "edge-a")
    assert late.ack == Ack("edge-a", 2, 0)
    device = await hub_store.device("edge-a")
    assert (device.up_watermark, json.loads(device.up_above)) == (0, [2])

    assert (await hub_store.apply(one, "edge-a")).ack == Ack("edge-a", 1, 2)
    assert len(await hub_store.records(DEFAULT_VILLAGE)) == 2


async def test_batches_handled_at_once_are_each_applied_once(hub_store):
    # A hub worker applies up to apply_concurrency batches at once, duplicates racing
    # their originals.
    box = Box("edge-a")
    await enrol(hub_store, box)
    now = hub_store.wall()
    batches = [box.batch(box.edit(new_id(), now, rt=f"{n:03d}")) for n in range(1, 9)]

    results = await asyncio.gather(
        *(hub_store.apply(batch, "edge-a") for batch in [*batches, *reversed(batches)])
    )

    outcomes = [result.outcome for result in results]
    assert outcomes.count(Outcome.APPLIED) == 8 and outcomes.count(Outcome.DUPLICATE) == 8
    device = await hub_store.device("edge-a")
    assert (device.up_watermark, device.changes_applied) == (8, 8)
    assert len(await hub_store.records(DEFAULT_VILLAGE)) == 8


async def test_refused_batches_change_nothing_and_are_counted(hub_store):
    good, revoked = Box("edge-a"), Box("edge-r")
    stranger = Box("edge-x")
    await enrol(hub_store, good, revoked)
    await revoke_device(hub_store.engine, "edge-r", now_ms=hub_store.wall())
    now = hub_store.wall()
    outsider = Box("edge-a", village=OTHER_VILLAGE)  # edge-a's credentials, another village
    cases = [
        (stranger.batch(stranger.edit(new_id(), now, rt="001")), "edge-x", Reason.UNKNOWN_NODE),
        (revoked.batch(revoked.edit(new_id(), now, rt="001")), "edge-r", Reason.REVOKED_NODE),
        (outsider.batch(outsider.edit(new_id(), now, rt="001")), "edge-a", Reason.WRONG_VILLAGE),
        (good.batch(good.edit(new_id(), now, rt="001")), "edge-b", Reason.WRONG_NODE),
        # Versions in another node's name (edge-a impersonating edge-r).
        (
            Batch("edge-a", 90, (revoked.edit(new_id(), now, rt="001"),)),
            "edge-a",
            Reason.INVALID_CHANGE,
        ),
        (
            good.batch(good.edit(new_id(), now + 365 * 86_400_000, rt="001")),
            "edge-a",
            Reason.CLOCK_AHEAD,
        ),
    ]
    for batch, topic_node, reason in cases:
        result = await hub_store.apply(batch, topic_node)
        assert (result.outcome, result.reason) == (Outcome.REJECTED, reason), reason

    assert await hub_store.records(DEFAULT_VILLAGE) == []
    assert await hub_store.records(OTHER_VILLAGE) == []
    device = await hub_store.device("edge-a")
    assert device.rejected == 3 and device.up_watermark == 0
    assert json.loads(device.last_reject)["reason"] == "clock_ahead"


async def test_a_record_of_another_village_cannot_be_overwritten(hub_store):
    here, there = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, here, there)
    record = new_id()
    now = hub_store.wall()
    assert (await hub_store.apply(there.batch(there.edit(record, now, rt="009")), "edge-b")).ack
    # edge-a claims the record for its own village by naming the same id.
    crafted = here.batch(here.edit(record, now, rt="001"))
    result = await hub_store.apply(crafted, "edge-a")
    assert result.reason is Reason.WRONG_VILLAGE
    rows = await hub_store.records(OTHER_VILLAGE)
    assert rows[0]["values"] == {"rt": "009"}


async def test_concurrent_edits_become_one_conflict_that_a_resolution_settles(hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    record = new_id()
    now = hub_store.wall()
    created = a.edit(record, now, address="Jl. Awal")
    await hub_store.apply(a.batch(created), "edge-a")
    b.states[record] = merge(None, created).state  # b received the record, then both edit
    from_a = a.batch(a.edit(record, now + 10, address="Jl. Mawar"))
    from_b = b.batch(b.edit(record, now + 20, address="Jl. Melati"))

    assert (await hub_store.apply(from_a, "edge-a")).conflicts == 0
    assert (await hub_store.apply(from_b, "edge-b")).conflicts == 1
    assert (await hub_store.apply(from_b, "edge-b")).outcome is Outcome.DUPLICATE

    [conflict] = await hub_store.conflicts()
    assert conflict["field"] == "address"
    assert {v["value"] for v in conflict["versions"]} == {"Jl. Mawar", "Jl. Melati"}
    assert await shown(hub_store, record) == {"address": "Jl. Melati"}  # LWW meanwhile

    resolved = await hub_store.resolve(conflict["id"], actor="token:dinsos", value="Jl. Mawar 2")
    assert resolved["resolved_by"] == "token:dinsos"
    assert await hub_store.conflicts() == []
    state = await hub_store.record_state(record)
    assert [(v.value, v.node) for v in state["address"]] == [("Jl. Mawar 2", "hub-1")]


async def test_each_box_gets_what_it_lacks_and_a_new_box_gets_its_whole_village(hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    now = hub_store.wall()
    ids = [new_id() for _ in range(7)]
    await hub_store.apply(a.batch(*(a.edit(i, now, rt="001") for i in ids[:5])), "edge-a")
    await hub_store.apply(b.batch(*(b.edit(i, now, rt="002") for i in ids[5:])), "edge-b")

    async def pull(node: str) -> list[Batch]:
        made = await downlink.fill(hub_store, node, window=10, max_changes=2, max_bytes=65536)
        # Only what was never sent: nothing is old enough to be sent again yet.
        due = await downlink.due(hub_store, older_than_ms=hub_store.wall() - 60_000, node=node)
        assert len(due) == made
        return [decode(batch.payload) for batch in due]

    to_a = await pull("edge-a")
    assert sorted(c.record_id for batch in to_a for c in batch.changes) == sorted(ids[5:])
    assert [batch.seq for batch in to_a] == [1]  # b's two records, one batch of 2
    to_b = await pull("edge-b")
    assert sorted(c.record_id for batch in to_b for c in batch.changes) == sorted(ids[:5])
    assert [batch.seq for batch in to_b] == [1, 2, 3]
    assert await pull("edge-b") == []  # nothing new until acked or changed

    # A replacement box (a new node id) receives the whole village, resumably.
    fresh = Box("edge-c")
    await enrol(hub_store, fresh)
    first = await downlink.fill(hub_store, "edge-c", window=2, max_changes=3, max_bytes=65536)
    assert first == 2
    got = await downlink.due(hub_store, older_than_ms=hub_store.wall(), node="edge-c")
    await hub_store.note_down_ack(Ack("edge-c", 2, 2, Direction.DOWN))
    assert await downlink.fill(hub_store, "edge-c", window=2, max_changes=3, max_bytes=65536) == 1
    got += await downlink.due(hub_store, older_than_ms=hub_store.wall(), node="edge-c")
    assert [batch.seq for batch in got] == [1, 2, 3]
    records = {c.record_id for batch in got for c in decode(batch.payload).changes}
    assert records == set(ids)


async def test_a_box_restored_from_a_backup_gets_its_village_again_its_own_records_too(hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    now = hub_store.wall()
    mine, theirs = new_id(), new_id()
    await hub_store.apply(a.batch(a.edit(mine, now, rt="001")), "edge-a")
    await hub_store.apply(b.batch(b.edit(theirs, now, rt="002")), "edge-b")

    async def pull() -> set[str]:
        await downlink.fill(hub_store, "edge-a", window=10, max_changes=100, max_bytes=65536)
        due = await downlink.due(hub_store, older_than_ms=hub_store.wall() - 60_000, node="edge-a")
        return {c.record_id for batch in due for c in decode(batch.payload).changes}

    assert await pull() == {theirs}  # its own record it has
    await hub_store.note_down_ack(Ack("edge-a", 1, 1, Direction.DOWN))
    # A status that raced past a down-ack (it reports less than the hub saw acked) is no
    # restore: nothing is sent again.
    await hub_store.note_status("edge-a", Status("online", down_watermark=0))
    assert await pull() == set()
    # Restored from a backup: a new epoch, a fresh down stream from 1, its own record too.
    await hub_store.note_status("edge-a", Status("online", epoch="e1"))
    again = await pull()
    assert again == {mine, theirs}
    device = await hub_store.device("edge-a")
    assert (device.down_seq, device.down_watermark) == (1, 0)
    await hub_store.note_status("edge-a", Status("online", epoch="e1"))  # the same epoch
    assert await pull() == set()


async def test_seqs_a_box_will_never_send_stop_holding_the_watermark_back(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    now = hub_store.wall()
    box.seq = 3  # batches 1-3 were lost with the box's old SD card
    for _ in range(2):
        await hub_store.apply(box.batch(box.edit(new_id(), now, rt="001")), "edge-a")
    device = await hub_store.device("edge-a")
    assert (device.up_watermark, json.loads(device.up_above)) == (0, [4, 5])

    answer = await hub_store.note_status("edge-a", Status("online", up_seq=5, up_floor=6))
    assert answer == Ack("edge-a", 5, 5)
    device = await hub_store.device("edge-a")
    assert (device.up_watermark, json.loads(device.up_above)) == (5, [])


async def test_records_a_batch_creates_get_the_rows_and_digest_the_merge_gives(hub_store):
    # Most of a box's backlog is records the hub does not hold yet: their rows are made
    # from their values before the write lock is taken (HubStore.prepare), not merged one
    # by one. Whatever a batch mixes, every row, the village's digest, record count and
    # log_seq come out as the merge makes them (record_row of the merged state).
    box, other = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, box, other)
    now = hub_store.wall()
    known = new_id()
    await hub_store.apply(other.batch(other.edit(known, now, address="lama")), "edge-b")
    household = make_household(village_code=DEFAULT_VILLAGE)
    household_id = household.pop("id")
    member = make_member(household_id)
    member_id = member.pop("id")
    twice, gone = new_id(), new_id()
    changes = [
        box.edit(household_id, now, entity="household", **household),
        box.edit(member_id, now, entity="member", **member),
        box.edit(twice, now, address="satu"),
        box.edit(twice, now, address="dua", rt="002"),  # seen the first: merged
        box.edit(known, now, address="baru"),  # the hub holds it: merged, a conflict
        box.edit(gone, now, address="salah", deleted=True),
    ]
    result = await hub_store.apply(box.batch(*changes), "edge-a")
    assert result.outcome is Outcome.APPLIED and result.conflicts == 1

    states: dict[str, dict] = {}
    for change in changes:
        states[change.record_id] = merge(states.get(change.record_id), change).state
    r, v = db.records, db.villages
    async with hub_store.engine.connect() as conn:
        rows = {row.id: row for row in await conn.execute(sa.select(r))}
        head = (await conn.execute(sa.select(v).where(v.c.code == DEFAULT_VILLAGE))).one()
    for record_id in (household_id, member_id, twice, gone):
        full, _ = record_row(
            rows[record_id].entity, record_id, DEFAULT_VILLAGE, states[record_id],
            log_seq=rows[record_id].log_seq, now=rows[record_id].updated_ms, pending=True,
        )  # fmt: skip
        assert {name: getattr(rows[record_id], name) for name in full} == full, record_id
    assert rows[gone].deleted and rows[member_id].nik == member["nik"]
    state = await hub_store.record_state(known)
    assert {version.value for version in state["address"]} == {"lama", "baru"}
    # The first batch numbered the known record 1; this one numbers its five records 2 to 6.
    assert sorted(row.log_seq for row in rows.values()) == list(range(2, 7))
    assert head.log_seq == 6 and head.records == 5
    root = 0
    for row in rows.values():
        root ^= from_signed(row.digest)
    assert from_signed(head.digest) == root
