"""The status a box publishes, retained, on its ``status`` topic (and as its last will).

JSON, so an operator can read it with ``mosquitto_sub``. The hub stores the latest one per
device: how far behind the box is (its outbox), how wrong its clock is (``wall_ms``
against the hub's clock at receipt), and which software, wire version and entity schema
version it runs. On an
``online`` status the hub answers with an ack of the highest ``seq`` it applied of that
box (see ``protocol/SPEC.md`` §7, "Hello").
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Final

from protocol._jsondoc import non_negative_int, read_object
from protocol.errors import MalformedError

__all__ = ["MAX_STATUS_BYTES", "Status", "decode_status", "encode_status"]

#: A status larger than this is refused unread.
MAX_STATUS_BYTES: Final = 2048
_STATES: Final = ("online", "offline")
_DIGEST_RE: Final = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class Status:
    """A box's state as it reports it."""

    state: str
    up_seq: int = 0
    #: Every up seq below it is acked or gone: the box will never send it (again).
    up_floor: int = 0
    down_watermark: int = 0
    outbox: int = 0
    oldest_ms: int | None = None
    wall_ms: int = 0
    software: str = ""
    wire: int = 1
    #: Changes when the box is restored from a backup: its down stream starts again.
    epoch: str = ""
    #: The entity schema version the box knows (``protocol.entities.SCHEMA_VERSION``); a
    #: box from before it was reported knows version 1.
    schema: int = 1
    #: The root of the box's record digest (``protocol/digest.py``, 16 hex digits) and how
    #: many records it holds; ``""`` from a box without anti-entropy.
    digest: str = ""
    records: int = 0


def encode_status(status: Status) -> bytes:
    """The status as compact UTF-8 JSON."""
    return json.dumps(asdict(status), separators=(",", ":")).encode()


def decode_status(data: bytes) -> Status:
    """Parse a status; unknown keys are ignored (newer boxes may add some).

    Raises :class:`~protocol.errors.MalformedError` for anything that is not one.
    """
    document = read_object(data, MAX_STATUS_BYTES, "status")
    if document.get("state") not in _STATES:
        raise MalformedError("status has no valid state")
    software, epoch = document.get("software", ""), document.get("epoch", "")
    if not all(isinstance(text, str) and len(text) <= 64 for text in (software, epoch)):
        raise MalformedError("status software or epoch is not a short string")
    digest = document.get("digest", "")
    if not isinstance(digest, str) or (digest and not _DIGEST_RE.fullmatch(digest)):
        raise MalformedError("status digest is not 16 hex digits")

    def count(name: str) -> int:
        return non_negative_int(document, name, "status") or 0

    return Status(
        state=document["state"],
        up_seq=count("up_seq"),
        up_floor=count("up_floor"),
        down_watermark=count("down_watermark"),
        outbox=count("outbox"),
        oldest_ms=non_negative_int(document, "oldest_ms", "status"),
        wall_ms=count("wall_ms"),
        software=software,
        wire=count("wire"),
        epoch=epoch,
        schema=count("schema") or 1,
        digest=digest,
        records=count("records"),
    )
