"""Is the box's disk full? What ``/healthz``, Beranda and the error answers go by.

Two witnesses, because neither is enough alone. Free space on the file system of the data
folder (``statvfs``, as the service's user sees it) warns before anything fails; but saves
can fail with space apparently left (quotas, inodes, root-reserved blocks) and can succeed
with none (SQLite reuses its write-ahead log). So a write refused for lack of space is
remembered by :class:`DiskWatch` until a later write succeeds, and counts as "full" until
then, whatever ``statvfs`` says.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edge.db import DATABASE_ERRORS

__all__ = [
    "FULL_BELOW_BYTES",
    "LOW_BELOW_FRACTION",
    "DiskReport",
    "DiskState",
    "DiskWatch",
    "classify",
    "is_disk_full",
]

#: Less free space than this is "full": a checkpoint of SQLite's write-ahead log (up to
#: about 4 MiB) or the next saves could fail any moment.
FULL_BELOW_BYTES = 2 * 1024 * 1024
#: Less than this share of the file system free is "low": the hub's alert
#: ``PuskesosBoxDiskLow`` fires at the same point, so the box and the dashboards agree.
LOW_BELOW_FRACTION = 0.10

#: What the kernel answers when a write finds no room (no space left; over quota).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL_TEXT = "database or disk is full"


class DiskState(StrEnum):
    """The disk as health reports and pages name it."""

    OK = "ok"
    LOW = "low"
    FULL = "full"


def classify(free_bytes: int, size_bytes: int, *, write_failed: bool) -> DiskState:
    """The state of a disk with ``free_bytes`` of ``size_bytes`` free, where
    ``write_failed`` says a write was refused for lack of space and none has worked since."""
    if write_failed or free_bytes < FULL_BELOW_BYTES:
        return DiskState.FULL
    if free_bytes < size_bytes * LOW_BELOW_FRACTION:
        return DiskState.LOW
    return DiskState.OK


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a write refused for lack of space: SQLite's
    ``SQLITE_FULL`` (SQLAlchemy wraps it as ``.orig``; from ``sqlite3`` or ``sqlcipher3``,
    whose exceptions share no class) or ``ENOSPC``/``EDQUOT`` from a file."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DATABASE_ERRORS):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
                return True
            if _SQLITE_FULL_TEXT in str(current):
                return True
        if isinstance(current, OSError) and current.errno in _NO_ROOM:
            return True
        orig = getattr(current, "orig", None)  # sqlalchemy.exc.DBAPIError
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


@dataclass(frozen=True, slots=True)
class DiskReport:
    """The disk of the data folder now."""

    state: DiskState
    free_bytes: int
    size_bytes: int
    #: When a write was refused for lack of space (ms), if none has worked since.
    write_failed_ms: int | None = None


class DiskWatch:
    """Free space of the data folder, and the memory of the last write refused for lack of
    it. The store tells it how each write went (:meth:`wrote`, :meth:`failed`)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.write_failed_ms: int | None = None

    def failed(self, exc: BaseException, now_ms: int) -> bool:
        """Note a failed write; returns whether it failed for lack of space."""
        if not is_disk_full(exc):
            return False
        if self.write_failed_ms is None:
            self.write_failed_ms = now_ms
        return True

    def wrote(self) -> None:
        """A write reached the disk: there is room again."""
        self.write_failed_ms = None

    def report(self) -> DiskReport:
        """Free space now, and whether writes are being refused."""
        try:
            usage = shutil.disk_usage(self.data_dir)
        except OSError:
            free, size = 0, 0
        else:
            free, size = usage.free, usage.total
        failed = self.write_failed_ms is not None
        return DiskReport(
            classify(free, size, write_failed=failed), free, size, self.write_failed_ms
        )
