"""A real national receiver and real datasets, as the receiver and forwarding tests use them.

The receiver runs as ``puskesos national serve`` in a child process on a free port, set up
with the same commands an operator runs (``national init``, ``national district add``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.export import ExportRecord, export_dataset
from hub.keys import generate_key_pair, load_private_key, public_key_file
from protocol.dataset import Manifest
from puskesos.fleet import Service, free_port, puskesos
from tests.factories import DEFAULT_VILLAGE, make_household_with_members

__all__ = [
    "DISTRICT",
    "PERIOD",
    "ServedReceiver",
    "district_key",
    "log_events",
    "make_dataset",
    "sample_records",
]

DISTRICT = DEFAULT_VILLAGE[:4]
PERIOD = "2026-11"


def sample_records(households: int, *, seed: int = 0) -> Iterator[ExportRecord]:
    """``households`` valid households of the default village, each with four members."""
    for n in range(households):
        household, members = make_household_with_members(4, seed=seed * 1_000_000 + n)
        yield ExportRecord("household", household.pop("id"), DEFAULT_VILLAGE, household)
        for member in members:
            yield ExportRecord("member", member.pop("id"), DEFAULT_VILLAGE, member)


def district_key(folder: Path) -> Any:
    """A new district signing key in ``folder`` (``signing.key`` + ``signing.pub``)."""
    path = folder / "signing.key"
    generate_key_pair(path)
    return load_private_key(path)


async def make_dataset(
    target: Path,
    key: Any,
    households: int,
    *,
    seed: int = 0,
    district: str = DISTRICT,
    period: str = PERIOD,
    now_ms: int = 1_795_000_000_000,
) -> Manifest:
    """A signed dataset folder of ``households`` sample households."""
    return await export_dataset(
        sample_records(households, seed=seed),
        target,
        district=district,
        period=period,
        key=key,
        now_ms=now_ms,
    )


def log_events(path: Path, msg: str) -> list[dict[str, Any]]:
    """The receiver's JSON log lines whose ``msg`` is ``msg``."""
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("msg") == msg:
            events.append(event)
    return events


class ServedReceiver(Service):
    """``puskesos national serve`` in ``folder``, with districts registered by key file."""

    def __init__(
        self,
        folder: Path,
        *,
        max_chunk_bytes: int | None = None,
        max_delivery_bytes: int | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.folder = folder
        self.config = folder / "national.toml"
        self.data_dir = folder / "data"
        super().__init__(["national", "serve", "--config", str(self.config)], folder / "log", port)
        self.env = {"PUSKESOS_NATIONAL_LISTEN_PORT": str(port)}
        if max_chunk_bytes is not None:
            self.env["PUSKESOS_NATIONAL_MAX_CHUNK_BYTES"] = str(max_chunk_bytes)
        if max_delivery_bytes is not None:
            self.env["PUSKESOS_NATIONAL_MAX_DELIVERY_BYTES"] = str(max_delivery_bytes)
        puskesos("national", "init", "--config", str(self.config), "--data-dir", str(self.data_dir))

    def add_district(self, code: str, key_file: Path) -> str:
        """Register a district with the public key beside ``key_file``; returns its token."""
        return puskesos(
            "national", "district", "add", "--config", str(self.config),
            "--code", code, "--public-key", str(public_key_file(key_file)),
        ).strip()  # fmt: skip

    @property
    def public_key_pem(self) -> bytes:
        """The receiver's own public key (checks receipts and published results)."""
        return (self.data_dir / "receiver.pub").read_bytes()
