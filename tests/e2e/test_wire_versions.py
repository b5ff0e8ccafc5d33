"""Wire versions in the field (``protocol/SPEC.md`` §8): a new box and a new hub end up
speaking version 2 both ways, and a box of version 1 keeps syncing with the new hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time

import pytest

from protocol.changes import Ack, Batch, Direction
from protocol.codec import decode, encode
from protocol.topics import Topic, TopicKind
from puskesos.fleet import Fleet
from puskesos.mqtt import MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.e2e.conftest import VILLAGE_A, converged, edit, hub_states, register, wait_for
from tests.factories import new_id
from tests.hub.boxes import Box

pytestmark = pytest.mark.slow


def stored_versions(connect, query: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The wire version byte of every payload ``query`` selects."""
    with contextlib.closing(connect()) as connection:
        return [bytes(row[0])[1] for row in connection.execute(query)]


def test_a_new_box_and_a_new_hub_end_up_speaking_version_2_both_ways(fleet: Fleet):
    hub = fleet.hubs[0]
    a1, a2 = fleet.enrol(VILLAGE_A, "edge-a1"), fleet.enrol(VILLAGE_A, "edge-a2")
    fleet.start()
    first = register(a1, 1)
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "the village in step")

    hub.service.stop()  # what the box seals now stays stored, unacked, to be looked at
    edit(a1, first, rt="009")
    up = "SELECT payload FROM up_batches"
    wait_for(lambda: stored_versions(lambda: a1.connect(readonly=True), up), 30, "a sealed batch")
    assert set(stored_versions(lambda: a1.connect(readonly=True), up)) == {2}

    a2.service.stop()  # what the hub packs for it now stays stored, unacked
    hub.service.start()
    hub_db = hub.folder / "hub.sqlite"
    down = "SELECT payload FROM down_batches WHERE node = 'edge-a2'"
    read_hub = lambda: sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True)  # noqa: E731
    wait_for(lambda: stored_versions(read_hub, down), 60, "a down batch for edge-a2")
    assert set(stored_versions(read_hub, down)) == {2}
    a2.service.start()
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 90, "the village in step again")
    assert a2.api(f"/api/v1/households/{first}")["household"]["values"]["rt"] == "009"


def test_a_box_of_version_1_keeps_syncing_with_the_new_hub(fleet: Fleet):
    hub = fleet.hubs[0]
    new = fleet.enrol(VILLAGE_A, "edge-a1")
    old = fleet.enrol(VILLAGE_A, "edge-a2")
    fleet.boxes.remove(old)  # never started: the test speaks for it, as an older box would
    fleet.start()
    household = register(new, 1)
    password = old.broker_password()
    assert password is not None
    versions, written = asyncio.run(_old_box(fleet.broker.port, password, household))
    # The hello ack, the batch's ack and every down batch: all in version 1.
    assert versions == {"hello": {1}, "ack": {1}, "down": {1}}
    wait_for(lambda: converged(hub, VILLAGE_A, [new]), 60, "the new box has the old one's")
    assert written in hub_states(hub, VILLAGE_A)


async def _old_box(port: int, password: str, wanted: str) -> tuple[dict[str, set[int]], str]:
    """Be edge-a2 as a box of before wire version 2: a status without ``wire``, a batch in
    version 1, down batches acked until ``wanted`` (a record of edge-a1) has come; returns
    the versions of what the hub sent, by kind, and the id of the record written."""
    node = "edge-a2"
    topics = {kind: str(Topic(VILLAGE_A, node, kind)) for kind in TopicKind}
    link = MqttLink(
        BrokerConfig(port=port, username=node),
        client_id=node,
        password=password,
        subscriptions=[(topics[k], 1) for k in (TopicKind.ACK, TopicKind.DOWN)],
        clean_start=True,
    )
    versions: dict[str, set[int]] = {"hello": set(), "ack": set(), "down": set()}
    box = Box(node, village=VILLAGE_A)
    record = new_id()
    async with link:
        assert await link.wait_connected(10)
        await asyncio.sleep(0.3)
        messages = link.messages()
        status = {"state": "online", "software": "0.9.0", "schema": 7}
        assert await link.publish(topics[TopicKind.STATUS], json.dumps(status).encode())
        hello = await asyncio.wait_for(anext(messages), 20)
        versions["hello"].add(hello.payload[1])
        batch = box.batch(box.edit(record, int(time.time() * 1000), rt="002", rw="003"))
        assert await link.publish(topics[TopicKind.UP], encode(batch))
        seen: set[str] = set()
        while wanted not in seen or not versions["ack"]:
            message = await asyncio.wait_for(anext(messages), 30)
            reply = decode(message.payload)
            if message.topic == topics[TopicKind.ACK]:
                assert isinstance(reply, Ack) and reply.seq == batch.seq
                versions["ack"].add(message.payload[1])
                continue
            assert isinstance(reply, Batch) and reply.direction is Direction.DOWN
            versions["down"].add(message.payload[1])
            seen.update(change.record_id for change in reply.changes)
            down_ack = Ack(node, reply.seq, reply.seq, Direction.DOWN)
            assert await link.publish(topics[TopicKind.DOWN_ACK], encode(down_ack))
    return versions, record
