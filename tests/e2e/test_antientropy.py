"""Anti-entropy over a real, secured Mosquitto: a box and the hub that hold different data
while neither has anything in flight find out, repair it both ways by the normal merge,
and say so on both sides."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

import pytest

from edge import outbox
from edge.config import load_config
from edge.records import Edit
from edge.store import Store
from protocol.changes import Batch, Change, Direction, FieldVersion
from protocol.clock import COUNTER_BITS
from protocol.codec import encode
from protocol.topics import Topic, TopicKind
from puskesos.fleet import Box, Fleet, Hub
from puskesos.mqtt import MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.e2e.conftest import (
    VILLAGE_A,
    box_states,
    converged,
    meta,
    register,
    sign_in,
    wait_for,
)
from tests.metrics_text import value

pytestmark = pytest.mark.slow


def _household(box: Box, record_id: str) -> dict:
    return box.api(f"/api/v1/households/{record_id}")["household"]["values"]


def _at_hub(hub: Hub, record_id: str) -> dict:
    """A record's shown values at the hub (each field's winning version)."""
    fields = hub.api(f"/api/v1/records/{record_id}")["fields"]
    return {
        name: max(versions, key=lambda v: v["stamp"])["value"] for name, versions in fields.items()
    }


def _seal_offline(box: Box, record_id: str, **values: object) -> int:
    """Save an edit on a stopped box and seal it into its next batch; returns the seq."""

    async def work() -> int:
        store = Store(load_config(box.config), key=box.data_key())
        await store.open()
        try:
            await store.write([Edit("household", record_id, values)], actor="operator")
            await outbox.seal(store, max_changes=100, max_bytes=64 * 1024, max_batches=1)
            return (await outbox.queue_state(store)).up_seq
        finally:
            await store.close()

    return asyncio.run(work())


def _forge(fleet: Fleet, box: Box, seq: int, record_id: str, **values: object) -> None:
    """Publish an up batch under ``box``'s name and password, as someone who copied its
    password would: versions stamped in the box's name that dominate what it holds."""
    state = box_states(box)[record_id]
    stamp = max(v.time for frontier in state.values() for v in frontier) + (1 << COUNTER_BITS)
    fields = {
        name: FieldVersion(value, stamp, box.node, tuple({(box.node, state[name][0].time)}))
        for name, value in values.items()
    }
    batch = Batch(box.node, seq, (Change("household", record_id, box.village, box.node, fields),))
    password = box.broker_password()

    async def publish() -> None:
        link = MqttLink(
            BrokerConfig(port=fleet.broker.port, username=box.node),
            client_id=box.node,
            password=password,
            subscriptions=[],
            clean_start=True,
        )
        await link.start()
        assert await link.wait_connected(10)
        topic = str(Topic(box.village, box.node, TopicKind.UP))
        assert await link.publish(topic, encode(batch))
        await link.stop()

    asyncio.run(publish())
    assert batch.direction is Direction.UP


def test_a_forged_batch_that_took_the_boxs_seq_is_found_and_repaired_both_ways(fleet):
    hub = fleet.hubs[0]
    box = fleet.enrol(VILLAGE_A, "edge-a1")
    fleet.start()
    household = register(box, 1)
    wait_for(lambda: converged(hub, VILLAGE_A, [box]), 60, "the household at the hub")
    device = wait_for(
        lambda: (d := hub.api("/api/v1/devices/edge-a1"))["digest_state"] == "match" and d,
        60,
        "the first comparison",
    )
    assert device["divergences"] == 0
    wait_for(
        lambda: (box.api("/api/v1/sync/status")["digest_check"] or {}).get("state") == "match",
        30,
        "the box told its data matches",
    )
    # The box is switched off with an edit sealed into its next batch (rt), and someone
    # with its password sends a batch under that same seq changing the address.
    box.service.stop()
    seq = _seal_offline(box, household, rt="009")
    _forge(fleet, box, seq, household, address="Jl. Palsu 13")
    wait_for(
        lambda: _at_hub(hub, household)["address"] == "Jl. Palsu 13",
        30,
        "the forged batch applied at the hub",
    )
    box.service.start()
    # The hub takes the box's own batch for the one it already applied and acks it: without
    # anti-entropy the box's rt would never reach the hub and the address never the box.
    wait_for(lambda: int(meta(box, "up_seq") or 0) >= seq, 30, "the box's batch acked")

    def repaired() -> bool:
        d = hub.api("/api/v1/devices/edge-a1")
        return d["digest_state"] == "match" and d["divergences"] >= 1

    wait_for(repaired, 120, "the divergence found and repaired")
    assert converged(hub, VILLAGE_A, [box])
    at_hub = _at_hub(hub, household)
    assert (at_hub["address"], at_hub["rt"]) == ("Jl. Palsu 13", "009")
    assert (_household(box, household)["address"], _household(box, household)["rt"]) == (
        "Jl. Palsu 13",
        "009",
    )
    device = hub.api("/api/v1/devices/edge-a1")
    assert device["divergences"] == 1 and device["repaired"] >= 1
    check = wait_for(
        lambda: (
            (c := box.api("/api/v1/sync/status")["digest_check"]) and c["state"] == "match" and c
        ),
        60,
        "the box told it matches again",
    )
    assert check["divergences"] == 1 and check["records_sent"] >= 1
    metrics = _scrape(hub)
    assert value(metrics, "puskesos_box_divergences_total", node="edge-a1") == 1
    assert value(metrics, "puskesos_box_digest_diverged", node="edge-a1") == 0
    assert value(metrics, "puskesos_hub_digest_checks_total", outcome="diverged") >= 1
    page = _page(box, "/sinkronisasi")
    assert "Cocok" in page and "Pernah berbeda" in page
    digest = box.api("/api/v1/sync/status")["digest"]
    assert digest == json.loads(meta(box, "digest"))["root"].to_bytes(8, "big").hex()


def _scrape(hub: Hub) -> str:
    with urllib.request.urlopen(hub.service.plain_url + "/metrics", timeout=30) as response:
        return response.read().decode()


def _page(box: Box, path: str) -> str:
    """A page of the box's web UI, signed in as its admin."""
    opener = sign_in(box, "admin", box.users["admin"])
    with opener.open(box.service.url + path, timeout=10) as response:
        return response.read().decode()
