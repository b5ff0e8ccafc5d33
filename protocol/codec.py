"""Wire codec: a versioned envelope around a MessagePack body, compressed when it pays.

Three wire versions: 1; 2 (batches with one shared stamp per change, and zlib with a
preset dictionary); 3 (version 2 with raw DEFLATE instead of zlib's wrapping, UUID values as
16 bytes, and audit entries without their hashes). A decoder reads all three; an encoder
writes the version it is asked for, 1 unless told otherwise: the version every peer reads
(``protocol/SPEC.md`` §8).

Decoding any bytes either returns a complete, valid message or raises one
:class:`~protocol.errors.ProtocolError` subclass; never another exception, never a
partially valid batch. The layout is specified in ``protocol/SPEC.md`` ("Wire format").
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import astuple, dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, TypeAlias

import msgspec

from protocol.auditchain import HASH_BYTES, AuditAck, AuditBatch, AuditEntry, chain_hash, seal
from protocol.changes import Ack, Batch, Change, Direction, FieldVersion, Reject, Seen
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
from protocol.jsonform import common_stamp
from protocol.schema import EntitySchema, wire_value_accept, wire_value_error

__all__ = [
    "DEFAULT_LIMITS",
    "MAGIC",
    "WIRE_VERSION",
    "Compression",
    "Kind",
    "Limits",
    "Message",
    "decode",
    "decode_gradually",
    "encode",
    "encode_stored_changes",
    "frame_version",
    "version_for",
]

MAGIC: Final = 0x50  # "P"
#: The highest wire version this codec speaks, the one a box reports in its status.
WIRE_VERSION: Final = 3
_VERSIONS: Final = (1, 2, 3)
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
    #: zlib with the preset dictionary ``protocol/data/zdict-2.bin``; wire version 2 on.
    #: The dictionary is frozen: another one would be another code.
    ZLIB_DICT: Final = 2
    #: Raw DEFLATE (RFC 1951: no zlib header, dictionary id or Adler-32, 10 bytes less)
    #: with the same preset dictionary; wire version 3 only.
    DEFLATE_DICT: Final = 3


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


class _Change2(msgspec.Struct, array_like=True, frozen=True):
    """A change of wire version 2: the stamp most of its fields share once (``time``,
    ``node``, ``seen``), the ``values`` of the fields stamped so, and the other fields
    whole (``exceptions``)."""

    entity: str
    record_id: bytes
    village: str
    origin: int
    time: int
    node: int
    seen: list[int]
    values: list[tuple[str, Any]]
    exceptions: list[_Field]


class _Batch2(msgspec.Struct, array_like=True, frozen=True):
    direction: int
    node: str
    seq: int
    nodes: list[str]
    changes: list[_Change2]


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


class _AuditEntry3(msgspec.Struct, array_like=True, frozen=True):
    """An audit entry of wire version 3: no ``seq`` (they follow ``first``) and no ``hash``
    (the receiver computes it); ``at`` is the difference from the previous entry's
    ``at_ms`` (the first entry's is whole); ``None`` for ``actor`` or ``address`` is the
    previous entry's; ``record_id`` may be 16 bytes (a lowercase UUID) and ``detail`` a
    list of field names (the text ``{"fields": [...]}``)."""

    at: int
    actor: str | None
    action: str
    entity: str | None
    record_id: Any
    detail: Any
    address: str | None


class _Audit3(msgspec.Struct, array_like=True, frozen=True):
    node: str
    first: int
    previous: bytes
    entries: list[_AuditEntry3]


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
#: Per wire version, per kind: version 2 changes the batch body, version 3 the audit body.
_DECODERS: Final = {
    1: {kind: msgspec.msgpack.Decoder(t) for kind, t in _BODY_TYPES.items()},
    2: {
        kind: msgspec.msgpack.Decoder(_Batch2 if kind == Kind.BATCH else t)
        for kind, t in _BODY_TYPES.items()
    },
    3: {
        kind: msgspec.msgpack.Decoder(
            _Batch2 if kind == Kind.BATCH else _Audit3 if kind == Kind.AUDIT else t
        )
        for kind, t in _BODY_TYPES.items()
    },
}
#: Version 1 compresses bodies over this size; version 2 tries every body (its dictionary
#: makes even a short one smaller).
_COMPRESS_ABOVE: Final = 96
_ZLIB_LEVEL: Final = 6


@cache
def _zdict() -> bytes:
    """Compression codes 2 and 3's preset dictionary (read once)."""
    return resources.files("protocol").joinpath("data", "zdict-2.bin").read_bytes()


@cache
def _primed(wbits: int) -> zlib._Compress:
    """A compressor that has taken in the dictionary and nothing else: each message
    compresses with a copy of it, the same bytes as a fresh one without hashing the 30 KB
    dictionary again (about 65 µs a message)."""
    return zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, wbits, zdict=_zdict())


def _deflate(body: bytes, wbits: int) -> bytes:
    deflater = _primed(wbits).copy()
    return deflater.compress(body) + deflater.flush()


def frame_version(frame: bytes) -> int:
    """The wire version of a frame :func:`decode` accepted: answer it in that version."""
    return frame[1]


def version_for(reported: int) -> int:
    """The wire version to send a peer whose status reported ``reported`` (a status without
    one, or an older version than ours: what it speaks)."""
    return max(1, min(reported, WIRE_VERSION))


_REASON_RE: Final = re.compile(r"[a-z][a-z_]{0,39}")


def encode(message: Message, *, limits: Limits = DEFAULT_LIMITS, version: int = 1) -> bytes:
    """The wire bytes of ``message`` in wire ``version``; raises :class:`TooLargeError`
    over the frame limit."""
    if version not in _VERSIONS:
        raise ValueError(f"wire version {version} is not spoken here")
    if isinstance(message, Batch):
        if version == 1:
            wire_batch: _Batch | _Batch2 = _batch_to_wire(message)
        else:
            wire_batch = _batch_to_wire_2(message, uuids=version >= 3)
        kind, body = Kind.BATCH, _ENCODER.encode(wire_batch)
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
        compact = _audit_to_wire_3(message) if version >= 3 else None
        if compact is not None:
            body = _ENCODER.encode(compact)
        elif version >= 3:
            # Not one run linked from ``previous``: the entries with their hashes, in version
            # 2, which every reader of version 3 reads (SPEC §8).
            return encode(message, limits=limits, version=2)
        else:
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
    return _frame(kind, body, version, limits)


def _frame(kind: int, body: bytes, version: int, limits: Limits) -> bytes:
    """The envelope around ``body``, compressed when that makes it smaller."""
    compression = Compression.NONE
    if version == 1 and len(body) > _COMPRESS_ABOVE:
        packed, code = zlib.compress(body, _ZLIB_LEVEL), Compression.ZLIB
    elif version == 2:
        packed, code = _deflate(body, zlib.MAX_WBITS), Compression.ZLIB_DICT
    elif version >= 3:
        packed, code = _deflate(body, -zlib.MAX_WBITS), Compression.DEFLATE_DICT
    else:
        packed, code = body, compression
    if len(packed) < len(body):
        body, compression = packed, code
    frame = bytes((MAGIC, version, kind, compression)) + body
    if len(frame) > limits.max_frame_bytes:
        raise TooLargeError(f"frame of {len(frame)} bytes over {limits.max_frame_bytes}")
    return frame


class _NodeTable(dict[str, int]):
    """A batch's node table as it is built: each node gets an index on first use."""

    def index(self, node: str) -> int:
        position = self.get(node)
        if position is None:
            position = self[node] = len(self)
        return position

    def seen(self, seen: Seen) -> list[int]:
        """``seen`` in its flat wire form ``[node_index, time, ...]``."""
        flat: list[int] = []
        for node, time in seen:
            flat.append(self.index(node))
            flat.append(time)
        return flat

    def field(self, name: str, version: FieldVersion, uuids: bool = False) -> _Field:
        value = _uuid_bytes(version.value) if uuids else version.value
        return _Field(name, value, version.time, self.index(version.node), self.seen(version.seen))


def _batch_to_wire(batch: Batch) -> _Batch:
    table = _NodeTable()
    changes = []
    for change in batch.changes:
        fields = [table.field(name, version) for name, version in change.fields.items()]
        record_bytes = uuid.UUID(change.record_id).bytes
        origin = table.index(change.origin)
        changes.append(_Change(change.entity, record_bytes, change.village, origin, fields))
    return _Batch(batch.direction, batch.node, batch.seq, list(table), changes)


_UUID_TEXT: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_bytes(value: Any) -> Any:
    """Version 3: a lowercase UUID text travels as its 16 bytes (any other value as it is)."""
    if type(value) is str and len(value) == 36 and _UUID_TEXT.fullmatch(value):
        return bytes.fromhex(value.replace("-", ""))
    return value


def _uuid_text(raw: bytes) -> str:
    """The lowercase UUID text of 16 bytes (the inverse of :func:`_uuid_bytes`)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _batch_to_wire_2(batch: Batch, *, uuids: bool = False) -> _Batch2:
    table = _NodeTable()
    changes = []
    for change in batch.changes:
        stamp = common_stamp((v.time, v.node, v.seen) for v in change.fields.values())
        values: list[tuple[str, Any]] = []
        exceptions: list[_Field] = []
        for name, version in change.fields.items():
            if (version.time, version.node, version.seen) == stamp:
                values.append((name, _uuid_bytes(version.value) if uuids else version.value))
            else:
                exceptions.append(table.field(name, version, uuids))
        time, node, seen = stamp
        changes.append(
            _Change2(
                change.entity,
                uuid.UUID(change.record_id).bytes,
                change.village,
                table.index(change.origin),
                time,
                table.index(node),
                table.seen(seen),
                values,
                exceptions,
            )
        )
    return _Batch2(batch.direction, batch.node, batch.seq, list(table), changes)


def encode_stored_changes(
    node: str,
    seq: int,
    changes: Sequence[Sequence[Any]],
    *,
    version: int = 2,
    limits: Limits = DEFAULT_LIMITS,
    direction: Direction = Direction.UP,
) -> bytes:
    """The wire ``version`` (2 or later) frame of ``Batch(node, seq, changes)``, from the
    changes in the form a box stores them (``protocol.jsonform.dump_change``'s lists,
    decoded): the same bytes as :func:`encode`, without making the changes' objects first (a
    box packs its queue this way; ``dump_change`` already split each change on its shared
    stamp)."""
    if version < 2 or version not in _VERSIONS:
        raise ValueError(f"wire version {version}: stored changes are encoded in 2 or later")
    uuids = version >= 3
    table = _NodeTable()
    wire = []
    for entity, record_id, village, origin, time, node_, seen, values, exceptions in changes:
        fields = [
            _Field(
                name,
                _uuid_bytes(value) if uuids else value,
                version_time,
                table.index(writer),
                table.seen(version_seen),
            )
            for name, (value, version_time, writer, version_seen) in exceptions.items()
        ]
        shared = (
            [(name, _uuid_bytes(value)) for name, value in values.items()]
            if uuids
            else (list(values.items()))
        )
        wire.append(
            _Change2(
                entity,
                uuid.UUID(record_id).bytes,
                village,
                table.index(origin),
                time,
                table.index(node_),
                table.seen(seen),
                shared,
                fields,
            )
        )
    body = _ENCODER.encode(_Batch2(direction, node, seq, list(table), wire))
    return _frame(Kind.BATCH, body, version, limits)


def decode(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse and validate wire bytes; raises only :class:`ProtocolError` subclasses."""
    steps = decode_gradually(data, limits=limits, step=_NO_STEPS)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            message: Message = done.value
            return message


#: A step size no batch reaches: :func:`decode` runs the decoding in one go.
_NO_STEPS: Final = 1 << 62


def decode_gradually(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS, step: int = 50
) -> Generator[None, None, Message]:
    """:func:`decode` in steps: a generator that yields after every ``step`` changes of a
    batch and returns the message (``StopIteration.value``), raising what :func:`decode`
    raises. A receiver with an event loop (the hub) resumes it between other work, so that
    decoding a batch of 500 changes (tens of milliseconds) never holds up the loop for long."""
    if len(data) > limits.max_frame_bytes:
        raise TooLargeError(f"frame of {len(data)} bytes over {limits.max_frame_bytes}")
    if len(data) < _HEADER_SIZE or data[0] != MAGIC:
        raise MalformedError("not a Puskesos frame")
    version, kind, compression = data[1], data[2], data[3]
    if version not in _VERSIONS:
        raise UnsupportedVersionError(f"wire version {version}")
    decoder = _DECODERS[version].get(kind)
    if decoder is None:
        raise MalformedError(f"unknown message kind {kind}")
    body = _decompress(data[_HEADER_SIZE:], compression, version, limits)
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
        if isinstance(wire, _Batch | _Batch2):
            return (yield from _batch_from_wire(wire, limits, step, uuids=version >= 3))
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
        if isinstance(wire, _Audit3):
            return _audit_from_wire_3(wire, limits)
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


def _decompress(body: bytes, compression: int, version: int, limits: Limits) -> bytes:
    if compression == Compression.NONE:
        if len(body) > limits.max_body_bytes:
            raise TooLargeError("body over limit")
        return body
    if compression == Compression.ZLIB:
        inflater = zlib.decompressobj()
    elif compression == Compression.ZLIB_DICT and version >= 2:
        inflater = zlib.decompressobj(zdict=_zdict())
    elif compression == Compression.DEFLATE_DICT and version >= 3:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS, zdict=_zdict())
    else:
        raise MalformedError(f"unknown compression {compression}")
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
    if not _is_uuid7(raw):
        raise MalformedError("record id is not a UUIDv7")
    return _uuid_text(raw)


def _is_uuid7(raw: bytes) -> bool:
    """Whether 16 bytes are a UUIDv7 (version 7, the RFC 4122 variant), read from the
    bytes: a quarter of the time of ``uuid.UUID``, once per change decoded (issue 18)."""
    return raw[6] >> 4 == 7 and raw[8] >> 6 == 0b10


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


#: The one detail text version 3 sends as its field names (``edge.store`` writes it for
#: every create and update): ``{"fields": ["name", ...]}`` as ``json.dumps`` writes it.
_FIELDS_DETAIL: Final = re.compile(
    r'\{"fields": \[(?:"[a-z0-9_]{1,64}"(?:, "[a-z0-9_]{1,64}")*)?\]\}'
)
_FIELD_NAME: Final = re.compile(r"[a-z0-9_]{1,64}")


def _fields_detail(names: list[str]) -> str:
    return json.dumps({"fields": names})


def _audit_to_wire_3(batch: AuditBatch) -> _Audit3 | None:
    """The version 3 body of ``batch``, or ``None`` when its entries are not one run of
    consecutive seqs each linking to the one before from ``batch.previous`` (the receiver
    could not compute the same hashes)."""
    previous = batch.previous
    if previous is None or len(previous) != HASH_BYTES or not batch.entries:
        return None
    entries: list[_AuditEntry3] = []
    seq, link, at, actor, address = batch.entries[0].seq, previous, 0, None, None
    for e in batch.entries:
        if e.seq != seq or chain_hash(link, e) != e.hash:
            return None
        if not -(1 << 63) <= e.at_ms - at <= _MAX_TIME:
            return None  # a difference MessagePack cannot carry
        detail: Any = e.detail
        if _FIELDS_DETAIL.fullmatch(detail):
            names = json.loads(detail)["fields"]
            if _fields_detail(names) == detail:
                detail = names
        entries.append(
            _AuditEntry3(
                e.at_ms - at,
                None if e.actor == actor and seq != batch.entries[0].seq else e.actor,
                e.action,
                e.entity,
                _uuid_bytes(e.record_id),
                detail,
                None if e.address == address and seq != batch.entries[0].seq else e.address,
            )
        )
        seq, link, at, actor, address = seq + 1, e.hash, e.at_ms, e.actor, e.address
    return _Audit3(batch.node, batch.entries[0].seq, previous, entries)


def _audit_from_wire_3(wire: _Audit3, limits: Limits) -> AuditBatch:
    count = len(wire.entries)
    if not 1 <= count <= limits.max_changes:
        raise TooLargeError(f"an audit batch carries 1 to {limits.max_changes} entries")
    _stream(Direction.UP, wire.node, wire.first)
    _stream(Direction.UP, wire.node, wire.first + count - 1)
    if len(wire.previous) != HASH_BYTES:
        raise MalformedError(f"audit previous hash is not {HASH_BYTES} bytes")
    entries = []
    link, at, actor, address = wire.previous, 0, None, None
    for position, e in enumerate(wire.entries):
        at += e.at
        if not 0 <= at <= _MAX_TIME:
            raise MalformedError("audit time out of range")
        actor = e.actor if e.actor is not None else actor
        address = e.address if e.address is not None else address
        if actor is None or address is None:
            raise MalformedError("the first audit entry names its actor and address")
        record_id = e.record_id
        if type(record_id) is bytes:
            if len(record_id) != 16:
                raise MalformedError("audit record id of bytes other than a UUID's 16")
            record_id = _uuid_text(record_id)
        elif record_id is not None and type(record_id) is not str:
            raise MalformedError("audit record id is not text, a UUID or nil")
        detail = e.detail
        if type(detail) is list:
            if not all(type(name) is str and _FIELD_NAME.fullmatch(name) for name in detail):
                raise MalformedError("audit detail names a field that is not a field name")
            detail = _fields_detail(detail)
        elif type(detail) is not str:
            raise MalformedError("audit detail is not text or field names")
        entry = seal(
            link,
            AuditEntry(
                wire.first + position, at, actor, e.action, e.entity, record_id, detail, address
            ),
        )
        link = entry.hash
        entries.append(entry)
    return AuditBatch(wire.node, tuple(entries), wire.previous)


def _invalid(index: int, detail: str) -> InvalidChangeError:
    return InvalidChangeError(f"change {index}: {detail}")


def _batch_from_wire(
    wire: _Batch | _Batch2, limits: Limits, step: int, *, uuids: bool = False
) -> Generator[None, None, Batch]:
    direction, batch_node, seq = _stream(wire.direction, wire.node, wire.seq)
    nodes = wire.nodes
    if len(nodes) > limits.max_nodes:
        raise TooLargeError(f"{len(nodes)} nodes over {limits.max_nodes}")
    if len(set(nodes)) != len(nodes) or not all(is_node_id(node) for node in nodes):
        raise MalformedError("node table has a bad or repeated node id")
    if len(wire.changes) > limits.max_changes:
        raise TooLargeError(f"{len(wire.changes)} changes over {limits.max_changes}")
    # An uplink batch holds only the sender's own writes.
    writer = batch_node if direction is Direction.UP else None
    raws: Sequence[_Change | _Change2] = wire.changes
    changes = []
    for position, raw in enumerate(raws):
        if position and not position % step:
            yield
        entity = ENTITIES.get(raw.entity)
        if entity is None:
            raise _invalid(position, f"unknown entity {raw.entity[:40]!r}")
        record = raw.record_id
        if len(record) != 16:
            raise _invalid(position, "record id is not 16 bytes")
        if not _is_uuid7(record):
            raise _invalid(position, "record id is not a UUIDv7")
        if len(raw.village) != 10 or not raw.village.isdigit() or not raw.village.isascii():
            raise _invalid(position, "village code is not 10 digits")
        if not 0 <= raw.origin < len(nodes):
            raise _invalid(position, "origin outside the node table")
        origin = nodes[raw.origin]
        if writer is not None and origin != writer:
            raise _invalid(position, "an uplink change must come from the sending node")
        fields = _Fields(position, entity, nodes, writer, uuids)
        if isinstance(raw, _Change):
            count = len(raw.fields)
            exceptions = raw.fields
        else:
            count = len(raw.values) + len(raw.exceptions)
            exceptions = raw.exceptions
        if not 1 <= count <= limits.max_fields:
            raise _invalid(position, f"needs 1 to {limits.max_fields} fields")
        if isinstance(raw, _Change2):
            stamp = fields.stamp("shared stamp", raw.time, raw.node, raw.seen)
            fields.add_all(raw.values, *stamp)
        for item in exceptions:
            fields.add_all(
                ((item.name, item.value),),
                *fields.stamp(f"field {item.name!r}", item.time, item.node, item.seen),
            )
        changes.append(Change(raw.entity, _uuid_text(record), raw.village, origin, fields.versions))
    return Batch(batch_node, seq, tuple(changes), direction)


#: Per entity and direction (uplink or not): the fields a change may write, each with
#: :func:`~protocol.schema.wire_value_accept`'s test of its values. A field that is not
#: there (unknown, or set by the hub only in an uplink) is refused by the full checks.
_ACCEPTS: Final[dict[tuple[str, bool], dict[str, Callable[[object], bool]]]] = {
    (name, uplink): {
        field: wire_value_accept(spec)
        for field, spec in entity.fields.items()
        if not (uplink and spec.readonly)
    }
    for name, entity in ENTITIES.items()
    for uplink in (False, True)
}


class _Fields:
    """The fields of one change being decoded, each checked against the schema and the
    rules of ``protocol/SPEC.md`` §5.2."""

    __slots__ = ("accepts", "entity", "nodes", "position", "uuids", "versions", "writer")

    def __init__(
        self,
        position: int,
        entity: EntitySchema,
        nodes: list[str],
        writer: str | None,
        uuids: bool = False,
    ):
        self.position, self.entity, self.nodes, self.writer = position, entity, nodes, writer
        #: Version 3: 16 bytes are a UUID's text.
        self.uuids = uuids
        self.accepts = _ACCEPTS[entity.name, writer is not None]
        self.versions: dict[str, FieldVersion] = {}

    def stamp(self, label: str, time: int, node: int, seen: list[int]) -> tuple[int, str, Seen]:
        """A stamp's ``time``, writer and ``seen`` from their wire form."""
        if not 0 <= time <= _MAX_TIME:
            raise _invalid(self.position, f"{label}: time out of range")
        if not 0 <= node < len(self.nodes):
            raise _invalid(self.position, f"{label}: node outside the table")
        writer = self.nodes[node]
        if self.writer is not None and writer != self.writer:
            raise _invalid(self.position, f"{label}: not written by the sender")
        return time, writer, _seen_from_wire(seen, self.nodes, time) if seen else ()

    def add_all(self, values: Sequence[tuple[str, Any]], time: int, node: str, seen: Seen) -> None:
        """Add fields written at one stamp (a version 2 change's shared stamp)."""
        accepts, versions = self.accepts, self.versions
        for name, value in values:
            accept = accepts.get(name)
            if accept is None or name in versions or not accept(value):
                self.add(name, value, time, node, seen)
                continue
            # FieldVersion(value, time, node, seen) without the constructor's argument
            # handling: one per field of every change.
            versions[name] = tuple.__new__(FieldVersion, (value, time, node, seen))

    def add(self, name: str, value: Any, time: int, node: str, seen: Seen) -> None:
        """Add one field after every check (raising the first that fails)."""
        spec = self.entity.fields.get(name)
        if spec is None:
            raise _invalid(self.position, f"unknown field {name[:40]!r}")
        if name in self.versions:
            raise _invalid(self.position, f"field {name!r} twice")
        if self.writer is not None and spec.readonly:
            raise _invalid(self.position, f"field {name!r} is set by the hub only")
        if self.uuids and type(value) is bytes:
            if len(value) != 16:
                raise _invalid(self.position, f"field {name!r}: bytes other than a UUID's 16")
            value = _uuid_text(value)
        problem = wire_value_error(spec, value)
        if problem is not None:
            raise _invalid(self.position, f"field {name!r}: {problem}")
        self.versions[name] = FieldVersion(value, time, node, seen)


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
