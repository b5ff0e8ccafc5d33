"""The hub's MQTT side: ingest of up batches, statuses, telemetry and down acks, the
broker's ``$SYS`` statistics, and the downlink.

One :class:`Ingest` per hub worker process. It subscribes (an MQTT 5 shared subscription,
clean session: durability comes from the boxes' outboxes) to what boxes publish. For an up
batch: decode, check, apply and record it in one transaction (:meth:`HubStore.apply`),
publish the ack (or the reject), and only then acknowledge the MQTT message (paho
``manual_ack``): a worker killed in between leaves the message unacknowledged, and the box
resends it anyway when no ack comes. A message whose handling failed is acknowledged too
(its box resends it): unacknowledged, it would hold a broker in-flight slot for good. A
sweep packs downlink batches and resends unacked ones. Nothing here assumes a single hub
process.

What the hub sends a box is in the wire version the box speaks: an answer in the version of
the frame it answers, the rest in the highest one the box's status reported
(``protocol/SPEC.md`` §8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import replace

import sqlalchemy as sa

from hub import antientropy, auditchain, cycle, db, downlink
from hub.config import HubConfig
from hub.metrics import HubMetrics
from hub.mosquitto import share_group
from hub.store import HubStore, Outcome
from protocol.auditchain import AuditBatch
from protocol.changes import Ack, Batch, Direction, Reject
from protocol.codec import Message as WireMessage
from protocol.codec import decode, decode_gradually, encode, frame_version, version_for
from protocol.digest import DigestProbe, DigestReply
from protocol.errors import MalformedError, ProtocolError, Reason, TopicError
from protocol.status import Status, decode_status
from protocol.telemetry import decode_telemetry
from protocol.topics import BROKER_SYS_FILTER, Topic, TopicKind, hub_filters, parse_topic
from puskesos.mqtt import Message, MqttLink

__all__ = ["Ingest"]

log = logging.getLogger("puskesos.hub.ingest")


class Ingest:
    """Receives what boxes send and sends them what they lack."""

    def __init__(
        self, config: HubConfig, store: HubStore, metrics: HubMetrics, *, password: str | None
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        share = None
        if config.broker.mqtt_version == 5 and config.share_group:
            share = share_group(config.share_group, password)
        filters = hub_filters(district=config.district or "+", share_group=share)
        self.link = MqttLink(
            replace(config.broker, username=config.broker_user),
            # Mosquitto replaces it with the user name (use_username_as_clientid); a broker
            # that does not still sees a distinct id per worker process.
            client_id=f"{config.node}-{uuid.uuid4().hex[:8]}",
            password=password,
            subscriptions=[*((topic, 1) for topic in filters), (BROKER_SYS_FILTER, 0)],
            clean_start=True,
            manual_ack=True,
            on_connect=self._on_connect,
        )
        self._slots = asyncio.Semaphore(max(1, config.apply_concurrency))
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._cycle: asyncio.Task[None] | None = None
        metrics.broker_connected.set_function(lambda: 1.0 if self.link.connected else 0.0)
        metrics.broker_link.watch(lambda: self.link)

    async def run(self) -> None:
        """Connect and work until cancelled."""
        await self.link.start()
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            # Take every message at once (the link's queue must never stay full: paho's
            # thread would wait, and our acks go out through it); at most
            # apply_concurrency of them are handled at a time.
            async for message in self.link.messages():
                task = asyncio.create_task(self._handle_guarded(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            self.link.close_intake()
            for task in (sweeper, self._cycle):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.link.stop()

    async def _on_connect(self) -> None:
        self.metrics.broker.forget()
        self._wake.set()

    async def _handle_guarded(self, message: Message) -> None:
        self.metrics.in_progress.inc()
        try:
            async with self._slots:
                await self._handle(message)
        except Exception:
            # Database down, a bug: the box resends what gets no application ack.
            self.metrics.failures.inc()
            log.exception("failed to handle a message on %s", message.topic[:200])
        finally:
            self.metrics.in_progress.dec()
            # Always, even after a failure: an unacknowledged message holds one of the
            # broker's in-flight slots for this connection until it ends, and with all of
            # them held the worker would receive nothing more.
            message.ack()

    async def _handle(self, message: Message) -> None:
        if message.topic.startswith("$SYS/"):
            self.metrics.broker.note(message.topic, message.payload)
            return
        try:
            topic = parse_topic(message.topic)
        except TopicError as exc:
            self.metrics.rejected.labels(Reason.BAD_TOPIC.value).inc()
            log.warning("ignored a message: %s", exc.detail)
            return
        if topic.kind is TopicKind.UP:
            await self._up(topic, message)
        elif topic.kind is TopicKind.DOWN_ACK:
            await self._down_ack(topic, message.payload)
        elif topic.kind is TopicKind.STATUS:
            await self._status(topic, message.payload, retained=message.retain)
        elif topic.kind is TopicKind.TELEMETRY:
            await self._telemetry(topic, message.payload)

    async def _up(self, topic: Topic, message: Message) -> None:
        started = time.perf_counter()
        try:
            async with self.store.preparing:
                batch = await _decode(message.payload)
            if isinstance(batch, DigestReply) and batch.node == topic.node:
                await self._digest_reply(topic, batch, frame_version(message.payload))
                return
            if isinstance(batch, AuditBatch) and batch.node == topic.node:
                await self._audit(topic, batch, frame_version(message.payload))
                return
            if not isinstance(batch, Batch):
                raise MalformedError(
                    "an up topic carries batches, digest replies and audit entries only"
                )
        except ProtocolError as exc:
            await self.store.note_reject(topic.node, 0, exc.reason, exc.detail)
            await self._reject(topic, 0, exc.reason, exc.detail)
            return
        version = frame_version(message.payload)
        result = await self.store.apply(batch, topic.node)
        if result.outcome is Outcome.REJECTED:
            assert result.reason is not None
            await self._reject(topic, batch.seq, result.reason, result.detail, version)
            return
        assert result.ack is not None
        await self.link.publish(
            str(Topic(topic.village, topic.node, TopicKind.ACK)),
            encode(result.ack, version=version),
        )
        self.metrics.batches.labels(result.outcome.value).inc()
        self.metrics.apply_seconds.observe(time.perf_counter() - started)
        if result.outcome is Outcome.APPLIED:
            self.metrics.changes.inc(result.changes)
            self.metrics.conflicts.inc(result.conflicts)
            log.info(
                "applied batch %s of %s: %s changes, %s conflicts",
                batch.seq,
                batch.node,
                result.changes,
                result.conflicts,
            )
            assert result.village is not None
            await self.push_village(result.village, skip=batch.node)

    async def _reject(
        self, topic: Topic, seq: int, reason: Reason, detail: str, version: int = 1
    ) -> None:
        """Refuse a batch; in version 1 unless it could be read (every box reads that)."""
        self.metrics.batches.labels(Outcome.REJECTED.value).inc()
        self.metrics.rejected.labels(reason.value).inc()
        log.warning("refused batch %s of %s: %s: %s", seq, topic.node, reason.value, detail)
        reject = Reject(topic.node, seq, reason.value, detail[:500], Direction.UP)
        await self.link.publish(
            str(Topic(topic.village, topic.node, TopicKind.ERROR)),
            encode(reject, version=version),
        )

    async def _down_ack(self, topic: Topic, payload: bytes) -> None:
        try:
            ack = decode(payload)
        except ProtocolError as exc:
            log.warning("unreadable down-ack from %s: %s", topic.node, exc)
            return
        if (
            not isinstance(ack, Ack)
            or ack.direction is not Direction.DOWN
            or ack.node != topic.node
        ):
            log.warning("a down-ack from %s that is not its own down ack", topic.node)
            return
        if await self.store.note_down_ack(ack) is not None:
            self.metrics.down_acked.inc()
            await self.push(topic.node)

    async def _status(self, topic: Topic, payload: bytes, *, retained: bool) -> None:
        if not payload:
            return  # a retained status being cleared
        try:
            status = decode_status(payload)
        except ProtocolError as exc:
            log.warning("unreadable status from %s: %s", topic.node, exc)
            return
        before = await self.store.device(topic.node)
        answer = await self.store.note_status(topic.node, status, retained=retained)
        if answer is not None:
            # In the version the box speaks: a box of wire 2 learns from it that we do too.
            await self.link.publish(
                str(Topic(topic.village, topic.node, TopicKind.ACK)),
                encode(answer, version=version_for(status.wire)),
            )
        if status.state == "online":
            # A box coming back may have lost what was in flight: every unacked down batch
            # goes again. Not for the periodic status of a box that stayed connected: on a
            # 2G link its batches in flight are still arriving, and copies queued behind
            # them cost 30 % more bytes (bench/registry.py); overdue ones (resend_after_s)
            # go again from the sweep.
            back = retained or before is None or not before.online
            await self.push(topic.node, resend_all=back)
            if not retained:
                await self._compare(topic, status)

    # --- anti-entropy (hub/antientropy.py) ------------------------------------------------

    async def _compare(self, topic: Topic, status: Status) -> None:
        comparison = await antientropy.compare(self.store, topic.node, status)
        self.metrics.digest_checks.labels(comparison.verdict.value).inc()
        if comparison.verdict is antientropy.Verdict.DIVERGED:
            log.warning("the data of %s differs from the hub's: probing", topic.node)
        if comparison.tell:
            probe = await antientropy.probe(self.store, topic.node, comparison.verdict)
            await self._send_probe(topic, probe, version_for(status.wire))

    async def _send_probe(self, topic: Topic, probe: DigestProbe, version: int) -> None:
        await self.link.publish(
            str(Topic(topic.village, topic.node, TopicKind.DOWN)), encode(probe, version=version)
        )

    async def _digest_reply(self, topic: Topic, reply: DigestReply, version: int) -> None:
        c = self.config
        wanted = await antientropy.repair(
            self.store, reply, max_changes=c.batch_changes, max_bytes=c.batch_bytes
        )
        log.info(
            "repairing %s: %s buckets differ, %s records wanted back",
            topic.node,
            len(reply.buckets),
            len(wanted.wanted) if wanted else 0,
        )
        await self._publish(
            await downlink.due(self.store, older_than_ms=self.store.wall() + 1, node=topic.node)
        )
        if wanted is not None:
            await self._send_probe(topic, wanted, version)

    async def _audit(self, topic: Topic, batch: AuditBatch, version: int) -> None:
        """Store and check entries of the box's audit chain (``hub/auditchain.py``), then
        ack them."""
        ack = await auditchain.receive(
            self.store, topic.node, batch, grace_ms=self.config.audit_gap_grace_s * 1000
        )
        self.metrics.audit_entries.labels("stored" if ack else "unknown_node").inc(
            len(batch.entries)
        )
        if ack is not None:
            await self.link.publish(
                str(Topic(topic.village, topic.node, TopicKind.ACK)), encode(ack, version=version)
            )

    async def _telemetry(self, topic: Topic, payload: bytes) -> None:
        try:
            report = decode_telemetry(payload)
        except ProtocolError as exc:
            self.metrics.telemetry.labels("malformed").inc()
            log.warning("unreadable telemetry from %s: %s", topic.node, exc)
            return
        stored = await self.store.note_telemetry(topic.node, topic.village, report)
        self.metrics.telemetry.labels("stored" if stored else "unknown_node").inc()

    # --- downlink --------------------------------------------------------------------------

    async def push(self, node: str, *, resend_all: bool = False) -> None:
        """Pack what ``node`` lacks and publish its due down batches."""
        c = self.config
        made = await downlink.fill(
            self.store,
            node,
            window=c.down_window,
            max_changes=c.batch_changes,
            max_bytes=c.batch_bytes,
        )
        older = self.store.wall() + 1 if resend_all else self.store.wall() - c.resend_after_s * 1000
        if made or resend_all:
            await self._publish(await downlink.due(self.store, older_than_ms=older, node=node))

    async def push_village(self, village: str, *, skip: str | None = None) -> None:
        """:meth:`push` for every active box of ``village`` but ``skip``."""
        d = db.devices
        query = sa.select(d.c.node).where(d.c.village == village, d.c.status == "active")
        # Reads on a snapshot, here and in the sweep: on SQLite they would otherwise take
        # the write lock that the next batch waits for.
        async with db.reading(self.store.engine) as conn:
            nodes = [row.node for row in await conn.execute(query)]
        for node in nodes:
            if node != skip:
                await self.push(node)

    async def _publish(self, batches: list[downlink.DownBatch]) -> None:
        for batch in batches:
            topic = str(Topic(batch.village, batch.node, TopicKind.DOWN))
            if await self.link.publish(topic, batch.payload):
                self.metrics.down_sent.inc()

    async def _sweep_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the event fires, and stop would hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.sweep_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.sweep()
            except Exception:
                log.exception("downlink sweep failed")
            try:
                grace_ms = self.config.audit_gap_grace_s * 1000
                await auditchain.check_all(self.store, grace_ms=grace_ms)
            except Exception:
                log.exception("audit chain check failed")
            if self._cycle is None or self._cycle.done():
                # In its own task: a delivery may take minutes, the downlink must not wait.
                self._cycle = asyncio.create_task(self._cycle_sweep())

    async def _cycle_sweep(self) -> None:
        """The monthly cycle's automatic steps (docs/cycle.md); a failure is logged and
        tried again at the next sweep, it never stops ingest."""
        try:
            await cycle.sweep(self.store, self.config)
        except Exception:
            log.exception("monthly cycle sweep failed")

    async def sweep(self) -> None:
        """Pack downlink batches for every box behind its village, then resend what is
        unacked for longer than ``resend_after_s``."""
        if not self.link.connected:
            return
        d, v = db.devices, db.villages
        behind = (
            sa.select(d.c.node)
            .join(v, v.c.code == d.c.village)
            .where(d.c.status == "active", v.c.log_seq > d.c.down_cursor)
        )
        async with db.reading(self.store.engine) as conn:
            nodes = [row.node for row in await conn.execute(behind)]
        c = self.config
        for node in nodes:
            await downlink.fill(
                self.store,
                node,
                window=c.down_window,
                max_changes=c.batch_changes,
                max_bytes=c.batch_bytes,
            )
        older = self.store.wall() - c.resend_after_s * 1000
        await self._publish(await downlink.due(self.store, older_than_ms=older))


async def _decode(payload: bytes) -> WireMessage:
    """``decode`` a message, giving the event loop back every few dozen changes: a batch
    being decoded must not hold up the one being written (its statements' results wait
    for the loop), nor paho's acks."""
    steps = decode_gradually(payload)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            message: WireMessage = done.value
            return message
        await asyncio.sleep(0)
