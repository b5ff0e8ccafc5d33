"""The downlink sends a box only the fields of a record it lacks, and never fewer: whatever
the order of writes, fills, acks and restores, every box ends up with every record's whole
state (issue 15; the rules are in hub/downlink.py)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import db
from hub.store import HubStore
from protocol.clock import HybridClock
from protocol.status import Status
from tests.factories import new_id
from tests.hub.boxes import Box, enrol

FIELDS = ("address", "rt", "rw")


def value_of(name: str, number: int) -> str:
    return f"Jl. Nomor {number}" if name == "address" else f"{number % 1000:03d}"


async def hub_states(store: HubStore) -> dict[str, dict]:
    return {
        row["id"]: await store.record_state(row["id"])
        for row in await store.records(Box("x").village, limit=1000)
    }


async def hub_write(store: HubStore, record_id: str, values: dict[str, str]) -> None:
    """A district-side write (a resolution, a decision, an import's update)."""
    async with store.writing() as conn:
        village = Box("x").village
        log_seq = await store.lock_village(conn, village)
        await store.write_hub_values(conn, {record_id: values}, log_seq, store.wall())


async def test_a_box_that_holds_a_record_is_sent_only_the_field_that_changed(hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    ids = [new_id() for _ in range(3)]
    now = hub_store.wall()
    await hub_store.apply(
        a.batch(*(a.edit(i, now, rt="001", rw="002", address="Jl. A") for i in ids)), a.node
    )
    await b.drain(hub_store)
    assert set(b.states) == set(ids)

    await hub_write(hub_store, ids[0], {"address": "Jl. Baru 1"})
    [change] = await b.pull(hub_store, max_changes=50)
    assert (change.record_id, set(change.fields)) == (ids[0], {"address"})
    # A new box is sent its village whole, and by field from then on.
    c = Box("edge-c")
    await enrol(hub_store, c)
    await c.drain(hub_store)
    assert all(set(state) >= set(FIELDS) for state in c.states.values())
    assert c.states == await hub_states(hub_store)
    await hub_write(hub_store, ids[1], {"rt": "009"})
    for box in (b, c):
        [change] = await box.pull(hub_store, max_changes=50)
        assert set(change.fields) == {"rt"}
        assert box.states == await hub_states(hub_store)


async def test_a_record_that_moves_on_past_a_lagging_box_still_reaches_it_whole(hub_store):
    """The pitfall of docs/registry.md §2: the box's cursor passes where a record was after
    the record moved on; the fields written there must still come."""
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    now = hub_store.wall()
    ids = [new_id() for _ in range(4)]
    await hub_store.apply(
        a.batch(*(a.edit(i, now, rt="001", rw="002", address="Jl. A") for i in ids)), a.node
    )
    await b.drain(hub_store)  # b walks by field from here
    await hub_write(hub_store, ids[0], {"address": "Jl. Dua"})  # log_seq 5
    await hub_write(hub_store, ids[1], {"address": "Jl. Tiga"})  # 6
    await b.pull(hub_store, max_changes=1)  # b's cursor at 5
    await hub_write(hub_store, ids[2], {"rw": "004"})  # 7
    await hub_write(hub_store, ids[1], {"rt": "003"})  # record 1 leaves 6 for 8
    await b.pull(hub_store, max_changes=1)  # b's cursor passes 6 (to 7): record 1 is gone
    await b.drain(hub_store)
    assert b.states == await hub_states(hub_store)


@st.composite
def scenarios(draw: st.DrawFn) -> list[tuple]:
    """Steps on three boxes of one village, weighted towards district writes to a few
    records and boxes that fall behind a record at a time (what loses fields when a
    record moves on past a lagging cursor)."""
    kinds = ["hub"] * 4 + ["pull"] * 3 + ["drain", "box", "create", "backup", "restore"]
    steps = [("create", 0, 3), ("drain", 1)]
    for _ in range(draw(st.integers(1, 50))):
        kind = draw(st.sampled_from(kinds))
        box = draw(st.integers(0, 2))
        if kind == "create":
            steps.append(("create", box, draw(st.integers(1, 3))))
        elif kind in ("hub", "box"):
            fields = draw(st.sets(st.sampled_from(FIELDS), min_size=1, max_size=2))
            steps.append((kind, box, draw(st.integers(0, 3)), tuple(sorted(fields))))
        elif kind == "pull":
            steps.append(("pull", box, draw(st.sampled_from([1, 1, 1, 2]))))
        else:
            steps.append((kind, box))
    return steps


async def run(url: str, steps: list[tuple]) -> None:
    engine = db.create_engine(url)
    store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
    try:
        boxes = [Box(f"edge-{name}") for name in "abc"]
        await enrol(store, *boxes)
        backups: dict[str, dict] = {}
        ids: list[str] = []
        for number, step in enumerate(steps):
            box = boxes[step[1]]
            now = store.wall()
            if step[0] == "create":
                made = [new_id() for _ in range(step[2])]
                ids += made
                edits = [
                    box.edit(i, now, **{name: value_of(name, number) for name in FIELDS})
                    for i in made
                ]
                await store.apply(box.batch(*edits), box.node)
            elif step[0] == "hub":
                await hub_write(
                    store,
                    ids[step[2] % len(ids)],
                    {name: value_of(name, number) for name in step[3]},
                )
            elif step[0] == "box":
                record_id = ids[step[2] % len(ids)]
                if record_id in box.states:  # a box edits what it holds
                    newest = max(v.time for f in box.states[record_id].values() for v in f)
                    box.clock = HybridClock(box.node, state=max(newest, box.clock.state))
                    edit = box.edit(record_id, now, **{n: value_of(n, number) for n in step[3]})
                    await store.apply(box.batch(edit), box.node)
            elif step[0] == "pull":
                await box.pull(store, max_changes=step[2])
            elif step[0] == "drain":  # caught up: sent by field from then on
                await box.drain(store)
            elif step[0] == "backup":
                backups[box.node] = dict(box.states)
            else:  # restored from its backup (or wiped): a new epoch, a fresh down stream
                box.states = dict(backups.get(box.node, {}))
                await store.note_status(box.node, Status("online", epoch=f"e{number}"))
        expected = await hub_states(store)
        for box in boxes:
            await box.drain(store)
            # Its own records too: what it wrote it holds, as the hub merged them.
            held = {i: s for i, s in box.states.items() if i in expected}
            assert held == expected, box.node
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hub") / "hub.sqlite"
    db.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=scenarios())
def test_whatever_the_interleaving_every_box_ends_with_every_record_whole(
    template: Path, tmp_path: Path, steps: list[tuple]
) -> None:
    path = tmp_path / f"{new_id()}.sqlite"
    shutil.copy(template, path)
    try:
        asyncio.run(run(f"sqlite+aiosqlite:///{path}", steps))
    finally:
        path.unlink(missing_ok=True)
