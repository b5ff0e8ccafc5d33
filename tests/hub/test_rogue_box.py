"""What one box's stolen password can do at a real Mosquitto with ``broker-config``'s files
(issue 16): knock another box or a hub worker off by taking its client id, or join the hub
workers' shared subscription and take a share of every box's batches, which the ACL then
drops. Mosquitto grants every subscription (the ACL file applies only to delivery), so what
holds is the client id tied to the user name and a group name no box can compute."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.devices import add_device, write_broker_config
from hub.mosquitto import share_group
from protocol.topics import Topic, TopicKind, hub_filters
from puskesos.mqtt import MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.factories import DEFAULT_VILLAGE
from tests.hub.test_devices import FAST, NOW, connected, sqlite_engine
from tests.mqtt_broker import MosquittoBroker

__all__ = ["sqlite_engine"]  # the fixture, imported for this module's tests

HUB_PASSWORD = "kata-sandi-hub-yang-panjang"
WORKERS = ("hub-1", "hub-2")
BOXES = ("edge-a", "edge-b", "edge-r1", "edge-r2", "edge-r3", "edge-r4", "edge-r5")
#: What a box's stolen password subscribes to: the hub workers' shared group, and wildcards.
ROGUE_FILTERS = (
    "$share/hub/puskesos/v1/+/+/+/up",
    "$share/hub/puskesos/v1/+/+/+/up",
    "$share/hub/puskesos/v1/+/+/+/up",
    "$share/hub/#",
    "#",
)


class District:
    """A broker with the registry's files, and the passwords to connect to it."""

    def __init__(self, broker: MosquittoBroker, passwords: dict[str, str]) -> None:
        self.broker = broker
        self.passwords = passwords

    def box(self, user: str, *, client_id: str | None = None, subscribe: str = "") -> MqttLink:
        """A connection with box ``user``'s password (and, for an attack, another client id)."""
        return MqttLink(
            BrokerConfig(port=self.broker.port, username=user),
            client_id=client_id or user,
            password=self.passwords[user],
            subscriptions=[(subscribe, 1)] if subscribe else [],
            **FAST,
        )

    def hub(self, worker: str = "hub-1") -> MqttLink:
        """A hub worker's connection (its own account), subscribed as the hub's ingest does."""
        group = share_group("hub", HUB_PASSWORD)
        return MqttLink(
            BrokerConfig(port=self.broker.port, username=worker),
            client_id=f"{worker}-0a1b2c3d",
            password=HUB_PASSWORD,
            subscriptions=[(f, 1) for f in hub_filters(share_group=group)],
            clean_start=True,
            **FAST,
        )


@pytest.fixture
async def district(sqlite_engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[District]:
    passwords = {
        node: await add_device(sqlite_engine, village=DEFAULT_VILLAGE, node=node, now_ms=NOW)
        for node in BOXES
    }
    passwd, acl = await write_broker_config(
        sqlite_engine, tmp_path / "etc", hub_users=WORKERS, hub_password=HUB_PASSWORD
    )
    broker = MosquittoBroker(tmp_path / "mosquitto", password_file=passwd, acl_file=acl)
    broker.start()
    try:
        yield District(broker, passwords)
    finally:
        broker.kill()


def up(node: str) -> str:
    return str(Topic(DEFAULT_VILLAGE, node, TopicKind.UP))


async def received(links: Iterator[MqttLink] | list[MqttLink], want: int) -> list[int]:
    """How many messages each link got, waiting until they got ``want`` in all (or 5 s of
    nothing more)."""
    counts = [0] * len(links := list(links))
    arrived = asyncio.Event()

    async def count(i: int, link: MqttLink) -> None:
        async for _ in link.messages():
            counts[i] += 1
            arrived.set()

    tasks = [asyncio.create_task(count(i, link)) for i, link in enumerate(links)]
    try:
        while sum(counts) < want:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), 5)
            except TimeoutError:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return counts


async def test_a_box_taking_another_box_s_or_the_hub_s_client_id_knocks_nobody_off(
    district: District,
) -> None:
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(connected(district.hub("hub-1")))
        box_b = await stack.enter_async_context(connected(district.box("edge-b")))
        # edge-a's password, with edge-b's client id, then the hub worker's (as it asked for
        # it, and as the broker knows it: its user name).
        for client_id in ("edge-b", hub.client_id, "hub-1"):
            await stack.enter_async_context(connected(district.box("edge-a", client_id=client_id)))
        await asyncio.sleep(1.5)
        assert (box_b.disconnects, hub.disconnects) == (0, 0), district.broker.log_text()
        for n in range(20):
            assert await box_b.publish(up("edge-b"), b"batch %d" % n)
        assert await received([hub], 20) == [20]


async def test_boxes_subscribing_to_the_hub_s_shared_group_take_nothing_from_the_hub(
    district: District,
) -> None:
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(connected(district.hub()))
        rogues = []
        for n, subscription in enumerate(ROGUE_FILTERS, start=1):
            rogue = district.box(f"edge-r{n}", subscribe=subscription)
            rogues.append(await stack.enter_async_context(connected(rogue)))
        box_b = await stack.enter_async_context(connected(district.box("edge-b")))
        await asyncio.sleep(0.5)
        for n in range(120):
            assert await box_b.publish(up("edge-b"), b"batch %d" % n)
        assert await received([hub], 120) == [120], "batches went to the rogues and were dropped"
        # Their own wildcard subscriptions give them nothing of another box's.
        assert sum(await received(rogues, 1)) == 0


async def test_two_hub_workers_split_every_batch_without_knocking_each_other_off(
    district: District,
) -> None:
    async with AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(connected(district.hub(w))) for w in WORKERS]
        box_b = await stack.enter_async_context(connected(district.box("edge-b")))
        for n in range(100):
            assert await box_b.publish(up("edge-b"), b"batch %d" % n)
        counts = await received(workers, 100)
        assert sum(counts) == 100 and min(counts) > 0, counts
        assert [w.disconnects for w in workers] == [0, 0]
