"""SPEC.md's worked example is what the codec really produces."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import protocol
from protocol.changes import Ack, Batch, Change, FieldVersion
from protocol.codec import decode, encode

SPEC = (Path(protocol.__file__).parent / "SPEC.md").read_text(encoding="utf-8")
T = 0x01A20ADA2C000000
EXAMPLE = Batch(
    "edge-a",
    42,
    (
        Change(
            "household",
            "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
            "3201022001",
            "edge-a",
            {
                "rt": FieldVersion("004", T + 1, "edge-a", (("edge-a", T),)),
                "programmes": FieldVersion(["pkh"], T + 1, "edge-a", ()),
            },
        ),
    ),
)


def annotated_body_bytes() -> bytes:
    """The hex columns of the annotated body in section 9, comments dropped."""
    block = SPEC.split("body (MessagePack", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines()[1:]:
        for token in line.split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break
            out.append(int(token, 16))
    return bytes(out)


def test_the_worked_example_body_is_byte_for_byte_what_we_send():
    frame = encode(EXAMPLE)
    assert zlib.decompress(frame[4:]) == annotated_body_bytes()
    assert f"is {len(frame)} bytes in all" in SPEC
    assert decode(frame) == EXAMPLE


def test_the_worked_example_ack_frame_is_what_we_send():
    assert encode(Ack("edge-a", 42, 42)).hex(" ") in SPEC
