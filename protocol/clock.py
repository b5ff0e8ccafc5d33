"""Hybrid logical clock (HLC): physical milliseconds, a logical counter and the node id.

A stamp is packed into one integer, ``time = (physical_ms << 16) | counter``, paired with
the node id that issued it. Stamps are totally ordered by ``(time, node)``. The packed form
keeps comparisons and the wire cheap; :meth:`Timestamp.to_string` gives a fixed-width
string that sorts the same way.

The clock never goes backwards: not when the wall clock jumps back (a box without an RTC
booting in 1970), and not across a restart, as long as the node persists
:attr:`HybridClock.state` together with whatever it stamped (in the same transaction) and
passes it back to the constructor. A remote stamp more than ``max_drift_ms`` ahead of the
local wall clock raises :class:`~protocol.errors.ClockAheadError` instead of dragging the
local clock forward: one box with a wrong clock must not win every future merge.

Pure: every method takes the wall-clock reading (Unix milliseconds) as an argument.
"""

from __future__ import annotations

from typing import NamedTuple

from protocol.errors import ClockAheadError

__all__ = ["COUNTER_BITS", "DEFAULT_MAX_DRIFT_MS", "HybridClock", "Timestamp", "pack"]

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
#: Five minutes.
DEFAULT_MAX_DRIFT_MS = 5 * 60 * 1000
#: Largest physical time a stamp may carry (48 bits of milliseconds: year 10889).
MAX_MS = (1 << 48) - 1


def pack(ms: int, counter: int) -> int:
    """The packed ``time`` of a stamp with ``ms`` physical milliseconds and ``counter``."""
    return (ms << COUNTER_BITS) | counter


class Timestamp(NamedTuple):
    """One HLC stamp. Tuple order (``time``, then ``node``) is the total order."""

    time: int
    node: str

    @property
    def ms(self) -> int:
        """Physical part: Unix milliseconds."""
        return self.time >> COUNTER_BITS

    @property
    def counter(self) -> int:
        """Logical part: orders stamps within one millisecond."""
        return self.time & _COUNTER_MASK

    def to_string(self) -> str:
        """Compact sortable form: 16 hex digits of ``time``, ``@``, the node id."""
        return f"{self.time:016x}@{self.node}"

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        """Inverse of :meth:`to_string`; raises ``ValueError`` on anything else."""
        hex_time, sep, node = text.partition("@")
        if not sep or len(hex_time) != 16 or not node:
            raise ValueError(f"not an HLC stamp: {text!r}")
        return cls(int(hex_time, 16), node)


class HybridClock:
    """The clock of one node.

    ``state`` is the packed time of the last stamp issued or observed; persist it and pass it
    back after a restart. Not thread-safe: one clock per node, used from one task.
    """

    __slots__ = ("_time", "max_drift_ms", "node")

    def __init__(
        self, node: str, *, state: int = 0, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS
    ) -> None:
        if state < 0:
            raise ValueError("clock state cannot be negative")
        self.node = node
        self.max_drift_ms = max_drift_ms
        self._time = state

    @property
    def state(self) -> int:
        """What to persist: the packed time of the latest stamp issued or observed."""
        return self._time

    def now(self, wall_ms: int) -> Timestamp:
        """A new stamp, strictly greater than every stamp issued or observed before."""
        candidate = pack(min(max(wall_ms, 0), MAX_MS), 0)
        # When the wall clock is behind (or in the same millisecond), count on logically;
        # a full counter carries into the millisecond, which keeps the order strict.
        self._time = candidate if candidate > self._time else self._time + 1
        return Timestamp(self._time, self.node)

    def observe(self, remote: Timestamp, wall_ms: int) -> None:
        """Take a remote stamp into account, so later local stamps are greater than it.

        Raises :class:`ClockAheadError` (and leaves the clock unchanged) when the remote
        stamp is more than ``max_drift_ms`` ahead of ``wall_ms``.
        """
        self.check(remote, wall_ms)
        if remote.time > self._time:
            self._time = remote.time

    def check(self, remote: Timestamp, wall_ms: int) -> None:
        """Raise :class:`ClockAheadError` if ``remote`` is too far ahead of ``wall_ms``."""
        ahead = remote.ms - wall_ms
        if ahead > self.max_drift_ms:
            raise ClockAheadError(
                f"stamp of {remote.node} is {ahead} ms ahead (limit {self.max_drift_ms} ms)",
                ahead_ms=ahead,
            )

    def ahead_ms(self, wall_ms: int) -> int:
        """How far this clock's state is ahead of the wall clock (0 when it is not).

        A value above ``max_drift_ms`` after a restart means the node stamped changes while
        its wall clock was wrong: the hub will refuse them until it is dealt with.
        """
        return max(0, (self._time >> COUNTER_BITS) - wall_ms)
