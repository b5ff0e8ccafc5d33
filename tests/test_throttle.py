"""The sign-in throttle's rule (puskesos/throttle.py): who waits, how long, and when the
count is forgotten; and its table on a real SQLite database."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from puskesos.throttle import LoginThrottle, Policy, define_table

POLICY = Policy()
MINUTE = 60_000
NOW = 1_800_000_000_000


def test_a_pair_waits_one_minute_after_five_failures_then_twice_as_long_each_time():
    waits = [POLICY.wait_ms(n, NOW, NOW, pair=True) // MINUTE for n in range(4, 11)]
    assert waits == [0, 1, 2, 4, 8, 15, 15]


def test_an_address_waits_after_twenty_failures_up_to_an_hour():
    waits = [POLICY.wait_ms(n, NOW, NOW, pair=False) // MINUTE for n in (19, 20, 21, 25, 40)]
    assert waits == [0, 1, 2, 32, 60]


def test_the_wait_runs_from_the_last_failure_and_a_day_later_the_count_is_forgotten():
    assert POLICY.wait_ms(6, NOW - 90_000, NOW, pair=True) == 30_000
    assert POLICY.wait_ms(6, NOW - 120_000, NOW, pair=True) == 0
    assert POLICY.wait_ms(99, NOW - 24 * 60 * MINUTE - 1, NOW, pair=True) == 0


@given(st.integers(0, 10_000), st.integers(0, 10**7), st.booleans())
def test_a_wait_is_never_longer_than_the_longest_and_grows_with_the_failures(n, ago, pair):
    longest = (POLICY.pair_max_s if pair else POLICY.address_max_s) * 1000
    wait = POLICY.wait_ms(n, NOW - ago, NOW, pair=pair)
    assert 0 <= wait <= longest
    assert POLICY.wait_ms(n + 1, NOW - ago, NOW, pair=pair) >= wait


def test_the_table_counts_pairs_and_addresses_and_a_success_forgets_only_its_pair(tmp_path):
    metadata = sa.MetaData()
    throttle = LoginThrottle(define_table(metadata), POLICY)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.sqlite'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        for n in range(5):
            failure = throttle.record_failure(conn, "admin", "10.0.0.66", NOW + n)
        assert failure.failures == 5 and failure.refused_ms == MINUTE
        assert throttle.refused_ms(conn, "admin", "10.0.0.66", NOW + 10) > 0
        assert throttle.refused_ms(conn, "admin", "10.0.0.10", NOW + 10) == 0
        assert throttle.refused_ms(conn, "kades", "10.0.0.66", NOW + 10) == 0
        throttle.forget_pair(conn, "admin", "10.0.0.66", NOW + 10)
        assert throttle.refused_ms(conn, "admin", "10.0.0.66", NOW + 10) == 0
        for n in range(15):
            throttle.record_failure(conn, f"nama{n}", "10.0.0.66", NOW + 20)
        # 20 failures from the address over all names: every name waits there, not elsewhere.
        assert throttle.refused_ms(conn, "kades", "10.0.0.66", NOW + 20) == MINUTE
        assert throttle.refused_ms(conn, "kades", "10.0.0.10", NOW + 20) == 0
        # A day later, the next failure counts from one again.
        later = NOW + 20 + 24 * 60 * MINUTE + 1
        assert throttle.record_failure(conn, "nama0", "10.0.0.66", later).failures == 1
    engine.dispose()
