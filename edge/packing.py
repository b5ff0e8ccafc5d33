"""Turning the box's queue into wire frames, away from the process that serves people.

Packing 500 outbox rows into batches and encoding them takes about 50 ms of Python, an
audit batch of 500 entries about 10 ms. In a thread of the web server that time holds
the GIL: the event loop and the writer thread then wait for it (up to the interpreter's
switch interval, 5 ms, each time they come back from SQLite or a socket) and saves queue
behind sync (issue 18). :func:`packer` gives the sync client one worker process for it,
which the operating system shares the core with at a lower priority than the server.

Everything here is pure: the caller reads the rows (``edge.outbox``, ``edge.auditchain``)
and stores or publishes the result. Only ``protocol`` is imported, so the worker starts
small (about 20 MB, 0.15 s).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import msgspec

from protocol.auditchain import AuditBatch, AuditEntry
from protocol.changes import Batch, Change
from protocol.codec import Limits, encode, encode_stored_changes
from protocol.delivery import pack
from protocol.errors import TooLargeError
from protocol.jsonform import load_change

__all__ = ["Packed", "encode_audit", "pack_rows", "packer"]

#: One stored batch as ``up_batches`` takes it: ``seq``, ``payload``, ``changes``,
#: ``oldest_ms``, ``sent_ms``.
Packed = dict[str, object]


def packer() -> ProcessPoolExecutor:
    """A one-worker process pool (started on its first task). Not fork: the server has
    threads (SQLite's, paho's) by then. The worker runs at a lower priority (nice 10):
    where it shares a core with the server, a save waits for no packing (issue 18)."""
    return ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=os.nice, initargs=(10,)
    )


def pack_rows(
    node: str,
    first: int,
    rows: Sequence[tuple[str, int]],
    limits: Limits,
    max_batches: int,
    version: int = 1,
) -> tuple[int, list[Packed]]:
    """Outbox rows (the change's JSON text, ``created_ms``), in order, packed into at most
    ``max_batches`` batches numbered from ``first``, each encoded once in wire ``version``;
    returns how many rows the batches hold whole (only those may leave the outbox) and the
    batches to store.
    """
    if version >= 2:
        packed = _stored_frames(node, first, rows, limits, version)
        if packed is not None:
            return len(rows), packed
    changes = [load_change(text) for text, _ in rows]
    count = len(rows)
    frames = _frames(node, first, changes, limits, version)
    if frames is None:
        batches = pack(node, first, changes, limits=limits, version=version)
        # Over the budget: keep the rows the first batches hold whole, and pack those alone
        # so that the last batch does not carry half a row (a lone huge row still goes out).
        while len(batches) > max_batches and count > 1:
            count = max(1, _rows_of(batches[:max_batches], changes)[0])
            batches = pack(node, first, changes[:count], limits=limits, version=version)
        frames = [(batch, encode(batch, limits=limits, version=version)) for batch in batches]
    _, spans = _rows_of([batch for batch, _ in frames], changes)
    return count, [
        {
            "seq": batch.seq,
            "payload": frame,
            "changes": len(batch.changes),
            "oldest_ms": min(rows[i][1] for i in span),
            "sent_ms": None,
        }
        for (batch, frame), span in zip(frames, spans, strict=True)
    ]


def encode_audit(
    node: str, entries: Sequence[AuditEntry], version: int = 1, previous: bytes | None = None
) -> tuple[bytes, int] | None:
    """The frame (in wire ``version``) of an audit batch of the first of ``entries`` (all,
    or as many as fit in a frame, halving) and how many it holds; ``None`` when even the
    first does not fit. ``previous``: the hash the first entry links to (version 3 then
    leaves the hashes out, when the entries link up)."""
    count = len(entries)
    while count:
        try:
            batch = AuditBatch(node, tuple(entries[:count]), previous)
            return encode(batch, version=version), count
        except TooLargeError:
            count = 0 if count == 1 else count // 2
    return None


def _stored_frames(
    node: str, first: int, rows: Sequence[tuple[str, int]], limits: Limits, version: int
) -> list[Packed] | None:
    """What :func:`pack_rows` makes of ``rows`` in wire ``version`` (2 or later) when each batch of
    ``max_changes`` rows fits in a frame: the frames made from the rows' JSON as it is
    (``encode_stored_changes``), a third of the work of making each change's objects and
    encoding those (issue 18). ``None`` when some batch is too large: the caller packs."""
    size = max(1, limits.max_changes)
    packed: list[Packed] = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        try:
            frame = encode_stored_changes(
                node,
                first + len(packed),
                [_ROW(text) for text, _ in chunk],
                version=version,
                limits=limits,
            )
        except TooLargeError:
            return None
        packed.append(
            {
                "seq": first + len(packed),
                "payload": frame,
                "changes": len(chunk),
                "oldest_ms": min(created for _, created in chunk),
                "sent_ms": None,
            }
        )
    return packed


#: An outbox row's change text as the lists ``encode_stored_changes`` takes.
_ROW = msgspec.json.Decoder().decode


def _frames(
    node: str, first: int, changes: Sequence[Change], limits: Limits, version: int
) -> list[tuple[Batch, bytes]] | None:
    """The queue cut into batches of ``max_changes`` with their frames, when each fits in
    a frame: what ``pack`` makes of it then, but encoded once instead of twice (encoding is
    most of a seal's time). ``None`` when some batch is too large: ``pack`` decides."""
    size = max(1, limits.max_changes)
    frames: list[tuple[Batch, bytes]] = []
    for start in range(0, len(changes), size):
        batch = Batch(node, first + len(frames), tuple(changes[start : start + size]))
        try:
            frames.append((batch, encode(batch, limits=limits, version=version)))
        except TooLargeError:
            return None
    return frames


def _rows_of(batches: Sequence[Batch], changes: Sequence[Change]) -> tuple[int, list[range]]:
    """How many of ``changes`` the batches hold whole, and each batch's span of them.

    ``pack`` keeps the order and splits a change only into consecutive parts with disjoint
    fields, so counting fields tells where each change ends.
    """
    row = taken = 0
    spans = []
    for batch in batches:
        start = row
        for part in batch.changes:
            taken += len(part.fields)
            if taken == len(changes[row].fields):
                row, taken = row + 1, 0
        spans.append(range(start, row + (1 if taken else 0)))
    return row, spans
