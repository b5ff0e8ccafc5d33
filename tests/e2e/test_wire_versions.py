"""Wire versions in the field (``protocol/SPEC.md`` §8): a new box and a new hub end up
speaking the newest version both ways, and boxes of versions 1 and 2 keep syncing with the
new hub, each in its own version."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time

import pytest

from protocol.auditchain import GENESIS, AuditAck, AuditBatch, AuditEntry, seal
from protocol.changes import Ack, Batch, Direction
from protocol.codec import WIRE_VERSION, decode, encode
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


def audit_at_hub(hub, box) -> bool:  # type: ignore[no-untyped-def]
    """Whether the hub holds the box's whole audit chain, and it checks out."""
    with contextlib.closing(box.connect(readonly=True)) as connection:
        head = connection.execute("SELECT max(seq) FROM audit").fetchone()[0]
    device = hub.api(f"/api/v1/devices/{box.node}")
    return bool(device["audit_seq"] == head and device["audit_chain"] == "ok")


def test_a_new_box_and_a_new_hub_end_up_speaking_the_newest_version_both_ways(fleet: Fleet):
    hub = fleet.hubs[0]
    a1, a2 = fleet.enrol(VILLAGE_A, "edge-a1"), fleet.enrol(VILLAGE_A, "edge-a2")
    fleet.start()
    first = register(a1, 1)
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "the village in step")

    hub.service.stop()  # what the box seals now stays stored, unacked, to be looked at
    edit(a1, first, rt="009")
    up = "SELECT payload FROM up_batches"
    wait_for(lambda: stored_versions(lambda: a1.connect(readonly=True), up), 30, "a sealed batch")
    assert set(stored_versions(lambda: a1.connect(readonly=True), up)) == {WIRE_VERSION}

    a2.service.stop()  # what the hub packs for it now stays stored, unacked
    hub.service.start()
    hub_db = hub.folder / "hub.sqlite"
    down = "SELECT payload FROM down_batches WHERE node = 'edge-a2'"
    read_hub = lambda: sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True)  # noqa: E731
    wait_for(lambda: stored_versions(read_hub, down), 60, "a down batch for edge-a2")
    assert set(stored_versions(read_hub, down)) == {WIRE_VERSION}
    a2.service.start()
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 90, "the village in step again")
    assert a2.api(f"/api/v1/households/{first}")["household"]["values"]["rt"] == "009"
    # Both boxes' audit trails reached the hub and check out.
    for box in (a1, a2):
        wait_for(lambda box=box: audit_at_hub(hub, box), 60, f"{box.node}'s audit chain")


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


def test_a_box_of_version_2_keeps_syncing_with_the_new_hub_in_version_2(fleet: Fleet):
    hub = fleet.hubs[0]
    new = fleet.enrol(VILLAGE_A, "edge-a1")
    old = fleet.enrol(VILLAGE_A, "edge-a2")
    fleet.boxes.remove(old)  # never started: the test speaks for it, as a box of wire 2
    fleet.start()
    household = register(new, 1)
    password = old.broker_password()
    assert password is not None
    versions, written = asyncio.run(_old_box(fleet.broker.port, password, household, wire=2))
    # Everything the hub sent it, the audit ack too: version 2, which it reads.
    assert versions == {"hello": {2}, "ack": {2}, "audit": {2}, "down": {2}}
    wait_for(lambda: converged(hub, VILLAGE_A, [new]), 60, "the new box has the old one's")
    assert written in hub_states(hub, VILLAGE_A)
    device = hub.api("/api/v1/devices/edge-a2")
    assert (device["audit_chain"], device["audit_seq"]) == ("ok", 2)


async def _old_box(
    port: int, password: str, wanted: str, wire: int = 1
) -> tuple[dict[str, set[int]], str]:
    """Be edge-a2 as a box of wire version ``wire``: its status (without ``wire`` for 1), a
    batch in that version (and, for 2, two audit entries), down batches acked until
    ``wanted`` (a record of edge-a1) has come; returns the versions of what the hub sent,
    by kind, and the id of the record written."""
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
        if wire > 1:
            status["wire"] = wire
        assert await link.publish(topics[TopicKind.STATUS], json.dumps(status).encode())
        hello = await asyncio.wait_for(anext(messages), 20)
        versions["hello"].add(hello.payload[1])
        now = int(time.time() * 1000)
        batch = box.batch(box.edit(record, now, rt="002", rw="003"))
        assert await link.publish(topics[TopicKind.UP], encode(batch, version=wire))
        if wire > 1:
            first = seal(
                GENESIS,
                AuditEntry(
                    1,
                    now,
                    "admin",
                    "update",
                    "household",
                    record,
                    '{"fields": ["rt", "rw"]}',
                    "10.0.0.9",
                ),
            )
            second = seal(
                first.hash,
                AuditEntry(2, now + 5, "admin", "view", "household", record, "{}", "10.0.0.9"),
            )
            audit = AuditBatch(node, (first, second))
            assert await link.publish(topics[TopicKind.UP], encode(audit, version=wire))
            versions["audit"] = set()
        seen: set[str] = set()
        while wanted not in seen or not versions["ack"] or versions.get("audit") == set():
            message = await asyncio.wait_for(anext(messages), 30)
            reply = decode(message.payload)
            if message.topic == topics[TopicKind.ACK]:
                if isinstance(reply, AuditAck):
                    assert reply.seq == 2
                    versions["audit"].add(message.payload[1])
                    continue
                assert isinstance(reply, Ack) and reply.seq == batch.seq
                versions["ack"].add(message.payload[1])
                continue
            assert isinstance(reply, Batch) and reply.direction is Direction.DOWN
            versions["down"].add(message.payload[1])
            seen.update(change.record_id for change in reply.changes)
            down_ack = Ack(node, reply.seq, reply.seq, Direction.DOWN)
            assert await link.publish(topics[TopicKind.DOWN_ACK], encode(down_ack, version=wire))
    return versions, record
