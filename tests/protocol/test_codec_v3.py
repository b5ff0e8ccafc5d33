"""Wire version 3: raw DEFLATE with the version 2 dictionary, UUID values as their 16 bytes,
and audit entries without their hashes; version 2 frames (what boxes in the field send)
still read the same (``test_codec.py`` runs its round trips in every version)."""

from __future__ import annotations

import dataclasses
import zlib
from importlib import resources

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.auditchain import GENESIS, AuditAck, AuditBatch, AuditEntry, follow, seal
from protocol.changes import Ack, Batch, Change, Direction, FieldVersion
from protocol.codec import (
    MAGIC,
    WIRE_VERSION,
    Compression,
    Kind,
    decode,
    encode,
    frame_version,
)
from protocol.errors import InvalidChangeError, MalformedError, ProtocolError, TooLargeError
from tests.protocol.strategies import node_ids
from tests.protocol.test_auditchain import chain, contents
from tests.protocol.test_codec import (
    NODE,
    RID,
    T,
    assert_only_protocol_errors,
    household_change,
    json_like,
    mutated,
)

ZDICT = resources.files("protocol").joinpath("data", "zdict-2.bin").read_bytes()
HOUSEHOLD = "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c"


def deflate(body: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=ZDICT)
    return deflater.compress(body) + deflater.flush()


def frame3(body: bytes, *, kind: int = Kind.BATCH, compression: int = Compression.NONE) -> bytes:
    if compression == Compression.DEFLATE_DICT:
        body = deflate(body)
    return bytes((MAGIC, 3, kind, compression)) + body


def body_of(frame: bytes) -> object:
    body = frame[4:]
    if frame[3] == Compression.DEFLATE_DICT:
        body = zlib.decompressobj(-15, zdict=ZDICT).decompress(body)
    return msgspec.msgpack.decode(body)


def proposal() -> Change:
    """A proposal made by a revisit: its household travels as a reference (a UUID)."""
    values = {"household_id": RID, "kind": "perbaikan_data", "period": "2026-12"}
    fields = {name: FieldVersion(v, T + 1, NODE) for name, v in values.items()}
    fields["status"] = FieldVersion("draf", T, NODE)  # an exception, stamped otherwise
    return Change("proposal", HOUSEHOLD, "3201012001", NODE, fields)


def trail(count: int = 6, start_ms: int = 1_795_478_400_000) -> list[AuditEntry]:
    """What a box writes for revisits: update, create (the proposal), view."""
    rows = []
    for n in range(count):
        action, entity, detail = [
            ("update", "household", '{"fields": ["address", "rt", "rw"]}'),
            ("create", "proposal", '{"fields": ["household_id", "kind", "period", "status"]}'),
            ("view", "household", "{}"),
        ][n % 3]
        rows.append((start_ms + 10 * n, "admin", action, entity, RID, detail, "10.0.0.9"))
    return chain(rows)


# --- version 2 frames, as boxes of version 2 send them (made by the previous release) ------

#: A batch (a household revisit with an exception, and the proposal it made), an audit
#: batch of two entries and an ack, each as the codec of wire version 2 wrote it.
BATCH_2 = bytes.fromhex(
    "5002010278bbb083a8cb9bcab80c1c2c895a13a18c49a8813279e1a6c357eae2bbb26b7ae7f14ba15fa2c175"
    "4b8781811192c9c06c86c9f0135c504fc14a059d190149d998bba821275b4d9c8abe06026caaf6ffff7f80d9"
    "06f97c7d5447e960731413a8c78879dc8571a26192916eb2718a89ae79aa699aae45a25992ae79b2458a65aa"
    "419a61a211f41e02b44b11715d4600be1b710200caa17a56"
)
AUDIT_2 = bytes.fromhex(
    "5002060278bbb083a8cb9bb40c1c2a899366329e6760605cc4754b876129f8caaf65a505e02bd5e021043e2e"
    "c238d130c94837d938c544d73cd5344dd722d12c49d73cd922c532d520cd30d128e9a64db512f87a8462252b"
    "856825685257d25150422942410288d403e2159528c5d6ae343432d7330042c3230a8d6ba366ac3c9c2e5b29"
    "f4e249d02b53075bfb2f0273a47657f8e6b19d5a667de5d14c26988bb9202e5e02bac49354f72eaa46b134fe"
    "f41b6b0ee7e7fde1fd3a19368fb39e5e9c5c74fdfbc480d21bc5aa31c7ef1a700000eb8b70dd"
)
ACK_2 = bytes.fromhex("500202009401a6656467652d612a2a")


def previous_release_messages() -> tuple[Batch, AuditBatch, Ack]:
    rid, household = "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", HOUSEHOLD
    t, seen = 0x01A20ADA2C000001, (("edge-a", 0x01A20ADA2C000000),)
    revisit = Change(
        "household",
        rid,
        "3201022001",
        "edge-a",
        {
            "rt": FieldVersion("004", t, "edge-a", seen),
            "address": FieldVersion("Jl. Melati No. 1", t, "edge-a", seen),
            "floor_area_m2": FieldVersion(36.5, t, "edge-a", seen),
            "programmes": FieldVersion(["pkh"], t - 5, "edge-a"),
        },
    )
    values = {"household_id": rid, "kind": "perbaikan_data", "period": "2026-12", "status": "draf"}
    made = Change(
        "proposal",
        household,
        "3201022001",
        "edge-a",
        {name: FieldVersion(v, t + 1, "edge-a") for name, v in values.items()},
    )
    first = seal(
        GENESIS,
        AuditEntry(
            1,
            1795478400000,
            "admin",
            "update",
            "household",
            rid,
            '{"fields": ["address", "floor_area_m2", "programmes", "rt"]}',
            "127.0.0.1",
        ),
    )
    second = seal(
        first.hash,
        AuditEntry(2, 1795478400010, "admin", "view", "household", rid, "{}", "127.0.0.1"),
    )
    return (
        Batch("edge-a", 42, (revisit, made)),
        AuditBatch("edge-a", (first, second)),
        Ack("edge-a", 42, 42),
    )


def test_frames_of_version_2_are_still_read_and_written_byte_for_byte():
    batch, audit, ack = previous_release_messages()
    assert [decode(f) for f in (BATCH_2, AUDIT_2, ACK_2)] == [batch, audit, ack]
    assert all(frame_version(f) == 2 for f in (BATCH_2, AUDIT_2, ACK_2))
    # A hub answers a box of version 2 in version 2: the same bytes as before (the primed
    # compressor changes nothing).
    assert [encode(m, version=2) for m in (batch, audit, ack)] == [BATCH_2, AUDIT_2, ACK_2]


def test_version_3_is_the_highest_and_every_kind_says_so():
    assert WIRE_VERSION == 3
    batch, audit, ack = previous_release_messages()
    audit = dataclasses.replace(audit, previous=GENESIS)
    for message in (batch, audit, ack, AuditAck("edge-a", 2), Ack("edge-a", 1, 1, Direction.DOWN)):
        frame = encode(message, version=3)
        assert frame_version(frame) == 3
        assert decode(frame) == message


# --- batches -----------------------------------------------------------------------------


def test_uuid_values_travel_as_16_bytes_and_come_back_as_text():
    batch = Batch(NODE, 3, (proposal(),))
    frame = encode(batch, version=3)
    _, _, _, _, [change] = body_of(frame)  # type: ignore[misc]
    values, exceptions = dict(change[7]), change[8]
    assert values["household_id"] == bytes.fromhex(RID.replace("-", ""))
    assert values["kind"] == "perbaikan_data"
    assert [e[0] for e in exceptions] == ["status"]
    assert decode(frame) == batch
    assert len(frame) < len(encode(batch, version=2)) - 20


def test_text_that_only_looks_like_a_uuid_stays_text():
    for text in (RID.upper(), RID.replace("-", ""), "{" + RID + "}", RID[:-1] + "g"):
        batch = Batch(NODE, 1, (household_change(notes=text),))
        _, _, _, _, [change] = body_of(encode(batch, version=3))  # type: ignore[misc]
        assert dict(change[7])["notes"] == text
        assert decode(encode(batch, version=3)) == batch
    lowercase = Batch(NODE, 1, (household_change(notes=RID),))  # any lowercase UUID
    assert decode(encode(lowercase, version=3)) == lowercase


def test_bytes_other_than_16_are_refused_and_bytes_mean_nothing_before_version_3():
    raw = body_of(encode(Batch(NODE, 1, (proposal(),)), version=3))
    raw[4][0][7][0][1] = b"\x01" * 15  # type: ignore[index]
    with pytest.raises(InvalidChangeError, match="16"):
        decode(frame3(msgspec.msgpack.encode(raw)))
    raw[4][0][7][0][1] = bytes.fromhex(RID.replace("-", ""))  # type: ignore[index]
    assert decode(frame3(msgspec.msgpack.encode(raw))) == Batch(NODE, 1, (proposal(),))
    version_2 = bytes((MAGIC, 2, Kind.BATCH, Compression.NONE)) + msgspec.msgpack.encode(raw)
    with pytest.raises(InvalidChangeError, match="household_id"):
        decode(version_2)


def test_raw_deflate_saves_zlibs_ten_bytes_and_is_refused_before_version_3():
    batch = Batch(NODE, 1, (household_change(address="Jl. Melati No. 1", rt="001"),))
    two, three = encode(batch, version=2), encode(batch, version=3)
    assert (two[3], three[3]) == (Compression.ZLIB_DICT, Compression.DEFLATE_DICT)
    assert len(three) == len(two) - 10
    for version in (1, 2):
        bad = bytes((MAGIC, version)) + three[2:]
        with pytest.raises(MalformedError, match="compression"):
            decode(bad)


def test_raw_deflate_bombs_and_broken_streams_are_refused():
    bomb = frame3(b"\x00" * 50_000_000, compression=Compression.DEFLATE_DICT)
    assert len(bomb) < 100_000
    with pytest.raises(TooLargeError):
        decode(bomb)
    frame = encode(Batch(NODE, 1, (proposal(),), Direction.DOWN), version=3)
    for broken in (frame[:-3], frame + b"\x00"):
        with pytest.raises(MalformedError):
            decode(broken)


# --- audit entries -------------------------------------------------------------------------


def test_audit_entries_travel_without_their_hashes_and_come_back_whole():
    entries = trail(9)
    batch = AuditBatch("edge-a", tuple(entries[3:]), entries[2].hash)
    frame = encode(batch, version=3)
    assert (frame[1], frame[2]) == (3, Kind.AUDIT)
    node, first, previous, wire = body_of(frame)  # type: ignore[misc]
    assert (node, first, previous, len(wire)) == ("edge-a", 4, entries[2].hash, 6)
    assert not any(len(v) == 32 for e in wire for v in e if isinstance(v, bytes))
    update, made, view = wire[:3]
    assert update[0] == entries[3].at_ms and made[0] == 10  # the time, then differences
    assert update[5] == ["address", "rt", "rw"] and view[5] == "{}"  # field names: a list
    assert update[4] == bytes.fromhex(RID.replace("-", ""))
    assert (made[1], made[6]) == (None, None)  # the actor and address of the one before
    assert decode(frame) == batch
    full = encode(AuditBatch("edge-a", tuple(entries[3:])), version=2)
    assert len(frame) < len(full) * 0.5


@settings(max_examples=200)
@given(node_ids, st.lists(contents, min_size=1, max_size=20), st.data())
def test_any_linked_run_of_a_chain_round_trips_in_version_3(node, rows, data):
    entries = chain(rows)
    start = data.draw(st.integers(0, len(entries) - 1))
    previous = entries[start - 1].hash if start else GENESIS
    batch = AuditBatch(node, tuple(entries[start:]), previous)
    frame = encode(batch, version=3)
    assert decode(frame) == batch
    if frame_version(frame) == 3:
        received = decode(frame)
        assert isinstance(received, AuditBatch)
        assert follow(start, previous, received.entries)[2] == []


def test_a_run_that_does_not_link_up_goes_in_version_2_with_its_hashes():
    """The box sends an entry changed or removed before it was sent as version 2 does, so
    the hub finds the break or the gap exactly where it is."""
    entries = trail(6)
    changed = list(entries)
    changed[3] = dataclasses.replace(changed[3], actor="bukan-saya")
    holed = entries[:2] + entries[3:]
    for batch in (
        AuditBatch("edge-a", tuple(changed), GENESIS),
        AuditBatch("edge-a", tuple(holed), GENESIS),
        AuditBatch("edge-a", tuple(entries[1:]), GENESIS),  # not what the first links to
        AuditBatch("edge-a", tuple(entries)),  # previous unknown
    ):
        frame = encode(batch, version=3)
        assert frame_version(frame) == 2
        assert decode(frame) == dataclasses.replace(batch, previous=None)
    received = decode(encode(AuditBatch("edge-a", tuple(changed)), version=3))
    assert isinstance(received, AuditBatch)
    assert follow(0, GENESIS, received.entries)[2] == [4]  # found where it is


def test_details_other_than_a_field_list_travel_as_text():
    odd = [
        '{"fields": ["rt"], "by": "x"}',
        '{"fields":["rt"]}',
        '{"fields": ["RT"]}',
        '{"q": "Siti"}',
        "",
        "not json",
    ]
    entries = chain([(1, "admin", "search", None, None, detail, "") for detail in odd])
    frame = encode(AuditBatch("edge-a", tuple(entries), GENESIS), version=3)
    assert frame_version(frame) == 3
    assert [e[5] for e in body_of(frame)[3]] == odd  # type: ignore[index]
    assert decode(frame) == AuditBatch("edge-a", tuple(entries), GENESIS)


def test_malformed_version_3_audit_bodies_are_refused_whole():
    entries = trail(3)
    raw = body_of(encode(AuditBatch("edge-a", tuple(entries), GENESIS), version=3))

    def refused(change, match: str) -> None:  # type: ignore[no-untyped-def]
        body = msgspec.msgpack.decode(msgspec.msgpack.encode(raw))
        change(body)
        with pytest.raises(ProtocolError, match=match):
            decode(frame3(msgspec.msgpack.encode(body), kind=Kind.AUDIT))

    refused(lambda b: b.__setitem__(2, b"\x00" * 31), "32 bytes")
    refused(lambda b: b.__setitem__(3, []), "1 to")
    refused(lambda b: b.__setitem__(1, 0), "out of range")
    refused(lambda b: b[3][0].__setitem__(1, None), "actor")
    refused(lambda b: b[3][0].__setitem__(0, -1), "time")
    refused(lambda b: b[3][0].__setitem__(4, b"\x01" * 15), "16")
    refused(lambda b: b[3][0].__setitem__(4, 7), "record id")
    refused(lambda b: b[3][0].__setitem__(5, ["Address"]), "field name")
    refused(lambda b: b[3][0].__setitem__(5, 7), "detail")


# --- fuzzing -------------------------------------------------------------------------------

SAMPLES_3 = [
    encode(Batch(NODE, 1, (proposal(),), Direction.DOWN), version=3),
    encode(Batch(NODE, 2**40, (household_change(rt="001", rw="002"), proposal()) * 20), version=3),
    encode(AuditBatch(NODE, tuple(trail(9)), GENESIS), version=3),
    encode(Ack(NODE, 5, 4), version=3),
]


def assert_only_protocol_errors_or_audit(data: bytes) -> None:
    try:
        message = decode(data)
    except ProtocolError:
        return
    if not isinstance(message, AuditBatch | AuditAck):
        assert_only_protocol_errors(data)


@settings(max_examples=3000)
@given(data=st.data(), original=st.sampled_from(SAMPLES_3))
def test_mutated_version_3_frames_raise_only_protocol_errors(data: st.DataObject, original: bytes):
    assert_only_protocol_errors_or_audit(mutated(data, original))


@settings(max_examples=2000)
@given(
    body=json_like,
    kind=st.sampled_from([Kind.BATCH, Kind.AUDIT, Kind.ACK]),
    compression=st.sampled_from([Compression.NONE, Compression.DEFLATE_DICT]),
)
def test_well_formed_msgpack_of_the_wrong_shape_in_version_3_raises_only_protocol_errors(
    body: object, kind: int, compression: int
):
    frame = frame3(msgspec.msgpack.encode(body), kind=kind, compression=compression)
    assert_only_protocol_errors_or_audit(frame)


@settings(max_examples=500)
@given(data=st.data())
def test_version_3_audit_bodies_with_spliced_values_raise_only_protocol_errors(
    data: st.DataObject,
):
    raw = body_of(encode(AuditBatch(NODE, tuple(trail(6)), GENESIS), version=3))
    for entry in raw[3]:  # type: ignore[index]
        entry[data.draw(st.integers(0, 6))] = data.draw(json_like)
    raw[1] = data.draw(st.integers(-1, 2**64 - 1) | st.just(raw[1]))  # type: ignore[index]
    assert_only_protocol_errors_or_audit(frame3(msgspec.msgpack.encode(raw), kind=Kind.AUDIT))
