"""A real box driven like an operator drives it: the ``puskesos edge`` commands run as
subprocesses, and ``puskesos edge serve`` runs as a server process on a free port.

Used by the command, durability and backup tests (and the edge benchmark).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.factories import make_household_with_members

__all__ = ["ServedBox", "free_port", "household_body", "init_box", "puskesos", "query"]

VILLAGE = "3201022001"
NODE = "edge-3201022001-a"


def _environment(**overrides: str) -> dict[str, str]:
    """The caller's environment without its PUSKESOS_* settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSKESOS_")}
    return env | overrides


def puskesos(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``puskesos *args`` to completion (stdin is a pipe: never a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "puskesos", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(),
        check=False,
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def init_box(folder: Path, *, users: dict[str, tuple[str, str]] | None = None) -> Path:
    """``edge init`` a box in ``folder`` and add ``users`` (name → (role, password)).

    Returns the configuration file; the database lives in ``folder / "data"``.
    """
    config = folder / "edge.toml"
    result = puskesos(
        "edge", "init", "--config", str(config), "--village", VILLAGE, "--node", NODE,
        "--data-dir", str(folder / "data"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for username, (role, password) in (users or {}).items():
        result = puskesos(
            "edge", "user", "add", "--config", str(config), "--username", username,
            "--full-name", username.title(), "--role", role, stdin=password + "\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
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


class ServedBox:
    """``puskesos edge serve`` as a child process on 127.0.0.1 and a free port.

    Its output (JSON log lines) goes to ``log``; ``start`` waits until ``/healthz`` answers.
    """

    def __init__(self, config: Path, log: Path, *, port: int | None = None) -> None:
        self.config = config
        self.log = log
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where the box answers."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ServedBox:
        """Start serving; raises with the server's output if it does not come up."""
        env = _environment(
            PUSKESOS_EDGE_LISTEN_HOST="127.0.0.1", PUSKESOS_EDGE_LISTEN_PORT=str(self.port)
        )
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "puskesos", "edge", "serve", "--config", str(self.config)],
                stdout=output,
                stderr=output,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"serve did not come up: {self.output()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (what systemd sends), then wait; returns the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the power cut of the test suite."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def output(self) -> str:
        """Everything the server wrote so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")
