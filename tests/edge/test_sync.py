"""A box replicating through a real Mosquitto with a stand-in hub (``hub_peer``): what is
saved reaches the hub and leaves the queue only on the hub's ack, survives broker crashes
and box restarts byte for byte, waits patiently while there is no broker, and what the hub
sends down is applied once. A clock that ran ahead shows on the sync page and is repaired
by itself once the clock is right."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge import auth, outbox
from edge.config import BrokerConfig, EdgeConfig, SyncConfig
from edge.db import upgrade
from edge.metrics import EdgeMetrics
from edge.store import Store, wall_ms
from edge.sync import SyncClient
from edge.web.app import STORE, create_app
from edge.web.sync_view import reject_message
from protocol.changes import Ack, Batch, Change, Direction, FieldVersion
from protocol.clock import pack
from protocol.codec import WIRE_VERSION, decode, encode
from protocol.errors import Reason
from protocol.topics import TopicKind
from puskesos import __version__
from tests.edge.api_client import household_body
from tests.edge.conftest import PASSWORD, login
from tests.edge.hub_peer import HubPeer, eventually
from tests.factories import DEFAULT_VILLAGE, make_household, new_id
from tests.mqtt_broker import MosquittoBroker, mosquitto  # noqa: F401 (fixture)

NODE = "edge-3201022001-a"
VILLAGE = DEFAULT_VILLAGE


def sync_config(tmp_path: Path, port: int, mqtt_version: int = 5) -> EdgeConfig:
    """A box that replicates through the broker on ``port``, with short timeouts."""
    config = EdgeConfig(
        village=VILLAGE,
        node=NODE,
        data_dir=tmp_path / "box",
        broker=BrokerConfig(port=port, mqtt_version=mqtt_version),
        # Audit entries sent at once, as before sync.audit_delay_s (tested on its own).
        sync=SyncConfig(
            enabled=True, ack_timeout_s=2, audit_delay_s=0, backoff_min_s=1, backoff_max_s=2
        ),
    )
    upgrade(config.database_path)
    return config


@dataclass
class Box:
    """A running box: its HTTP client (an operator's API token) and its store."""

    client: TestClient
    headers: dict[str, str]
    store: Store

    async def save_household(self, seed: int) -> str:
        """Register a new household with 3 members through the API; returns its id."""
        answer = await self.client.post(
            "/api/v1/households", json=household_body(3, seed=seed), headers=self.headers
        )
        assert answer.status == 201, await answer.text()
        record_id: str = (await answer.json())["id"]
        return record_id

    async def status(self) -> dict[str, Any]:
        answer = await self.client.get("/api/v1/sync/status", headers=self.headers)
        assert answer.status == 200
        body: dict[str, Any] = await answer.json()
        return body

    async def pending(self) -> int:
        return (await self.store.outbox_pending())[0]

    async def metrics(self) -> str:
        return await (await self.client.get("/metrics")).text()

    async def drained(self) -> bool:
        """Nothing waits for the hub any more."""
        return await self.pending() == 0


@asynccontextmanager
async def running_box(config: EdgeConfig, store: Store | None = None) -> AsyncIterator[Box]:
    """The box's app served in-process (sync client included), with an operator."""
    app = create_app(config, store=store)
    async with TestClient(TestServer(app)) as client:
        box_store: Store = app[STORE]
        users = {user.username: user for user in await auth.list_users(box_store)}
        if "operator1" not in users:
            users["operator1"] = await auth.create_user(
                box_store, username="operator1", full_name="Operator", role=auth.Role.OPERATOR,
                password=PASSWORD, actor="test",
            )  # fmt: skip
        token = await auth.create_api_token(box_store, users["operator1"], "sync-test")
        yield Box(client, {"Authorization": f"Bearer {token}"}, box_store)


@pytest.fixture
def hub(mosquitto: MosquittoBroker) -> AsyncIterator[HubPeer]:  # noqa: F811
    peer = HubPeer(mosquitto.port).start()
    yield peer
    peer.stop()


def record_ids(batch: Batch) -> set[str]:
    return {change.record_id for change in batch.changes}


@pytest.mark.parametrize("mqtt_version", [5, 4])
async def test_a_saved_household_reaches_the_hub_and_leaves_the_queue_on_its_ack(
    tmp_path,
    mosquitto,  # noqa: F811
    mqtt_version,
):
    hub = HubPeer(mosquitto.port, mqtt_version=mqtt_version).start()
    try:
        config = sync_config(tmp_path, mosquitto.port, mqtt_version)
        async with running_box(config) as box:
            await eventually(lambda: any(s.state == "online" for s in hub.statuses), what="status")
            online = next(s for s in hub.statuses if s.state == "online")
            assert (online.software, online.wire, online.up_seq) == (__version__, WIRE_VERSION, 0)
            # Garbage and messages meant for others never stop the client.
            for kind in (TopicKind.ACK, TopicKind.ERROR, TopicKind.DOWN):
                hub.send(VILLAGE, NODE, kind, b"not a frame")
            hub.send(VILLAGE, NODE, TopicKind.ACK, encode(Ack("edge-someone-else", 1, 1)))

            household = await box.save_household(seed=1)
            received = await eventually(hub.received, what="an up batch")
            assert received[0].seq == 1 and household in record_ids(received[0].batch)
            await eventually(box.drained, what="the ack")
            status = await box.status()
            assert status["connected"] is True and status["enabled"] is True
            assert (status["outbox_pending"], status["unacked_batches"], status["up_seq"]) == (
                0,
                0,
                1,
            )
            assert status["last_ack_ms"] is not None and status["last_reject"] is None
            metrics = await box.metrics()
            assert "puskesos_edge_sync_connected 1.0" in metrics
            assert "puskesos_edge_sync_batches_acked_total 1.0" in metrics
            assert 'puskesos_edge_sync_batches_rejected_total{reason="clock_ahead"} 0.0' in metrics
        # A clean stop says so on the retained status topic.
        await eventually(lambda: hub.statuses[-1].state == "offline", what="offline status")
    finally:
        hub.stop()


@pytest.mark.slow
async def test_unacked_batches_are_sent_again_byte_for_byte_after_a_broker_crash_and_a_box_restart(
    tmp_path,
    mosquitto,  # noqa: F811
):
    hub = HubPeer(mosquitto.port, mode="silent").start()  # receives, never acks
    try:
        config = sync_config(tmp_path, mosquitto.port)
        async with running_box(config) as box:
            first = await box.save_household(seed=1)
            sent = (await eventually(hub.received, what="batch 1"))[0]
            assert sent.seq == 1 and first in record_ids(sent.batch)

            mosquitto.kill()  # kill -9: whatever it held in memory is gone
            second = await box.save_household(seed=2)  # saved while the broker is down
            seen = len(hub.received())
            mosquitto.start()
            await eventually(
                lambda: {1, 2} <= {r.seq for r in hub.received()[seen:]}, what="resend", timeout=60
            )
            after = hub.received()[seen:]
            assert {r.payload for r in after if r.seq == 1} == {sent.payload}
            batch2 = next(r for r in after if r.seq == 2)
            assert second in record_ids(batch2.batch)
            assert (await outbox.queue_state(box.store)).unacked_batches == 2

        seen = len(hub.received())
        async with running_box(config) as box:  # the box restarted: paho remembers nothing
            await eventually(
                lambda: {1, 2} <= {r.seq for r in hub.received()[seen:]}, what="resend", timeout=60
            )
            again = {r.seq: r.payload for r in hub.received()[seen:]}
            assert again[1] == sent.payload and again[2] == batch2.payload
            assert await box.pending() > 0

            hub.mode = "ack"  # the hub is back: the next resend is acked and retired
            await eventually(box.drained, what="acks", timeout=30)
            assert sorted({r.seq for r in hub.received()}) == [1, 2]
    finally:
        hub.stop()


@pytest.mark.slow
async def test_without_a_broker_saves_stay_fast_and_the_box_catches_up_later(tmp_path):
    broker = MosquittoBroker(tmp_path / "mosquitto")  # not started yet: the uplink is down
    hub: HubPeer | None = None
    try:
        config = sync_config(tmp_path, broker.port)
        async with running_box(config) as box:
            saved, durations = [], []
            for seed in range(15):
                started = time.perf_counter()
                saved.append(await box.save_household(seed=seed))
                durations.append(time.perf_counter() - started)
            assert max(durations) < 1.0, durations
            status = await box.status()
            assert status["connected"] is False and status["outbox_pending"] > 0
            assert "puskesos_edge_sync_connected 0.0" in await box.metrics()
            await login(box.client, "operator1")
            page = await (await box.client.get("/sinkronisasi")).text()
            assert "Tidak terhubung" in page

            broker.start()
            hub = HubPeer(broker.port).start()
            await eventually(box.drained, what="catch-up", timeout=60)
            seqs = sorted({r.seq for r in hub.received()})
            assert seqs == list(range(1, len(seqs) + 1))  # gap-free
            arrived = set().union(*(record_ids(r.batch) for r in hub.received()))
            assert set(saved) <= arrived
            status = await box.status()
            assert status["connected"] is True and status["up_seq"] == seqs[-1]
    finally:
        if hub is not None:
            hub.stop()
        broker.kill()


def hub_household(record_id: str, time_: int, **changes: Any) -> Change:
    """A household as the hub sends it: every field written by ``hub-1``."""
    fields = {k: v for k, v in make_household().items() if k != "id"} | changes
    versions = {name: FieldVersion(value, time_, "hub-1", ()) for name, value in fields.items()}
    return Change("household", record_id, VILLAGE, "hub-1", versions)


async def test_down_batches_are_applied_acked_and_a_duplicate_changes_nothing(
    tmp_path,
    mosquitto,  # noqa: F811
    hub,
):
    config = sync_config(tmp_path, mosquitto.port)
    async with running_box(config) as box:
        await eventually(lambda: any(s.state == "online" for s in hub.statuses), what="online")
        record_id = new_id()
        stamp = pack(wall_ms(), 0)
        change = hub_household(record_id, stamp, address="Jl. Kabupaten 1")
        hub.send_down(Batch(NODE, 1, (change,), Direction.DOWN), VILLAGE)
        await eventually(lambda: hub.down_acks, what="down-ack")
        assert hub.down_acks == [Ack(NODE, 1, 1, Direction.DOWN)]
        record = await box.store.get(record_id)
        assert record is not None and record.get("address") == "Jl. Kabupaten 1"
        assert await box.pending() == 0  # the hub has it: nothing to send back

        # Redelivered (same seq): acked again, applied never twice.
        other = hub_household(record_id, stamp + 5, address="Jl. Lain")
        hub.send_down(Batch(NODE, 1, (other,), Direction.DOWN), VILLAGE)
        # Not for this box: dropped, not acked.
        hub.send_down(Batch("edge-someone-else", 2, (other,), Direction.DOWN), VILLAGE)
        await eventually(lambda: len(hub.down_acks) == 2, what="second down-ack")
        assert hub.down_acks[1] == Ack(NODE, 1, 1, Direction.DOWN)
        assert (await box.store.get(record_id)).get("address") == "Jl. Kabupaten 1"
        status = await box.status()
        assert status["down_watermark"] == 1 and status["last_hub_contact_ms"] is not None
        assert "puskesos_edge_sync_down_batches_applied_total 1.0" in await box.metrics()


@pytest.mark.parametrize("wire", [1, 2, 3])
async def test_a_down_change_of_one_field_leaves_the_box_s_other_fields_as_they_were(
    tmp_path,
    mosquitto,  # noqa: F811
    wire,
):
    # The hub sends a box only the fields of a record it lacks (docs/replication.md, "Only
    # the fields a box lacks"), in whatever wire version the box reads.
    hub = HubPeer(mosquitto.port, wire=wire).start()
    try:
        config = sync_config(tmp_path, mosquitto.port)
        async with running_box(config) as box:
            household = await box.save_household(seed=1)
            await eventually(box.drained, what="the household acked", timeout=20)
            before = await box.store.get(household)
            assert before is not None
            [mine] = before.state["address"]
            seen = ((mine.node, mine.time),)  # the district saw the box's address, then wrote
            version = FieldVersion("Jl. Kabupaten 9", pack(wall_ms(), 0), "hub-1", seen)
            change = Change("household", household, VILLAGE, "hub-1", {"address": version})
            hub.send_down(Batch(NODE, 1, (change,), Direction.DOWN), VILLAGE)
            await eventually(lambda: hub.down_acks, what="down-ack")
            after = await box.store.get(household)
            assert after is not None and after.get("address") == "Jl. Kabupaten 9"
            assert after.conflicts == 0

            def others(fields: Mapping[str, Any]) -> dict[str, Any]:
                return {name: value for name, value in fields.items() if name != "address"}

            assert others(after.values) == others(before.values)
            assert others(after.state) == others(before.state)
    finally:
        hub.stop()


@pytest.mark.slow
async def test_a_clock_ahead_refusal_shows_on_the_sync_page_until_the_clock_is_right(
    tmp_path,
    mosquitto,  # noqa: F811
):
    hub = HubPeer(mosquitto.port, mode="clock").start()
    offset = {"ms": 3_600_000}  # the box's clock runs an hour ahead
    try:
        config = sync_config(tmp_path, mosquitto.port)
        store = Store(config, clock=lambda: wall_ms() + offset["ms"])
        async with running_box(config, store) as box:
            await box.save_household(seed=1)

            async def refused() -> bool:
                return (await outbox.queue_state(box.store)).last_reject is not None

            await eventually(refused, what="the refusal")
            await login(box.client, "operator1")
            page = await (await box.client.get("/sinkronisasi")).text()
            assert reject_message(Reason.CLOCK_AHEAD) in page and "clock_ahead" in page
            assert "Jam perangkat ini salah" in await (await box.client.get("/")).text()
            status = await box.status()
            assert (
                status["clock_wrong"] is True and status["last_reject"]["reason"] == "clock_ahead"
            )
            refused_bytes = hub.received()[0].payload
            rejected = r'puskesos_edge_sync_batches_rejected_total\{reason="clock_ahead"\} [1-9]'
            assert re.search(rejected, await box.metrics())

            offset["ms"] = 0  # someone set the clock right
            await eventually(box.drained, what="re-stamp and ack")
            accepted = hub.received()[-1]
            assert accepted.seq == 1 and accepted.payload != refused_bytes
            page = await (await box.client.get("/sinkronisasi")).text()
            assert "clock_ahead" not in page and "Jam terakhir dibetulkan" in page
            assert "Jam perangkat ini salah" not in await (await box.client.get("/")).text()
    finally:
        hub.stop()


async def test_the_box_stops_promptly_even_right_after_its_sender_was_woken(
    tmp_path,
    mosquitto,  # noqa: F811
):
    config = sync_config(tmp_path, mosquitto.port)
    store = Store(config)
    await store.open()
    try:
        # Stopping at each moment of the sender waking up (a save, an ack): it must end
        # every time, not swallow the cancellation and keep running.
        for turns in range(6):
            client = SyncClient(store, EdgeMetrics())
            await client.start()
            assert await client.link.wait_connected(10)
            await asyncio.sleep(0.1)  # past the connect's own round
            client.wake()
            for _ in range(turns):
                await asyncio.sleep(0)
            started = time.monotonic()
            await asyncio.wait_for(client.stop(), 5)
            assert time.monotonic() - started < 5
    finally:
        await store.close()


async def test_a_box_whose_packing_process_died_packs_in_a_new_one_and_keeps_sending(
    tmp_path,
    hub,
):
    config = sync_config(tmp_path, hub.port)
    async with running_box(config) as box:
        first = await box.save_household(seed=1)
        await eventually(box.drained, what="the first household acked")
        packers = multiprocessing.active_children()
        assert packers, "batches are packed in a process of their own"
        # ... which yields the core to the server: saves keep their latency while it packs.
        server = os.getpriority(os.PRIO_PROCESS, 0)
        assert all(os.getpriority(os.PRIO_PROCESS, p.pid) > server for p in packers)
        for process in packers:
            os.kill(process.pid, signal.SIGKILL)  # e.g. the out-of-memory killer
        second = await box.save_household(seed=2)
        await eventually(box.drained, what="the second household acked", timeout=20)
        sent = set().union(*(record_ids(r.batch) for r in hub.received()))
        assert {first, second} <= sent
        assert all(p.pid not in {q.pid for q in packers} for p in multiprocessing.active_children())


async def test_audit_entries_wait_for_company_and_travel_in_version_3_without_their_hashes(
    tmp_path,
    mosquitto,  # noqa: F811
):
    from edge import auditchain
    from protocol.auditchain import GENESIS, follow
    from protocol.codec import frame_version

    hub = HubPeer(mosquitto.port, wire=3).start()
    try:
        config = sync_config(tmp_path, mosquitto.port)
        config = replace(config, sync=replace(config.sync, audit_delay_s=8))
        async with running_box(config) as box:
            await box.save_household(seed=1)
            await eventually(box.drained, what="the household acked", timeout=20)
            assert not hub.audit  # waiting for company
            await eventually(lambda: hub.audit, what="the trail", timeout=20)
            stored = await box.store.read(lambda c: auditchain.entries_after(c, 0, 10_000))
            # One message for all of them, in version 3 (the hub spoke it first), its
            # hashes left out and computed again: the box's own.
            assert len(hub.audit_frames) == 1 and frame_version(hub.audit_frames[0]) == 3
            assert hub.audit == stored
            assert follow(0, GENESIS, hub.audit) == (len(stored), stored[-1].hash, [])
            assert not any(entry.hash in hub.audit_frames[0] for entry in stored)
    finally:
        hub.stop()


async def test_a_full_audit_batch_goes_at_once_and_the_rest_waits(
    tmp_path,
    mosquitto,  # noqa: F811
):
    from edge import auditchain

    hub = HubPeer(mosquitto.port).start()
    try:
        config = sync_config(tmp_path, mosquitto.port)
        config = replace(config, sync=replace(config.sync, audit_delay_s=600, batch_changes=2))
        async with running_box(config) as box:
            await box.save_household(seed=1)
            stored = await box.store.read(lambda c: auditchain.entries_after(c, 0, 10_000))
            full = len(stored) // 2 * 2
            assert full >= 4
            await eventually(lambda: len(hub.audit) >= full, what="the full batches", timeout=20)
            await asyncio.sleep(2)
            # Two at a time, in order; a last one alone waits its ten minutes.
            sent = [e.seq for e in hub.audit]
            assert sent == list(range(1, len(sent) + 1)) and len(sent) % 2 == 0
            assert {len(decode(frame).entries) for frame in hub.audit_frames} == {2}
            head = await box.store.read(lambda c: auditchain.entries_after(c, 0, 10_000))
            assert len(head) - len(sent) < 2
    finally:
        hub.stop()


async def test_with_a_seal_delay_the_changes_of_several_saves_travel_in_one_batch(
    tmp_path,
    mosquitto,  # noqa: F811
    hub,
):
    config = sync_config(tmp_path, mosquitto.port)
    config = replace(config, sync=replace(config.sync, seal_delay_s=4))
    async with running_box(config) as box:
        await box.save_household(seed=1)
        await eventually(box.drained, what="the first household acked", timeout=20)
        second = await box.save_household(seed=2)
        saved = time.monotonic()
        await asyncio.sleep(1)
        third = await box.save_household(seed=3)
        await eventually(lambda: len(hub.received()) > 1, what="the next batch", timeout=20)
        waited = time.monotonic() - saved
        await eventually(box.drained, what="both households acked", timeout=20)
        # One batch for both saves, sealed once the first had waited its 4 s.
        assert [len(record_ids(r.batch) & {second, third}) for r in hub.received()] == [0, 2]
        assert waited >= 3.5


async def test_with_a_seal_delay_a_full_batch_goes_at_once(
    tmp_path,
    mosquitto,  # noqa: F811
    hub,
):
    config = sync_config(tmp_path, mosquitto.port)
    config = replace(config, sync=replace(config.sync, seal_delay_s=600, batch_changes=4))
    async with running_box(config) as box:
        household = await box.save_household(seed=1)  # itself and 3 members: 4 changes
        await eventually(box.drained, what="the household acked", timeout=20)
        assert household in record_ids(hub.received()[0].batch)


async def test_with_a_seal_delay_a_clock_set_back_does_not_hold_the_changes_for_good(
    tmp_path,
    mosquitto,  # noqa: F811
    hub,
):
    offset = {"ms": 0}
    config = sync_config(tmp_path, mosquitto.port)
    config = replace(config, sync=replace(config.sync, seal_delay_s=600))
    store = Store(config, clock=lambda: wall_ms() + offset["ms"])
    async with running_box(config, store) as box:
        first = await box.save_household(seed=1)
        await asyncio.sleep(3)
        assert not hub.received()  # held back for its ten minutes
        offset["ms"] = -24 * 3_600_000  # someone sets the clock a day back
        second = await box.save_household(seed=2)
        # The first save now seems made tomorrow: waiting for its age would never end.
        await eventually(box.drained, what="both households acked", timeout=20)
        assert {first, second} <= set().union(*(record_ids(r.batch) for r in hub.received()))


async def test_the_audit_trail_reaches_the_hub_in_order_until_acked_and_resumes_after_a_restart(
    tmp_path,
    mosquitto,  # noqa: F811
):
    from edge import auditchain
    from protocol.auditchain import GENESIS, follow

    hub = HubPeer(mosquitto.port, mode="silent").start()
    try:
        config = sync_config(tmp_path, mosquitto.port)
        async with running_box(config) as box:
            await box.save_household(seed=1)
            # Unacked, the same entries come again after ack_timeout_s.
            await eventually(
                lambda: [e.seq for e in hub.audit].count(1) >= 2, what="a resend", timeout=20
            )
            hub.mode = "ack"

            async def all_acked() -> bool:
                head = await box.store.read(lambda c: auditchain.entries_after(c, 0, 10_000))
                acked = await box.store.get_meta(auditchain.ACKED)
                return bool(head) and acked == str(head[-1].seq)

            await eventually(all_acked, what="the whole trail acked", timeout=20)
            sent = {e.seq: e for e in hub.audit}
            chain = [sent[seq] for seq in sorted(sent)]
            assert follow(0, GENESIS, chain) == (len(chain), chain[-1].hash, [])
        seen = len(hub.audit)
        async with running_box(config) as box:  # restarted: it resumes after the last ack
            await box.save_household(seed=2)
            await eventually(lambda: len(hub.audit) > seen, what="new entries", timeout=20)
            assert min(e.seq for e in hub.audit[seen:]) == len(chain) + 1
    finally:
        hub.stop()
