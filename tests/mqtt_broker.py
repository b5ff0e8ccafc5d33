"""A real Mosquitto for tests: its own config, port, persistence folder and log file.

Import the fixtures into a ``conftest.py`` (``from tests.mqtt_broker import mosquitto``) or
build a :class:`MosquittoBroker` yourself for a password file, an ACL or a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["MOSQUITTO", "MosquittoBroker", "free_port", "make_certificates", "mosquitto"]

#: The broker binary (``tests/run.sh`` installs the Debian package).
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class MosquittoBroker:
    """One Mosquitto process listening on ``host:port``, configured from ``workdir``.

    Without a password file anonymous clients may connect. With ``tls`` (certificate file,
    key file) the listener speaks TLS only. ``restart()`` keeps the port and
    the persistence folder, so persistent sessions and retained messages survive it (up to
    the last autosave, like a real broker after a crash).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        persistence: bool = True,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port(self.host)
        self.password_file = password_file
        self.acl_file = acl_file
        self.persistence = persistence
        self.tls = tls
        self.config_file = workdir / "mosquitto.conf"
        self.log_file = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            # Tests run as root in CI; Mosquitto would switch to the "mosquitto" user and then
            # could not write its log and database in the test's folder.
            "user root",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type all",
            "connection_messages true",
        ]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls is not None:
            certificate, key = self.tls
            lines += [f"certfile {certificate}", f"keyfile {key}"]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once its port accepts connections."""
        if self._process is not None:
            raise RuntimeError("broker already running")
        self._write_config()
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                self._process = None
                raise RuntimeError(f"mosquitto exited at start: {stderr}\n{self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log_text()}")

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    def stop(self) -> None:
        """Stop cleanly (SIGTERM): Mosquitto saves its persistence file first."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill at once (SIGKILL), like a power cut: what came since the last autosave is lost."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence folder."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Make the broker re-read its password file and ACL (SIGHUP), like ``kill -HUP``."""
        if self._process is None:
            raise RuntimeError("broker not running")
        mark = self.log_text().count("Reloading config")
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log_text().count("Reloading config") == mark:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not reload:\n{self.log_text()}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """The broker's log so far (for assertion messages)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def make_certificates(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``host``: (CA file, certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    certificate, key, request = folder / "server.crt", folder / "server.key", folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text(f"subjectAltName=IP:{host}\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=uji-ca"],
        ["req", *ec, "-keyout", key, "-out", request, "-subj", f"/CN={host}"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", certificate, "-days", "2", "-extfile", extensions],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return ca, certificate, key


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running anonymous Mosquitto with persistence, stopped after the test."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.kill()
