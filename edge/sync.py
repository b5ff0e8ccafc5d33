"""The box's sync client: sends sealed up batches, retires them on the hub's ack, applies
down batches and acks them, keeps the box's retained status up to date, and reports the
box's health as telemetry (``protocol/telemetry.py``).

Runs in the web app (``edge.web.app``, when ``[sync] enabled``) over
:class:`puskesos.mqtt.MqttLink`: client id = node id, a persistent session (MQTT 5
``clean_start=False`` + session expiry, or 3.1.1 without clean session), QoS 1, reconnect
with backoff and jitter, and a retained ``offline`` status as last will. Everything that
must survive lives in SQLite (``edge.outbox``, ``edge.downlink``): after a reconnect or a
restart every unacked batch is sent again from its stored bytes, and so is any batch left
unacked for ``ack_timeout_s``; paho's memory of in-flight messages is never relied on.

New batches are numbered only once the hub has answered on this connection (the hub acks
an online status with the highest ``seq`` it applied of this box), or after
``ack_timeout_s`` without an answer: a box restored from an older backup must learn the
hub's ``seq`` before it numbers batches again, or the hub would take new content for
batches it has already applied (see ``docs/replication.md``, "Status and hello").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import TypeVar

import sqlalchemy as sa

from edge import auditchain, outbox
from edge.boxsecrets import broker_password
from edge.digest import answer_probe
from edge.downlink import apply_remote
from edge.metrics import EdgeMetrics, take_snapshot, telemetry
from edge.packing import encode_audit, packer
from edge.restamp import restamp_due, restamp_if_due
from edge.store import Store
from protocol.auditchain import AuditAck, AuditEntry
from protocol.changes import Ack, Batch, Direction, Reject
from protocol.codec import WIRE_VERSION, decode, encode, frame_version
from protocol.codec import Message as WireMessage
from protocol.digest import DigestProbe, root_hex
from protocol.entities import SCHEMA_VERSION
from protocol.errors import ProtocolError
from protocol.status import Status, encode_status
from protocol.telemetry import encode_telemetry
from protocol.topics import Topic, TopicKind
from puskesos import __version__
from puskesos.mqtt import Message, MqttLink, Will

__all__ = ["SyncClient"]

log = logging.getLogger("puskesos.edge.sync")

_M = TypeVar("_M", Ack, Batch, Reject)

#: How long ``stop`` lets the message being handled finish.
_STOP_TIMEOUT_S = 10.0
#: Least time between two rounds: a burst of saves makes one batch, not one each. An ack
#: ends it early (the room it makes is filled at once).
_ROUND_GAP_S = 0.1
#: Batches sealed beyond the window: packed while the window's batches travel, each is
#: published the moment an ack makes room, instead of after its packing.
_SEAL_AHEAD = 2
#: After a probe, the root is reported again once the box has sent all it has and no repair
#: batch came for this long.
_RECHECK_QUIET_S = 2.0
#: Pause after a failed round (database busy, a bug) so a failure cannot spin.
_RETRY_PAUSE_S = 1.0


class SyncClient:
    """Replication of one box with its hub. :meth:`start` once, :meth:`stop` once."""

    def __init__(self, store: Store, metrics: EdgeMetrics) -> None:
        config = store.config
        self.store = store
        self.settings = config.sync
        self.metrics = metrics
        self.topics = {kind: str(Topic(config.village, config.node, kind)) for kind in TopicKind}
        broker = config.broker
        if not broker.username:
            broker = replace(broker, username=config.node)
        self._broker = broker
        self.link = self._make_link(clean_start=False)
        self._epoch = ""
        self._wake = asyncio.Event()
        #: Set by an ack of an up batch: ends the pause between two rounds.
        self._acked = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # seq → when (monotonic) it was handed to the broker on this connection.
        self._sent_at: dict[int, float] = {}
        self._connected_at: float | None = None
        self._hello = False
        self._next_status = 0.0
        self._next_telemetry = 0.0
        self._last_reason: str | None = None
        self._stopping = False
        #: When to report the root again after a probe (monotonic), ``None`` when not due.
        self._recheck_at: float | None = None
        #: The audit chain (``edge.auditchain``): the highest seq the hub acked, and when
        #: the batch after it was handed to the broker (monotonic; one batch in flight).
        self._audit_acked = 0
        self._audit_sent_at: float | None = None
        #: When the entries waiting to be sent are due (monotonic; ``sync.audit_delay_s``
        #: after they were first seen waiting), ``None`` when none wait.
        self._audit_due_at: float | None = None
        #: When the outbox rows held back by ``sync.seal_delay_s`` are due (monotonic),
        #: ``None`` when none are held back.
        self._seal_at: float | None = None
        #: Packs and encodes batches away from the server's GIL (``edge.packing``).
        self._packer = packer()
        #: The wire version to send in: 1 until a frame of a higher one came from the hub
        #: (it speaks that one then); an older hub never sends one (``protocol/SPEC.md`` §8).
        self._wire = 1

    def _make_link(self, *, clean_start: bool) -> MqttLink:
        offline = encode_status(
            Status("offline", software=__version__, wire=WIRE_VERSION, schema=SCHEMA_VERSION)
        )
        return MqttLink(
            self._broker,
            client_id=self.store.config.node,
            # Read at every connect: a rotated password (sealed to the box, opened with the
            # data key it holds while unlocked) takes effect at the next reconnect.
            password=lambda: broker_password(self.store.config, self.store.key),
            subscriptions=[
                (self.topics[kind], 1) for kind in (TopicKind.ACK, TopicKind.ERROR, TopicKind.DOWN)
            ],
            will=Will(self.topics[TopicKind.STATUS], offline, qos=1, retain=True),
            clean_start=clean_start,
            session_expiry_s=self.settings.session_expiry_s,
            manual_ack=True,
            on_connect=self._on_connect,
            # A box publishes to four topics of about 45 bytes: on MQTT 5, 3 bytes each.
            topic_aliases=True,
            backoff_min_s=self.settings.backoff_min_s,
            backoff_max_s=self.settings.backoff_max_s,
        )

    @property
    def connected(self) -> bool:
        """Connected to the broker right now."""
        return self.link.connected

    async def start(self) -> None:
        """Start connecting and working in the background (the box works offline)."""
        state = await outbox.queue_state(self.store)
        self._last_reason = state.last_reject.reason if state.last_reject else None
        self._epoch = await self.store.get_meta("epoch") or ""
        self._audit_acked = int(await self.store.get_meta(auditchain.ACKED) or 0)
        # Started again after the box was locked or secured: a link is started only once.
        again, self._stopping = self._stopping, False
        if await self.store.get_meta("clean_session") == "1":
            # Restored from a backup: the broker's session belongs to the old down stream.
            self.link = self._make_link(clean_start=True)
        elif again:
            self.link = self._make_link(clean_start=False)
        if again:
            self._packer = packer()  # stop() shut the previous one down
        else:
            self.store.on_save(self.wake)
        self.metrics.sync_connected.set_function(lambda: 1.0 if self.link.connected else 0.0)
        self.metrics.sync_link.watch(lambda: self.link)
        await self.link.start()
        self._tasks = [
            asyncio.create_task(self._send_forever(), name="edge-sync-send"),
            asyncio.create_task(self._receive_forever(), name="edge-sync-receive"),
        ]

    def wake(self) -> None:
        """Have the sender look at once (called after every committed save)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop sending, publish an ``offline`` status if connected, and disconnect."""
        self._stopping = True
        sender, receiver = self._tasks or (None, None)
        if sender is not None:
            sender.cancel()
            # wait, not `await sender` under suppress(CancelledError): that would also
            # swallow a cancellation of stop() itself.
            await asyncio.wait([sender])
        final = None
        if self.link.connected:
            status = await self._status("offline")
            final = (self.topics[TopicKind.STATUS], encode_status(status), True)
        await self.link.stop(final=final)
        if receiver is not None:
            try:
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await receiver
            except TimeoutError:
                log.warning("sync receiver did not finish in time")
        self.metrics.sync_connected.set_function(lambda: 0.0)
        # In a thread: the worker may be finishing a batch, the loop must not wait for it.
        await asyncio.to_thread(self._packer.shutdown, cancel_futures=True)

    # --- connection and status --------------------------------------------------------------

    async def _on_connect(self) -> None:
        self._sent_at.clear()  # whatever was in flight may be lost: send it all again
        self._audit_sent_at = None
        if self.link.clean_start:
            await self.store.run_write(
                lambda conn: conn.execute(sa.text("DELETE FROM meta WHERE key = 'clean_session'"))
            )
        self._connected_at = time.monotonic()
        self._hello = False
        await self._publish_status()
        self._next_telemetry = 0.0  # a fresh report on every connect
        self._wake.set()

    async def _status(self, state: str) -> Status:
        queue = await outbox.queue_state(self.store)
        return Status(
            state=state,
            up_seq=queue.up_seq,
            up_floor=queue.up_floor,
            down_watermark=queue.down_watermark,
            outbox=queue.pending,
            oldest_ms=queue.oldest_ms,
            wall_ms=self.store.now_ms(),
            software=__version__,
            wire=WIRE_VERSION,
            epoch=self._epoch,
            schema=SCHEMA_VERSION,
            digest=root_hex(queue.digest_root),
            records=queue.records,
        )

    async def _publish_status(self) -> None:
        self._next_status = time.monotonic() + self.settings.status_interval_s
        payload = encode_status(await self._status("online"))
        await self.link.publish(self.topics[TopicKind.STATUS], payload, retain=True)

    async def _publish_telemetry(self) -> None:
        """A health report, QoS 0: a lost one is replaced by the next, and none queue up."""
        self._next_telemetry = time.monotonic() + self.settings.telemetry_interval_s
        report = telemetry(
            await take_snapshot(self.store), uptime_s=time.monotonic() - self.metrics.started
        )
        await self.link.publish(self.topics[TopicKind.TELEMETRY], encode_telemetry(report), qos=0)

    # --- sending ----------------------------------------------------------------------------

    async def _send_forever(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that arrives just as the event is set, and stop() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sleep_for()):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._round()
            except BrokenProcessPool:
                # The packing process died (killed, out of memory): the next round has a new one.
                log.error("the sync packing process died; starting another")
                self._packer.shutdown(wait=False)
                self._packer = packer()
                await asyncio.sleep(_RETRY_PAUSE_S)
                self._wake.set()  # the round it failed is still to do
            except Exception:
                log.exception("sync round failed")
                await asyncio.sleep(_RETRY_PAUSE_S)
            # Saves that land meanwhile are sealed together in the next round; an ack ends
            # the pause (its room goes to a batch sealed ahead, at once).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ROUND_GAP_S):
                    await self._acked.wait()
            self._acked.clear()

    def _sleep_for(self) -> float | None:
        """Seconds until something is due: a status, a report, the end of the hello wait, a
        resend."""
        if not self.link.connected:
            return None  # a connect or a save wakes the sender
        timeout = self.settings.ack_timeout_s
        deadlines = [
            self._next_status,
            self._next_telemetry,
            *(sent + timeout for sent in self._sent_at.values()),
        ]
        if not self._hello and self._connected_at is not None:
            deadlines.append(self._connected_at + timeout)
        if self._recheck_at is not None:
            deadlines.append(self._recheck_at)
        if self._seal_at is not None:
            deadlines.append(self._seal_at)
        if self._audit_sent_at is not None:
            deadlines.append(self._audit_sent_at + timeout)
        elif self._audit_due_at is not None and self._hello:
            deadlines.append(self._audit_due_at)
        return max(0.05, min(deadlines) - time.monotonic())

    async def _round(self) -> None:
        """Re-stamp if due, seal what fits in the window, send what is due, the status and
        the report."""
        store, settings = self.store, self.settings
        if restamp_due(store, self._last_reason, store.now_ms()):
            if await restamp_if_due(store) is not None:
                self._sent_at.clear()  # new bytes for the same seqs: send them now
            self._last_reason = None
        if not self.link.connected:
            return
        now = time.monotonic()
        if not self._hello and self._connected_at is not None:
            self._hello = now - self._connected_at >= settings.ack_timeout_s
        # The first `window` stored batches are in flight; up to _SEAL_AHEAD more wait,
        # sealed, for room: packed while the others travel, they go out as an ack comes.
        sealed_most = settings.window + _SEAL_AHEAD
        waiting = await outbox.unacked(store, limit=sealed_most)
        await self._send_due(waiting[: settings.window], now)
        room = sealed_most - len(waiting)
        if self._hello and room > 0 and await self._seal_due():
            sealed = await outbox.seal(
                store,
                max_changes=settings.batch_changes,
                max_bytes=settings.batch_bytes,
                max_batches=room,
                packer=self._packer,
                version=self._wire,
            )
            if sealed:
                waiting = await outbox.unacked(store, limit=sealed_most)
                await self._send_due(waiting[: settings.window], time.monotonic())
        if self._hello:
            await self._send_audit()
        if self._recheck_at is not None and time.monotonic() >= self._recheck_at and not waiting:
            queue = await outbox.queue_state(store)
            if queue.pending == 0:
                self._recheck_at = None
                self._next_status = 0.0
        if self.link.connected and time.monotonic() >= self._next_status:
            await self._publish_status()
        if self.link.connected and time.monotonic() >= self._next_telemetry:
            await self._publish_telemetry()

    async def _seal_due(self) -> bool:
        """Whether the outbox rows are to be sealed now: at once without
        ``seal_delay_s``; with it, once a batch's worth waits or the first row is that
        old, so that on a slow link one batch carries the changes of many saves. A wall
        clock set back (the first row then made "later" than now) seals at once."""
        self._seal_at = None
        delay, most = self.settings.seal_delay_s, self.settings.batch_changes
        if delay <= 0:
            return True
        count, oldest = await self.store.read(lambda conn: outbox.waiting(conn, most))
        if oldest is None:
            return False
        age = (self.store.now_ms() - oldest) / 1000
        if count >= most or not 0 <= age < delay:
            return True
        self._seal_at = time.monotonic() + delay - age
        return False

    async def _send_due(self, seqs: list[int], now: float) -> None:
        """Publish the stored batches of ``seqs`` not handed to the broker within
        ``ack_timeout_s`` (never, on this connection)."""
        timeout = self.settings.ack_timeout_s
        due = [seq for seq in seqs if now - self._sent_at.get(seq, -timeout) >= timeout]
        if not due:
            return
        batches = await outbox.stored(self.store, due)
        up = self.topics[TopicKind.UP]
        results = await asyncio.gather(
            *(self.link.publish(up, b.payload, timeout=timeout) for b in batches)
        )
        sent = [batch.seq for batch, ok in zip(batches, results, strict=True) if ok]
        handed = time.monotonic()
        for seq in sent:
            self._sent_at[seq] = handed
        await outbox.mark_sent(self.store, sent, self.store.now_ms())
        self.metrics.batches_sent.inc(len(sent))

    async def _send_audit(self) -> None:
        """Send the audit entries after the last one the hub acked, one batch at a time:
        the next goes once this one is acked, or again after ``ack_timeout_s``. Entries
        wait up to ``audit_delay_s`` from when they are first seen waiting, so that one
        message carries the entries of many saves; a full batch goes at once."""
        timeout = self.settings.ack_timeout_s
        now = time.monotonic()
        if self._audit_sent_at is not None and now - self._audit_sent_at < timeout:
            return
        acked, limit = self._audit_acked, self.settings.batch_changes
        delay = self.settings.audit_delay_s
        if delay > 0 and (self._audit_due_at is None or now < self._audit_due_at):
            count = await self.store.read(lambda conn: auditchain.waiting(conn, acked, limit))
            if not count:
                return
            if self._audit_due_at is None:
                self._audit_due_at = now + delay
            if count < limit and now < self._audit_due_at:
                return

        def read(conn: sa.Connection) -> tuple[list[AuditEntry], bytes | None]:
            entries = auditchain.entries_after(conn, acked, limit)
            return entries, auditchain.hash_of(conn, entries[0].seq - 1) if entries else None

        entries, previous = await self.store.read(read)
        if not entries:
            self._audit_due_at = None
            return
        frame = await asyncio.get_running_loop().run_in_executor(
            self._packer, encode_audit, self.store.node, entries, self._wire, previous
        )
        if frame is None:
            log.error("audit entry %s is over the frame limit", entries[0].seq)
            self._audit_due_at = time.monotonic() + max(delay, _RETRY_PAUSE_S)
            return
        payload, count = frame
        sent = await self.link.publish(self.topics[TopicKind.UP], payload, timeout=timeout)
        # Its ack may have come while it was read or published: then nothing waits.
        if sent and self._audit_acked < entries[count - 1].seq:
            self._audit_sent_at = time.monotonic()

    # --- receiving --------------------------------------------------------------------------

    async def _receive_forever(self) -> None:
        async for message in self.link.messages():
            try:
                await self._handle(message)
            except Exception:
                # A database error or a bug: the hub sends it again (no ack came).
                log.exception("sync failed to handle a message on %s", message.topic[:200])
            finally:
                message.ack()

    async def _handle(self, message: Message) -> None:
        if message.topic == self.topics[TopicKind.ACK]:
            await self._on_ack(message.payload)
        elif message.topic == self.topics[TopicKind.ERROR]:
            await self._on_reject(message.payload)
        elif message.topic == self.topics[TopicKind.DOWN]:
            await self._on_down(message.payload)
        else:
            log.warning("sync ignored a message on %s", message.topic[:200])

    def _read(self, payload: bytes, kind: type[_M], direction: Direction, topic: str) -> _M | None:
        """The decoded message when it is a ``kind`` of this box's ``direction`` stream;
        anything else is logged and dropped (it never stops the client)."""
        message = self._decode(payload, topic)
        return None if message is None else self._accept(message, kind, direction, topic)

    def _decode(self, payload: bytes, topic: str) -> WireMessage | None:
        try:
            message = decode(payload)
        except ProtocolError as exc:
            log.warning("sync dropped an unreadable message on %s: %s", topic, exc)
            return None
        self._wire = max(self._wire, frame_version(payload))
        return message

    def _accept(
        self, message: WireMessage, kind: type[_M], direction: Direction, topic: str
    ) -> _M | None:
        if not isinstance(message, kind) or message.direction is not direction:
            log.warning("sync dropped a message of the wrong kind on %s", topic)
            return None
        if message.node != self.store.node:
            log.warning("sync dropped a message for node %s on %s", message.node, topic)
            return None
        return message

    async def _on_ack(self, payload: bytes) -> None:
        topic = self.topics[TopicKind.ACK]
        message = self._decode(payload, topic)
        if message is None:
            return
        if isinstance(message, AuditAck):
            await self._on_audit_ack(message)
            return
        ack = self._accept(message, Ack, Direction.UP, topic)
        if ack is None:
            return
        retired = await outbox.retire(self.store, ack, self.store.now_ms())
        self._hello = True
        for seq in [s for s in self._sent_at if s == ack.seq or s <= ack.watermark]:
            del self._sent_at[seq]
        self.metrics.batches_acked.inc(retired)
        self._wake.set()  # room in the window, or the hello this connection waited for
        self._acked.set()

    async def _on_audit_ack(self, ack: AuditAck) -> None:
        if ack.node != self.store.node:
            log.warning("sync dropped an audit ack for node %s", ack.node)
            return
        if ack.seq > self._audit_acked:
            # Not durable: lost in a power cut, the hub gets entries again it already has.
            await self.store.set_meta(auditchain.ACKED, str(ack.seq), durable=False)
            self._audit_acked = ack.seq
            self._audit_sent_at = None
            self._audit_due_at = None  # what came meanwhile waits its delay, or goes if full
            self._wake.set()  # the next batch of the trail, if any

    async def _on_reject(self, payload: bytes) -> None:
        reject = self._read(payload, Reject, Direction.UP, self.topics[TopicKind.ERROR])
        if reject is None:
            return
        self.metrics.rejected(reject.reason)
        log.warning(
            "the hub refused batch %s: %s: %s", reject.seq, reject.reason, reject.detail[:300]
        )
        if await outbox.record_reject(self.store, reject, self.store.now_ms()):
            self._last_reason = reject.reason
            self._wake.set()  # a clock_ahead may be fixed by re-stamping right away

    async def _on_down(self, payload: bytes) -> None:
        topic = self.topics[TopicKind.DOWN]
        message = self._decode(payload, topic)
        if message is None:
            return
        if isinstance(message, DigestProbe):
            await self._on_probe(message)
            return
        batch = self._accept(message, Batch, Direction.DOWN, topic)
        if batch is None:
            return
        if self._recheck_at is not None:  # a repair is arriving: report the root after it
            self._recheck_at = time.monotonic() + _RECHECK_QUIET_S
        applied = await apply_remote(self.store, batch)
        if applied.fresh:
            self.metrics.down_applied.inc()
            log.info("applied down batch %s: %s records changed", batch.seq, applied.records)
        ack = Ack(self.store.node, batch.seq, applied.watermark, Direction.DOWN)
        down_ack = encode(ack, version=self._wire)
        if not await self.link.publish(self.topics[TopicKind.DOWN_ACK], down_ack):
            # The status carries the down watermark, and the hub trusts it: send it soon
            # (the hub resends whatever it still holds above that, and that is acked again).
            self._next_status = min(self._next_status, time.monotonic() + _ROUND_GAP_S)
            self._wake.set()

    async def _on_probe(self, probe: DigestProbe) -> None:
        """The hub compared digests (``edge.digest``): answer its bucket hashes, queue what
        it wants, and report the root again once the repair has gone both ways."""
        if probe.node != self.store.node:
            log.warning("sync dropped a probe for node %s", probe.node)
            return
        reply = await answer_probe(self.store, probe)
        if probe.matched:
            return
        log.warning(
            "the hub found this box's data differs: %s buckets compared, %s records wanted",
            len(reply.buckets) if reply else 0,
            len(probe.wanted),
        )
        if reply is not None:
            await self.link.publish(self.topics[TopicKind.UP], encode(reply, version=self._wire))
        self._recheck_at = time.monotonic() + _RECHECK_QUIET_S
        self._wake.set()
