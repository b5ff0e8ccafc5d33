"""A real national receiver and real datasets, as the receiver and forwarding tests use them.

The receiver runs as ``puskesos national serve`` in a child process on a free port
(:class:`puskesos.fleet.NationalReceiver`, set up with the commands an operator runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.export import ExportRecord, export_dataset
from hub.keys import generate_key_pair, load_private_key, public_key_file
from protocol.dataset import Manifest
from puskesos.fleet import NationalReceiver
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


class ServedReceiver(NationalReceiver):
    """``puskesos national serve`` in ``folder``, with districts registered by key file."""

    def __init__(
        self,
        folder: Path,
        *,
        max_chunk_bytes: int | None = None,
        max_delivery_bytes: int | None = None,
    ) -> None:
        limits = {"max_chunk_bytes": max_chunk_bytes, "max_delivery_bytes": max_delivery_bytes}
        super().__init__(folder, **{k: v for k, v in limits.items() if v is not None})

    def add_district(self, code: str, key_file: Path) -> str:
        """Register a district with the public key beside ``key_file``; returns its token."""
        return super().add_district(code, public_key_file(key_file))

    @property
    def public_key_pem(self) -> bytes:
        """The receiver's own public key (checks receipts and published results)."""
        return self.public_key_file.read_bytes()
