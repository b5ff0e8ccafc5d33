"""Delivery bookkeeping: packing what to send, and which batches have been applied.

A sender packs what it has to send into batches that respect the wire limits
(:func:`pack`). A receiver (the hub for a box's ``up`` stream, a box for its ``down``
stream) applies each batch it has not applied before, in whatever order batches arrive,
and records it in the same transaction. It keeps, per stream, the *watermark* ``w``
(every seq in ``1..w`` is applied) and the applied sequence numbers above it; a batch
already applied is acked again and changes nothing. See ``protocol/SPEC.md``, "Delivery".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from protocol.changes import Batch, Change, Direction
from protocol.codec import DEFAULT_LIMITS, Limits, encode
from protocol.errors import TooLargeError

__all__ = ["AppliedSeqs", "pack"]


@dataclass(frozen=True, slots=True)
class AppliedSeqs:
    """The applied sequence numbers of one stream: ``1..watermark`` and ``above``.

    ``above`` never contains ``watermark + 1`` (it would have been folded in), so two
    objects holding the same set are equal. Persist :meth:`to_state` next to the data, in
    the transaction that applies the batch.
    """

    watermark: int = 0
    above: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.watermark < 0 or any(seq <= self.watermark + 1 for seq in self.above):
            raise ValueError("not a normalised applied-sequence state")

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (1 <= seq <= self.watermark or seq in self.above)

    def add(self, seq: int) -> AppliedSeqs:
        """The state after applying ``seq`` (unchanged if it was applied already)."""
        if seq < 1:
            raise ValueError("sequence numbers start at 1")
        if seq in self:
            return self
        if seq != self.watermark + 1:
            return AppliedSeqs(self.watermark, self.above | {seq})
        watermark = seq
        above = set(self.above)
        while watermark + 1 in above:
            watermark += 1
            above.discard(watermark)
        return AppliedSeqs(watermark, frozenset(above))

    @property
    def gaps(self) -> int:
        """How many sequence numbers below the highest applied one are still missing."""
        if not self.above:
            return 0
        return max(self.above) - self.watermark - len(self.above)

    def to_state(self) -> tuple[int, list[int]]:
        """What to store: the watermark and the sorted seqs above it."""
        return self.watermark, sorted(self.above)

    @classmethod
    def from_state(cls, watermark: int, above: Iterable[int]) -> AppliedSeqs:
        """Inverse of :meth:`to_state` (accepts any seqs, normalising them); linear in
        the number of seqs above the watermark."""
        rest = {seq for seq in above if seq > watermark}
        while watermark + 1 in rest:
            watermark += 1
            rest.discard(watermark)
        return cls(watermark, frozenset(rest))


def pack(
    node: str,
    first_seq: int,
    changes: Sequence[Change],
    *,
    direction: Direction = Direction.UP,
    limits: Limits = DEFAULT_LIMITS,
    version: int = 1,
) -> list[Batch]:
    """Pack ``changes``, in order, into batches numbered from ``first_seq`` that each encode
    in wire ``version`` within ``limits`` (at most ``limits.max_changes`` changes and
    ``max_frame_bytes``).

    A change too large for a frame on its own is split into changes with fewer fields:
    any grouping of field versions merges to the same state (``protocol/SPEC.md`` §3.3).
    """
    pending = list(changes)
    batches: list[Batch] = []
    seq = first_seq
    start = 0
    size = max(1, limits.max_changes)
    while start < len(pending):
        count = min(size, len(pending) - start)
        while True:
            batch = Batch(node, seq, tuple(pending[start : start + count]), direction)
            try:
                encode(batch, limits=limits, version=version)
                break
            except TooLargeError:
                if count > 1:
                    count //= 2
                    continue
                pending[start : start + 1] = _split(pending[start])
        batches.append(batch)
        start += count
        seq += 1
    return batches


def _split(change: Change) -> list[Change]:
    names = list(change.fields)
    if len(names) < 2:
        raise TooLargeError(f"field {names[0]!r} of record {change.record_id} alone is too large")
    half = len(names) // 2
    return [
        replace(change, fields={name: change.fields[name] for name in part})
        for part in (names[:half], names[half:])
    ]
