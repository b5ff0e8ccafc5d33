"""The hybrid logical clock never goes backwards and refuses stamps from the far future."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.clock import DEFAULT_MAX_DRIFT_MS, HybridClock, Timestamp, pack
from protocol.errors import ClockAheadError, Reason

NOV_2026 = 1_795_478_400_000  # 2026-11-24T00:00:00Z


def test_stamps_follow_the_wall_clock_when_it_moves_forward():
    clock = HybridClock("box-a")
    first = clock.now(NOV_2026)
    second = clock.now(NOV_2026 + 5)
    assert (first.ms, first.counter) == (NOV_2026, 0)
    assert (second.ms, second.counter) == (NOV_2026 + 5, 0)


def test_a_box_that_reboots_in_1970_keeps_counting_from_where_it_was():
    clock = HybridClock("box-a")
    before = clock.now(NOV_2026)
    saved = clock.state
    rebooted = HybridClock("box-a", state=saved)
    after = rebooted.now(0)  # no RTC: the wall clock says 1970
    assert after > before
    assert after.ms == NOV_2026 and after.counter == 1


def test_same_millisecond_stamps_count_up_and_carry_into_the_next_millisecond():
    clock = HybridClock("box-a", state=pack(NOV_2026, 0xFFFE))
    a = clock.now(NOV_2026)
    b = clock.now(NOV_2026)
    assert (a.ms, a.counter) == (NOV_2026, 0xFFFF)
    assert (b.ms, b.counter) == (NOV_2026 + 1, 0)
    assert b > a


def test_observed_remote_stamps_make_later_local_stamps_greater():
    clock = HybridClock("box-a")
    remote = Timestamp(pack(NOV_2026 + 60_000, 7), "hub-1")
    clock.observe(remote, NOV_2026)
    assert clock.now(NOV_2026) > remote


def test_a_stamp_a_year_ahead_is_refused_and_leaves_the_clock_alone():
    clock = HybridClock("hub-1")
    clock.now(NOV_2026)
    before = clock.state
    year_ahead = Timestamp(pack(NOV_2026 + 365 * 86_400_000, 0), "box-b")
    with pytest.raises(ClockAheadError) as raised:
        clock.observe(year_ahead, NOV_2026)
    assert raised.value.reason is Reason.CLOCK_AHEAD
    assert raised.value.ahead_ms == 365 * 86_400_000
    assert clock.state == before


def test_drift_bound_is_inclusive_and_configurable():
    clock = HybridClock("hub-1")
    clock.observe(Timestamp(pack(NOV_2026 + DEFAULT_MAX_DRIFT_MS, 0), "box-b"), NOV_2026)
    with pytest.raises(ClockAheadError):
        clock.observe(Timestamp(pack(NOV_2026 + DEFAULT_MAX_DRIFT_MS + 1, 0), "box-b"), NOV_2026)
    strict = HybridClock("hub-1", max_drift_ms=1000)
    with pytest.raises(ClockAheadError):
        strict.observe(Timestamp(pack(NOV_2026 + 1001, 0), "box-b"), NOV_2026)


def test_a_clock_restored_from_a_future_state_reports_how_far_ahead_it_is():
    ahead = HybridClock("box-a", state=pack(NOV_2026 + 3_600_000, 0))
    assert ahead.ahead_ms(NOV_2026) == 3_600_000
    assert HybridClock("box-a").ahead_ms(NOV_2026) == 0


def test_string_form_sorts_like_the_stamps_and_round_trips():
    stamps = [
        Timestamp(pack(NOV_2026, 1), "box-b"),
        Timestamp(pack(NOV_2026, 0), "box-z"),
        Timestamp(pack(NOV_2026 + 1, 0), "box-a"),
        Timestamp(pack(NOV_2026, 1), "box-a"),
    ]
    assert sorted(stamps) == sorted(stamps, key=Timestamp.to_string)
    for stamp in stamps:
        assert Timestamp.parse(stamp.to_string()) == stamp
    with pytest.raises(ValueError):
        Timestamp.parse("not-a-stamp")


@settings(max_examples=500)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["now", "observe", "restart"]),
            st.integers(0, 2**47),
            st.integers(-10_000, 10_000),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_monotonic_across_jumps_restarts_and_remote_stamps(events):
    """Whatever the wall clock does, every stamp is greater than all before it."""
    clock = HybridClock("box-a")
    last = Timestamp(-1, "")
    for kind, wall, offset in events:
        if kind == "restart":
            clock = HybridClock("box-a", state=clock.state)
            continue
        if kind == "observe":
            with contextlib.suppress(ClockAheadError):
                clock.observe(Timestamp(pack(max(wall + offset, 0), 3), "hub-1"), wall)
            continue
        stamp = clock.now(wall)
        assert stamp > last
        last = stamp
