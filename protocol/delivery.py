"""Delivery bookkeeping: which sequence numbers of a stream have been applied.

A receiver (the hub for a box's ``up`` stream, a box for its ``down`` stream) applies each
batch it has not applied before, in whatever order batches arrive, and records it in the
same transaction. It keeps, per stream, the *watermark* ``w`` (every seq in ``1..w`` is
applied) and the applied sequence numbers above it; a batch already applied is acked again
and changes nothing. See ``protocol/SPEC.md``, "Delivery".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AppliedSeqs"]


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
        """Inverse of :meth:`to_state` (accepts any seqs, normalising them)."""
        state = cls(watermark)
        for seq in sorted(above):
            state = state.add(seq)
        return state
