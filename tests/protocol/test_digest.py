"""Anti-entropy digests: replicas that saw the same versions have the same digest whatever
order they saw them in, a root kept incrementally equals one computed afresh, any changed
version changes it, and probes and replies cross the wire intact or are refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.changes import Change, FieldVersion
from protocol.codec import MAGIC, Compression, Kind, decode, encode
from protocol.digest import (
    BUCKETS,
    DigestProbe,
    DigestReply,
    bucket_hashes,
    bucket_of,
    differing_buckets,
    from_signed,
    record_digest,
    root_hex,
    to_signed,
)
from protocol.errors import MalformedError, TooLargeError
from protocol.merge import merge
from protocol.status import Status, decode_status, encode_status
from tests.factories import new_id

NODE = "edge-3201012001-a"
VILLAGE = "3201012001"
T = 1_795_478_400_000 << 16


def change(record_id: str, node: str, time: int, seen=(), **values: object) -> Change:
    fields = {name: FieldVersion(v, time, node, seen) for name, v in values.items()}  # type: ignore[arg-type]
    return Change("household", record_id, VILLAGE, node, fields)


def replay(changes: list[Change]) -> dict:
    states: dict = {}
    for c in changes:
        states[c.record_id] = merge(states.get(c.record_id), c).state
    return states


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(6)), st.integers(0, 2**32))
def test_replicas_that_saw_the_same_changes_in_any_order_have_the_same_digest(order, salt):
    records = [new_id(), new_id()]
    changes = [
        change(records[0], "edge-a", T + 1, address="Jl. Mawar 1"),
        change(records[0], "edge-b", T + 2, address="Jl. Melati 2"),  # concurrent: a conflict
        change(records[0], "edge-a", T + 3, rt="00" + str(salt % 10)),
        change(records[1], "hub-1", T + 4, notes="catatan"),
        change(records[1], "edge-b", T + 5, rw="003"),
        change(records[1], "edge-a", T + 6, seen=(("hub-1", T + 4),), notes="catatan baru"),
    ]
    first = replay(changes)
    second = replay([changes[i] for i in order])
    assert {rid: record_digest("household", rid, state) for rid, state in first.items()} == {
        rid: record_digest("household", rid, state) for rid, state in second.items()
    }


def test_any_different_value_stamp_or_writer_changes_the_digest():
    rid = new_id()
    base = merge(None, change(rid, NODE, T, address="Jl. Mawar 1")).state
    digest = record_digest("household", rid, base)
    for other in (
        change(rid, NODE, T, address="Jl. Mawar 2"),  # same stamp, another value: a split
        change(rid, NODE, T + 1, address="Jl. Mawar 1"),
        change(rid, "edge-b", T, address="Jl. Mawar 1"),
    ):
        assert record_digest("household", rid, merge(None, other).state) != digest
    assert record_digest("member", rid, base) != digest
    assert record_digest("household", new_id(), base) != digest


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_a_root_folded_write_by_write_equals_the_root_computed_afresh(digests):
    ids = [new_id() for _ in digests]
    root = 0
    for digest in digests:  # each record written once, then rewritten with a new digest
        root ^= digest
    rewritten = [d ^ 0x5A5A for d in digests]
    for old, new in zip(digests, rewritten, strict=True):
        root ^= old ^ new
    fresh = 0
    for bucket in bucket_hashes(zip(ids, rewritten, strict=True)):
        fresh ^= bucket
    assert root == fresh
    assert all(from_signed(to_signed(d)) == d for d in digests)
    assert all(-(2**63) <= to_signed(d) < 2**63 for d in digests)
    assert len(root_hex(root)) == 16


def test_only_the_buckets_holding_a_changed_record_differ():
    ids = [new_id() for _ in range(300)]
    mine = bucket_hashes((i, n + 1) for n, i in enumerate(ids))
    theirs = bucket_hashes((i, n + 1 if i != ids[7] else 999) for n, i in enumerate(ids))
    assert differing_buckets(mine, theirs) == [bucket_of(ids[7])]
    assert all(0 <= bucket_of(i) < BUCKETS for i in ids)


def test_probes_and_replies_cross_the_wire_intact():
    buckets = tuple(range(1, BUCKETS + 1))
    wanted = (new_id(), new_id())
    for message in (
        DigestProbe(NODE),
        DigestProbe(NODE, buckets),
        DigestProbe(NODE, wanted=wanted),
        DigestReply(NODE, (3, 200), ((wanted[0], 2**64 - 1), (wanted[1], 0))),
    ):
        assert decode(encode(message)) == message
    assert DigestProbe(NODE).matched and not DigestProbe(NODE, wanted=wanted).matched
    with pytest.raises(ValueError):
        DigestProbe(NODE, (1, 2, 3))


def _frame(kind: int, body: list) -> bytes:
    import msgspec

    raw = msgspec.msgpack.encode(body)
    return bytes((MAGIC, 1, kind, Compression.NONE)) + raw


@pytest.mark.parametrize(
    ("kind", "body", "error"),
    [
        (Kind.PROBE, [NODE, b"\x00" * 9, []], MalformedError),  # not 256 hashes
        (Kind.PROBE, ["not a node!", b"", []], MalformedError),
        (Kind.PROBE, [NODE, b"", [b"short"]], MalformedError),
        (Kind.PROBE, [NODE, b"", [b"\x00" * 16] * 5001], TooLargeError),
        (Kind.REPLY, [NODE, [1, 1], []], MalformedError),  # a bucket twice
        (Kind.REPLY, [NODE, [256], []], MalformedError),
        (Kind.REPLY, [NODE, [1], [[b"\x00" * 16, 5]]], MalformedError),  # not a UUIDv7
    ],
)
def test_bad_probes_and_replies_are_refused(kind, body, error):
    with pytest.raises(error):
        decode(_frame(kind, body))


def test_a_status_carries_the_root_and_an_old_one_without_it_still_reads():
    status = Status("online", digest="00ff00ff00ff00ff", records=25_000)
    assert decode_status(encode_status(status)) == status
    assert decode_status(b'{"state":"online"}').digest == ""
    with pytest.raises(MalformedError):
        decode_status(b'{"state":"online","digest":"XYZ"}')
