"""Prometheus metrics of a hub worker.

Counters and the apply histogram are per worker process (Prometheus sums the workers).
Fleet values that live in the database (records, open conflicts, per-device lag) are
read at scrape time by :func:`fleet_samples`; the per-device series are bounded by the
device registry (one district: a few hundred boxes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from hub import db
from hub.store import HubStore
from protocol.errors import Reason

__all__ = ["FleetSnapshot", "HubMetrics", "take_fleet_snapshot"]


class HubMetrics:
    """The metric objects of one hub worker, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.batches = Counter(
            "puskesos_hub_batches_total",
            "Up batches handled, by outcome (applied, duplicate, rejected)",
            ["outcome"],
            registry=r,
        )
        self.changes = Counter(
            "puskesos_hub_changes_applied_total", "Changes applied from up batches", registry=r
        )
        self.rejected = Counter(
            "puskesos_hub_batches_rejected_total",
            "Up batches refused, by reason code",
            ["reason"],
            registry=r,
        )
        for reason in Reason:
            self.rejected.labels(reason.value)
        self.conflicts = Counter(
            "puskesos_hub_conflicts_detected_total",
            "Concurrent edits found by the merge",
            registry=r,
        )
        self.apply_seconds = Histogram(
            "puskesos_hub_apply_duration_seconds",
            "Time from receiving an up batch to its ack being published",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.down_sent = Counter(
            "puskesos_hub_down_batches_sent_total",
            "Down batches published (first sends and resends)",
            registry=r,
        )
        self.down_acked = Counter(
            "puskesos_hub_down_batches_acked_total", "Down batches acked by boxes", registry=r
        )
        self.resolutions = Counter(
            "puskesos_hub_conflicts_resolved_total",
            "Conflicts resolved through the API",
            registry=r,
        )


class FleetSnapshot:
    """Database values read at scrape time, turned into samples by :meth:`collect`."""

    def __init__(
        self, records: dict[str, int], open_conflicts: int, devices: list[Any], now_ms: int
    ) -> None:
        self.records = records
        self.open_conflicts = open_conflicts
        self.devices = devices
        self.now_ms = now_ms

    def collect(self) -> Iterator[Metric]:
        """The samples."""
        records = GaugeMetricFamily(
            "puskesos_hub_records", "Records held by the hub, by entity", labels=["entity"]
        )
        for entity, count in sorted(self.records.items()):
            records.add_metric([entity], count)
        yield records
        yield GaugeMetricFamily(
            "puskesos_hub_conflicts_open", "Conflicts waiting for review", value=self.open_conflicts
        )
        online = GaugeMetricFamily(
            "puskesos_hub_device_online", "1 while the box's status is online", labels=["node"]
        )
        outbox = GaugeMetricFamily(
            "puskesos_hub_device_outbox_changes",
            "Changes waiting in the box's outbox, as it last reported",
            labels=["node"],
        )
        silence = GaugeMetricFamily(
            "puskesos_hub_device_last_seen_age_seconds",
            "Seconds since the hub last heard from the box",
            labels=["node"],
        )
        offset = GaugeMetricFamily(
            "puskesos_hub_device_clock_offset_seconds",
            "The box's wall clock minus the hub's, at its last status",
            labels=["node"],
        )
        down_lag = GaugeMetricFamily(
            "puskesos_hub_device_down_unacked_batches",
            "Down batches the box has not acked yet",
            labels=["node"],
        )
        for device in self.devices:
            label = [device.node]
            online.add_metric(label, 1 if device.online else 0)
            reported = json.loads(device.reported) if device.reported else {}
            outbox.add_metric(label, reported.get("outbox", 0))
            if device.last_seen_ms is not None:
                silence.add_metric(label, max(0, self.now_ms - device.last_seen_ms) / 1000)
            if device.clock_offset_ms is not None:
                offset.add_metric(label, device.clock_offset_ms / 1000)
            down_lag.add_metric(label, device.down_seq - device.down_watermark)
        yield from (online, outbox, silence, offset, down_lag)


async def take_fleet_snapshot(store: HubStore) -> FleetSnapshot:
    """Read what :class:`FleetSnapshot` exposes."""
    d = db.devices
    async with store.engine.connect() as conn:
        records = {
            entity: n
            for entity, n in await conn.execute(
                sa.select(db.records.c.entity, sa.func.count()).group_by(db.records.c.entity)
            )
        }
        open_conflicts = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(db.conflicts)
                .where(db.conflicts.c.resolved_ms.is_(None))
            )
        ).scalar_one()
        devices = (
            await conn.execute(
                sa.select(
                    d.c.node,
                    d.c.online,
                    d.c.reported,
                    d.c.last_seen_ms,
                    d.c.clock_offset_ms,
                    d.c.down_seq,
                    d.c.down_watermark,
                ).where(d.c.status == "active")
            )
        ).all()
    return FleetSnapshot(records, open_conflicts, list(devices), store.wall())
