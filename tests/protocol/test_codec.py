"""Wire codec: what goes out comes back the same; anything else is refused with a reason."""

from __future__ import annotations

import hashlib
import math
import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.changes import Ack, Batch, Change, Direction, FieldVersion, Reject
from protocol.codec import MAGIC, Compression, Kind, Limits, decode, encode
from protocol.entities import ENTITIES
from protocol.errors import (
    InvalidChangeError,
    MalformedError,
    ProtocolError,
    Reason,
    TooLargeError,
    UnsupportedVersionError,
)
from protocol.schema import wire_value_accept, wire_value_error
from tests.protocol.strategies import batches, value_strategy

NODE = "edge-3201012001-a"
RID = "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
T = 1_795_478_400_000 << 16


def household_change(**values: object) -> Change:
    fields = {name: FieldVersion(v, T, NODE, ()) for name, v in values.items()}  # type: ignore[arg-type]
    return Change("household", RID, "3201012001", NODE, fields)


def frame(body: bytes, *, kind: int = Kind.BATCH, compress: bool = False) -> bytes:
    if compress:
        return bytes((MAGIC, 1, kind, Compression.ZLIB)) + zlib.compress(body)
    return bytes((MAGIC, 1, kind, Compression.NONE)) + body


VERSIONS = pytest.mark.parametrize("version", [1, 2, 3])


@VERSIONS
@pytest.mark.parametrize("entity", sorted(ENTITIES))
@settings(max_examples=40)
@given(data=st.data())
def test_every_field_of_every_entity_round_trips(entity: str, version: int, data: st.DataObject):
    schema = ENTITIES[entity]
    fields = {
        spec.name: FieldVersion(data.draw(value_strategy(spec)), T + i, NODE, (("hub-1", T - 1),))
        for i, spec in enumerate(schema.fields.values())
        if not spec.readonly
    }
    batch = Batch(NODE, 7, (Change(entity, RID, "3201012001", NODE, fields),))
    assert decode(encode(batch, version=version)) == batch


@VERSIONS
@settings(max_examples=300)
@given(batch=batches())
def test_random_batches_in_both_directions_round_trip(version: int, batch: Batch):
    frame = encode(batch, version=version)
    assert frame[1] == version
    assert decode(frame) == batch


@VERSIONS
def test_acks_and_rejections_round_trip(version: int):
    for message in (
        Ack(NODE, 12, 11),
        Ack(NODE, 3, 3, Direction.DOWN),
        Reject(NODE, 4, Reason.WRONG_VILLAGE, "record in 3201012002"),
    ):
        assert decode(encode(message, version=version)) == message


def test_a_reason_code_from_a_newer_hub_is_kept_as_it_is():
    message = Reject(NODE, 4, "quota_exceeded", "try tomorrow")
    assert decode(encode(message)).reason == "quota_exceeded"


def test_large_batches_are_compressed_and_small_acks_are_not():
    change = household_change(address="Jl. Melati No. 1", rt="001", rw="002")
    big = encode(Batch(NODE, 1, (change,) * 50))
    assert big[3] == Compression.ZLIB
    assert encode(Ack(NODE, 1, 1))[3] == Compression.NONE


def test_a_batch_over_the_frame_limit_is_refused_on_both_sides():
    limits = Limits(max_frame_bytes=300)
    noise = "".join(hashlib.sha256(bytes([i])).hexdigest() for i in range(32))
    batch = Batch(NODE, 1, (household_change(notes=noise),))
    with pytest.raises(TooLargeError):
        encode(batch, limits=limits)
    with pytest.raises(TooLargeError):
        decode(encode(batch), limits=limits)


def test_a_zip_bomb_is_refused_without_inflating_it():
    bomb = frame(b"\x00" * 50_000_000, compress=True)
    assert len(bomb) < 100_000
    with pytest.raises(TooLargeError):
        decode(bomb)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            Change(
                "household", RID, "3201012001", NODE, {"name_of_cat": FieldVersion("x", T, NODE)}
            ),
            "unknown field",
        ),
        (
            Change("spaceship", RID, "3201012001", NODE, {"deleted": FieldVersion(True, T, NODE)}),
            "unknown entity",
        ),
        (household_change(floor_area_m2=math.nan), "finite"),
        (household_change(presence_status="hilang_di_laut"), "unknown code"),
        (household_change(decile=3), "hub only"),
        (
            Change(
                "household",
                RID,
                "3201012001",
                "edge-other",
                {"rt": FieldVersion("1", T, "edge-other")},
            ),
            "sending node",
        ),
        (
            Change(
                "household",
                RID,
                "3201012001",
                NODE,
                {"rt": FieldVersion("001", T, NODE, (("hub-1", T),))},
            ),
            "not older",
        ),
        (
            Change(
                "household",
                "6ba7b810-9dad-41d1-80b4-00c04fd430c8",
                "3201012001",
                NODE,
                {"rt": FieldVersion("001", T, NODE)},
            ),
            "UUIDv7",
        ),
        (  # version 7, but not the RFC 4122 variant
            Change(
                "household",
                "01890a5d-ac96-774b-3cc6-9b5a1e2f3d40",
                "3201012001",
                NODE,
                {"rt": FieldVersion("001", T, NODE)},
            ),
            "UUIDv7",
        ),
        (
            Change("household", RID, "32010120", NODE, {"rt": FieldVersion("001", T, NODE)}),
            "10 digits",
        ),
    ],
)
@VERSIONS
def test_invalid_changes_are_refused_with_a_reason(change: Change, reason: str, version: int):
    with pytest.raises(InvalidChangeError) as raised:
        decode(encode(Batch(NODE, 1, (change,)), version=version))
    assert raised.value.reason is Reason.INVALID_CHANGE
    assert reason in str(raised.value)


def test_a_hub_only_field_may_travel_down():
    change = Change(
        "household", RID, "3201012001", "hub-1", {"decile": FieldVersion(2, T, "hub-1")}
    )
    batch = Batch(NODE, 1, (change,), Direction.DOWN)
    assert decode(encode(batch)) == batch


def test_envelope_errors_name_their_reason():
    good = encode(Ack(NODE, 1, 1))
    with pytest.raises(UnsupportedVersionError):
        decode(bytes((MAGIC, 9)) + good[2:])
    with pytest.raises(MalformedError):
        decode(b"GET / HTTP/1.1\r\n")
    with pytest.raises(MalformedError):
        decode(good[:3])
    with pytest.raises(MalformedError):
        decode(bytes((MAGIC, 1, 99, 0)) + good[4:])
    with pytest.raises(MalformedError):
        decode(good + b"\x00")


# --- fuzzing: at least 10,000 cases in all --------------------------------------------------


def assert_only_protocol_errors(data: bytes) -> None:
    try:
        message = decode(data)
    except ProtocolError:
        return
    assert isinstance(message, Batch | Ack | Reject)


@settings(max_examples=4000)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_protocol_errors(data: bytes):
    assert_only_protocol_errors(data)


def sample_frames() -> list[bytes]:
    """Valid frames of every kind and shape, to mutate."""
    member = Change(
        "member",
        RID,
        "3201012001",
        "hub-1",
        {
            "name": FieldVersion("Siti Aminah", T, "hub-1", (("edge-a", T - 5), ("hub-1", T - 9))),
            "disability": FieldVersion(["fisik"], T, "edge-a", (("edge-a", T - 1),)),
            "pregnant": FieldVersion(False, T + 1, "hub-1"),
        },
    )
    household = household_change(
        address="Jl. Melati No. 1", rt="001", rw="002", floor_area_m2=36.5, deleted=False
    )
    return [
        encode(Batch(NODE, 1, (household,))),
        encode(Batch(NODE, 2**40, (household,) * 40)),
        encode(Batch(NODE, 3, (member, member), Direction.DOWN)),
        encode(Ack(NODE, 5, 4)),
        encode(Reject(NODE, 6, Reason.CLOCK_AHEAD, "stamp is 1 year ahead")),
    ]


SAMPLES = sample_frames()


@settings(max_examples=4000)
@given(data=st.data(), original=st.sampled_from(SAMPLES))
def test_mutated_frames_raise_only_protocol_errors(data: st.DataObject, original: bytes):
    assert_only_protocol_errors(mutated(data, original))


def mutated(data: st.DataObject, original: bytes) -> bytes:
    """``original`` with one to four bits flipped, tails cut or bytes inserted."""
    wire = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(len(wire) - 1, 0)))
        if action == "flip" and wire:
            wire[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del wire[at:]
        else:
            wire[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(wire)


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=3000)
@given(
    body=json_like,
    kind=st.sampled_from([Kind.BATCH, Kind.ACK, Kind.REJECT]),
    compress=st.booleans(),
)
def test_well_formed_msgpack_of_the_wrong_shape_raises_only_protocol_errors(
    body: object, kind: int, compress: bool
):
    assert_only_protocol_errors(frame(msgspec.msgpack.encode(body), kind=kind, compress=compress))


@settings(max_examples=300)
@given(data=st.data(), batch=batches())
def test_batches_with_a_spliced_value_raise_only_protocol_errors(data: st.DataObject, batch: Batch):
    """Structurally right batches whose values are anything at all."""
    encoded = encode(batch)
    body = zlib.decompress(encoded[4:]) if encoded[3] == Compression.ZLIB else encoded[4:]
    wire = msgspec.msgpack.decode(body)
    for change in wire[4]:
        for field in change[4]:
            field[1] = data.draw(json_like)
    assert_only_protocol_errors(frame(msgspec.msgpack.encode(wire)))


def test_only_a_reject_or_a_hello_ack_may_name_seq_0():
    for message in (Ack("edge-a", 0, 0), Reject("edge-a", 0, "malformed", "unreadable")):
        assert decode(encode(message)) == message
    with pytest.raises(MalformedError):
        decode(encode(Batch("edge-a", 0, ())))


@settings(max_examples=400)
@given(
    data=st.data(),
    spec=st.sampled_from([s for e in ENTITIES.values() for s in e.fields.values()]),
)
def test_the_quick_value_test_agrees_with_the_full_one(data: st.DataObject, spec):
    # The decoder asks wire_value_accept first and the full check only when it says no:
    # it must never accept what the full check refuses (and should say yes to the rest).
    value = data.draw(json_like | value_strategy(spec))
    assert wire_value_accept(spec)(value) == (wire_value_error(spec, value) is None)
