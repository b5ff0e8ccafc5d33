"""A box's telemetry report survives the wire, stays small, and nothing odd gets through."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import MalformedError
from protocol.telemetry import (
    MAX_TELEMETRY_BYTES,
    Telemetry,
    decode_telemetry,
    encode_telemetry,
)

counts = st.integers(min_value=0, max_value=2**63 - 1)
reports = st.builds(
    Telemetry,
    wall_ms=counts,
    software=st.text(max_size=64),
    uptime_s=counts,
    outbox=counts,
    oldest_age_s=st.none() | counts,
    last_ack_age_s=st.none() | counts,
    disk_free_bytes=counts,
    disk_size_bytes=counts,
    db_bytes=counts,
    cpu_temp_c=st.none() | st.floats(min_value=-100, max_value=200),
    login_failures=counts,
)


@given(reports)
def test_every_report_reads_back_as_sent(report: Telemetry) -> None:
    assert decode_telemetry(encode_telemetry(report)) == report


def test_a_typical_report_fits_a_2g_budget() -> None:
    report = Telemetry(
        wall_ms=1_795_000_000_000,
        software="0.4.0",
        uptime_s=86_400 * 12,
        outbox=1_250,
        oldest_age_s=7_200,
        last_ack_age_s=35,
        disk_free_bytes=21_000_000_000,
        disk_size_bytes=31_000_000_000,
        db_bytes=180_000_000,
        cpu_temp_c=61.3,
        login_failures=17,
    )
    assert len(encode_telemetry(report)) < 300


def test_an_older_or_newer_box_is_understood() -> None:
    older = decode_telemetry(b'{"wall_ms": 5, "outbox": 3}')
    assert (older.outbox, older.oldest_age_s, older.cpu_temp_c) == (3, None, None)
    newer = decode_telemetry(b'{"wall_ms": 5, "battery_pct": 80}')
    assert newer.wall_ms == 5


@pytest.mark.parametrize("reading", ['"hot"', "1e308", "-273.5", "true", "[60]"])
def test_a_broken_sensor_costs_only_its_own_reading(reading: str) -> None:
    report = decode_telemetry(f'{{"wall_ms": 1, "outbox": 4, "cpu_temp_c": {reading}}}'.encode())
    assert (report.outbox, report.cpu_temp_c) == (4, None)


def test_a_report_in_any_script_fits_its_own_limit_once_stored() -> None:
    report = Telemetry(wall_ms=1, software="🌾" * 64)
    assert len(encode_telemetry(report)) <= MAX_TELEMETRY_BYTES
    assert decode_telemetry(encode_telemetry(report)) == report


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"outbox": 1}', "no wall_ms"),
        (b'{"wall_ms": -1}', "wall_ms"),
        (b'{"wall_ms": 1, "outbox": true}', "outbox"),
        (b'{"wall_ms": 1, "outbox": 1.5}', "outbox"),
        (b'{"wall_ms": 1, "disk_free_bytes": "many"}', "disk_free_bytes"),
        (b'{"wall_ms": 1, "software": "' + b"x" * 65 + b'"}', "software"),
        (b'{"wall_ms": 1, "pad": "' + b"x" * MAX_TELEMETRY_BYTES + b'"}', "too large"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_a_bad_report_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedError, match=reason):
        decode_telemetry(payload)


@given(st.dictionaries(st.text(max_size=20), st.none() | st.integers() | st.text() | st.floats()))
def test_nothing_but_a_malformed_error_comes_out_of_json_garbage(document: dict) -> None:
    with contextlib.suppress(MalformedError):
        decode_telemetry(json.dumps(document).encode())
