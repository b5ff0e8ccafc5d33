"""A minimal stand-in for the district hub, for the box's sync tests: the protocol codec over
plain paho-mqtt. It records every up batch (with its exact bytes), acks what it accepts the
way the hub does (its ``seq`` and the contiguous watermark), refuses when told to, answers
an online status with the highest ``seq`` applied, and sends down batches. The real hub
(``hub/``) is tested end to end elsewhere.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from protocol.auditchain import AuditAck, AuditBatch, AuditEntry
from protocol.changes import Ack, Batch, Direction, Reject
from protocol.clock import COUNTER_BITS, DEFAULT_MAX_DRIFT_MS
from protocol.codec import decode, encode
from protocol.delivery import AppliedSeqs
from protocol.errors import Reason
from protocol.status import Status, decode_status
from protocol.topics import Topic, TopicKind, parse_topic

__all__ = ["HubPeer", "Received", "eventually"]

T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    """One up batch as it arrived."""

    seq: int
    payload: bytes
    batch: Batch


class HubPeer:
    """Connects to the broker at ``port``; ``mode`` is ``ack``, ``silent`` (receives, never
    answers) or ``clock`` (refuses batches stamped more than the drift ahead of its own
    clock with ``clock_ahead``, acks the others). It answers in wire version ``wire``."""

    def __init__(
        self, port: int, *, mode: str = "ack", mqtt_version: int = 5, wire: int = 1
    ) -> None:
        self.port = port
        self.mode = mode
        self.wire = wire
        #: The audit messages' frames, as they came.
        self.audit_frames: list[bytes] = []
        self.up: list[Received] = []
        #: Entries of the box's audit chain, as they came (duplicates too).
        self.audit: list[AuditEntry] = []
        self.statuses: list[Status] = []
        self.down_acks: list[Ack] = []
        self.applied = AppliedSeqs()
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-hub-{id(self)}",
            protocol=paho.MQTTv5 if mqtt_version == 5 else paho.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)

    def start(self) -> HubPeer:
        """Connect (paho reconnects by itself after a broker restart)."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        kinds = (TopicKind.UP, TopicKind.STATUS, TopicKind.DOWN_ACK)
        client.subscribe([(f"puskesos/v1/+/+/+/{kind.value}", 1) for kind in kinds])

    def _on_message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        topic = parse_topic(message.topic)
        payload = bytes(message.payload)
        with self._lock:
            if topic.kind is TopicKind.UP:
                self._up(topic, payload)
            elif topic.kind is TopicKind.STATUS and payload:
                status = decode_status(payload)
                self.statuses.append(status)
                highest = max([self.applied.watermark, *self.applied.above])
                if status.state == "online" and highest:
                    self._answer(topic, Ack(topic.node, highest, self.applied.watermark))
            elif topic.kind is TopicKind.DOWN_ACK:
                ack = decode(payload)
                assert isinstance(ack, Ack)
                self.down_acks.append(ack)

    def _up(self, topic: Topic, payload: bytes) -> None:
        batch = decode(payload)
        if isinstance(batch, AuditBatch):
            self.audit.extend(batch.entries)
            self.audit_frames.append(payload)
            if self.mode != "silent":
                self._answer(topic, AuditAck(topic.node, batch.entries[-1].seq))
            return
        assert isinstance(batch, Batch)
        self.up.append(Received(batch.seq, payload, batch))
        if self.mode == "silent":
            return
        limit = time.time_ns() // 1_000_000 + DEFAULT_MAX_DRIFT_MS
        stamps = [v.time >> COUNTER_BITS for c in batch.changes for v in c.fields.values()]
        if self.mode == "clock" and max(stamps, default=0) > limit:
            reject = Reject(topic.node, batch.seq, Reason.CLOCK_AHEAD.value, "stamp ahead")
            self._answer(topic, reject, TopicKind.ERROR)
            return
        self.applied = self.applied.add(batch.seq)
        self._answer(topic, Ack(topic.node, batch.seq, self.applied.watermark))

    def _answer(
        self, topic: Topic, message: Ack | AuditAck | Reject, kind: TopicKind = TopicKind.ACK
    ) -> None:
        payload = encode(message, version=self.wire)
        self.client.publish(str(Topic(topic.village, topic.node, kind)), payload, qos=1)

    def send(self, village: str, node: str, kind: TopicKind, payload: bytes) -> None:
        """Publish raw bytes on one of a box's topics (QoS 1)."""
        self.client.publish(str(Topic(village, node, kind)), payload, qos=1).wait_for_publish(10)

    def send_down(self, batch: Batch, village: str) -> None:
        """Publish a down batch to its box, in wire version ``wire``."""
        assert batch.direction is Direction.DOWN
        self.send(village, batch.node, TopicKind.DOWN, encode(batch, version=self.wire))

    def received(self) -> list[Received]:
        """The up batches so far, in arrival order."""
        with self._lock:
            return list(self.up)


async def eventually(
    check: Callable[[], T | Awaitable[T]], timeout: float = 30, what: str = ""
) -> T:
    """Poll ``check`` (plain or async) until it returns something true; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        result = await outcome if inspect.isawaitable(outcome) else outcome
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)
