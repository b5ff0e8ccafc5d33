"""Anti-entropy: a digest of a village's record states that a box and the hub compare.

Each record's state hashes to 64 bits (:func:`record_digest`: its entity, id and every
frontier version's value, time and node, in a canonical order; ``seen`` is left out, it
follows from the versions). A record falls into one of :data:`BUCKETS` buckets by the
random tail of its UUIDv7 (:func:`bucket_of`); a bucket's hash is the XOR of its records'
digests, and the village's *root* is the XOR of all of them. XOR makes the digest
incremental: a write replaces a record's old digest by its new one in the root without
reading any other record (both sides store each record's digest beside its state).

Two replicas that saw the same versions hold the same states (the merge converges), so
their roots agree; a root that differs once neither side has anything in flight is a
divergence. The exchange that finds and repairs it (``protocol/SPEC.md`` §7, "Anti-entropy"):

1. the box's status carries its root and record count;
2. the hub, when the box is caught up both ways and the roots differ, sends a
   :class:`DigestProbe` with its bucket hashes;
3. the box answers with a :class:`DigestReply`: the buckets that differ and its records'
   digests in them;
4. the hub sends the records whose digests differ (or that the box lacks) down, whole,
   and a probe naming the records it lacks or holds differently (``wanted``); the box sends
   its own versions of those up again. Both are the normal merge; the next status shows
   whether the roots agree.

A probe with neither buckets nor wanted records tells the box its root matched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from protocol.changes import FieldVersion, Value
from protocol.merge import RecordState

__all__ = [
    "BUCKETS",
    "DigestProbe",
    "DigestReply",
    "bucket_hashes",
    "bucket_of",
    "differing_buckets",
    "first_versions_digest",
    "from_signed",
    "record_digest",
    "root_hex",
    "to_signed",
]

#: Buckets per village: 256 bucket hashes are 2 KiB on the wire, and a 5,000-household
#: village (about 25,000 records) has about 100 records in each.
BUCKETS: Final = 256
_MASK: Final = (1 << 64) - 1
_ENCODER: Final = msgspec.msgpack.Encoder()


def bucket_of(record_id: str) -> int:
    """The bucket of a record: the last byte of its UUIDv7, which is random."""
    return int(record_id[-2:], 16)


def record_digest(entity: str, record_id: str, state: RecordState) -> int:
    """A record state's 64-bit digest, the same on every replica holding that state."""
    canonical = [
        entity,
        record_id,
        [
            [name, [[v.value, v.time, v.node] for v in sorted(frontier, key=_stamp)]]
            for name, frontier in sorted(state.items())
        ],
    ]
    packed = _ENCODER.encode(canonical)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "big")


def first_versions_digest(
    entity: str, record_id: str, values: Mapping[str, Value], time: int, node: str
) -> int:
    """:func:`record_digest` of a state whose every field has one version, of ``node`` at
    ``time``, that has seen nothing (a record just created by one writer), from its
    values: the same number, without building the state (a bulk import's hot path)."""
    # Tuples pack as the same arrays as lists, and are cheaper to build.
    canonical = (
        entity,
        record_id,
        [(name, ((values[name], time, node),)) for name in sorted(values)],
    )
    packed = _ENCODER.encode(canonical)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "big")


def _stamp(version: FieldVersion) -> tuple[int, str]:
    return version.time, version.node


def to_signed(digest: int) -> int:
    """A digest as a signed 64-bit integer, for a ``BIGINT`` column."""
    return digest - (1 << 64) if digest >= 1 << 63 else digest


def from_signed(stored: int | None) -> int:
    """Inverse of :func:`to_signed` (``None``, a row without one, is 0)."""
    return (stored or 0) & _MASK


def root_hex(root: int) -> str:
    """A root as it travels in a status: 16 lowercase hex digits."""
    return f"{root & _MASK:016x}"


def bucket_hashes(digests: Iterable[tuple[str, int]]) -> list[int]:
    """The :data:`BUCKETS` bucket hashes of ``(record_id, digest)`` pairs."""
    buckets = [0] * BUCKETS
    for record_id, digest in digests:
        buckets[bucket_of(record_id)] ^= digest
    return buckets


def differing_buckets(mine: Sequence[int], theirs: Sequence[int]) -> list[int]:
    """The indexes of the buckets whose hashes differ."""
    return [index for index, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]


@dataclass(frozen=True, slots=True)
class DigestProbe:
    """Hub → box, on the box's ``down`` topic: the hub's bucket hashes (all
    :data:`BUCKETS`, or none) and the records whose versions the box should send again.
    Neither: the box's root matched the hub's."""

    node: str
    buckets: tuple[int, ...] = ()
    wanted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.buckets and len(self.buckets) != BUCKETS:
            raise ValueError(f"a probe carries {BUCKETS} bucket hashes or none")

    @property
    def matched(self) -> bool:
        """The hub found the box's root equal to its own."""
        return not self.buckets and not self.wanted


@dataclass(frozen=True, slots=True)
class DigestReply:
    """Box → hub, on the box's ``up`` topic: the buckets that differ from the probe's and
    the ``(record_id, digest)`` of every record the box holds in them."""

    node: str
    buckets: tuple[int, ...]
    records: tuple[tuple[str, int], ...]
