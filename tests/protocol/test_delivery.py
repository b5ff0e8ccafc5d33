"""A receiver knows exactly which batches it applied, whatever the order of arrival."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.changes import Batch, Change, FieldVersion
from protocol.codec import Limits, decode, encode
from protocol.delivery import AppliedSeqs, pack
from protocol.errors import TooLargeError
from protocol.merge import merge, values


def test_batches_arriving_out_of_order_close_the_gap_when_the_missing_one_comes():
    state = AppliedSeqs()
    for seq in (1, 3, 4):
        state = state.add(seq)
    assert (state.watermark, state.above, state.gaps) == (1, frozenset({3, 4}), 1)
    assert 2 not in state and 3 in state
    state = state.add(2)
    assert (state.watermark, state.above, state.gaps) == (4, frozenset(), 0)


def test_a_batch_applied_before_changes_nothing():
    state = AppliedSeqs().add(1).add(2).add(5)
    assert state.add(2) is state
    assert state.add(5) is state


def test_sequence_numbers_start_at_one():
    with pytest.raises(ValueError):
        AppliedSeqs().add(0)
    with pytest.raises(ValueError):
        AppliedSeqs(3, frozenset({4}))  # 4 belongs under the watermark


@given(st.lists(st.integers(1, 60), max_size=80), st.randoms())
def test_any_order_and_duplication_gives_the_same_state(seqs, rng):
    forward = AppliedSeqs()
    for seq in seqs:
        forward = forward.add(seq)
    shuffled = list(seqs) + list(seqs)[: len(seqs) // 2]
    rng.shuffle(shuffled)
    other = AppliedSeqs()
    for seq in shuffled:
        other = other.add(seq)
    assert forward == other
    applied = set(seqs)
    assert {s for s in range(1, 62) if s in forward} == applied
    contiguous = 0
    while contiguous + 1 in applied:
        contiguous += 1
    assert forward.watermark == contiguous
    assert forward.gaps == (max(applied) - len(applied) if applied else 0)
    assert AppliedSeqs.from_state(*forward.to_state()) == forward


NODE = "edge-3201022001-a"
T = 0x01A20ADA2C000000


def member_change(n: int, **extra: str) -> Change:
    record = f"0193a1b2-c3d4-7e5f-8a6b-{n:012x}"
    fields = {
        "name": FieldVersion(f"Warga {n}", T + n, NODE),
        "marital_status": FieldVersion("kawin", T + n, NODE),
    }
    fields |= {k: FieldVersion(v, T + n, NODE) for k, v in extra.items()}
    return Change("member", record, "3201022001", NODE, fields)


def versions(items: list[Batch] | list[Change]) -> list[tuple[str, str, FieldVersion]]:
    changes = [c for b in items for c in b.changes] if isinstance(items[0], Batch) else items
    return [(c.record_id, name, v) for c in changes for name, v in c.fields.items()]


def test_a_backlog_is_cut_into_numbered_batches_that_fit_the_limits():
    changes = [member_change(n) for n in range(1, 1001)]
    limits = Limits(max_changes=300)
    batches = pack(NODE, 41, changes, limits=limits)
    assert [b.seq for b in batches] == [41, 42, 43, 44]
    assert [len(b.changes) for b in batches] == [300, 300, 300, 100]
    assert versions(batches) == versions(changes)
    for batch in batches:
        assert decode(encode(batch, limits=limits), limits=limits) == batch


def noise(seed: int, chars: int) -> str:
    """Text that does not compress (so it really takes frame space)."""
    text = "".join(
        hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(chars // 64 + 1)
    )
    return text[:chars]


def test_a_frame_limit_splits_batches_and_even_one_huge_record():
    base = member_change(7)
    huge = Change(
        base.entity,
        base.record_id,
        base.village,
        base.origin,
        {
            **base.fields,
            "name": FieldVersion(noise(1, 3000), T, NODE),
            "occupation": FieldVersion(noise(2, 3500), T, NODE),
            "birth_place": FieldVersion(noise(3, 3800), T, NODE),
        },
    )
    changes = [member_change(1), huge, member_change(2)]
    limits = Limits(max_frame_bytes=4096)
    batches = pack(NODE, 1, changes, limits=limits)
    assert all(len(encode(b, limits=limits)) <= 4096 for b in batches)
    parts = [c for b in batches for c in b.changes if c.record_id == huge.record_id]
    assert len(parts) > 1  # the record did not fit one frame: its fields were spread
    assert sorted(versions(batches), key=repr) == sorted(versions(changes), key=repr)
    state = None
    for batch in batches:
        for change in batch.changes:
            if change.record_id == huge.record_id:
                state = merge(state, change).state
    assert values(state) == {name: v.value for name, v in huge.fields.items()}


def test_one_field_larger_than_a_frame_is_refused_not_dropped():
    big = Change(
        "member",
        "0193a1b2-c3d4-7e5f-8a6b-000000000009",
        "3201022001",
        NODE,
        {"name": FieldVersion(noise(4, 3900), T, NODE)},
    )
    with pytest.raises(TooLargeError):
        pack(NODE, 1, [big], limits=Limits(max_frame_bytes=1024))
