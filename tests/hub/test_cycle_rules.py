"""The monthly cycle's pure rules: cut-off instants, the open period, steps and roles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.cycle_rules import (
    Action,
    CycleError,
    State,
    allowed,
    cutoff_ms,
    following,
    next_state,
    period_of,
    previous,
)
from hub.roles import Role

TZ = "Asia/Jakarta"
periods = st.builds(
    lambda year, month: f"{year}-{month:02d}", st.integers(2000, 2200), st.integers(1, 12)
)


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("period", "day", "time", "expected"),
    [
        ("2026-11", 17, "23:59", "2026-11-17T16:59"),  # WIB is UTC+7
        ("2026-02", 31, "23:59", "2026-02-28T16:59"),  # past the month's end: its last day
        ("2028-02", 30, "08:00", "2028-02-29T01:00"),  # a leap year
        ("2026-12", 1, "00:00", "2026-11-30T17:00"),
    ],
)
def test_the_cut_off_is_the_day_and_time_in_the_district_time_zone(period, day, time, expected):
    assert cutoff_ms(period, day, time, TZ) == utc(expected)


def test_the_open_period_moves_on_at_the_cut_off():
    cutoff = cutoff_ms("2026-11", 17, "23:59", TZ)
    assert period_of(cutoff - 1, 17, "23:59", TZ) == "2026-11"
    assert period_of(cutoff, 17, "23:59", TZ) == "2026-12"
    assert period_of(utc("2026-12-31T18:00"), 17, "23:59", TZ) == "2027-01"  # Jan 1st in WIB


@given(periods)
def test_following_and_previous_are_inverse_and_cut_offs_increase(period):
    assert previous(following(period)) == period == following(previous(period))
    assert cutoff_ms(period, 17, "23:59", TZ) < cutoff_ms(following(period), 17, "23:59", TZ)


@given(periods, st.integers(1, 31), st.integers(-40 * 86_400_000, 40 * 86_400_000))
def test_the_open_period_is_the_first_whose_cut_off_is_after_now(period, day, offset):
    now = cutoff_ms(period, day, "23:59", TZ) + offset
    open_ = period_of(now, day, "23:59", TZ)
    assert cutoff_ms(open_, day, "23:59", TZ) > now >= cutoff_ms(previous(open_), day, "23:59", TZ)


def test_each_step_starts_from_one_state_and_a_second_click_is_refused():
    assert next_state(State.OPEN, Action.FREEZE) is State.FROZEN
    assert next_state("ditinjau_pimpinan", Action.RETURN_VILLAGES) is State.FROZEN
    assert next_state(State.LEADER_REVIEW, Action.SIGN) is State.SIGNED
    assert next_state(State.FORWARDED, Action.PUBLISH) is State.PUBLISHED
    with pytest.raises(CycleError) as refused:
        next_state(State.FROZEN, Action.FREEZE)
    assert refused.value.code == "wrong_state" and "Dibekukan" in refused.value.message
    with pytest.raises(CycleError):
        next_state(State.OPEN, Action.SIGN)


def test_who_may_take_each_step():
    assert allowed(Action.FREEZE, Role.VERIFIER) and not allowed(Action.FREEZE, Role.LEADER)
    assert allowed(Action.SIGN, "pimpinan") and not allowed(Action.SIGN, "verifikator")
    assert allowed(Action.PUBLISH, Role.ADMIN) and not allowed(Action.SUBMIT, Role.IT)
    assert not allowed(Action.SIGN, "tamu")
    assert State.LEADER_REVIEW.label == "Ditinjau pimpinan"


def test_a_malformed_period_is_refused():
    with pytest.raises(ValueError):
        following("2026-13")
