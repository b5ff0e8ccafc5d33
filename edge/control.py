"""The running box's local control socket (``docs/storage.md`` §3, "CLI on a locked box").

While ``edge serve`` runs it listens on ``<data_dir>/control.sock`` (mode 0600: only the
box's user, and root, may connect). One JSON line in, one JSON line out:

- ``{"command": "backup", "destination": "/abs/path"}`` → ``{"ok": true, "path": "..."}``:
  the serving process, which holds the data key once a staff member has signed in, takes
  the backup with :func:`edge.backup.backup` in a worker thread. The key never leaves that
  process, so the nightly backup timer and the backup before an upgrade need no password.
- a locked box (no key in memory) answers ``{"ok": false, "error": "locked", ...}`` and
  touches nothing: it cannot read its database, and nothing writes to it while it is locked.

Other failures answer ``{"ok": false, "error": "failed" | "bad_request", "message": ...}``.
The client side, :func:`ask`, is what ``puskesos edge backup`` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.backup import BackupError, backup
from edge.config import EdgeConfig

if TYPE_CHECKING:
    from edge.store import Store

__all__ = ["SOCKET_FILE", "ask", "listen", "socket_path"]

log = logging.getLogger("puskesos.edge.control")

SOCKET_FILE = "control.sock"
#: The longest request line read (a command and a path).
MAX_LINE = 8192


def socket_path(config: EdgeConfig) -> Path:
    """Where the running box listens."""
    return config.data_dir / SOCKET_FILE


async def listen(config: EdgeConfig, store: Store) -> AsyncIterator[None]:
    """Serve the control socket while the app runs (an ``app.cleanup_ctx`` generator; the
    caller holds the serving lock, so a socket file left there is a dead process's).

    A path that is something other than a socket is left alone, and so is a path too long
    for a socket: the box serves without the socket and says so in its log (``edge backup``
    then needs ``--as NAME``)."""
    path = socket_path(config)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            answer = await _answer(config, store, await reader.readline())
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, ValueError):  # the client went away; a line too long
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = None
    try:
        _remove_stale(path)
        server = await _bind(path, handle)
    except OSError as exc:
        log.error("no control socket at %s (%s): `edge backup` needs --as NAME", path, exc)
    yield
    if server is not None:
        server.close()
        await asyncio.gather(*tasks, return_exceptions=True)  # backups in flight finish
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; remove it")
    path.unlink()


async def _bind(path: Path, handle: Any) -> asyncio.AbstractServer:
    """Listen on ``path``, a socket its owner alone may use from the moment it exists (the
    file's mode comes from the umask at ``bind``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(previous)
    return await asyncio.start_unix_server(handle, sock=sock, limit=MAX_LINE)


async def _answer(config: EdgeConfig, store: Store, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        command, destination = request["command"], request["destination"]
    except (ValueError, TypeError, KeyError):
        return _refused("bad_request", 'expected {"command": "backup", "destination": PATH}')
    if command != "backup" or not isinstance(destination, str) or not destination.startswith("/"):
        return _refused("bad_request", "the only command is backup, to an absolute path")
    if not store.opened:
        return _refused("locked", "the box is locked: a staff member must sign in first")
    try:
        made = await asyncio.to_thread(backup, config, destination, store.key)
    except (BackupError, OSError) as exc:
        log.error("backup through the control socket failed: %s", exc)
        return _refused("failed", str(exc))
    except Exception:
        log.exception("backup through the control socket failed")
        return _refused("failed", "unexpected error: see the box's log")
    log.info("backup made through the control socket", extra={"path": str(made)})
    return {"ok": True, "path": str(made)}


def _refused(error: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": error, "message": message}


def ask(config: EdgeConfig, request: dict[str, Any]) -> dict[str, Any] | None:
    """Send one command to the running box and return its answer; ``None`` when no box is
    listening (not serving, or a release without the socket)."""
    path = socket_path(config)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        client.settimeout(None)  # a backup of a large database takes a while
        client.sendall(json.dumps(request).encode() + b"\n")
        with client.makefile("rb") as answer:
            line = answer.readline()
    if not line:
        raise ConnectionError(f"the box closed {path} without an answer")
    reply: dict[str, Any] = json.loads(line)
    return reply
