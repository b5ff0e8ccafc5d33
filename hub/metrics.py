"""Prometheus metrics of a hub worker: its own work, the fleet, and the broker.

Counters and the apply histogram are per worker process (Prometheus sums the workers).
The fleet's values live in the database (records and open conflicts per village, each
box's last status and telemetry) and are read at scrape time (:meth:`HubMetrics.refresh`),
the same on every worker. The broker's come from its ``$SYS`` topics as this worker last
received them (:class:`BrokerStats`). Names, labels and cardinality are documented in
``monitoring/METRICS.md``; label values are village codes and node ids from the device
registry, never anything a person typed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
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
from sqlalchemy.exc import SQLAlchemyError

from hub import db
from hub.posyandu import VillagePosyandu
from hub.progress import ProgressCache, VillageProgress
from hub.store import HubStore, Outcome
from protocol.entities import SPM_FIELDS
from protocol.errors import MalformedError, Reason
from protocol.posyandu import Flag
from protocol.telemetry import Telemetry, decode_telemetry
from protocol.topics import district_of
from protocol.vulnerable import REGISTERS
from puskesos.linkmetrics import LinkCounters

__all__ = [
    "SYS_TOPICS",
    "AuditChainState",
    "BrokerStats",
    "FleetSnapshot",
    "HubMetrics",
    "take_fleet_snapshot",
]

log = logging.getLogger("puskesos.hub.metrics")

#: Telemetry outcomes (the ``outcome`` label of ``puskesos_hub_telemetry_messages_total``).
TELEMETRY_OUTCOMES: Final = ("stored", "malformed", "unknown_node")
_BOX_LABELS: Final = ["district", "village", "node"]


#: Seconds a scrape waits for a hub's first count of the round's progress (later ones run
#: in the background, hub/progress.py ProgressCache).
PROGRESS_WAIT_S: Final = 5


class HubMetrics:
    """The metric objects of one hub worker, in their own registry."""

    def __init__(self, *, stale_after_s: float, progress: ProgressCache | None = None) -> None:
        # No `_created` twin of every counter and histogram: it doubles the series and
        # means nothing to our rules (this switch is process-wide; every app wants it).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.batches = Counter(
            "puskesos_hub_batches_total",
            "Up batches handled, by outcome (applied, duplicate, rejected)",
            ["outcome"],
            registry=r,
        )
        for outcome in Outcome:
            self.batches.labels(outcome.value)
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
        self.digest_checks = Counter(
            "puskesos_hub_digest_checks_total",
            "Comparisons of a box's digest with its village's, by outcome "
            "(match, diverged, unchecked: something was in flight)",
            ["outcome"],
            registry=r,
        )
        for verdict in ("match", "diverged", "unchecked"):
            self.digest_checks.labels(verdict)
        self.down_acked = Counter(
            "puskesos_hub_down_batches_acked_total", "Down batches acked by boxes", registry=r
        )
        self.resolutions = Counter(
            "puskesos_hub_conflicts_resolved_total",
            "Conflicts resolved through the API",
            registry=r,
        )
        self.telemetry = Counter(
            "puskesos_hub_telemetry_messages_total",
            "Telemetry reports from boxes, by outcome (stored, malformed, unknown_node)",
            ["outcome"],
            registry=r,
        )
        for outcome in TELEMETRY_OUTCOMES:
            self.telemetry.labels(outcome)
        self.audit_entries = Counter(
            "puskesos_hub_audit_entries_total",
            "Entries of boxes' audit chains received, by outcome (stored, unknown_node)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("stored", "unknown_node"):
            self.audit_entries.labels(outcome)
        self.audit_chain = AuditChainState()
        r.register(self.audit_chain)
        self.in_progress = Gauge(
            "puskesos_hub_messages_in_progress",
            "Messages this worker took from the broker and has not finished handling",
            registry=r,
        )
        self.failures = Counter(
            "puskesos_hub_message_failures_total",
            "Messages whose handling failed (database unreachable, a bug); boxes resend",
            registry=r,
        )
        self.broker_connected = Gauge(
            "puskesos_hub_broker_connected",
            "1 while this worker is connected to the broker, else 0",
            registry=r,
        )
        #: Connects and lost connections of the worker's link: flapping that the gauge misses.
        self.broker_link = LinkCounters("puskesos_hub_broker", "this worker")
        r.register(self.broker_link)
        self.broker = BrokerStats()
        r.register(self.broker)
        self._fleet = _FleetCollector(stale_after_s)
        r.register(self._fleet)
        self.progress = progress or ProgressCache(round_months=3, timezone="Asia/Jakarta")

    async def refresh(self, store: HubStore) -> None:
        """Read the fleet's values from the database for the next scrape. When the database
        cannot answer, the scrape still shows this worker's own counters (its failures
        among them) and no fleet values, rather than failing as a whole: a worker whose
        database is down is not a worker that is down."""
        try:
            self._fleet.snapshot = await take_fleet_snapshot(store)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("metrics without the fleet: the database did not answer: %s", exc)
            self._fleet.snapshot = None
        # The round's progress as last counted (a new count starts in the background when
        # this one is old); only a hub's very first count is waited for, and not for long.
        try:
            counted = await asyncio.wait_for(
                asyncio.shield(self.progress.latest(store)), PROGRESS_WAIT_S
            )
        except (TimeoutError, RuntimeError):
            counted = self.progress.counted
        self._fleet.progress = counted.villages if counted is not None else {}
        self._fleet.posyandu = counted.posyandu if counted is not None else {}


class AuditChainState(Collector):
    """``puskesos_hub_audit_chain_ok`` as this worker's last check of the hub's own audit
    chain found it (:func:`hub.audit.watch`); absent until the first check ends, so a
    long first walk is not taken for a broken chain."""

    def __init__(self) -> None:
        self.ok: bool | None = None

    def collect(self) -> Iterator[Metric]:
        if self.ok is not None:
            yield GaugeMetricFamily(
                "puskesos_hub_audit_chain_ok",
                "1 while the hub's own audit trail was an unbroken chain at its last check",
                value=1 if self.ok else 0,
            )


# --- the broker, from its $SYS topics ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SysMetric:
    name: str
    help: str
    counter: bool = False


#: Mosquitto's ``$SYS`` topic → the metric it becomes (see monitoring/METRICS.md).
SYS_TOPICS: Final = {
    "$SYS/broker/uptime": _SysMetric(
        "puskesos_broker_uptime_seconds", "Seconds since the broker started"
    ),
    "$SYS/broker/clients/connected": _SysMetric(
        "puskesos_broker_clients_connected", "Clients connected to the broker"
    ),
    "$SYS/broker/messages/stored": _SysMetric(
        "puskesos_broker_messages_stored", "Messages the broker holds (retained and queued)"
    ),
    "$SYS/broker/messages/received": _SysMetric(
        "puskesos_broker_messages_received", "Messages the broker received", counter=True
    ),
    "$SYS/broker/messages/sent": _SysMetric(
        "puskesos_broker_messages_sent", "Messages the broker sent", counter=True
    ),
    "$SYS/broker/publish/messages/dropped": _SysMetric(
        "puskesos_broker_messages_dropped",
        "Messages the broker dropped (queue limits, offline clients)",
        counter=True,
    ),
}


#: A ``$SYS`` value older than this is not shown: Mosquitto refreshes its uptime every
#: ``sys_interval`` (10 s by default), so silence this long means the statistics stopped.
SYS_FRESH_S: Final = 300


class BrokerStats(Collector):
    """The broker's latest ``$SYS`` values as this worker received them, shown only while
    fresh (frozen figures would look like a healthy broker) and forgotten on every new
    connection (the broker sends its retained ones again)."""

    def __init__(self) -> None:
        #: topic → (value, when received, monotonic seconds).
        self.values: dict[str, tuple[float, float]] = {}

    def note(self, topic: str, payload: bytes) -> bool:
        """Take one ``$SYS`` message; ``False`` when it is not one we expose or unreadable.
        Mosquitto writes numbers as text, the uptime as ``"123 seconds"``."""
        if topic not in SYS_TOPICS:
            return False
        try:
            self.values[topic] = (float(payload.split(maxsplit=1)[0]), time.monotonic())
        except (IndexError, ValueError):
            return False
        return True

    def forget(self) -> None:
        """Drop every value (a new connection: they may belong to another broker)."""
        self.values.clear()

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        for topic, metric in SYS_TOPICS.items():
            value, received = self.values.get(topic, (0.0, -SYS_FRESH_S))
            if now - received < SYS_FRESH_S:
                family = CounterMetricFamily if metric.counter else GaugeMetricFamily
                yield family(metric.name, metric.help, value=value)


# --- the fleet, from the database ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Database values read at scrape time."""

    #: (village, entity) → records held.
    records: dict[tuple[str, str], int]
    #: village → open conflicts.
    conflicts: dict[str, int]
    #: village → when its data last changed (ms), or when its first box was registered.
    last_change_ms: dict[str, int]
    devices: list[Any]
    now_ms: int
    #: (village, entity, "listed" or "missing") → records imported from the district's
    #: registry extract that its latest import lists, or no longer lists.
    registry: dict[tuple[str, str, str], int]


def _gauge(name: str, text: str, labels: list[str] = _BOX_LABELS) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, labels=labels)


class _FleetCollector(Collector):
    """Turns the latest :class:`FleetSnapshot` into samples."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_ms = stale_after_s * 1000
        self.snapshot: FleetSnapshot | None = None
        #: village → its progress in the verification round, refreshed less often.
        self.progress: dict[str, VillageProgress] = {}
        #: village → its registers and the month's Posyandu services, counted with it.
        self.posyandu: dict[str, VillagePosyandu] = {}

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        yield from self._villages(snap)
        yield self._round_progress()
        yield from self._posyandu()
        yield from self._boxes(snap)

    def _round_progress(self) -> Metric:
        households = _gauge(
            "puskesos_hub_village_round_households",
            "Households of the village in the current verification round, by state: total, "
            "visited, incomplete, not_found, stale (no visit in 90 days)",
            ["district", "village", "state"],
        )
        for code, progress in sorted(self.progress.items()):
            for state in ("total", "visited", "incomplete", "not_found", "stale"):
                households.add_metric([district_of(code), code, state], getattr(progress, state))
        return households

    def _posyandu(self) -> Iterator[Metric]:
        village = ["district", "village"]
        registers = _gauge(
            "puskesos_hub_village_register_entries",
            "Vulnerable-group registers of the village (people; households for a register "
            "of households), counted from the replicated households and members",
            [*village, "register"],
        )
        services = _gauge(
            "puskesos_hub_village_posyandu_services",
            "Posyandu services of the village this month, by SPM field",
            [*village, "spm"],
        )
        flags = _gauge(
            "puskesos_hub_village_posyandu_flags",
            "People of the village whose services raise a flag this month (2T, KEK)",
            [*village, "flag"],
        )
        referrals = _gauge(
            "puskesos_hub_village_posyandu_referrals",
            "Referrals made at the village's Posyandu this month",
            village,
        )
        for code, figures in sorted(self.posyandu.items()):
            place = [district_of(code), code]
            for register in REGISTERS:
                registers.add_metric([*place, register], figures.registers[register])
            for spm in SPM_FIELDS:
                services.add_metric([*place, spm], figures.report.by_spm[spm])
            for flag in Flag:
                flags.add_metric([*place, flag.value], figures.report.flags[flag])
            referrals.add_metric(place, figures.report.referrals)
        yield from (registers, services, flags, referrals)

    @staticmethod
    def _villages(snap: FleetSnapshot) -> Iterator[Metric]:
        village = ["district", "village"]
        records = _gauge(
            "puskesos_hub_village_records",
            "Records the hub holds of the village, by entity",
            [*village, "entity"],
        )
        for (code, entity), count in sorted(snap.records.items()):
            records.add_metric([district_of(code), code, entity], count)
        registry = {
            state: _gauge(
                f"puskesos_hub_village_registry_{state}_records",
                text,
                [*village, "entity"],
            )
            for state, text in (
                ("listed", "Records of the district's registry extract its latest import lists"),
                (
                    "missing",
                    "Records imported earlier that the latest extract no longer lists "
                    "(flagged, never deleted)",
                ),
            )
        }
        for (code, entity, state), count in sorted(snap.registry.items()):
            registry[state].add_metric([district_of(code), code, entity], count)
        conflicts = _gauge(
            "puskesos_hub_village_conflicts_open", "Conflicts waiting for review", village
        )
        last_change = _gauge(
            "puskesos_hub_village_last_change_timestamp_seconds",
            "When the hub last applied a change from the village (or registered its first box)",
            village,
        )
        for code in sorted(snap.last_change_ms.keys() | snap.conflicts.keys()):
            conflicts.add_metric([district_of(code), code], snap.conflicts.get(code, 0))
            if code in snap.last_change_ms:
                last_change.add_metric([district_of(code), code], snap.last_change_ms[code] / 1000)
        yield from (records, *registry.values(), conflicts, last_change)

    def _boxes(self, snap: FleetSnapshot) -> Iterator[Metric]:
        info = _gauge(
            "puskesos_box_info",
            "Always 1: the box's software and wire version as last reported",
            [*_BOX_LABELS, "software", "wire"],
        )
        gauges = {
            name: _gauge(f"puskesos_box_{name}", text)
            for name, text in (
                ("online", "1 while the box's status is online"),
                ("stale", "1 when the hub has heard nothing from the box for box_stale_after_s"),
                ("last_seen_timestamp_seconds", "When the hub last heard from the box"),
                ("uptime_seconds", "Seconds the box's edge process runs, as last reported"),
                ("outbox_pending_changes", "Changes waiting in the box's outbox, as reported"),
                ("outbox_oldest_pending_age_seconds", "Age of the box's oldest pending change"),
                ("last_ack_age_seconds", "Seconds since the box last heard from the hub"),
                ("disk_free_bytes", "Free bytes on the box's data file system"),
                ("disk_size_bytes", "Size of the box's data file system"),
                ("database_size_bytes", "Size of the box's database and its write-ahead log"),
                ("clock_offset_seconds", "The box's wall clock minus the hub's, when it reported"),
                ("cpu_temperature_celsius", "Temperature of the box's CPU, where it has a sensor"),
                ("down_unacked_batches", "Down batches the box has not acked yet"),
                (
                    "digest_diverged",
                    "1 while the box's data differs from the hub's (anti-entropy repairing), "
                    "0 when their digests last matched",
                ),
                (
                    "audit_chain_ok",
                    "1 while every entry of the box's audit chain links to the one before, "
                    "0 once one did not or was missing (absent: the box sends no chain)",
                ),
            )
        }
        counters = {
            name: CounterMetricFamily(f"puskesos_box_{name}", text, labels=_BOX_LABELS)
            for name, text in (
                ("login_failures", "Failed logins recorded on the box, as last reported"),
                ("changes_applied", "Changes from the box applied by the hub"),
                ("batches_rejected", "Up batches of the box the hub refused"),
                ("divergences", "Times the box's data was found to differ from the hub's"),
                (
                    "digest_repaired_records",
                    "Records the hub sent the box again to repair a divergence",
                ),
                (
                    "audit_chain_breaks",
                    "Breaks, gaps and restarts found in the box's audit chain",
                ),
            )
        }
        for device in snap.devices:
            labels = [district_of(device.village), device.village, device.node]
            reported = json.loads(device.reported) if device.reported else {}
            report = _stored_report(device)
            info.add_metric(
                [*labels, reported.get("software", ""), str(reported.get("wire", ""))], 1
            )
            last_seen = device.last_seen_ms
            stale = last_seen is None or snap.now_ms - last_seen > self.stale_after_ms
            values: dict[str, float | None] = {
                "online": 1 if device.online and not stale else 0,
                "stale": 1 if stale else 0,
                "last_seen_timestamp_seconds": last_seen / 1000 if last_seen else None,
                "clock_offset_seconds": (
                    device.clock_offset_ms / 1000 if device.clock_offset_ms is not None else None
                ),
                "down_unacked_batches": (
                    device.down_seq - device.down_watermark - len(json.loads(device.down_above))
                ),
                "outbox_pending_changes": reported.get("outbox", 0),
            }
            if report is not None:
                values.update(
                    uptime_seconds=report.uptime_s,
                    outbox_oldest_pending_age_seconds=report.oldest_age_s or 0,
                    last_ack_age_seconds=report.last_ack_age_s,
                    disk_free_bytes=report.disk_free_bytes,
                    disk_size_bytes=report.disk_size_bytes,
                    database_size_bytes=report.db_bytes,
                    cpu_temperature_celsius=report.cpu_temp_c,
                )
                if device.telemetry_ms >= (_reported_at(reported) or 0):
                    values["outbox_pending_changes"] = report.outbox
                counters["login_failures"].add_metric(labels, report.login_failures)
            for name, value in values.items():
                if value is not None:
                    gauges[name].add_metric(labels, value)
            if device.digest_state is not None:
                gauges["digest_diverged"].add_metric(
                    labels, 1 if device.digest_state == "diverged" else 0
                )
            if device.audit_state is not None:
                gauges["audit_chain_ok"].add_metric(labels, 1 if device.audit_state == "ok" else 0)
            counters["audit_chain_breaks"].add_metric(labels, device.audit_breaks)
            counters["divergences"].add_metric(labels, device.divergences)
            counters["digest_repaired_records"].add_metric(labels, device.repaired)
            counters["changes_applied"].add_metric(labels, device.changes_applied)
            counters["batches_rejected"].add_metric(labels, device.rejected)
        yield info
        yield from gauges.values()
        yield from counters.values()


def _stored_report(device: Any) -> Telemetry | None:
    """The device's latest report; ``None`` when it has none, or when a stored report cannot
    be read (then that box's report is missing from the scrape, not the whole scrape)."""
    if not device.telemetry:
        return None
    try:
        return decode_telemetry(device.telemetry.encode())
    except MalformedError as exc:
        log.warning("the stored report of %s is unreadable: %s", device.node, exc)
        return None


def _reported_at(reported: dict[str, Any]) -> int | None:
    value = reported.get("at_ms")
    return value if isinstance(value, int) else None


async def take_fleet_snapshot(store: HubStore) -> FleetSnapshot:
    """Read what the fleet metrics expose: active devices, records and open conflicts per
    village, and when each village's data last changed."""
    d, r, c, v = db.devices, db.records, db.conflicts, db.villages
    by_village = sa.select(r.c.village, r.c.entity, sa.func.count()).group_by(
        r.c.village, r.c.entity
    )
    async with db.reading(store.engine) as conn:
        records = {(village, entity): n for village, entity, n in await conn.execute(by_village)}
        conflicts = {
            village: n
            for village, n in await conn.execute(
                sa.select(c.c.village, sa.func.count())
                .where(c.c.resolved_ms.is_(None))
                .group_by(c.c.village)
            )
        }
        devices = (await conn.execute(sa.select(d).where(d.c.status == "active"))).all()
        changed = dict((await conn.execute(sa.select(v.c.code, v.c.last_change_ms))).all())
        rr = db.registry_rows
        registry = {
            (village, entity, "missing" if missing else "listed"): n
            for village, entity, missing, n in await conn.execute(
                sa.select(rr.c.village, rr.c.entity, rr.c.missing, sa.func.count()).group_by(
                    rr.c.village, rr.c.entity, rr.c.missing
                )
            )
        }
    last_change: dict[str, int] = {}
    for device in devices:
        first = min(device.created_ms, last_change.get(device.village, device.created_ms))
        last_change[device.village] = first
    for village, at_ms in changed.items():
        if at_ms is not None:
            last_change[village] = at_ms
    return FleetSnapshot(records, conflicts, last_change, list(devices), store.wall(), registry)
