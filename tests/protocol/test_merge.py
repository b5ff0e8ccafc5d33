"""Merge: replicas converge whatever the delivery, and conflicts are exactly the concurrent,
different writes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.changes import Change, FieldVersion
from protocol.clock import Timestamp
from protocol.merge import (
    Frontier,
    is_deleted,
    join,
    local_change,
    merge,
    open_conflicts,
    values,
)
from tests.protocol.simulation import FIELDS, RECORDS, VILLAGE, World

REC = RECORDS[0]


def version(value: object, time: int, node: str, seen: tuple[tuple[str, int], ...] = ()):
    return FieldVersion(value, time, node, seen)  # type: ignore[arg-type]


def change(node: str, **fields: FieldVersion) -> Change:
    return Change("household", REC, VILLAGE, node, fields)


# --- small stories -------------------------------------------------------------------------


def test_sequential_edit_from_another_node_is_not_a_conflict():
    first = merge(None, change("box-a", name=version("Siti", 10, "box-a")))
    seen = (("box-a", 10),)
    second = merge(first.state, change("box-b", name=version("Siti A.", 20, "box-b", seen)))
    assert values(second.state) == {"name": "Siti A."}
    assert second.conflicts == ()
    assert open_conflicts(second.state) == ()


def test_concurrent_different_values_conflict_and_the_later_stamp_is_shown():
    base = merge(None, change("box-a", name=version("Siti", 10, "box-a"))).state
    seen = (("box-a", 10),)
    a = change("box-a", name=version("Siti Aminah", 20, "box-a", seen))
    b = change("box-b", name=version("Siti Rahayu", 25, "box-b", seen))
    one = merge(merge(base, a).state, b)
    other = merge(merge(base, b).state, a)
    assert one.state == other.state
    assert values(one.state)["name"] == "Siti Rahayu"
    assert [c.field for c in one.conflicts] == ["name"]
    assert [c.field for c in other.conflicts] == ["name"]
    assert {v.value for v in one.conflicts[0].versions} == {"Siti Aminah", "Siti Rahayu"}


def test_concurrent_equal_values_are_not_a_conflict():
    a = change("box-a", rt=version("003", 20, "box-a"))
    b = change("box-b", rt=version("003", 25, "box-b"))
    result = merge(merge(None, a).state, b)
    assert result.conflicts == ()
    assert open_conflicts(result.state) == ()


def test_duplicate_delivery_changes_nothing_and_reports_nothing():
    a = change("box-a", name=version("Siti", 20, "box-a"))
    b = change("box-b", name=version("Sri", 25, "box-b"))
    state = merge(merge(None, a).state, b).state
    again = merge(state, b)
    assert again.state == state
    assert again.changed == ()
    assert again.conflicts == ()


def test_out_of_order_writes_of_one_node_are_never_a_conflict():
    """ODK's pitfall: a late older update must not look like a concurrent edit."""
    older = change("box-a", name=version("Siti", 10, "box-a"))
    newer = change("box-a", name=version("Siti Aminah", 20, "box-a", (("box-a", 10),)))
    result = merge(merge(None, newer).state, older)
    assert values(result.state)["name"] == "Siti Aminah"
    assert result.conflicts == ()
    assert open_conflicts(result.state) == ()


def test_a_write_that_saw_the_conflict_resolves_it_everywhere():
    a = change("box-a", name=version("Siti Aminah", 20, "box-a"))
    b = change("box-b", name=version("Siti Rahayu", 25, "box-b"))
    state = merge(merge(None, a).state, b).state
    assert [c.field for c in open_conflicts(state)] == ["name"]
    resolution = local_change(
        state,
        entity="household",
        record_id=REC,
        village=VILLAGE,
        stamp=Timestamp(30, "hub-1"),
        new_values={"name": "Siti Aminah"},
    )
    assert resolution is not None
    resolved = merge(state, resolution).state
    assert values(resolved)["name"] == "Siti Aminah"
    assert open_conflicts(resolved) == ()
    # A replica that only ever saw box-b's write also ends with the resolution, no conflict.
    elsewhere = merge(merge(None, b).state, resolution).state
    assert elsewhere == resolved


def test_tombstone_replicates_like_any_field():
    created = merge(None, change("box-a", name=version("Siti", 10, "box-a"))).state
    withdrawn = merge(created, change("box-a", deleted=version(True, 20, "box-a"))).state
    assert is_deleted(withdrawn)
    assert values(withdrawn)["name"] == "Siti"


def test_local_change_skips_unchanged_fields_and_stamps_what_it_saw():
    state = merge(None, change("box-a", name=version("Siti", 10, "box-a"))).state
    assert (
        local_change(
            state,
            entity="household",
            record_id=REC,
            village=VILLAGE,
            stamp=Timestamp(20, "box-b"),
            new_values={"name": "Siti", "rt": None},
        )
        is None
    )
    edit = local_change(
        state,
        entity="household",
        record_id=REC,
        village=VILLAGE,
        stamp=Timestamp(20, "box-b"),
        new_values={"name": "Siti A.", "rt": "004"},
    )
    assert edit is not None
    assert edit.fields["name"].seen == (("box-a", 10),)
    assert edit.fields["rt"].seen == ()


# --- properties over simulated histories ---------------------------------------------------

values_st = st.sampled_from(["a", "b", "c"])
op_st = st.one_of(
    st.tuples(
        st.just("write"),
        st.integers(0, 4),
        st.integers(0, len(RECORDS) - 1),
        st.dictionaries(st.sampled_from(FIELDS), values_st, min_size=1, max_size=3),
        st.integers(0, 1500),
    ),
    st.tuples(
        st.just("gossip"),
        st.integers(0, 4),
        st.integers(0, 4),
        st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
    ),
)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    count = draw(st.integers(2, 5))
    offsets = draw(st.lists(st.integers(-60_000, 60_000), min_size=count, max_size=count))
    world = World.start(count, offsets)
    for op in draw(st.lists(op_st, min_size=1, max_size=30)):
        if op[0] == "write":
            _, writer, record, fields, tick = op
            world.write(writer % count, record, fields, tick)
        else:
            _, sender, receiver, picks = op
            world.gossip(sender % count, receiver % count, picks)
    return world


def rebatch(world: World, rng: random.Random) -> list[Change]:
    """Every version, shuffled, some duplicated, regrouped into random changes."""
    atoms = [(c.record_id, name, v) for c in world.changes for name, v in c.fields.items()]
    atoms += rng.sample(atoms, k=rng.randint(0, len(atoms)))
    rng.shuffle(atoms)
    changes: list[Change] = []
    pending: dict[str, dict[str, FieldVersion]] = {}
    for record, name, v in atoms:
        fields = pending.setdefault(record, {})
        if fields and (name in fields or rng.random() < 0.3):
            changes.append(Change("household", record, VILLAGE, "relay", fields))
            fields = pending[record] = {}
        fields[name] = v
    changes += [Change("household", r, VILLAGE, "relay", f) for r, f in pending.items() if f]
    return changes


def replay(changes: list[Change]) -> tuple[dict[str, dict[str, Frontier]], list]:
    replica: dict[str, dict[str, Frontier]] = {}
    reported = []
    for c in changes:
        result = merge(replica.get(c.record_id), c)
        replica[c.record_id] = result.state
        reported.extend((c.record_id, conflict) for conflict in result.conflicts)
    return replica, reported


@settings(max_examples=300)
@given(world=worlds(), seeds=st.lists(st.integers(0, 2**32), min_size=2, max_size=4))
def test_every_delivery_order_converges_to_the_true_frontier(world: World, seeds: list[int]):
    in_order, _ = replay(world.changes)
    for seed in seeds:
        shuffled, reported = replay(rebatch(world, random.Random(seed)))
        assert shuffled == in_order
        # Every conflict reported along the way is between truly concurrent, different writes.
        for record, conflict in reported:
            keys = [(record, conflict.field, v.time, v.node) for v in conflict.versions]
            for i, a in enumerate(keys):
                for b in keys[i + 1 :]:
                    assert world.concurrent(a, b)
            assert len({repr(v.value) for v in conflict.versions}) > 1

    for record, state in in_order.items():
        for name, frontier in state.items():
            truth = world.true_frontier(record, name)
            assert {(record, name, v.time, v.node) for v in frontier} == truth
            winner = max(truth, key=lambda k: (k[2], k[3]))
            assert values(state)[name] == world.versions[winner].value
        open_fields = {c.field for c in open_conflicts(state)}
        expected = {
            name
            for name in state
            if len({repr(world.versions[k].value) for k in world.true_frontier(record, name)}) > 1
        }
        assert open_fields == expected


@settings(max_examples=200)
@given(world=worlds(), seed=st.integers(0, 2**32))
def test_every_node_ends_with_the_same_state_after_full_exchange(world: World, seed: int):
    """Each box, holding its own history, converges once it has received everything."""
    rng = random.Random(seed)
    all_changes = list(world.changes)
    finals = []
    for node in world.nodes:
        replica = {k: dict(v) for k, v in node.replica.items()}
        rng.shuffle(all_changes)
        for c in all_changes:
            replica[c.record_id] = merge(replica.get(c.record_id), c).state
        finals.append(replica)
    assert all(final == finals[0] for final in finals)


@settings(max_examples=200)
@given(world=worlds(), seed=st.integers(0, 2**32))
def test_join_is_commutative_associative_and_idempotent(world: World, seed: int):
    rng = random.Random(seed)
    changes = list(world.changes)
    rng.shuffle(changes)
    thirds = [changes[i::3] for i in range(3)]
    parts = []
    for part in thirds:
        state: dict[str, Frontier] = {}
        for c in part:
            if c.record_id == REC:
                state = merge(state, c).state
        parts.append(state)
    a, b, c = parts
    assert join(a, b) == join(b, a)
    assert join(a, join(b, c)) == join(join(a, b), c)
    assert join(a, a) == a
    whole: dict[str, Frontier] = {}
    for ch in changes:
        if ch.record_id == REC:
            whole = merge(whole, ch).state
    assert join(join(a, b), c) == whole
