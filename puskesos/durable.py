"""Files that are on disk when the call returns: what a dataset, a key or a backup is
written with, so that a power cut leaves the old state or the new one, never half; and
database files only their owner may read."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["fsync_dir", "private_database", "replace_file", "write_file"]

#: The files of one SQLite database: itself, its write-ahead log and its shared memory.
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def write_file(path: Path, data: bytes, *, new: bool = False, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` (made with ``mode``, less the umask) and fsync it.
    With ``new``, a file that exists is never overwritten: ``FileExistsError``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def replace_file(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Give ``path`` the content ``data`` atomically: a fresh file (``mode``) is written and
    fsynced beside it, renamed over it and the rename made durable, so a power cut leaves
    the old content or the new, never half."""
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)
    write_file(fresh, data, new=True, mode=mode)
    os.replace(fresh, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make the creation, rename or removal of entries in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_database(path: Path) -> None:
    """Make the SQLite database ``path`` readable by its owner only (0600), whatever the
    umask and the folder: created empty when missing (SQLite then keeps that mode and gives
    it to its ``-wal`` and ``-shm`` files), and the files of one made before tightened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in _SQLITE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
