"""Securing a plain box at its first staff sign-in (``docs/storage.md`` §5, step 2).

A box of an older release has a plain SQLite database and no ``keyslots.json``. Given the
district's recovery public key (``[edge] recovery_key``), the first sign-in of a staff
member encrypts it once: :func:`secure` makes the data key, that member's slot and the
district's, exports the database into a SQLCipher file beside it, checks it, and puts it in
the plain file's place. Its steps are ordered so that a power cut or ``kill -9`` at any point
leaves the plain box as it was or the encrypted one, and :func:`finish_interrupted` (run by
``serve`` before it opens anything) tells which from the files alone:

1. ``<database>.enc`` is written, checked and fsynced; a leftover of an earlier attempt is
   removed first.
2. The new slots are written to ``keyslots.securing.json`` (not ``keyslots.json``: the box
   is still plain, and everything that reads the slots must go on believing so).
3. The plain database's WAL was checkpointed before the export; its ``-wal`` and ``-shm``
   go, so no plain WAL can ever be replayed onto the encrypted file.
4. ``<database>.enc`` is renamed over ``<database>`` and the folder fsynced: **the switch**.
5. The plain backups this box made are deleted (personal data in the clear), in the data
   folder and in the backup folder (``[edge] backup_dir``, wherever it is).
6. ``keyslots.securing.json`` becomes ``keyslots.json``.

The rule at start: with ``keyslots.securing.json`` present, a database that still begins
with SQLite's plain header means the switch did not happen (the pending slots and any
``.enc`` go: the box is plain as before, and the next sign-in starts again); any other
database is the encrypted one (steps 5 and 6 are done again). Without it, a leftover
``.enc`` is removed.

Everything here is blocking (Argon2id, the export, fsyncs): the web app runs it in a thread
with the store and the sync closed, inside ``serve``'s serving lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import sqlcipher3

from edge.backup import integrity_problems
from edge.config import EdgeConfig
from edge.db import DATABASE_ERRORS, connect
from puskesos.durable import fsync_dir, replace_file
from puskesos.keyslots import (
    SLOT_FILE,
    KeySlots,
    load_recovery_public,
    new_data_key,
    seal_for_district,
    wrap_for_user,
)

__all__ = [
    "PENDING_SLOTS",
    "SecuringError",
    "delete_plain_copies",
    "finish_interrupted",
    "needs_securing",
    "secure",
]

log = logging.getLogger("puskesos.edge.securing")

#: The slots of a securing under way, until the encrypted database is in place.
PENDING_SLOTS = "keyslots.securing.json"
_PLAIN_HEADER = b"SQLite format 3\x00"
#: The tables whose row counts must be the same in the encrypted copy.
_COUNTED = ("records", "outbox", "users", "audit")


class SecuringError(RuntimeError):
    """The box could not be secured; it is still plain (the message says why)."""


def needs_securing(config: EdgeConfig) -> bool:
    """Whether the box is plain and has the district's recovery key to be secured with."""
    return bool(config.recovery_key) and not (config.data_dir / SLOT_FILE).exists()


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _encrypted_copy(config: EdgeConfig) -> Path:
    return _sidecar(config.database_path, ".enc")


def _remove_database(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        _sidecar(path, suffix).unlink(missing_ok=True)


def _is_plain(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(_PLAIN_HEADER)) == _PLAIN_HEADER


def _counts(connection: sqlcipher3.Connection, schema: str) -> list[int]:
    return [
        connection.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
        for table in _COUNTED
    ]


def _export(database: Path, target: Path, key: bytes) -> None:
    """Copy the plain ``database`` into the new SQLCipher file ``target`` keyed with ``key``."""
    target.touch(mode=0o600)
    # Opened without a key, SQLCipher's module reads the plain file and has sqlcipher_export.
    with contextlib.closing(sqlcipher3.connect(str(database), timeout=30)) as plain:
        plain.isolation_level = None
        busy = plain.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy is not None and busy[0]:
            raise SecuringError("another process is using the database; nothing was changed")
        plain.execute(f"ATTACH DATABASE ? AS enc KEY \"x'{key.hex()}'\"", (str(target),))
        # One snapshot for the export and the counts, and no other writer meanwhile.
        plain.execute("BEGIN IMMEDIATE")
        plain.execute("SELECT sqlcipher_export('enc')")
        if _counts(plain, "main") != _counts(plain, "enc"):
            raise SecuringError("the encrypted copy does not hold every row")
        plain.execute("COMMIT")
        plain.execute("DETACH DATABASE enc")
    problems = integrity_problems(target, key)
    if problems:
        raise SecuringError(f"the encrypted copy failed its integrity check: {problems[0]}")
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())


def _no_fault(_step: str) -> None:
    """Between two steps of :func:`secure` nothing happens (tests make a crash here)."""


def secure(
    config: EdgeConfig,
    username: str,
    password: str,
    *,
    after: Callable[[str], None] = _no_fault,
) -> bytes:
    """Encrypt the plain box's database (closed by the caller) for ``username``'s
    ``password`` and the district's recovery key; returns the data key. ``after`` is
    called with the name of each step done. Raises :class:`SecuringError` (or an
    ``OSError``) with the box still plain, up to the switch; see the module's docstring."""
    database = config.database_path
    public = load_recovery_public(config.path(config.recovery_key))
    key = new_data_key()
    slots = KeySlots(
        config.node,
        (
            seal_for_district(key, node=config.node, public_key=public),
            wrap_for_user(key, user=username, node=config.node, password=password),
        ),
    )
    target = _encrypted_copy(config)
    _remove_database(target)
    try:
        _export(database, target, key)
        after("exported")
        replace_file(config.data_dir / PENDING_SLOTS, slots.to_json(), mode=0o600)
        after("slots-pending")
        wal, shm = _sidecar(database, "-wal"), _sidecar(database, "-shm")
        # The checkpoint emptied the WAL; a non-empty one means someone wrote since.
        if wal.exists() and wal.stat().st_size:
            raise SecuringError("the database was written during the export")
        wal.unlink(missing_ok=True)
        shm.unlink(missing_ok=True)
        fsync_dir(database.parent)
        after("plain-wal-removed")
    except BaseException:
        _undo(config)
        raise
    os.replace(target, database)
    fsync_dir(database.parent)
    after("switched")
    _finish(config)
    return key


def _undo(config: EdgeConfig) -> None:
    """Back to the plain box as it was: no pending slots, no encrypted copy."""
    (config.data_dir / PENDING_SLOTS).unlink(missing_ok=True)
    _remove_database(_encrypted_copy(config))
    fsync_dir(config.data_dir)


def _finish(config: EdgeConfig) -> None:
    """After the switch: the plain copies go, then the slots take their place."""
    deleted = delete_plain_copies(config)
    os.replace(config.data_dir / PENDING_SLOTS, config.data_dir / SLOT_FILE)
    fsync_dir(config.data_dir)
    log.info("the box's database is encrypted; %d plain copies deleted", len(deleted))


def finish_interrupted(config: EdgeConfig) -> None:
    """Complete or undo a :func:`secure` that a crash interrupted (the box's database must
    not be open); nothing when none was under way."""
    pending = config.data_dir / PENDING_SLOTS
    if not pending.exists():
        if _encrypted_copy(config).exists():
            _undo(config)
        return
    if _is_plain(config.database_path):
        _undo(config)
        log.warning("securing the box was interrupted before the switch: it is still plain")
    else:
        _finish(config)
        log.warning("securing the box was interrupted after the switch: finished now")


def delete_plain_copies(config: EdgeConfig) -> list[Path]:
    """Delete the plain SQLite copies of this box's database in its data folder and its
    backup folder (``[edge] backup_dir``; backups, ``<database>.before-restore``): files
    that begin with the plain header and whose ``meta`` names this node. Returns what was
    deleted."""
    folders = dict.fromkeys((config.data_dir, config.path(config.backup_dir)))
    candidates = [
        path
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.is_file() and path != config.database_path and _is_plain(path)
    ]
    deleted = []
    for path in candidates:
        if _node_of(path) != config.node:
            continue
        try:
            _remove_database(path)
        except OSError as exc:  # the box is encrypted already: say so, and go on
            log.error("could not delete the plain copy %s: %s", path, exc.strerror)
            continue
        deleted.append(path)
    for folder in {path.parent for path in deleted}:
        fsync_dir(folder)
    return deleted


def _node_of(path: Path) -> str | None:
    try:
        with contextlib.closing(connect(f"file:{path}?mode=ro", None, uri=True)) as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = 'node'").fetchone()
    except OSError:
        return None
    except DATABASE_ERRORS:  # not a database of this release's schema
        return None
    return str(row[0]) if row is not None else None
