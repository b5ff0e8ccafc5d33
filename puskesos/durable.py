"""Files that are on disk when the call returns: what a dataset, a key or a backup is
written with, so that a power cut leaves the old state or the new one, never half."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_file"]


def write_file(path: Path, data: bytes, *, new: bool = False, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` (made with ``mode``, less the umask) and fsync it.
    With ``new``, a file that exists is never overwritten: ``FileExistsError``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_dir(folder: Path) -> None:
    """Make the creation, rename or removal of entries in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
