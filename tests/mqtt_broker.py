"""A real Mosquitto for tests: its own config, port, persistence folder and log file.

Import the fixtures into a ``conftest.py`` (``from tests.mqtt_broker import mosquitto``) or
build a :class:`MosquittoBroker` yourself for a password file, an ACL or a restart.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from puskesos.fleet import MOSQUITTO, MosquittoBroker, free_port

__all__ = ["MOSQUITTO", "MosquittoBroker", "free_port", "make_certificates", "mosquitto"]


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
