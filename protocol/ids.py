"""Identifiers: UUIDv7 for records and batches, and the shape of node ids.

Records get their id where they are created (on the box), so ids never collide and never
change when data moves between box, hub and national level. UUIDv7 (RFC 9562) puts the
creation time in the first 48 bits, so ids sort by creation and index well in B-trees.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Callable

__all__ = ["NODE_ID_RE", "UuidV7Generator", "is_node_id", "uuid7"]

#: Node ids are topic levels and broker user names: lowercase letters, digits and dashes.
NODE_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,46}[a-z0-9])")

_MAX_MS = (1 << 48) - 1
#: Random bytes per id: 62 bits for ``rand_b`` and 11 for a new millisecond's counter.
_ENTROPY_BYTES = 10
_RAND_B = (1 << 62) - 1
#: The default random source reads this many ids' worth of ``os.urandom`` at a time: one
#: system call per 256 ids instead of one per id (a bulk import makes millions).
_POOL_IDS = 256


def is_node_id(text: str) -> bool:
    """Whether ``text`` is a valid node id (3–48 characters of ``[a-z0-9-]``)."""
    return NODE_ID_RE.fullmatch(text) is not None


class UuidV7Generator:
    """Makes UUIDv7 strings that increase strictly, even within one millisecond.

    Uses RFC 9562 method 1: the 12-bit ``rand_a`` field is a counter seeded randomly at each
    new millisecond; when it overflows, the timestamp is advanced by one millisecond. The
    caller passes the wall-clock milliseconds (no hidden clock reads). ``random_bytes``
    gives the random bits (10 bytes an id); by default ``os.urandom``, read a few
    kilobytes at a time (:class:`_RandomPool`).
    """

    __slots__ = ("_counter", "_last_ms", "_prefix", "_random")

    def __init__(self, random_bytes: Callable[[int], bytes] | None = None) -> None:
        self._last_ms = -1
        self._counter = 0
        self._prefix = ""
        self._random = random_bytes

    def __call__(self, now_ms: int) -> str:
        """A new id for a record or batch created at ``now_ms`` (Unix milliseconds)."""
        ms = now_ms if 0 <= now_ms <= _MAX_MS else min(max(now_ms, 0), _MAX_MS)
        if self._random is None:
            rand_b, seed = _POOL.take()
        else:
            entropy = int.from_bytes(self._random(_ENTROPY_BYTES))
            rand_b, seed = entropy & _RAND_B, entropy >> 69
        if ms <= self._last_ms:
            ms = self._last_ms
            self._counter += 1
            if self._counter > 0xFFF:
                ms += 1
                self._counter = seed
        else:
            self._counter = seed
        if ms != self._last_ms:
            self._last_ms = ms
            h = f"{ms:012x}"
            self._prefix = f"{h[:8]}-{h[8:]}-"
        # The 48-bit time (the prefix), then version 7, the counter, variant 0b10, rand_b.
        t = f"{((0x7000 | self._counter) << 64) | (0b10 << 62) | rand_b:020x}"
        return f"{self._prefix}{t[:4]}-{t[4:8]}-{t[8:]}"


class _RandomPool:
    """``os.urandom`` read for :data:`_POOL_IDS` ids at a time, handed out as each id's 62
    random bits of ``rand_b`` and 11 of a new millisecond's counter: the same random bits
    as one call per id, for a fraction of the system calls. A forked child empties its
    copy (:func:`os.register_at_fork`), so that parent and child never hand out the same
    bits."""

    __slots__ = ("_at", "_counters", "_tails")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._tails = array("Q")
        self._counters = array("H")
        self._at = 0

    def take(self) -> tuple[int, int]:
        """The next id's ``rand_b`` (62 bits) and counter seed (11 bits)."""
        at = self._at
        if at >= len(self._tails):
            random = os.urandom(_POOL_IDS * _ENTROPY_BYTES)
            self._tails = array("Q", random[: _POOL_IDS * 8])
            self._counters = array("H", random[_POOL_IDS * 8 :])
            at = 0
        self._at = at + 1
        return self._tails[at] & _RAND_B, self._counters[at] >> 5


_POOL = _RandomPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.clear)


_default = UuidV7Generator()


def uuid7(now_ms: int) -> str:
    """A UUIDv7 string for ``now_ms``, strictly greater than the previous one of this process."""
    return _default(now_ms)
