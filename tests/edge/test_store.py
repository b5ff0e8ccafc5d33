"""The store's write path: one transaction per save (or per group of concurrent saves),
records + outbox + clock + audit together, and each save succeeding or failing alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import pytest

from edge.config import EdgeConfig
from edge.records import Edit
from edge.store import Store
from protocol.jsonform import load_change
from protocol.merge import values
from tests.factories import make_household_with_members


@pytest.fixture
async def store(edge_config: EdgeConfig) -> AsyncIterator[Store]:
    box = Store(edge_config)
    await box.open()
    yield box
    await box.close()


def household_edits(seed: int | None = None) -> list[Edit]:
    household, members = make_household_with_members(4, seed=seed)
    edits = [Edit("household", household.pop("id"), household)]
    return edits + [Edit("member", m.pop("id"), m) for m in members]


def rows(config: EdgeConfig, sql: str) -> list[tuple]:
    with sqlite3.connect(config.database_path) as conn:
        return conn.execute(sql).fetchall()


async def test_a_save_writes_records_outbox_clock_and_audit_together(store, edge_config):
    edits = household_edits(seed=1)
    saved = await store.write(edits, actor="operator1", address="10.0.0.5")
    assert [r.id for r in saved] == [e.record_id for e in edits]
    assert rows(edge_config, "SELECT count(*) FROM records") == [(5,)]
    outbox = rows(edge_config, "SELECT record_id, change FROM outbox ORDER BY id")
    assert [r for r, _ in outbox] == [e.record_id for e in edits]
    change = load_change(outbox[0][1])
    assert change.origin == edge_config.node and change.village == edge_config.village
    assert rows(edge_config, "SELECT value FROM meta WHERE key = 'clock'") == [
        (str(store.clock.state),)
    ]
    audit = rows(edge_config, "SELECT actor, action, record_id, address FROM audit ORDER BY id")
    assert audit == [("operator1", "create", e.record_id, "10.0.0.5") for e in edits]


async def test_an_edit_that_changes_nothing_writes_nothing(store, edge_config):
    edits = household_edits(seed=2)
    await store.write(edits, actor="op")
    await store.write(
        [Edit("household", edits[0].record_id, {"rt": edits[0].new_values["rt"]})], actor="op"
    )
    assert rows(edge_config, "SELECT count(*) FROM outbox") == [(5,)]


async def test_concurrent_saves_all_land_and_a_bad_one_fails_alone(store, edge_config):
    batches = [household_edits() for _ in range(30)]
    bad = [Edit("member", batches[0][0].record_id, {"name": "Bukan anggota"})]
    results = await asyncio.gather(
        *(store.write(b, actor="op") for b in batches[:15]),
        store.write(bad, actor="op"),
        *(store.write(b, actor="op") for b in batches[15:]),
        return_exceptions=True,
    )
    assert isinstance(results[15], ValueError)
    assert all(isinstance(r, list) for i, r in enumerate(results) if i != 15)
    assert rows(edge_config, "SELECT count(*) FROM records") == [(150,)]
    assert rows(edge_config, "SELECT count(*) FROM outbox") == [(150,)]
    assert rows(edge_config, "SELECT count(*) FROM audit WHERE action = 'create'") == [(150,)]


async def test_concurrent_edits_of_one_record_both_apply_in_order(store, edge_config):
    edits = household_edits(seed=3)
    household_id = edits[0].record_id
    await store.write(edits, actor="op")
    await asyncio.gather(
        store.write([Edit("household", household_id, {"rt": "011"})], actor="a"),
        store.write([Edit("household", household_id, {"rw": "022"})], actor="b"),
        store.write([Edit("household", household_id, {"rt": "033"})], actor="c"),
    )
    record = await store.get(household_id)
    assert record is not None
    assert (record.get("rt"), record.get("rw")) == ("033", "022")
    assert values(record.state)["rt"] == "033"
    actions = rows(
        edge_config,
        f"SELECT actor, action FROM audit WHERE record_id = '{household_id}' AND action = 'update'",
    )
    assert sorted(actions) == [("a", "update"), ("b", "update"), ("c", "update")]


async def test_the_clock_never_goes_back_after_a_restart(edge_config):
    first = Store(edge_config, clock=lambda: 1_795_478_400_000)
    await first.open()
    await first.write(household_edits(seed=4), actor="op")
    stamp = first.clock.state
    await first.close()
    rebooted = Store(edge_config, clock=lambda: 0)  # no RTC: the box thinks it is 1970
    await rebooted.open()
    saved = await rebooted.write(household_edits(seed=5), actor="op")
    version = saved[0].state["rt"][0]
    assert version.time > stamp
    await rebooted.close()


async def test_two_edits_of_one_record_in_one_save_both_count(store, edge_config):
    edits = household_edits(seed=6)
    await store.write(edits, actor="op")
    household_id = edits[0].record_id
    saved = await store.write(
        [
            Edit("household", household_id, {"rt": "041"}),
            Edit("household", household_id, {"rt": "042"}),
        ],
        actor="op",
    )
    assert saved[-1].get("rt") == "042"
    assert (await store.get(household_id)).get("rt") == "042"
    stamps = rows(edge_config, f"SELECT change FROM outbox WHERE record_id = '{household_id}'")
    times = [load_change(c).fields["rt"].time for (c,) in stamps[-2:]]
    assert times[0] < times[1]


async def test_a_save_cancelled_while_waiting_is_never_written(store, edge_config):
    first = asyncio.ensure_future(store.write(household_edits(seed=7), actor="first"))
    second = asyncio.ensure_future(store.write(household_edits(seed=8), actor="ghost"))
    await asyncio.sleep(0)  # both queued; the first leads the commit
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await store.write(household_edits(seed=9), actor="third")
    actors = {a for (a,) in rows(edge_config, "SELECT DISTINCT actor FROM audit")}
    assert "ghost" not in actors


async def test_ack_bookkeeping_skips_the_fsync_but_every_save_after_it_is_durable(store):
    def synchronous(conn) -> int:
        return conn.exec_driver_sql("PRAGMA synchronous").scalar_one()

    # 1 = NORMAL (no fsync at commit), 2 = FULL.
    assert await store.run_write(synchronous, durable=False) == 1

    def fails(conn) -> None:
        raise RuntimeError("a bug in the bookkeeping")

    with pytest.raises(RuntimeError):
        await store.run_write(fails, durable=False)
    assert await store.run_write(synchronous) == 2
    await store.write(household_edits(seed=10), actor="op")
    assert await store.run_write(synchronous) == 2
