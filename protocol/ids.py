"""Identifiers: UUIDv7 for records and batches, and the shape of node ids.

Records get their id where they are created (on the box), so ids never collide and never
change when data moves between box, hub and national level. UUIDv7 (RFC 9562) puts the
creation time in the first 48 bits, so ids sort by creation and index well in B-trees.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

__all__ = ["NODE_ID_RE", "UuidV7Generator", "is_node_id", "uuid7"]

#: Node ids are topic levels and broker user names: lowercase letters, digits and dashes.
NODE_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,46}[a-z0-9])")

_MAX_MS = (1 << 48) - 1


def is_node_id(text: str) -> bool:
    """Whether ``text`` is a valid node id (3–48 characters of ``[a-z0-9-]``)."""
    return NODE_ID_RE.fullmatch(text) is not None


class UuidV7Generator:
    """Makes UUIDv7 strings that increase strictly, even within one millisecond.

    Uses RFC 9562 method 1: the 12-bit ``rand_a`` field is a counter seeded randomly at each
    new millisecond; when it overflows, the timestamp is advanced by one millisecond. The
    caller passes the wall-clock milliseconds (no hidden clock reads).
    """

    __slots__ = ("_counter", "_last_ms", "_random")

    def __init__(self, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._last_ms = -1
        self._counter = 0
        self._random = random_bytes

    def __call__(self, now_ms: int) -> str:
        """A new id for a record or batch created at ``now_ms`` (Unix milliseconds)."""
        ms = min(max(now_ms, 0), _MAX_MS)
        entropy = int.from_bytes(self._random(10))  # 62 bits for rand_b, 11 for a new counter
        if ms <= self._last_ms:
            ms = self._last_ms
            self._counter += 1
            if self._counter > 0xFFF:
                ms += 1
                self._counter = entropy >> 69
        else:
            self._counter = entropy >> 69
        self._last_ms = ms
        rand_b = entropy & ((1 << 62) - 1)
        h = f"{(ms << 80) | (0x7 << 76) | (self._counter << 64) | (0b10 << 62) | rand_b:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_default = UuidV7Generator()


def uuid7(now_ms: int) -> str:
    """A UUIDv7 string for ``now_ms``, strictly greater than the previous one of this process."""
    return _default(now_ms)
