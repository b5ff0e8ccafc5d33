"""Backups that restore: an online copy of the box's database, and bringing one back.

``backup`` copies with SQLite's online backup API, so it is consistent while ``serve`` is
writing (in WAL mode the copy's read transaction does not block the writer), then checks the
copy with ``PRAGMA integrity_check``. The copy is a single self-contained file (rollback
journal mode, no ``-wal`` beside it) that can be carried away on a USB stick.

``restore`` refuses while the box is serving. ``serve`` holds an exclusive ``flock`` on
``<data_dir>/serve.lock`` for its whole life, and restore takes the same lock: the kernel
drops it when the process ends, even on ``kill -9`` or power loss, so a crash never leaves a
stale lock behind, and it holds whatever port or address the server listens on (trying to
bind the port would miss a server started with another port, and be fooled by another
program on it). The current database is kept as ``<database>.before-restore``; the backup
is copied in next to it, synced, and renamed over it (atomic), the old ``-wal``/``-shm`` are
removed first so SQLite never replays a WAL onto the wrong file, and migrations bring a
backup made by an older version to the current schema.

On an encrypted box every connection is keyed with the data key (``edge.db.connect``): a
copy made by the backup API is encrypted with the same key, page for page, and the box's key
slots as they are go next to it (``<backup>.keys.json``, ``docs/storage.md`` §3), so any
staff password of the time or the district's recovery key opens it again, also on a
replacement box set up with the old box's node id (slots name their node). Restoring such a
backup makes its slots the box's: the restored accounts and the slots that open the
restored database are of the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge import keys
from edge.config import EdgeConfig
from edge.db import DATABASE_ERRORS, connect, upgrade
from puskesos.commands import CommandError
from puskesos.durable import fsync_dir, replace_file
from puskesos.keyslots import KeySlots, SlotFileError, read_slots

__all__ = [
    "BackupError",
    "BoxBusy",
    "backup",
    "backup_slots",
    "integrity_problems",
    "keys_path",
    "restore",
    "serving_lock",
]

LOCK_FILE = "serve.lock"


class BackupError(CommandError):
    """A backup or restore could not be done; the message says why (exit status 1)."""


class BoxBusy(BackupError):
    """The box is serving (or another restore runs): its database must not be replaced."""


@contextlib.contextmanager
def serving_lock(config: EdgeConfig) -> Iterator[None]:
    """Hold the box's exclusive lock (``serve`` for its lifetime, ``restore`` while it runs).

    Raises :class:`BoxBusy` at once when another process holds it.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.data_dir / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BoxBusy(f"the box is in use by {holder} (lock {path})") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def integrity_problems(path: Path, key: bytes | None = None) -> list[str]:
    """What ``PRAGMA integrity_check`` finds wrong with a database (empty when it is ok),
    opened with data key ``key`` (``None``: plain)."""
    try:
        connection = connect(f"file:{path}?mode=ro", key, uri=True)
        try:
            rows = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        finally:
            connection.close()
    except DATABASE_ERRORS as exc:
        return [f"not a readable SQLite database ({exc})"]
    return [] if rows == ["ok"] else rows


def keys_path(backup: Path) -> Path:
    """Where the key slots that travel with backup ``backup`` are: ``<backup>.keys.json``."""
    return backup.with_name(f"{backup.name}.keys.json")


def backup_slots(config: EdgeConfig, source: Path) -> KeySlots | None:
    """The key slots beside backup ``source`` (``None``: there are none, a backup of a plain
    box or of an older release); :class:`BackupError` when they are damaged or another
    node's."""
    path = keys_path(source)
    try:
        slots = KeySlots.from_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except SlotFileError as exc:
        raise BackupError(f"{path}: {exc}") from None
    if slots.node != config.node:
        raise BackupError(
            f"backup {source} belongs to node {slots.node}, this box is node {config.node}: "
            "restore it on a box set up with the old box's node id (README: Replace a box)"
        )
    return slots


def backup(config: EdgeConfig, destination: str | Path, key: bytes | None = None) -> Path:
    """Copy the box's database (data key ``key``) to ``destination`` (an existing folder or
    a path ending in ``/``: a file named with the time is made in it) while the box may be
    serving; returns the path of the checked copy. With a key, the box's key slots are
    copied beside it first (:func:`keys_path`)."""
    source = config.database_path
    if not source.exists():
        raise BackupError(f"there is no database at {source}; run `puskesos edge init` first")
    dest = Path(destination)
    if dest.is_dir() or str(destination).endswith(os.sep):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        dest = dest / f"puskesos-{config.node or 'edge'}-{stamp}.sqlite"
    if dest.resolve() == source.resolve():
        raise BackupError(f"{dest} is the box's database itself: choose another destination")
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(f".{dest.name}.tmp")
    _copy(connect(source, key, timeout=30), temporary, key)
    problems = integrity_problems(temporary, key)
    if problems:
        _remove(temporary)
        raise BackupError(f"the copy failed its integrity check: {problems[0]}")
    slots = read_slots(config.data_dir, config.node) if key is not None else None
    if slots is not None:
        replace_file(keys_path(dest), slots.to_json(), mode=0o600)
    else:  # a plain copy over an older encrypted one must not keep that one's slots
        keys_path(dest).unlink(missing_ok=True)
    os.replace(temporary, dest)
    fsync_dir(dest.parent)
    return dest


def restore(
    config: EdgeConfig,
    source: Path,
    key: bytes | None = None,
    *,
    slots: KeySlots | None = None,
    box_keys: tuple[bytes | None, ...] = (),
) -> Path | None:
    """Replace the box's database with the backup ``source``, opened with data key ``key``
    (``None``: plain); the box must not be serving.

    ``slots`` are the key slots that came with the backup (:func:`backup_slots`): they
    become the box's, its own kept as ``keyslots.json.before-restore``. The box's current
    database is opened with ``key`` (the same box, the same data key) or the first of
    ``box_keys`` that opens it: it gives the restored box its clock and is kept as
    ``<database>.before-restore``. Nothing changes when the backup or the current database
    does not open.

    Returns where the database it replaced was kept (``None`` when there was none).
    """
    if not source.is_file():
        raise BackupError(f"backup {source} does not exist")
    if not _opens(f"file:{source}?mode=ro", key):
        raise BackupError(_why_not(config, source, key, slots))
    problems = integrity_problems(source, key)
    if problems:
        raise BackupError(f"backup {source} is damaged: {problems[0]}")
    target = config.database_path
    current = _current_key(target, (key, *box_keys)) if target.exists() else None
    with serving_lock(config):
        target.parent.mkdir(parents=True, exist_ok=True)
        incoming = target.with_name(f"{target.name}.restore-tmp")
        _copy(connect(f"file:{source}?mode=ro", key, uri=True), incoming, key)
        try:
            _check_same_box(incoming, config, source, key)
        except BackupError:
            _remove(incoming)
            raise
        _restart_down_stream(incoming, key)
        kept = None
        if target.exists():
            _keep_clock_ahead(incoming, key, target, current)
            kept = target.with_name(f"{target.name}.before-restore")
            _copy(connect(target, current, timeout=30), kept, current)
            # Fold the WAL into the file before its -wal/-shm go (nothing else has it open).
            with contextlib.closing(connect(target, current, timeout=30)) as connection:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for stale in (_sidecar(target, "-wal"), _sidecar(target, "-shm")):
            stale.unlink(missing_ok=True)
        os.replace(incoming, target)
        fsync_dir(target.parent)
        # After the database: a restore cut short here is done again with the same backup
        # and password (the current database then opens with the backup's key).
        if slots is not None:
            keys.replace_slots(config, slots)
        upgrade(target, key)
    return kept


def _opens(path: str | Path, key: bytes | None) -> bool:
    """Whether ``key`` opens the database ``path`` (a wrong key fails at the first read,
    before any file is made)."""
    try:
        with contextlib.closing(connect(path, key, uri=str(path).startswith("file:"))) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except DATABASE_ERRORS:
        return False
    return True


def _why_not(config: EdgeConfig, source: Path, key: bytes | None, slots: KeySlots | None) -> str:
    """Why backup ``source`` does not open with ``key``, and what to bring instead."""
    beside = keys_path(source)
    if slots is not None:
        return f"backup {source} does not open with the data key of {beside}: not its slots"
    if key is None:
        return (
            f"backup {source} is not a plain database: an encrypted backup restores only "
            f"with the key slots made with it ({beside.name} beside it), or it is damaged"
        )
    if _opens(f"file:{source}?mode=ro", None):
        return (
            f"backup {source} is a plain database and this box is encrypted: restoring it "
            "would leave the box's data in the clear"
        )
    return (
        f"backup {source} does not open with this box's data key and there is no "
        f"{beside.name} beside it: bring the key slots made with the backup"
    )


def _current_key(target: Path, candidates: tuple[bytes | None, ...]) -> bytes | None:
    """The first of ``candidates`` that opens the box's current database."""
    for candidate in dict.fromkeys(candidates):
        if _opens(target, candidate):
            return candidate
    raise BackupError(
        f"the box's current database {target} opens neither with the backup's key nor with "
        "what was given for this box, so its clock cannot be carried over: give --as a staff "
        "member whose password opens both, or --recovery-key"
    )


def _restart_down_stream(incoming: Path, key: bytes | None) -> None:
    """A restored box lacks what the hub sent it since the backup, and the hub has already
    forgotten those batches: a new ``epoch`` in its status makes the hub send the village
    again on a fresh down stream (``docs/replication.md``, "Restored box"). The first
    connection after the restore uses a clean session, so no batch of the old stream that
    the broker still holds can arrive under a number of the new one."""
    with contextlib.closing(connect(incoming, key)) as connection, connection:
        connection.execute("DELETE FROM meta WHERE key = 'down_applied'")
        connection.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
            "SET value = excluded.value",
            [("epoch", uuid.uuid4().hex), ("clean_session", "1")],
        )


def _keep_clock_ahead(
    incoming: Path, key: bytes | None, current: Path, current_key: bytes | None
) -> None:
    """The restored box's clock must not go back to the backup's: stamps it issued since
    were sent to the hub, and new edits stamped lower would lose every merge there."""
    with contextlib.closing(connect(current, current_key, timeout=30)) as connection:
        row = connection.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
    if row is None:
        return
    with contextlib.closing(connect(incoming, key)) as connection, connection:
        connection.execute(
            "INSERT INTO meta(key, value) VALUES ('clock', ?) ON CONFLICT(key) DO UPDATE "
            "SET value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) "
            "AS TEXT)",
            (row[0],),
        )


def _check_same_box(path: Path, config: EdgeConfig, source: Path, data_key: bytes | None) -> None:
    """A backup of another village or node would make ``serve`` refuse to start."""
    try:
        with contextlib.closing(connect(path, data_key)) as connection:
            stored = dict(connection.execute("SELECT key, value FROM meta"))
    except DATABASE_ERRORS:
        raise BackupError(f"{source} is not a database of a Puskesos edge box") from None
    for key in ("village", "node"):
        wanted = getattr(config, key)
        if key in stored and stored[key] != wanted:
            raise BackupError(
                f"backup {source} belongs to {key} {stored[key]}, this box is {key} {wanted}"
            )


def _copy(source: Any, target: Path, key: bytes | None) -> None:
    """Copy the database open on connection ``source`` (closing it) into a fresh, synced
    ``target`` keyed like it, that only its owner may read (it holds personal data)."""
    _remove(target)
    target.touch(mode=0o600)
    try:
        with contextlib.closing(source), contextlib.closing(connect(target, key)) as copy:
            source.backup(copy)
            # A copy of a WAL database is in WAL mode too; a backup file stands alone.
            copy.execute("PRAGMA journal_mode=DELETE")
    except DATABASE_ERRORS as exc:
        _remove(target)
        raise BackupError(f"copying the database failed: {exc}") from None
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _remove(path: Path) -> None:
    for candidate in (path, _sidecar(path, "-wal"), _sidecar(path, "-shm")):
        candidate.unlink(missing_ok=True)
