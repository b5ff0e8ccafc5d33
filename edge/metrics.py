"""Prometheus metrics of the edge box.

Request durations are observed as they happen. Values that live in the database or the
host (records by entity, outbox backlog, database size, last hub contact, failed logins,
free disk, CPU temperature) are read at scrape time: the ``/metrics`` handler takes a
:class:`Snapshot`, and :class:`StoreCollector` turns it into samples. The sync client sends
the same snapshot to the hub as telemetry (:func:`telemetry`). Each app has its own registry
(tests make as many apps as they like). The names and labels are listed in
``monitoring/METRICS.md``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.store import Store
from protocol.entities import ENTITIES
from protocol.errors import Reason
from protocol.telemetry import Telemetry
from puskesos import __version__
from puskesos.linkmetrics import LinkCounters

__all__ = [
    "OTHER_REASON",
    "EdgeMetrics",
    "Snapshot",
    "StoreCollector",
    "take_snapshot",
    "telemetry",
]

#: The ``reason`` label of a refusal whose code this version does not know (newer hubs may
#: add codes; the label set stays bounded).
OTHER_REASON = "other"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the store says at scrape time."""

    records: dict[str, int] = field(default_factory=dict)
    outbox_pending: int = 0
    outbox_oldest_ms: int | None = None
    database_bytes: int = 0
    last_hub_contact_ms: int | None = None
    now_ms: int = 0
    clock_ahead_ms: int = 0
    disk_free_bytes: int = 0
    disk_size_bytes: int = 0
    login_failures: int = 0
    cpu_temp_c: float | None = None

    @property
    def oldest_age_s(self) -> int | None:
        """Age of the oldest change waiting for the hub (``None`` when none waits)."""
        if self.outbox_oldest_ms is None:
            return None
        return max(0, self.now_ms - self.outbox_oldest_ms) // 1000

    @property
    def last_contact_age_s(self) -> int | None:
        """Seconds since the hub was last heard from (``None`` when never)."""
        if self.last_hub_contact_ms is None:
            return None
        return max(0, self.now_ms - self.last_hub_contact_ms) // 1000


#: Where Linux (and Raspberry Pi OS) shows the SoC's temperature, in millidegrees.
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """The CPU temperature in °C, or ``None`` where the machine shows none."""
    try:
        return int(path.read_text().strip()) / 1000
    except (OSError, ValueError):
        return None


async def take_snapshot(store: Store) -> Snapshot:
    """Read the values the collector exposes."""
    pending, oldest = await store.outbox_pending()
    path = store.config.database_path
    size = sum(os.path.getsize(p) for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    last_contact = await store.get_meta("last_hub_contact_ms")
    disk = shutil.disk_usage(store.config.data_dir)
    now = store.now_ms()
    return Snapshot(
        records=await store.counts(),
        outbox_pending=pending,
        outbox_oldest_ms=oldest,
        database_bytes=size,
        last_hub_contact_ms=int(last_contact) if last_contact else None,
        now_ms=now,
        clock_ahead_ms=store.clock.ahead_ms(now),
        disk_free_bytes=disk.free,
        disk_size_bytes=disk.total,
        login_failures=await store.login_failures(),
        cpu_temp_c=cpu_temperature(),
    )


def telemetry(snap: Snapshot, *, uptime_s: float) -> Telemetry:
    """The report the box sends the hub (see ``protocol/telemetry.py``)."""
    return Telemetry(
        wall_ms=snap.now_ms,
        software=__version__,
        uptime_s=int(uptime_s),
        outbox=snap.outbox_pending,
        oldest_age_s=snap.oldest_age_s,
        last_ack_age_s=snap.last_contact_age_s,
        disk_free_bytes=snap.disk_free_bytes,
        disk_size_bytes=snap.disk_size_bytes,
        db_bytes=snap.database_bytes,
        cpu_temp_c=snap.cpu_temp_c,
        login_failures=snap.login_failures,
    )


class StoreCollector(Collector):
    """Exposes the latest :class:`Snapshot`."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        records = GaugeMetricFamily(
            "puskesos_edge_records",
            "Records on the box by entity (withdrawn excluded)",
            labels=["entity"],
        )
        for entity in sorted(ENTITIES):
            records.add_metric([entity], snap.records.get(entity, 0))
        yield records
        yield GaugeMetricFamily(
            "puskesos_edge_outbox_pending_changes",
            "Changes saved on the box and not yet acknowledged by the hub",
            value=snap.outbox_pending,
        )
        yield GaugeMetricFamily(
            "puskesos_edge_outbox_oldest_pending_age_seconds",
            "Age of the oldest change waiting for the hub (0 when none waits)",
            value=snap.oldest_age_s or 0,
        )
        yield GaugeMetricFamily(
            "puskesos_edge_database_size_bytes",
            "Size of the SQLite database and its write-ahead log",
            value=snap.database_bytes,
        )
        yield GaugeMetricFamily(
            "puskesos_edge_last_hub_contact_timestamp_seconds",
            "Unix time of the last message from the hub (0 when never)",
            value=(snap.last_hub_contact_ms or 0) / 1000,
        )
        yield GaugeMetricFamily(
            "puskesos_edge_clock_ahead_seconds",
            "How far the box's logical clock is ahead of its wall clock",
            value=snap.clock_ahead_ms / 1000,
        )
        yield GaugeMetricFamily(
            "puskesos_edge_disk_free_bytes",
            "Free bytes on the file system of the data directory",
            value=snap.disk_free_bytes,
        )
        yield GaugeMetricFamily(
            "puskesos_edge_disk_size_bytes",
            "Size of the file system of the data directory",
            value=snap.disk_size_bytes,
        )
        yield CounterMetricFamily(
            "puskesos_edge_login_failures",
            "Failed logins recorded in the box's audit trail",
            value=snap.login_failures,
        )
        if snap.cpu_temp_c is not None:
            yield GaugeMetricFamily(
                "puskesos_edge_cpu_temperature_celsius",
                "Temperature of the CPU, where the machine shows one",
                value=snap.cpu_temp_c,
            )


class EdgeMetrics:
    """The metric objects of one edge app and their registry."""

    def __init__(self) -> None:
        # No `_created` twin of every counter and histogram: it doubles the series and
        # means nothing to our rules (this switch is process-wide; every app wants it).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        #: When the app was made (monotonic): the uptime the box reports.
        self.started = time.monotonic()
        ProcessCollector(registry=self.registry)
        self.request_duration = Histogram(
            "puskesos_edge_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.store_collector = StoreCollector()
        self.registry.register(self.store_collector)
        self.sync_connected = Gauge(
            "puskesos_edge_sync_connected",
            "1 while the box is connected to the broker, else 0",
            registry=self.registry,
        )
        #: Connects and lost connections of the sync link: flapping that the gauge misses.
        self.sync_link = LinkCounters("puskesos_edge_sync", "the box")
        self.registry.register(self.sync_link)
        self.batches_sent = Counter(
            "puskesos_edge_sync_batches_sent_total",
            "Up batches handed to the broker (resends included)",
            registry=self.registry,
        )
        self.batches_acked = Counter(
            "puskesos_edge_sync_batches_acked_total",
            "Up batches the hub acknowledged as applied",
            registry=self.registry,
        )
        self.batches_rejected = Counter(
            "puskesos_edge_sync_batches_rejected_total",
            "Up batches the hub refused, by reason code",
            ["reason"],
            registry=self.registry,
        )
        for reason in (*(r.value for r in Reason), OTHER_REASON):
            self.batches_rejected.labels(reason)
        self.down_applied = Counter(
            "puskesos_edge_sync_down_batches_applied_total",
            "Down batches from the hub applied on the box (duplicates not counted)",
            registry=self.registry,
        )

    def rejected(self, reason: str) -> None:
        """Count one refusal under its reason, or under ``other`` for an unknown code."""
        known = reason in {r.value for r in Reason}
        self.batches_rejected.labels(reason if known else OTHER_REASON).inc()
