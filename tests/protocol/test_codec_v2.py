"""Wire version 2: one shared stamp per change, a preset compression dictionary, and the
same guarantees as version 1 (``test_codec.py`` runs its round trips in both versions)."""

from __future__ import annotations

import hashlib
import zlib
from importlib import resources

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.changes import Ack, Batch, Change, Direction, FieldVersion
from protocol.codec import (
    MAGIC,
    WIRE_VERSION,
    Compression,
    Kind,
    Limits,
    decode,
    decode_gradually,
    encode,
    encode_stored_changes,
    frame_version,
    version_for,
)
from protocol.errors import InvalidChangeError, MalformedError, TooLargeError
from protocol.jsonform import dump_change, load_change
from tests.protocol.strategies import batches
from tests.protocol.test_codec import (
    NODE,
    RID,
    SAMPLES,
    T,
    assert_only_protocol_errors,
    household_change,
    json_like,
    mutated,
)

ZDICT = resources.files("protocol").joinpath("data", "zdict-2.bin").read_bytes()


def deflate(body: bytes) -> bytes:
    deflater = zlib.compressobj(zdict=ZDICT)
    return deflater.compress(body) + deflater.flush()


def frame2(body: bytes, *, kind: int = Kind.BATCH, compression: int = Compression.NONE) -> bytes:
    if compression == Compression.ZLIB_DICT:
        body = deflate(body)
    return bytes((MAGIC, 2, kind, compression)) + body


def body_of(frame: bytes) -> object:
    body = frame[4:]
    if frame[3] == Compression.ZLIB_DICT:
        inflater = zlib.decompressobj(zdict=ZDICT)
        body = inflater.decompress(body)
    return msgspec.msgpack.decode(body)


def revisit() -> Change:
    """A form save: every field stamped alike, having seen the record's creation; and one
    field written earlier by someone else."""
    seen = ((NODE, T - 100),)
    fields = {
        name: FieldVersion(value, T, NODE, seen)
        for name, value in (("address", "Jl. Melati No. 1"), ("rt", "004"), ("rw", "002"))
    }
    fields["notes"] = FieldVersion("pindah", T - 50, "hub-1")
    return Change("household", RID, "3201012001", "hub-1", fields)


def test_the_dictionary_is_frozen():
    """Compression code 2 means this dictionary for ever: another one is another code."""
    assert len(ZDICT) <= 32 * 1024
    digest = hashlib.sha256(ZDICT).hexdigest()
    assert digest == "e1579a6eec88cc67a3d0ad27c8bc0dd0977f08c4a6e2fc65289e52fcfa6ba663"


def test_a_change_carries_its_shared_stamp_once_and_the_rest_as_exceptions():
    batch = Batch(NODE, 3, (revisit(),), Direction.DOWN)
    frame = encode(batch, version=2)
    assert frame[:4] == bytes((MAGIC, 2, Kind.BATCH, Compression.ZLIB_DICT))
    _, _, _, nodes, [change] = body_of(frame)  # type: ignore[misc]
    entity, _, _, origin, time, node, seen, values, exceptions = change
    assert (entity, nodes[origin], time, nodes[node]) == ("household", "hub-1", T, NODE)
    assert seen == [nodes.index(NODE), T - 100]
    assert [name for name, _ in values] == ["address", "rt", "rw"]
    assert [(e[0], e[2], nodes[e[3]], e[4]) for e in exceptions] == [("notes", T - 50, "hub-1", [])]
    assert decode(frame) == batch


def test_version_2_is_smaller_alone_and_in_batches():
    change = household_change(address="Jl. Melati No. 1", rt="001", rw="002", floor_area_m2=36.5)
    one, many = Batch(NODE, 1, (change,)), Batch(NODE, 1, (change,) * 200)
    assert len(encode(one, version=2)) < len(encode(one, version=1)) * 0.6
    assert len(encode(many, version=2)) < len(encode(many, version=1))


def test_every_kind_travels_in_a_version_2_envelope_and_says_so():
    for message in (Ack(NODE, 12, 11), Batch(NODE, 1, (revisit(),), Direction.DOWN)):
        frame = encode(message, version=2)
        assert frame_version(frame) == 2
        assert decode(frame) == message
    assert frame_version(encode(Ack(NODE, 1, 1))) == 1


def test_a_peer_is_sent_the_highest_version_both_speak():
    assert [version_for(reported) for reported in (0, 1, 2, 3, 9)] == [1, 1, 2, 3, WIRE_VERSION]
    with pytest.raises(ValueError):
        encode(Ack(NODE, 1, 1), version=WIRE_VERSION + 1)


def test_version_1_frames_still_decode():
    """What a box of version 1 sends (the worked example of SPEC §9 is checked too)."""
    batch = Batch(NODE, 5, (revisit(),), Direction.DOWN)
    assert decode(encode(batch, version=1)) == batch
    for sample in SAMPLES:
        assert sample[1] == 1
        decode(sample)


def test_the_dictionary_code_is_refused_in_a_version_1_envelope():
    body = encode(Ack(NODE, 1, 1), version=1)[4:]
    with pytest.raises(MalformedError, match="compression"):
        decode(bytes((MAGIC, 1, Kind.ACK, Compression.ZLIB_DICT)) + deflate(body))


def test_a_dictionary_zip_bomb_is_refused_without_inflating_it():
    bomb = frame2(b"\x00" * 50_000_000, compression=Compression.ZLIB_DICT)
    assert len(bomb) < 100_000
    with pytest.raises(TooLargeError):
        decode(bomb)


def test_a_dictionary_compressed_frame_over_the_limit_is_refused_on_both_sides():
    noise = "".join(hashlib.sha256(bytes([i])).hexdigest() for i in range(32))
    batch = Batch(NODE, 1, (household_change(notes=noise),))
    frame = encode(batch, version=2)
    assert frame[3] == Compression.ZLIB_DICT
    limits = Limits(max_frame_bytes=len(frame) - 1)
    with pytest.raises(TooLargeError):
        encode(batch, limits=limits, version=2)
    with pytest.raises(TooLargeError):
        decode(frame, limits=limits)
    with pytest.raises(TooLargeError):
        decode(frame, limits=Limits(max_body_bytes=100))


def test_truncated_or_padded_dictionary_streams_are_malformed():
    frame = encode(Batch(NODE, 1, (revisit(),), Direction.DOWN), version=2)
    for broken in (frame[:-3], frame + b"\x00"):
        with pytest.raises(MalformedError):
            decode(broken)


def test_a_shared_stamp_in_an_uplink_must_be_the_senders():
    change = Change("household", RID, "3201012001", NODE, {"rt": FieldVersion("001", T, NODE)})
    raw = body_of(encode(Batch(NODE, 1, (change,)), version=2))
    raw[3].append("edge-3201012001-z")  # type: ignore[index]
    raw[4][0][5] = 1  # type: ignore[index]
    with pytest.raises(InvalidChangeError, match="shared stamp: not written by the sender"):
        decode(frame2(msgspec.msgpack.encode(raw)))


def test_a_field_both_shared_and_an_exception_is_refused():
    change = Change("household", RID, "3201012001", NODE, {"rt": FieldVersion("001", T, NODE)})
    raw = body_of(encode(Batch(NODE, 1, (change,)), version=2))
    raw[4][0][8] = [["rt", "002", T, 0, []]]  # type: ignore[index]
    with pytest.raises(InvalidChangeError, match="twice"):
        decode(frame2(msgspec.msgpack.encode(raw)))


def test_a_change_without_fields_is_refused():
    change = Change("household", RID, "3201012001", NODE, {"rt": FieldVersion("001", T, NODE)})
    raw = body_of(encode(Batch(NODE, 1, (change,)), version=2))
    raw[4][0][7] = []  # type: ignore[index]
    with pytest.raises(InvalidChangeError, match="fields"):
        decode(frame2(msgspec.msgpack.encode(raw)))


# --- fuzzing ----------------------------------------------------------------------------------

SAMPLES_2 = [
    encode(Batch(NODE, 1, (revisit(),), Direction.DOWN), version=2),
    encode(Batch(NODE, 2**40, (household_change(rt="001", rw="002"),) * 40), version=2),
    encode(Ack(NODE, 5, 4), version=2),
]


@settings(max_examples=3000)
@given(data=st.data(), original=st.sampled_from(SAMPLES_2))
def test_mutated_version_2_frames_raise_only_protocol_errors(data: st.DataObject, original: bytes):
    assert_only_protocol_errors(mutated(data, original))


@settings(max_examples=2000)
@given(body=json_like, compression=st.sampled_from([Compression.NONE, Compression.ZLIB_DICT]))
def test_well_formed_msgpack_of_the_wrong_shape_in_version_2_raises_only_protocol_errors(
    body: object, compression: int
):
    assert_only_protocol_errors(frame2(msgspec.msgpack.encode(body), compression=compression))


@settings(max_examples=300)
@given(data=st.data(), batch=batches())
def test_version_2_batches_with_a_spliced_value_raise_only_protocol_errors(
    data: st.DataObject, batch: Batch
):
    wire = body_of(encode(batch, version=2))
    for change in wire[4]:  # type: ignore[index]
        for pair in change[7]:
            pair[1] = data.draw(json_like)
        for field in change[8]:
            field[1] = data.draw(json_like)
        change[4] = data.draw(st.integers(-1, 2**64 - 1) | json_like)
    assert_only_protocol_errors(frame2(msgspec.msgpack.encode(wire)))


# --- the box's and the hub's fast paths (issue 18) ------------------------------------------


@settings(max_examples=300)
@given(batch=batches(), version=st.sampled_from([2, 3]))
def test_a_box_encodes_its_stored_changes_to_the_bytes_of_their_batch(batch: Batch, version: int):
    # The box packs its queue from the changes' stored JSON (edge.packing), without making
    # the changes' objects: the frame must be byte for byte the batch's own.
    stored = [dump_change(change) for change in batch.changes]
    rows = [msgspec.json.decode(text) for text in stored]
    loaded = Batch(
        batch.node, batch.seq, tuple(load_change(text) for text in stored), batch.direction
    )

    frame = encode_stored_changes(
        batch.node, batch.seq, rows, version=version, direction=batch.direction
    )

    assert frame == encode(loaded, version=version)
    assert decode(frame) == loaded


@settings(max_examples=200)
@given(batch=batches(), version=st.sampled_from([1, 2]), step=st.integers(1, 4))
def test_decoding_in_steps_gives_what_decoding_at_once_gives(batch: Batch, version: int, step: int):
    frame = encode(batch, version=version)
    steps = decode_gradually(frame, step=step)
    yields = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            assert done.value == decode(frame) == batch
            break
        yields += 1
    assert yields == max(0, (len(batch.changes) - 1) // step)
