"""The box's audit trail as a hash chain, and the messages that replicate it to the hub.

Every audit row of a box gets a per-box sequence number (``seq``, gap-free from 1) and
``hash = SHA-256(previous hash || canonical encoding of the row's content)``, the first row
chaining from 32 zero bytes (:data:`GENESIS`). The encoding is the MessagePack array
``[seq, at_ms, actor, action, entity, record_id, detail, address]`` (``entity`` and
``record_id`` may be nil; ``detail`` is the row's JSON text as stored). A row changed,
removed or inserted afterwards no longer links to its neighbours, so whoever holds a copy
of the chain (the hub) sees it: see ``protocol/SPEC.md``, "Audit chain".

:func:`follow` is the verifier's rule, shared by the hub and the tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

import msgspec

__all__ = [
    "GENESIS",
    "HASH_BYTES",
    "AuditAck",
    "AuditBatch",
    "AuditEntry",
    "chain_hash",
    "follow",
    "seal",
]

HASH_BYTES: Final = 32
#: What the first entry of every chain links to.
GENESIS: Final = bytes(HASH_BYTES)

_ENCODER: Final = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row of a box, with its place in the chain (``hash`` is ``b""`` before
    :func:`seal`)."""

    seq: int
    at_ms: int
    actor: str
    action: str
    entity: str | None
    record_id: str | None
    detail: str
    address: str
    hash: bytes = b""


@dataclass(frozen=True, slots=True)
class AuditBatch:
    """Box → hub (on ``up``, kind 6): consecutive entries of the box's chain, in order.

    ``previous`` is the hash of the entry before the first (:data:`GENESIS` before entry
    1), as the box holds it, when the box knows it: with it, and entries that each link to
    the one before, wire version 3 leaves the hashes out (the receiver computes them).
    """

    node: str
    entries: tuple[AuditEntry, ...]
    previous: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuditAck:
    """Hub → box (on ``ack``, kind 7): every entry the box sent up to ``seq`` is stored."""

    node: str
    seq: int


def chain_hash(previous: bytes, entry: AuditEntry) -> bytes:
    """``SHA-256(previous || content)``: what ``entry.hash`` must be when it follows an
    entry whose hash is ``previous`` (``entry.hash`` itself is not hashed)."""
    content = _ENCODER.encode(
        [
            entry.seq,
            entry.at_ms,
            entry.actor,
            entry.action,
            entry.entity,
            entry.record_id,
            entry.detail,
            entry.address,
        ]
    )
    return hashlib.sha256(previous + content).digest()


def seal(previous: bytes, entry: AuditEntry) -> AuditEntry:
    """``entry`` with its hash, following an entry whose hash is ``previous``."""
    return replace(entry, hash=chain_hash(previous, entry))


def follow(
    seq: int, previous: bytes, entries: Iterable[AuditEntry]
) -> tuple[int, bytes, list[int]]:
    """Walk ``entries`` (consecutive seqs from ``seq + 1``) from the verified head
    ``(seq, previous)``: the new head and the seqs of the entries that do not link to the
    one before (a *break*). A broken entry's own hash is the base for the next one, so one
    tampering counts once and what follows is still checked."""
    breaks = []
    for entry in entries:
        if entry.seq != seq + 1:
            raise ValueError(f"entry {entry.seq} does not follow {seq}")
        if chain_hash(previous, entry) != entry.hash:
            breaks.append(entry.seq)
        seq, previous = entry.seq, entry.hash
    return seq, previous, breaks
