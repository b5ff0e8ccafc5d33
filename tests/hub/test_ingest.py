"""The hub worker over a real Mosquitto: what a box publishes is applied and acked, bad
payloads are refused with a reason on the box's error topic, and the box gets the other
boxes' changes on its down topic."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

import pytest

from hub.config import HubConfig
from hub.ingest import Ingest
from hub.metrics import SYS_FRESH_S, HubMetrics
from protocol.changes import Ack, Batch, Direction, Reject
from protocol.codec import decode, encode
from protocol.status import Status, encode_status
from protocol.telemetry import Telemetry, decode_telemetry, encode_telemetry
from protocol.topics import Topic, TopicKind
from puskesos.mqtt import MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.factories import DEFAULT_VILLAGE, new_id
from tests.hub.boxes import Box, enrol


def topic(box: Box, kind: TopicKind) -> str:
    return str(Topic(box.village, box.node, kind))


class Peer:
    """A box's MQTT side, driven by hand."""

    def __init__(self, box: Box, port: int) -> None:
        self.box = box
        self.link = MqttLink(
            BrokerConfig(port=port),
            client_id=box.node,
            subscriptions=[
                (topic(box, k), 1) for k in (TopicKind.ACK, TopicKind.ERROR, TopicKind.DOWN)
            ],
            clean_start=True,
        )
        self.received: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> Peer:
        await self.link.start()
        assert await self.link.wait_connected(10)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.link.stop()

    async def _read(self) -> None:
        async for message in self.link.messages():
            await self.received.put((message.topic.rsplit("/", 1)[1], decode(message.payload)))

    async def send(self, kind: TopicKind, payload: bytes) -> None:
        assert await self.link.publish(topic(self.box, kind), payload)

    async def next(self, timeout: float = 10) -> tuple[str, object]:
        return await asyncio.wait_for(self.received.get(), timeout)


@pytest.fixture
async def worker(hub_store, mosquitto):
    config = replace(HubConfig(), broker=BrokerConfig(port=mosquitto.port), sweep_interval_s=1)
    metrics = HubMetrics(stale_after_s=config.box_stale_after_s)
    ingest = Ingest(config, hub_store, metrics, password=None)
    task = asyncio.create_task(ingest.run())
    assert await ingest.link.wait_connected(10)
    await asyncio.sleep(0.2)  # subscriptions in place
    yield ingest
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def counter(ingest: Ingest, name: str, **labels: str) -> float:
    return ingest.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_batch_is_acked_once_applied_and_again_when_it_comes_twice(
    worker, hub_store, mosquitto
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    batch = box.batch(box.edit(new_id(), hub_store.wall(), rt="001"))
    async with Peer(box, mosquitto.port) as peer:
        await peer.send(TopicKind.UP, encode(batch))
        assert await peer.next() == ("ack", Ack("edge-a", 1, 1))
        await peer.send(TopicKind.UP, encode(batch))
        assert await peer.next() == ("ack", Ack("edge-a", 1, 1))
    assert len(await hub_store.records(DEFAULT_VILLAGE)) == 1
    assert counter(worker, "puskesos_hub_batches_total", outcome="applied") == 1
    assert counter(worker, "puskesos_hub_batches_total", outcome="duplicate") == 1


async def test_bad_payloads_are_refused_with_a_reason_and_good_ones_still_flow(
    worker, hub_store, mosquitto
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    async with Peer(box, mosquitto.port) as peer:
        await peer.send(TopicKind.UP, b"\x00not a frame")
        kind, reject = await peer.next()
        assert kind == "error" and isinstance(reject, Reject)
        assert (reject.seq, reject.reason) == (0, "malformed")
        ahead = box.batch(box.edit(new_id(), hub_store.wall() + 86_400_000, rt="001"))
        await peer.send(TopicKind.UP, encode(ahead))
        kind, reject = await peer.next()
        assert (kind, reject.seq, reject.reason) == ("error", 1, "clock_ahead")
        box.seq = 0  # the box re-stamps and sends seq 1 again, now with a sane clock
        box.clock = type(box.clock)("edge-a")
        good = box.batch(box.edit(new_id(), hub_store.wall(), rt="002"))
        await peer.send(TopicKind.UP, encode(good))
        assert await peer.next() == ("ack", Ack("edge-a", 1, 1))
    assert counter(worker, "puskesos_hub_batches_rejected_total", reason="malformed") == 1
    assert counter(worker, "puskesos_hub_batches_rejected_total", reason="clock_ahead") == 1


async def test_a_box_gets_its_neighbours_changes_and_the_hub_forgets_them_once_acked(
    worker, hub_store, mosquitto
):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    record = new_id()
    async with Peer(a, mosquitto.port) as peer_a, Peer(b, mosquitto.port) as peer_b:
        await peer_b.send(
            TopicKind.STATUS, encode_status(Status("online", wall_ms=hub_store.wall()))
        )
        # The hub answers a hello: nothing of edge-b applied yet.
        assert await peer_b.next() == ("ack", Ack("edge-b", 0, 0))
        await peer_a.send(TopicKind.UP, encode(a.batch(a.edit(record, hub_store.wall(), rt="001"))))
        assert (await peer_a.next())[0] == "ack"
        kind, down = await peer_b.next()
        assert kind == "down" and isinstance(down, Batch) and down.direction is Direction.DOWN
        assert [c.record_id for c in down.changes] == [record]
        await peer_b.send(
            TopicKind.DOWN_ACK, encode(Ack("edge-b", down.seq, down.seq, Direction.DOWN))
        )
        for _ in range(50):
            device = await hub_store.device("edge-b")
            if device.down_watermark == down.seq:
                break
            await asyncio.sleep(0.1)
        assert device.down_watermark == 1 and device.online
        # Coming back online, the box learns which of its batches the hub applied.
        await peer_a.send(TopicKind.STATUS, encode_status(Status("online", up_seq=1)))
        assert await peer_a.next() == ("ack", Ack("edge-a", 1, 1))


async def test_only_a_box_coming_back_gets_its_batches_in_flight_again(
    worker, hub_store, mosquitto
):
    """The status a connected box sends every minute does not make the hub send its
    unacked down batches again (on 2G they are still on their way); a box back from
    offline gets them at once."""
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    hello = encode_status(Status("online", wall_ms=hub_store.wall()))
    async with Peer(a, mosquitto.port) as peer_a, Peer(b, mosquitto.port) as peer_b:
        await peer_b.send(TopicKind.STATUS, hello)
        assert await peer_b.next() == ("ack", Ack("edge-b", 0, 0))
        await peer_a.send(
            TopicKind.UP, encode(a.batch(a.edit(new_id(), hub_store.wall(), rt="001")))
        )
        assert (await peer_a.next())[0] == "ack"
        kind, down = await peer_b.next()
        assert kind == "down"
        await peer_b.send(TopicKind.STATUS, hello)  # a minute later, still connected
        assert await peer_b.next() == ("ack", Ack("edge-b", 0, 0))
        with pytest.raises(TimeoutError):
            await peer_b.next(timeout=1.5)
        await peer_b.send(TopicKind.STATUS, encode_status(Status("offline")))
        # The broker sends the will when the link drops; the box comes back later (two
        # statuses sent at once may be handled in either order, by two workers too).
        for _ in range(100):
            if not (await hub_store.device("edge-b")).online:
                break
            await asyncio.sleep(0.05)
        await peer_b.send(TopicKind.STATUS, hello)  # back after a power cut
        assert await peer_b.next() == ("ack", Ack("edge-b", 0, 0))
        kind, again = await peer_b.next()
        assert kind == "down" and again.seq == down.seq


async def test_telemetry_is_kept_per_box_and_junk_or_strangers_are_counted_not_stored(
    worker, hub_store, mosquitto
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    report = Telemetry(wall_ms=hub_store.wall() - 90_000, outbox=12, disk_free_bytes=5)
    stranger = Box("edge-z")  # never enrolled
    async with Peer(box, mosquitto.port) as peer, Peer(stranger, mosquitto.port) as other:
        await peer.send(TopicKind.TELEMETRY, b"{not json")
        await other.send(TopicKind.TELEMETRY, encode_telemetry(report))
        await peer.send(TopicKind.TELEMETRY, encode_telemetry(report))
        for outcome in ("malformed", "unknown_node", "stored"):
            for _ in range(50):
                if counter(worker, "puskesos_hub_telemetry_messages_total", outcome=outcome):
                    break
                await asyncio.sleep(0.1)
            assert counter(worker, "puskesos_hub_telemetry_messages_total", outcome=outcome) == 1
    device = await hub_store.device("edge-a")
    assert decode_telemetry(device.telemetry.encode()) == report
    assert -95_000 < device.clock_offset_ms < -89_000, "its clock is 90 s behind the hub's"
    assert await hub_store.device("edge-z") is None


async def test_the_brokers_own_statistics_become_metrics(worker):
    # Mosquitto publishes $SYS/broker/... every sys_interval (10 s by default), retained.
    for _ in range(150):
        if counter(worker, "puskesos_broker_uptime_seconds"):
            break
        await asyncio.sleep(0.1)
    assert counter(worker, "puskesos_broker_uptime_seconds") > 0
    assert counter(worker, "puskesos_broker_clients_connected") >= 1  # the worker itself
    assert counter(worker, "puskesos_hub_broker_connected") == 1


async def test_a_worker_kicked_off_by_a_client_with_its_id_shows_it_on_metrics(worker, mosquitto):
    """Issue 14: another client held the worker's client id, the broker kept dropping the
    worker, and ``broker_connected`` still read 1 at every scrape."""
    assert counter(worker, "puskesos_hub_broker_connects_total") == 1
    assert counter(worker, "puskesos_hub_broker_disconnects_total") == 0
    intruder = MqttLink(BrokerConfig(port=mosquitto.port), client_id=worker.link.client_id)
    await intruder.start()
    try:
        for _ in range(100):
            if counter(worker, "puskesos_hub_broker_disconnects_total"):
                break
            await asyncio.sleep(0.05)
    finally:
        await intruder.stop()
    assert counter(worker, "puskesos_hub_broker_disconnects_total") >= 1
    assert await worker.link.wait_connected(10), "the worker comes back once the id is free"
    assert counter(worker, "puskesos_hub_broker_connects_total") >= 2


async def test_a_status_the_broker_kept_does_not_revive_a_dead_box(hub_store, mosquitto):
    box = Box("edge-a")
    await enrol(hub_store, box)
    week_ago = hub_store.wall() - 7 * 86_400_000
    # The box's last will, published a week ago and kept by the broker.
    async with Peer(box, mosquitto.port) as peer:
        assert await peer.link.publish(
            topic(box, TopicKind.STATUS),
            encode_status(Status("offline", wall_ms=week_ago)),
            retain=True,
        )
    config = replace(HubConfig(), broker=BrokerConfig(port=mosquitto.port))
    ingest = Ingest(config, hub_store, HubMetrics(stale_after_s=900), password=None)
    task = asyncio.create_task(ingest.run())
    try:
        for _ in range(100):
            device = await hub_store.device("edge-a")
            if device.reported:
                break
            await asyncio.sleep(0.1)
        assert device.reported, "the hub took the retained status"
        assert not device.online
        assert device.last_seen_ms is None, "a kept status is not news from the box"
        assert device.clock_offset_ms is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_broker_statistics_that_stop_coming_disappear():
    stats = HubMetrics(stale_after_s=900).broker
    assert stats.note("$SYS/broker/uptime", b"120 seconds")
    assert not stats.note("$SYS/broker/version", b"mosquitto 2.0.11")
    assert not stats.note("$SYS/broker/clients/connected", b"")
    assert [m.name for m in stats.collect()] == ["puskesos_broker_uptime_seconds"]
    value, _ = stats.values["$SYS/broker/uptime"]
    stats.values["$SYS/broker/uptime"] = (value, time.monotonic() - SYS_FRESH_S - 1)
    assert list(stats.collect()) == [], "a value older than 5 min is not shown"


async def _down_batches_for_stopped_box(hub_store, peer_a: Peer, a: Box, b: Box) -> None:
    """Box B has said hello and gone; box A makes two changes: the hub stores down batches
    1 and 2 for B."""
    for rt in ("001", "002"):
        await peer_a.send(TopicKind.UP, encode(a.batch(a.edit(new_id(), hub_store.wall(), rt=rt))))
        assert (await peer_a.next())[0] == "ack"
    for _ in range(50):
        if (await hub_store.device(b.node)).down_seq == 2:
            break
        await asyncio.sleep(0.1)
    assert (await hub_store.device(b.node)).down_seq == 2


async def _device_when(hub_store, node: str, done) -> object:
    for _ in range(50):
        device = await hub_store.device(node)
        if done(device):
            break
        await asyncio.sleep(0.1)
    return device


@pytest.mark.parametrize("word", ["ack", "status"])
async def test_a_box_whose_down_acks_were_lost_leaves_no_hole_at_the_hub(
    worker, hub_store, mosquitto, word
):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    async with Peer(a, mosquitto.port) as peer_a:
        await _down_batches_for_stopped_box(hub_store, peer_a, a, b)
        async with Peer(b, mosquitto.port) as peer_b:
            if word == "ack":  # B applied both; the ack of 1 was lost, the ack of 2 says so
                await peer_b.send(TopicKind.DOWN_ACK, encode(Ack("edge-b", 2, 2, Direction.DOWN)))
            else:  # both acks were lost; B's next status says what it has applied
                online = Status("online", down_watermark=2, wall_ms=hub_store.wall())
                await peer_b.send(TopicKind.STATUS, encode_status(online))
            device = await _device_when(hub_store, "edge-b", lambda d: d.down_watermark == 2)
    assert (device.down_watermark, device.down_above) == (2, "[]")
    assert await _stored_down_batches(hub_store, "edge-b") == []
    # A box cannot claim more than the hub has numbered.
    await hub_store.note_status("edge-b", Status("online", down_watermark=9))
    assert (await hub_store.device("edge-b")).down_watermark == 2


async def _stored_down_batches(hub_store, node: str) -> list[int]:
    import sqlalchemy as sa

    from hub import db

    d = db.down_batches
    async with hub_store.engine.connect() as conn:
        rows = await conn.execute(sa.select(d.c.seq).where(d.c.node == node))
        return [row.seq for row in rows]
