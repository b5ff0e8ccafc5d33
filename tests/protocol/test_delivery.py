"""A receiver knows exactly which batches it applied, whatever the order of arrival."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.delivery import AppliedSeqs


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
