"""A real box driven like an operator drives it: the ``puskesos edge`` commands run as
subprocesses, and ``puskesos edge serve`` runs as a server process on a free port.

Used by the command, durability and backup tests (and the edge benchmark).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from edge.config import EdgeConfig, load_config, render_toml
from puskesos.fleet import Service, free_port
from puskesos.fleet import run_puskesos as puskesos
from tests.factories import make_household_with_members

__all__ = ["ServedBox", "free_port", "household_body", "init_box", "puskesos", "query"]

VILLAGE = "3201022001"
NODE = "edge-3201022001-a"


def init_box(
    folder: Path,
    *,
    users: dict[str, tuple[str, str]] | None = None,
    recovery_key: Path | None = None,
    configured: bool = False,
) -> Path:
    """``edge init`` a box in ``folder`` and add ``users`` (name → (role, password)); with
    ``recovery_key`` (the district's public key) the box is encrypted, and every user after
    the first is added ``--as`` the first; without, it is made ``--plain``. ``configured``:
    the key is not given to ``edge init`` but named by ``[edge] recovery_key`` in the
    configuration written before it, as provisioning does.

    Returns the configuration file; the database lives in ``folder / "data"``.
    """
    config = folder / "edge.toml"
    if configured:
        settings = EdgeConfig(
            village=VILLAGE, node=NODE, data_dir=folder / "data", recovery_key=str(recovery_key)
        )
        config.write_text(render_toml(settings), encoding="utf-8")
        options = []
    else:
        encryption = ["--recovery-key", str(recovery_key)] if recovery_key else ["--plain"]
        options = ["--village", VILLAGE, "--node", NODE, "--data-dir", str(folder / "data"),
                   *encryption]  # fmt: skip
    result = puskesos("edge", "init", "--config", str(config), *options)
    assert result.returncode == 0, result.stderr
    first: tuple[str, str] | None = None
    for username, (role, password) in (users or {}).items():
        unlock = ["--as", first[0]] if recovery_key and first else []
        result = puskesos(
            "edge", "user", "add", "--config", str(config), "--username", username,
            "--full-name", username.title(), "--role", role, *unlock,
            stdin=(f"{first[1]}\n" if unlock and first else "") + password + "\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        first = first or (username, password)
    return config


def household_body(seed: int) -> dict[str, Any]:
    """The body of ``POST /api/v1/households``: a new valid household with 4 new members."""
    household, members = make_household_with_members(4, seed=seed)
    del household["id"]
    for member in members:
        del member["id"], member["household_id"]
    return {"household": household, "members": members}


def query(database: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of a read-only query on a database file (the server may be running)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return connection.execute(sql, params).fetchall()


class ServedBox(Service):
    """``puskesos edge serve`` as a child process on 127.0.0.1 and a free port.

    Its output (JSON log lines) goes to ``log``; ``start`` waits until ``/healthz`` answers
    200. It serves HTTPS on another free port when its configuration says ``tls`` (as
    ``edge init`` writes it). Replication is off unless ``env`` turns it on
    (``PUSKESOS_SYNC_ENABLED``): a box that tests something else must not talk to whatever
    broker listens on this machine.
    """

    def __init__(
        self, config: Path, log: Path, *, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        port = port or free_port()
        tls_port = free_port()
        settings = load_config(config)
        super().__init__(
            ["edge", "serve", "--config", str(config)], log, port,
            tls=(tls_port, settings.path(settings.tls_cert)) if settings.tls else None,
        )  # fmt: skip
        self.config = config
        self.env = {
            "PUSKESOS_EDGE_LISTEN_HOST": "127.0.0.1",
            "PUSKESOS_EDGE_LISTEN_PORT": str(port),
            "PUSKESOS_EDGE_TLS_PORT": str(tls_port),
            "PUSKESOS_SYNC_ENABLED": "false",
            **(env or {}),
        }

    def start(self, timeout: float = 60, *, healthy: bool = True) -> ServedBox:
        """Start serving; raises with the server's output if it does not come up."""
        super().start(timeout, healthy=healthy)
        return self
