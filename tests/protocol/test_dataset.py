"""The dataset manifest: what a district signs is exactly what the receiver reads back, and
a manifest that is not well-formed, or not for the expected district and period, is refused
with a reason code."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.dataset import (
    DatasetError,
    DatasetFile,
    DatasetReason,
    Manifest,
    Receipt,
    canonical_bytes,
    file_name,
    manifest_sha256,
    parse_manifest,
    parse_receipt,
)
from protocol.entities import ENTITIES

sha256s = st.text("0123456789abcdef", min_size=64, max_size=64)
periods = st.builds("{:04d}-{:02d}".format, st.integers(2000, 2100), st.integers(1, 12))


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    entities = draw(st.lists(st.sampled_from(sorted(ENTITIES)), min_size=1, unique=True))
    counts = {entity: draw(st.integers(0, 10**7)) for entity in entities}
    files = tuple(
        DatasetFile(
            file_name(entity, fmt),
            entity,
            fmt,
            counts[entity],
            draw(st.integers(0, 10**12)),
            draw(sha256s),
        )
        for entity in entities
        for fmt in draw(st.lists(st.sampled_from(["jsonl", "csv"]), min_size=1, unique=True))
    )
    return Manifest(
        draw(st.from_regex(r"[0-9]{4}", fullmatch=True)),
        draw(periods),
        draw(st.integers(0, 2**53)),
        draw(st.integers(0, 100)),
        files,
        counts,
    )


@given(manifests())
def test_a_manifest_reads_back_as_written_and_its_identity_ignores_key_order(manifest):
    signed = canonical_bytes(manifest)
    assert parse_manifest(signed) == manifest
    shuffled = json.dumps(dict(reversed(list(manifest.to_json().items())))).encode()
    assert canonical_bytes(parse_manifest(shuffled)) == signed
    assert manifest_sha256(parse_manifest(shuffled)) == manifest_sha256(manifest)


GOOD = Manifest(
    "3201",
    "2026-11",
    1_795_000_000_000,
    1,
    (DatasetFile("household.jsonl", "household", "jsonl", 2, 10, "a" * 64),),
    {"household": 2},
)


def broken(**changes: object) -> bytes:
    return json.dumps({**GOOD.to_json(), **changes}).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", DatasetReason.MALFORMED),
        (b"[]", DatasetReason.MALFORMED),
        (broken(format="other"), DatasetReason.MALFORMED),
        (broken(version=2), DatasetReason.UNSUPPORTED_VERSION),
        (broken(period="2026-13"), DatasetReason.MALFORMED),
        (broken(district="32011"), DatasetReason.MALFORMED),
        (broken(files=[]), DatasetReason.MALFORMED),
        (broken(counts={"household": 3}), DatasetReason.MALFORMED),
        (broken(counts={"household": 2, "member": 0}), DatasetReason.MALFORMED),
        (broken(extra=1), DatasetReason.MALFORMED),
        (
            broken(files=[{**GOOD.to_json()["files"][0], "name": "../../etc/passwd"}]),
            DatasetReason.MALFORMED,
        ),
        (
            broken(files=[{**GOOD.to_json()["files"][0], "sha256": "A" * 64}]),
            DatasetReason.MALFORMED,
        ),
        (broken(files=GOOD.to_json()["files"] * 2), DatasetReason.MALFORMED),
        (
            broken(files=[{**GOOD.to_json()["files"][0], "entity": "cat"}]),
            DatasetReason.MALFORMED,
        ),
    ],
)
def test_a_broken_manifest_is_refused_with_its_reason(data, reason):
    with pytest.raises(DatasetError) as refused:
        parse_manifest(data)
    assert refused.value.reason is reason


def test_a_manifest_for_another_district_or_period_is_refused():
    data = canonical_bytes(GOOD)
    assert parse_manifest(data, district="3201", period="2026-11") == GOOD
    with pytest.raises(DatasetError) as refused:
        parse_manifest(data, period="2026-12")
    assert refused.value.reason is DatasetReason.WRONG_PERIOD
    with pytest.raises(DatasetError) as refused:
        parse_manifest(data, district="3202")
    assert refused.value.reason is DatasetReason.WRONG_DISTRICT


def test_a_receipt_reads_back_and_a_broken_one_is_malformed():
    receipt = Receipt("r-1", "3201", "2026-11", "b" * 64, 5, 10)
    assert parse_receipt(receipt.to_json()) == receipt
    with pytest.raises(DatasetError):
        parse_receipt({**receipt.to_json(), "bytes": -1})
