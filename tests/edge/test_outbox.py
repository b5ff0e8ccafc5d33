"""The box's replication state in SQLite, without a broker: saves sealed into numbered
batches, retired on the hub's ack, refusals kept, down batches applied once, and changes
stamped by a wrong clock re-stamped once the clock is right."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from edge import outbox
from edge.config import EdgeConfig
from edge.downlink import apply_remote
from edge.records import Edit, stored_state
from edge.restamp import restamp_if_due
from edge.store import Store
from protocol.changes import Ack, Batch, Change, Direction, FieldVersion, Reject, Value
from protocol.clock import COUNTER_BITS, pack
from protocol.codec import decode
from protocol.jsonform import load_change
from tests.factories import DEFAULT_VILLAGE, make_household_with_members, new_id

#: A fixed "now" for the tests (February 2026).
REAL_MS = 1_770_000_000_000
BIG = {"max_changes": 500, "max_bytes": 65536}


@dataclass
class Wall:
    """A wall clock the test sets."""

    ms: int = REAL_MS

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
async def store(edge_config: EdgeConfig, wall: Wall) -> AsyncIterator[Store]:
    box = Store(edge_config, clock=wall)
    await box.open()
    yield box
    await box.close()


def household_edits(seed: int) -> list[Edit]:
    household, members = make_household_with_members(4, seed=seed)
    edits = [Edit("household", household.pop("id"), household)]
    return edits + [Edit("member", m.pop("id"), m) for m in members]


def rows(config: EdgeConfig, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(config.database_path) as conn:
        return conn.execute(sql, params).fetchall()


def stored_batches(config: EdgeConfig) -> dict[int, Batch]:
    found = {}
    for seq, payload in rows(config, "SELECT seq, payload FROM up_batches ORDER BY seq"):
        batch = decode(payload)
        assert isinstance(batch, Batch) and batch.seq == seq
        found[seq] = batch
    return found


def hub_change(record_id: str, fields: dict[str, Value], time: int, node: str = "hub-1") -> Change:
    versions = {name: FieldVersion(value, time, node, ()) for name, value in fields.items()}
    return Change("household", record_id, DEFAULT_VILLAGE, node, versions)


# --- up: sealing, acks, refusals ------------------------------------------------------------


async def test_saves_are_sealed_once_into_numbered_batches_and_still_count_as_waiting(
    store, edge_config, wall
):
    edits = household_edits(seed=1)
    await store.write(edits, actor="operator1")
    assert await store.outbox_pending() == (5, REAL_MS)

    assert await outbox.seal(store, **BIG, max_batches=8) == 1
    assert rows(edge_config, "SELECT count(*) FROM outbox") == [(0,)]
    assert rows(edge_config, "SELECT seq, changes, oldest_ms, sent_ms FROM up_batches") == [
        (1, 5, REAL_MS, None)
    ]
    batch = stored_batches(edge_config)[1]
    assert batch.node == edge_config.node and batch.direction is Direction.UP
    assert [c.record_id for c in batch.changes] == [e.record_id for e in edits]
    # Sealed is not delivered: people still see the changes waiting.
    assert await store.outbox_pending() == (5, REAL_MS)

    wall.ms += 1000
    await store.write(household_edits(seed=2), actor="operator1")
    assert await outbox.seal(store, **BIG, max_batches=8) == 1
    assert sorted(stored_batches(edge_config)) == [1, 2]
    assert await outbox.seal(store, **BIG, max_batches=8) == 0
    state = await outbox.queue_state(store)
    assert (state.pending, state.unacked_batches, state.up_seq) == (10, 2, 2)


async def test_a_backlog_is_sealed_within_the_budget_and_only_whole_rows_leave_the_outbox(
    store, edge_config
):
    for seed in range(10):
        await store.write(household_edits(seed=seed), actor="operator1")
    assert await outbox.seal(store, max_changes=4, max_bytes=65536, max_batches=3) == 3
    assert await outbox.unacked(store) == [1, 2, 3]
    assert [b.changes for b in await outbox.stored(store, [1, 2, 3])] == [4, 4, 4]
    assert rows(edge_config, "SELECT count(*) FROM outbox") == [(38,)]
    assert (await store.outbox_pending())[0] == 50

    # Batches so small that one household row needs several of them: a row is sealed
    # whole or not at all, whatever the budget.
    assert await outbox.seal(store, max_changes=500, max_bytes=300, max_batches=2) >= 2
    sealed_fields: dict[str, set[str]] = {}
    for batch in stored_batches(edge_config).values():
        for change in batch.changes:
            sealed_fields.setdefault(change.record_id, set()).update(change.fields)
    waiting = {
        load_change(text).record_id for (text,) in rows(edge_config, "SELECT change FROM outbox")
    }
    for record_id, fields in sealed_fields.items():
        assert record_id not in waiting
        ((state, data),) = rows(
            edge_config, "SELECT state, data FROM records WHERE id = ?", record_id
        )
        assert fields == set(stored_state(state, data))
    assert (await store.outbox_pending())[0] >= 50


async def test_the_hubs_ack_retires_its_batch_and_everything_under_its_watermark(
    store, edge_config, wall
):
    for seed in range(3):
        await store.write(household_edits(seed=seed), actor="operator1")
        await outbox.seal(store, **BIG, max_batches=8)
    node = edge_config.node

    wall.ms += 5000
    assert await outbox.retire(store, Ack(node, 2, 0), wall.ms) == 1
    assert sorted(stored_batches(edge_config)) == [1, 3]
    assert await outbox.retire(store, Ack(node, 3, 3), wall.ms) == 2
    assert await store.outbox_pending() == (0, None)
    state = await outbox.queue_state(store)
    assert (state.last_ack_ms, state.last_hub_contact_ms) == (wall.ms, wall.ms)

    # The hub has applied up to 9: this box was restored from an older backup. Its next
    # batch must not reuse a number the hub has applied.
    assert await outbox.retire(store, Ack(node, 9, 9), wall.ms) == 0
    await store.write(household_edits(seed=7), actor="operator1")
    await outbox.seal(store, **BIG, max_batches=8)
    assert sorted(stored_batches(edge_config)) == [10]


async def test_a_refusal_is_kept_with_its_batch_until_that_batch_is_acked(store, edge_config, wall):
    node = edge_config.node
    await store.write(household_edits(seed=1), actor="operator1")
    await outbox.seal(store, **BIG, max_batches=8)
    refusal = Reject(node, 1, "clock_ahead", "stamp is 3600000 ms ahead")
    assert await outbox.record_reject(store, refusal, wall.ms)
    state = await outbox.queue_state(store)
    assert state.last_reject == outbox.LastReject(1, "clock_ahead", refusal.detail, wall.ms)
    assert state.unacked_batches == 1 and state.pending == 5
    # A refusal of a batch that is not waiting any more is stale.
    assert not await outbox.record_reject(store, Reject(node, 7, "malformed", ""), wall.ms)

    await outbox.retire(store, Ack(node, 1, 1), wall.ms)
    state = await outbox.queue_state(store)
    assert state.last_reject is None and state.pending == 0


# --- down -----------------------------------------------------------------------------------


async def test_a_down_batch_is_merged_once_without_outbox_rows_and_moves_a_1970_clock(
    store, edge_config, wall
):
    wall.ms = 1000  # no RTC: booted in 1970
    node = edge_config.node
    record_id = new_id()
    stamp = pack(REAL_MS, 0)
    change = hub_change(record_id, {"address": "Kp. Sukamaju", "rt": "001", "rw": "002"}, stamp)
    applied = await apply_remote(store, Batch(node, 1, (change,), Direction.DOWN))
    assert (applied.fresh, applied.watermark, applied.records) == (True, 1, 1)

    record = await store.get(record_id)
    assert record is not None and record.get("address") == "Kp. Sukamaju"
    assert await store.outbox_pending() == (0, None)
    assert rows(edge_config, "SELECT actor, action, record_id FROM audit") == [
        ("hub-1", "sync", record_id)
    ]
    # The hub is the time reference: this box's next stamp comes after what it received.
    assert store.clock.state >= stamp
    assert rows(edge_config, "SELECT value FROM meta WHERE key = 'clock'") == [
        (str(store.clock.state),)
    ]
    await store.write([Edit("household", record_id, {"address": "Kp. Sukamaju 2"})], actor="op")
    (text,) = rows(edge_config, "SELECT change FROM outbox")[0]
    assert load_change(text).fields["address"].time > stamp

    # The same seq again (whatever it carries) changes nothing and is acked again.
    other = hub_change(record_id, {"address": "Jl. Lain"}, stamp + 10)
    again = await apply_remote(store, Batch(node, 1, (other,), Direction.DOWN))
    assert (again.fresh, again.watermark) == (False, 1)
    assert (await store.get(record_id)).get("address") == "Kp. Sukamaju 2"
    later = hub_change(record_id, {"rt": "009"}, stamp + 20)
    assert (await apply_remote(store, Batch(node, 3, (later,), Direction.DOWN))).watermark == 1
    assert (await apply_remote(store, Batch(node, 2, (), Direction.DOWN))).watermark == 3
    assert (await outbox.queue_state(store)).down_watermark == 3


async def test_a_concurrent_edit_from_the_hub_shows_as_a_conflict(store, edge_config):
    edits = household_edits(seed=4)
    await store.write(edits, actor="operator1")
    household = edits[0].record_id
    # A version the box never saw, written after the box's: it wins, and both are kept.
    change = hub_change(household, {"address": "Versi kabupaten"}, store.clock.state + 1)
    await apply_remote(store, Batch(edge_config.node, 1, (change,), Direction.DOWN))
    record = await store.get(household)
    assert record.get("address") == "Versi kabupaten" and record.conflicts == 1


# --- clock wrong ----------------------------------------------------------------------------


def own_times(change: Change, node: str) -> list[int]:
    return [v.time for v in change.fields.values() if v.node == node]


@pytest.mark.parametrize("version", [1, 2])
async def test_changes_stamped_by_a_clock_running_ahead_are_restamped_once_it_is_right(
    store, edge_config, wall, version
):
    node = edge_config.node
    hub_stamp = pack(REAL_MS - 10_000, 0)
    hub_record = new_id()
    await apply_remote(
        store,
        Batch(
            node,
            1,
            (hub_change(hub_record, {"address": "Dari kabupaten"}, hub_stamp),),
            Direction.DOWN,
        ),
    )
    wall.ms = REAL_MS + 3_600_000  # an hour ahead
    first = household_edits(seed=1)
    await store.write(first, actor="operator1")
    await store.write([Edit("household", first[0].record_id, {"rt": "007"})], actor="operator1")
    await outbox.seal(store, **BIG, max_batches=8, version=version)
    second = household_edits(seed=2)
    await store.write(second, actor="operator1")  # still in the outbox
    await outbox.record_reject(store, Reject(node, 1, "clock_ahead", "an hour ahead"), wall.ms)
    before = stored_batches(edge_config)[1]
    old_order = [t for c in before.changes for t in own_times(c, node)]

    # The clock is still wrong: nothing to do yet.
    assert await restamp_if_due(store) is None

    wall.ms = REAL_MS + 60_000  # corrected (NTP, or the operator)
    result = await restamp_if_due(store)
    assert result is not None and (result.batches, result.outbox_rows) == (1, 5)
    assert result.stamps == 11  # 5 + 1 edits in the batch, 5 in the outbox

    limit = pack(wall.ms + 1, 0)
    after = stored_batches(edge_config)[1]  # same seq, new content, still valid on the wire
    # ...in the wire version it was sealed in.
    payloads = rows(edge_config, "SELECT payload FROM up_batches")
    assert [bytes(payload)[1] for (payload,) in payloads] == [version]
    new_order = [t for c in after.changes for t in own_times(c, node)]
    assert all(t < limit for t in new_order)
    # In their original order: old stamps and new stamps sort the versions alike.
    assert old_order == sorted(old_order) and new_order == sorted(new_order)
    assert len(set(new_order)) == len(set(old_order))
    assert [c.record_id for c in after.changes] == [c.record_id for c in before.changes]
    # The update had seen the creation: it still has, under the creation's new stamp.
    update = after.changes[-1]
    creation = after.changes[0]
    assert dict(update.fields["rt"].seen)[node] == creation.fields["rt"].time
    queued = [load_change(t) for (t,) in rows(edge_config, "SELECT change FROM outbox ORDER BY id")]
    assert all(t < limit for c in queued for t in own_times(c, node))
    assert min(t for c in queued for t in own_times(c, node)) > max(new_order)
    # Records carry the new stamps and the same values; the hub's version is untouched.
    for edit in first[1:] + second:
        record = await store.get(edit.record_id)
        assert all(v.time < limit for f in record.state.values() for v in f)
        assert all(record.get(k) == v for k, v in edit.new_values.items())
    assert (await store.get(first[0].record_id)).get("rt") == "007"
    assert (await store.get(hub_record)).state["address"][0].time == hub_stamp
    assert all(t > hub_stamp for t in new_order)
    # The clock is back with the wall clock; the refusal is dealt with.
    assert store.clock.ahead_ms(wall.ms) == 0
    assert rows(edge_config, "SELECT value FROM meta WHERE key = 'clock'") == [
        (str(store.clock.state),)
    ]
    state = await outbox.queue_state(store)
    assert state.last_reject is None and state.last_restamp_ms == wall.ms
    assert state.pending == 11 and state.unacked_batches == 1
    assert await restamp_if_due(store) is None
    await store.write(household_edits(seed=3), actor="operator1")
    newest = load_change(rows(edge_config, "SELECT change FROM outbox ORDER BY id DESC")[0][0])
    assert min(own_times(newest, node)) > max(own_times(queued[-1], node))
    assert max(own_times(newest, node)) >> COUNTER_BITS <= wall.ms
