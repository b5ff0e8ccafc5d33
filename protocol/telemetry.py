"""The health report a box publishes every ``telemetry_interval_s`` on its ``telemetry`` topic.

Boxes sit behind NAT on mobile links where Prometheus cannot scrape them, so they report
over MQTT and the hub turns the latest report of every box into metrics (see
``monitoring/METRICS.md``). Compact JSON, so an operator can read it with
``mosquitto_sub``. Ages are measured on the box from two readings of its own clock, so a
wrong box clock does not distort them; ``wall_ms`` lets the hub measure the clock itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Final

from protocol._jsondoc import non_negative_int, read_object
from protocol.errors import MalformedError

__all__ = ["MAX_TELEMETRY_BYTES", "Telemetry", "decode_telemetry", "encode_telemetry"]

#: A report larger than this is refused unread.
MAX_TELEMETRY_BYTES: Final = 1024


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One report. ``None`` means "not known" (no pending change, never heard from the hub,
    no temperature sensor); a count the box did not send reads as 0."""

    wall_ms: int
    software: str = ""
    uptime_s: int = 0
    outbox: int = 0
    oldest_age_s: int | None = None
    last_ack_age_s: int | None = None
    disk_free_bytes: int = 0
    disk_size_bytes: int = 0
    db_bytes: int = 0
    cpu_temp_c: float | None = None
    login_failures: int = 0


def encode_telemetry(report: Telemetry) -> bytes:
    """The report as compact UTF-8 JSON (``None`` values left out)."""
    document = {key: value for key, value in asdict(report).items() if value is not None}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _temperature(document: dict[str, Any]) -> float | None:
    """The optional CPU temperature; a reading that is not a plausible number (a broken
    sensor) counts as no reading: it must not cost the rest of the report."""
    value = document.get("cpu_temp_c")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not -100 <= value <= 200:
        return None
    return float(value)


def decode_telemetry(data: bytes) -> Telemetry:
    """Parse a report; unknown keys are ignored (newer boxes may add some), a missing
    counter counts as 0.

    Raises :class:`~protocol.errors.MalformedError` for anything that is not one.
    """
    document = read_object(data, MAX_TELEMETRY_BYTES, "telemetry")
    if non_negative_int(document, "wall_ms", "telemetry") is None:
        raise MalformedError("telemetry has no wall_ms")
    software = document.get("software", "")
    if not isinstance(software, str) or len(software) > 64:
        raise MalformedError("telemetry software is not a short string")

    def count(name: str) -> int:
        return non_negative_int(document, name, "telemetry") or 0

    return Telemetry(
        wall_ms=count("wall_ms"),
        software=software,
        uptime_s=count("uptime_s"),
        outbox=count("outbox"),
        oldest_age_s=non_negative_int(document, "oldest_age_s", "telemetry"),
        last_ack_age_s=non_negative_int(document, "last_ack_age_s", "telemetry"),
        disk_free_bytes=count("disk_free_bytes"),
        disk_size_bytes=count("disk_size_bytes"),
        db_bytes=count("db_bytes"),
        cpu_temp_c=_temperature(document),
        login_failures=count("login_failures"),
    )
