"""Wire codec: a versioned envelope around a MessagePack body, compressed when it pays.

Decoding any bytes either returns a complete, valid message or raises one
:class:`~protocol.errors.ProtocolError` subclass; never another exception, never a
partially valid batch. The layout is specified in ``protocol/SPEC.md`` ("Wire format").
"""

from __future__ import annotations

import re
import uuid
import zlib
from dataclasses import astuple, dataclass
from typing import Any, Final, TypeAlias

import msgspec

from protocol.auditchain import HASH_BYTES, AuditAck, AuditBatch, AuditEntry
from protocol.changes import Ack, Batch, Change, Direction, FieldVersion, Reject
from protocol.digest import BUCKETS, DigestProbe, DigestReply
from protocol.entities import ENTITIES
from protocol.errors import (
    InvalidChangeError,
    MalformedError,
    ProtocolError,
    TooLargeError,
    UnsupportedVersionError,
)
from protocol.ids import is_node_id
from protocol.schema import wire_value_error

__all__ = [
    "DEFAULT_LIMITS",
    "MAGIC",
    "WIRE_VERSION",
    "Compression",
    "Kind",
    "Limits",
    "Message",
    "decode",
    "encode",
]

MAGIC: Final = 0x50  # "P"
WIRE_VERSION: Final = 1
_HEADER_SIZE: Final = 4
_MAX_TIME: Final = (1 << 64) - 1
_MAX_SEQ: Final = (1 << 53) - 1


class Kind:
    """Message kinds (envelope byte 2)."""

    BATCH: Final = 1
    ACK: Final = 2
    REJECT: Final = 3
    #: Anti-entropy (``protocol/digest.py``): sent only to and by boxes whose status
    #: carries a digest; an older box drops them unread.
    PROBE: Final = 4
    REPLY: Final = 5
    #: The box's audit chain (``protocol/auditchain.py``): sent only by boxes that keep
    #: one, and acked only to them.
    AUDIT: Final = 6
    AUDIT_ACK: Final = 7


class Compression:
    """Body compression (envelope byte 3)."""

    NONE: Final = 0
    ZLIB: Final = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits a decoder enforces (and an encoder respects)."""

    max_frame_bytes: int = 256 * 1024
    max_body_bytes: int = 4 * 1024 * 1024
    max_changes: int = 5000
    max_fields: int = 128
    max_nodes: int = 64
    max_detail_chars: int = 1000


DEFAULT_LIMITS: Final = Limits()

Message: TypeAlias = Batch | Ack | Reject | DigestProbe | DigestReply | AuditBatch | AuditAck


class _Field(msgspec.Struct, array_like=True, frozen=True):
    name: str
    value: Any
    time: int
    node: int
    seen: list[int]


class _Change(msgspec.Struct, array_like=True, frozen=True):
    entity: str
    record_id: bytes
    village: str
    origin: int
    fields: list[_Field]


class _Batch(msgspec.Struct, array_like=True, frozen=True):
    direction: int
    node: str
    seq: int
    nodes: list[str]
    changes: list[_Change]


class _Ack(msgspec.Struct, array_like=True, frozen=True):
    direction: int
    node: str
    seq: int
    watermark: int


class _Reject(msgspec.Struct, array_like=True, frozen=True):
    direction: int
    node: str
    seq: int
    reason: str
    detail: str


class _Probe(msgspec.Struct, array_like=True, frozen=True):
    node: str
    buckets: bytes
    wanted: list[bytes]


class _Reply(msgspec.Struct, array_like=True, frozen=True):
    node: str
    buckets: list[int]
    records: list[tuple[bytes, int]]


class _AuditEntry(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    at_ms: int
    actor: str
    action: str
    entity: str | None
    record_id: str | None
    detail: str
    address: str
    hash: bytes


class _Audit(msgspec.Struct, array_like=True, frozen=True):
    node: str
    entries: list[_AuditEntry]


class _AuditAck(msgspec.Struct, array_like=True, frozen=True):
    node: str
    seq: int


_BODY_TYPES: Final[dict[int, type[msgspec.Struct]]] = {
    Kind.BATCH: _Batch,
    Kind.ACK: _Ack,
    Kind.REJECT: _Reject,
    Kind.PROBE: _Probe,
    Kind.REPLY: _Reply,
    Kind.AUDIT: _Audit,
    Kind.AUDIT_ACK: _AuditAck,
}
_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODERS: Final = {kind: msgspec.msgpack.Decoder(t) for kind, t in _BODY_TYPES.items()}
_COMPRESS_ABOVE: Final = 96
_REASON_RE: Final = re.compile(r"[a-z][a-z_]{0,39}")


def encode(message: Message, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The wire bytes of ``message``; raises :class:`TooLargeError` over the frame limit."""
    if isinstance(message, Batch):
        kind, body = Kind.BATCH, _ENCODER.encode(_batch_to_wire(message))
    elif isinstance(message, Ack):
        kind = Kind.ACK
        wire_ack = _Ack(message.direction, message.node, message.seq, message.watermark)
        body = _ENCODER.encode(wire_ack)
    elif isinstance(message, DigestProbe):
        kind = Kind.PROBE
        buckets = b"".join(h.to_bytes(8, "big") for h in message.buckets)
        wanted = [uuid.UUID(record_id).bytes for record_id in message.wanted]
        body = _ENCODER.encode(_Probe(message.node, buckets, wanted))
    elif isinstance(message, DigestReply):
        kind = Kind.REPLY
        records = [(uuid.UUID(record_id).bytes, h) for record_id, h in message.records]
        body = _ENCODER.encode(_Reply(message.node, list(message.buckets), records))
    elif isinstance(message, AuditBatch):
        kind = Kind.AUDIT
        entries = [_AuditEntry(*astuple(entry)) for entry in message.entries]
        body = _ENCODER.encode(_Audit(message.node, entries))
    elif isinstance(message, AuditAck):
        kind, body = Kind.AUDIT_ACK, _ENCODER.encode(_AuditAck(message.node, message.seq))
    else:
        kind = Kind.REJECT
        detail = message.detail[: limits.max_detail_chars]
        wire_reject = _Reject(
            message.direction, message.node, message.seq, str(message.reason), detail
        )
        body = _ENCODER.encode(wire_reject)
    compression = Compression.NONE
    if len(body) > _COMPRESS_ABOVE:
        packed = zlib.compress(body, 6)
        if len(packed) < len(body):
            body, compression = packed, Compression.ZLIB
    frame = bytes((MAGIC, WIRE_VERSION, kind, compression)) + body
    if len(frame) > limits.max_frame_bytes:
        raise TooLargeError(f"frame of {len(frame)} bytes over {limits.max_frame_bytes}")
    return frame


def _batch_to_wire(batch: Batch) -> _Batch:
    index: dict[str, int] = {}

    def node_index(node: str) -> int:
        position = index.get(node)
        if position is None:
            position = index[node] = len(index)
        return position

    changes = []
    for change in batch.changes:
        fields = []
        for name, version in change.fields.items():
            seen: list[int] = []
            for node, time in version.seen:
                seen.append(node_index(node))
                seen.append(time)
            fields.append(_Field(name, version.value, version.time, node_index(version.node), seen))
        record_bytes = uuid.UUID(change.record_id).bytes
        origin = node_index(change.origin)
        changes.append(_Change(change.entity, record_bytes, change.village, origin, fields))
    return _Batch(batch.direction, batch.node, batch.seq, list(index), changes)


def decode(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse and validate wire bytes; raises only :class:`ProtocolError` subclasses."""
    if len(data) > limits.max_frame_bytes:
        raise TooLargeError(f"frame of {len(data)} bytes over {limits.max_frame_bytes}")
    if len(data) < _HEADER_SIZE or data[0] != MAGIC:
        raise MalformedError("not a Puskesos frame")
    version, kind, compression = data[1], data[2], data[3]
    if version != WIRE_VERSION:
        raise UnsupportedVersionError(f"wire version {version}")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise MalformedError(f"unknown message kind {kind}")
    body = _decompress(data[_HEADER_SIZE:], compression, limits)
    try:
        wire = decoder.decode(body)
    except (
        msgspec.DecodeError,
        msgspec.ValidationError,
        UnicodeDecodeError,
        RecursionError,
    ) as exc:
        raise MalformedError(f"body: {exc}") from None
    try:
        if isinstance(wire, _Batch):
            return _batch_from_wire(wire, limits)
        if isinstance(wire, _Ack):
            # seq 0: the answer to a box's hello when nothing of it was applied yet.
            direction, node, seq = _stream(wire.direction, wire.node, wire.seq, first=0)
            if not 0 <= wire.watermark <= _MAX_SEQ:
                raise MalformedError("watermark out of range")
            return Ack(node, seq, wire.watermark, direction)
        if isinstance(wire, _Probe):
            return _probe_from_wire(wire, limits)
        if isinstance(wire, _Reply):
            return _reply_from_wire(wire, limits)
        if isinstance(wire, _Audit):
            return _audit_from_wire(wire, limits)
        if isinstance(wire, _AuditAck):
            _stream(Direction.UP, wire.node, wire.seq)
            return AuditAck(wire.node, wire.seq)
        assert isinstance(wire, _Reject)
        # seq 0: the refused batch could not be read far enough to know its seq.
        direction, node, seq = _stream(wire.direction, wire.node, wire.seq, first=0)
        if len(wire.detail) > limits.max_detail_chars:
            raise TooLargeError("reject detail too long")
        if not _REASON_RE.fullmatch(wire.reason):
            raise MalformedError("reason is not a lowercase code")
        return Reject(node, seq, wire.reason, wire.detail, direction)
    except ProtocolError:
        raise
    except ValueError as exc:
        raise MalformedError(str(exc)) from None


def _decompress(body: bytes, compression: int, limits: Limits) -> bytes:
    if compression == Compression.NONE:
        if len(body) > limits.max_body_bytes:
            raise TooLargeError("body over limit")
        return body
    if compression != Compression.ZLIB:
        raise MalformedError(f"unknown compression {compression}")
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(body, limits.max_body_bytes + 1)
    except zlib.error as exc:
        raise MalformedError(f"compressed body: {exc}") from None
    if len(plain) > limits.max_body_bytes:
        raise TooLargeError(f"body inflates past {limits.max_body_bytes} bytes")
    if not inflater.eof or inflater.unused_data:
        raise MalformedError("compressed body is truncated or has trailing bytes")
    return plain


def _stream(direction: int, node: str, seq: int, first: int = 1) -> tuple[Direction, str, int]:
    if direction not in (Direction.UP, Direction.DOWN):
        raise MalformedError(f"unknown direction {direction}")
    if not is_node_id(node):
        raise MalformedError("bad node id")
    if not first <= seq <= _MAX_SEQ:
        raise MalformedError("sequence number out of range")
    return Direction(direction), node, seq


def _record_id(raw: bytes) -> str:
    if len(raw) != 16:
        raise MalformedError("record id is not 16 bytes")
    record = uuid.UUID(bytes=raw)
    if record.version != 7 or record.variant != uuid.RFC_4122:
        raise MalformedError("record id is not a UUIDv7")
    return str(record)


def _probe_from_wire(wire: _Probe, limits: Limits) -> DigestProbe:
    _stream(Direction.DOWN, wire.node, 0, first=0)
    if len(wire.buckets) not in (0, 8 * BUCKETS):
        raise MalformedError(f"a probe carries {BUCKETS} bucket hashes or none")
    if len(wire.wanted) > limits.max_changes:
        raise TooLargeError(f"{len(wire.wanted)} wanted records over {limits.max_changes}")
    buckets = tuple(
        int.from_bytes(wire.buckets[i : i + 8], "big") for i in range(0, len(wire.buckets), 8)
    )
    return DigestProbe(wire.node, buckets, tuple(_record_id(raw) for raw in wire.wanted))


def _reply_from_wire(wire: _Reply, limits: Limits) -> DigestReply:
    _stream(Direction.UP, wire.node, 0, first=0)
    if len(set(wire.buckets)) != len(wire.buckets) or not all(
        0 <= index < BUCKETS for index in wire.buckets
    ):
        raise MalformedError("reply buckets are repeated or out of range")
    if len(wire.records) > limits.max_changes:
        raise TooLargeError(f"{len(wire.records)} records over {limits.max_changes}")
    records = []
    for raw, digest in wire.records:
        if not 0 <= digest <= _MAX_TIME:
            raise MalformedError("record digest out of range")
        records.append((_record_id(raw), digest))
    return DigestReply(wire.node, tuple(wire.buckets), tuple(records))


def _audit_from_wire(wire: _Audit, limits: Limits) -> AuditBatch:
    if not 1 <= len(wire.entries) <= limits.max_changes:
        raise TooLargeError(f"an audit batch carries 1 to {limits.max_changes} entries")
    entries = []
    for position, e in enumerate(wire.entries):
        _stream(Direction.UP, wire.node, e.seq)
        # Increasing, not necessarily consecutive: a box sends its trail as it holds it, and
        # a hole in it is for the hub to find.
        if position and e.seq <= wire.entries[position - 1].seq:
            raise MalformedError("audit entries are not in increasing seq order")
        if not 0 <= e.at_ms <= _MAX_TIME:
            raise MalformedError("audit time out of range")
        if len(e.hash) != HASH_BYTES:
            raise MalformedError(f"audit hash is not {HASH_BYTES} bytes")
        entries.append(AuditEntry(*msgspec.structs.astuple(e)))
    return AuditBatch(wire.node, tuple(entries))


def _invalid(index: int, detail: str) -> InvalidChangeError:
    return InvalidChangeError(f"change {index}: {detail}")


def _batch_from_wire(wire: _Batch, limits: Limits) -> Batch:
    direction, batch_node, seq = _stream(wire.direction, wire.node, wire.seq)
    nodes = wire.nodes
    if len(nodes) > limits.max_nodes:
        raise TooLargeError(f"{len(nodes)} nodes over {limits.max_nodes}")
    if len(set(nodes)) != len(nodes) or not all(is_node_id(node) for node in nodes):
        raise MalformedError("node table has a bad or repeated node id")
    if len(wire.changes) > limits.max_changes:
        raise TooLargeError(f"{len(wire.changes)} changes over {limits.max_changes}")
    node_count = len(nodes)
    upward = direction is Direction.UP
    changes = []
    for position, raw in enumerate(wire.changes):
        entity = ENTITIES.get(raw.entity)
        if entity is None:
            raise _invalid(position, f"unknown entity {raw.entity[:40]!r}")
        if len(raw.record_id) != 16:
            raise _invalid(position, "record id is not 16 bytes")
        record = uuid.UUID(bytes=raw.record_id)
        if record.version != 7 or record.variant != uuid.RFC_4122:
            raise _invalid(position, "record id is not a UUIDv7")
        if len(raw.village) != 10 or not raw.village.isdigit() or not raw.village.isascii():
            raise _invalid(position, "village code is not 10 digits")
        if not 0 <= raw.origin < node_count:
            raise _invalid(position, "origin outside the node table")
        origin = nodes[raw.origin]
        if upward and origin != batch_node:
            raise _invalid(position, "an uplink change must come from the sending node")
        if not 1 <= len(raw.fields) <= limits.max_fields:
            raise _invalid(position, f"needs 1 to {limits.max_fields} fields")
        fields: dict[str, FieldVersion] = {}
        for item in raw.fields:
            spec = entity.fields.get(item.name)
            if spec is None:
                raise _invalid(position, f"unknown field {item.name[:40]!r}")
            if item.name in fields:
                raise _invalid(position, f"field {item.name!r} twice")
            if upward and spec.readonly:
                raise _invalid(position, f"field {item.name!r} is set by the hub only")
            problem = wire_value_error(spec, item.value)
            if problem is not None:
                raise _invalid(position, f"field {item.name!r}: {problem}")
            if not 0 <= item.time <= _MAX_TIME:
                raise _invalid(position, f"field {item.name!r}: time out of range")
            if not 0 <= item.node < node_count:
                raise _invalid(position, f"field {item.name!r}: node outside the table")
            node = nodes[item.node]
            if upward and node != batch_node:
                raise _invalid(position, f"field {item.name!r}: not written by the sender")
            seen = _seen_from_wire(item.seen, nodes, item.time) if item.seen else ()
            fields[item.name] = FieldVersion(item.value, item.time, node, seen)
        changes.append(Change(raw.entity, str(record), raw.village, origin, fields))
    return Batch(batch_node, seq, tuple(changes), direction)


def _seen_from_wire(flat: list[int], nodes: list[str], time: int) -> tuple[tuple[str, int], ...]:
    if len(flat) % 2 or len(flat) > 2 * len(nodes):
        raise InvalidChangeError("seen vector has a bad length")
    seen = []
    previous = ""
    for offset in range(0, len(flat), 2):
        node_index, seen_time = flat[offset], flat[offset + 1]
        if not 0 <= node_index < len(nodes):
            raise InvalidChangeError("seen vector names a node outside the table")
        node = nodes[node_index]
        if node <= previous:
            raise InvalidChangeError("seen vector is not sorted by node")
        # A writer can only have seen stamps older than its own write.
        if not 0 <= seen_time < time:
            raise InvalidChangeError("seen vector has a stamp not older than the write")
        seen.append((node, seen_time))
        previous = node
    return tuple(seen)
