"""Prometheus metrics of the edge box.

Request durations are observed as they happen. Values that live in the database (records
by entity, outbox backlog, database size, last hub contact) are read at scrape time: the
``/metrics`` handler takes a :class:`Snapshot` from the store, and :class:`StoreCollector`
turns it into samples. Each app has its own registry (tests make as many apps as they like).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.store import Store
from protocol.entities import ENTITIES
from protocol.errors import Reason

__all__ = ["OTHER_REASON", "EdgeMetrics", "Snapshot", "StoreCollector", "take_snapshot"]

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


async def take_snapshot(store: Store) -> Snapshot:
    """Read the values the collector exposes."""
    pending, oldest = await store.outbox_pending()
    path = store.config.database_path
    size = sum(os.path.getsize(p) for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    last_contact = await store.get_meta("last_hub_contact_ms")
    now = store.now_ms()
    return Snapshot(
        records=await store.counts(),
        outbox_pending=pending,
        outbox_oldest_ms=oldest,
        database_bytes=size,
        last_hub_contact_ms=int(last_contact) if last_contact else None,
        now_ms=now,
        clock_ahead_ms=store.clock.ahead_ms(now),
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
        oldest_age = (snap.now_ms - snap.outbox_oldest_ms) / 1000 if snap.outbox_oldest_ms else 0
        yield GaugeMetricFamily(
            "puskesos_edge_outbox_oldest_pending_age_seconds",
            "Age of the oldest change waiting for the hub (0 when none waits)",
            value=max(oldest_age, 0),
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


class EdgeMetrics:
    """The metric objects of one edge app and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
