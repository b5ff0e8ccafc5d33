"""Boxes and the hub over a real, secured Mosquitto: what people save in the villages
reaches the district exactly once, whatever fails on the way, and comes back down to the
other box of the village."""

from __future__ import annotations

import asyncio
import glob
import shutil
import time
import urllib.request
from dataclasses import replace

import pytest

from protocol.changes import Reject
from protocol.codec import decode, encode
from protocol.topics import Topic, TopicKind
from puskesos.fleet import Fleet, puskesos
from puskesos.mqtt import MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.e2e.conftest import (
    QUICK,
    VILLAGE_A,
    VILLAGE_B,
    box_states,
    changes_made,
    converged,
    edit,
    fill_offline,
    hub_states,
    meta,
    register,
    wait_for,
)
from tests.factories import new_id
from tests.hub.boxes import Box

pytestmark = pytest.mark.slow


def concurrent_edits_converge(fleet: Fleet) -> None:
    """The story both convergence tests tell (SQLite hub, PostgreSQL with two workers)."""
    hub = fleet.hubs[0]
    a1, a2 = fleet.enrol(VILLAGE_A, "edge-a1"), fleet.enrol(VILLAGE_A, "edge-a2")
    b = fleet.enrol(VILLAGE_B, "edge-b")
    fleet.start()
    first, second = register(a1, 1), register(a1, 2)
    other = register(b, 3)
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "village A in step")
    wait_for(lambda: converged(hub, VILLAGE_B, [b]), 60, "village B in step")
    listed = a2.api("/api/v1/households")["items"]
    assert second in {item["household"]["id"] for item in listed}  # a1's, shown on a2

    edit(a1, first, address="Jl. Mawar 1")  # online
    edit(a2, second, rt="007")
    fleet.broker.stop()  # the district's link goes down; the villages keep working
    edit(a1, first, address="Jl. Mawar 2")
    edit(a2, first, address="Jl. Melati 9")  # concurrent with a1's: a conflict
    offline = register(a2, 4)
    edit(b, other, rt="003")
    fleet.broker.start()

    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 90, "village A in step again")
    wait_for(lambda: converged(hub, VILLAGE_B, [b]), 60, "village B in step again")
    assert offline in {r["id"] for r in hub.api(f"/api/v1/records?village={VILLAGE_A}")["records"]}
    [conflict] = hub.api("/api/v1/conflicts")["conflicts"]
    assert (conflict["record_id"], conflict["field"]) == (first, "address")
    assert {v["value"] for v in conflict["versions"]} == {"Jl. Mawar 2", "Jl. Melati 9"}

    hub.api(f"/api/v1/conflicts/{conflict['id']}/resolve", {"value": "Jl. Mawar 2A"})
    for box in (a1, a2):
        wait_for(
            lambda box=box: (
                box.api(f"/api/v1/households/{first}")["household"]["values"]["address"]
                == "Jl. Mawar 2A"
            ),
            60,
            f"the resolution on {box.node}",
        )
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "village A settled")
    assert hub.api("/api/v1/conflicts")["conflicts"] == []
    household = a2.api(f"/api/v1/households/{first}")["household"]
    assert household["conflicts"] == 0


def test_boxes_and_hub_converge_and_concurrent_edits_become_one_conflict(fleet):
    concurrent_edits_converge(fleet)


def test_two_hub_workers_on_postgresql_share_the_work_and_converge(postgres_url, make_fleet):
    fleet = make_fleet(hubs=("hub-1", "hub-2"), database_url=postgres_url)
    concurrent_edits_converge(fleet)
    assert all(hub.service.running for hub in fleet.hubs)


def test_killing_the_broker_and_the_hub_mid_sync_loses_nothing_and_doubles_nothing(make_fleet):
    fleet = make_fleet(sync=replace(QUICK, batch_changes=50, window=4))
    hub = fleet.hubs[0]
    box = fleet.enrol(VILLAGE_A, "edge-a1")
    waiting = fill_offline(box, 400)  # 2,000 changes, 40 batches

    def applied() -> int:
        return int(hub.api("/api/v1/devices/edge-a1")["up_watermark"])

    fleet.start()
    wait_for(lambda: applied() >= 2, 60, "the first batches")
    fleet.broker.kill()  # power cut at the broker: its queues and sessions are gone
    fleet.broker.start()
    before = applied()
    wait_for(lambda: applied() > before + 2, 60, "more batches after the broker came back")
    hub.service.kill()  # and at the hub, while it applies
    hub.service.start()
    register(box, 7)  # people keep working meanwhile

    wait_for(lambda: converged(hub, VILLAGE_A, [box]), 120, "everything at the hub")
    device = hub.api("/api/v1/devices/edge-a1")
    assert device["up_watermark"] == int(meta(box, "up_seq") or 0)
    assert device["up_above"] == []
    assert device["changes_applied"] == changes_made(box) > waiting  # each applied once
    assert len(hub_states(hub, VILLAGE_A)) == len(box_states(box))


def test_a_box_offline_with_ten_thousand_changes_catches_up(make_fleet):
    fleet = make_fleet()
    hub = fleet.hubs[0]
    box = fleet.enrol(VILLAGE_A, "edge-a1")
    assert fill_offline(box, 2000) == 10_000
    fleet.start()
    started = time.monotonic()

    def caught_up() -> bool:
        # Two cheap calls while the backlog drains; comparing every record (two API
        # calls each, each audited at the hub) once it has.
        pending = box.api("/api/v1/sync/status")["outbox_pending"]
        return not pending and hub.api("/api/v1/devices/edge-a1")["changes_applied"] == 10_000

    wait_for(caught_up, 300, "the backlog at the hub")
    assert time.monotonic() - started < 300
    assert converged(hub, VILLAGE_A, [box])


def test_bad_traffic_is_refused_and_counted_while_a_good_box_keeps_syncing(fleet):
    hub = fleet.hubs[0]
    good = fleet.enrol(VILLAGE_A, "edge-a1")
    stolen = fleet.enrol(VILLAGE_A, "edge-a2")
    fleet.boxes.remove(stolen)  # never started: the test speaks with its credentials
    fleet.start()
    password = stolen.broker_password()
    reasons = asyncio.run(_misbehave(fleet.broker.port, password))
    assert reasons == ["wrong_village", "malformed", "too_large", "ack", "ack"]

    household = register(good, 5)
    wait_for(lambda: converged(hub, VILLAGE_A, [good]), 60, "the good box in step")
    assert household in hub_states(hub, VILLAGE_A)
    metrics = urllib.request.urlopen(f"{hub.service.plain_url}/metrics").read().decode()
    for reason in ("wrong_village", "malformed", "too_large"):
        assert f'puskesos_hub_batches_rejected_total{{reason="{reason}"}} 1.0' in metrics
    assert 'puskesos_hub_batches_total{outcome="duplicate"} 1.0' in metrics
    assert hub.api("/api/v1/devices/edge-a2")["rejected"] == 3

    puskesos("hub", "device", "revoke", "--config", str(hub.config), "edge-a2")
    fleet.write_broker_config()  # and reload: the revoked box is shut out of the broker
    assert asyncio.run(_can_connect(fleet.broker.port, "edge-a2", password)) is False


async def _misbehave(port: int, password: str) -> list[str]:
    """Publish, as edge-a2, a batch naming another village, garbage, an oversized frame,
    then a good batch twice; returns what the hub answered to each, in order."""
    box = Box("edge-a2")
    answers = [str(Topic(VILLAGE_A, "edge-a2", kind)) for kind in (TopicKind.ACK, TopicKind.ERROR)]
    link = MqttLink(
        BrokerConfig(port=port, username="edge-a2"),
        client_id="edge-a2-intruder",
        password=password,
        subscriptions=[(topic, 1) for topic in answers],
        clean_start=True,
    )
    up = str(Topic(VILLAGE_A, "edge-a2", TopicKind.UP))
    async with link:
        assert await link.wait_connected(10)
        await asyncio.sleep(0.3)
        messages = link.messages()
        outsider = Box("edge-a2", village=VILLAGE_B)
        now = int(time.time() * 1000)
        crafted = outsider.batch(outsider.edit(new_id(), now, rt="001"))
        good = box.batch(box.edit(new_id(), now, rt="002"))
        replies = []
        for payload in (encode(crafted), b"not a frame", b"\x50\x01\x01\x00" + bytes(300_000)):
            assert await link.publish(up, payload)
            replies.append(await asyncio.wait_for(anext(messages), 10))
        for _ in range(2):  # the second is a replay
            assert await link.publish(up, encode(good))
            replies.append(await asyncio.wait_for(anext(messages), 10))
    out = []
    for reply in replies:
        message = decode(reply.payload)
        out.append(message.reason if isinstance(message, Reject) else "ack")
    return out


async def _can_connect(port: int, username: str, password: str) -> bool:
    link = MqttLink(
        BrokerConfig(port=port, username=username), client_id=f"{username}-try", password=password
    )
    async with link:
        return await link.wait_connected(3)


def year_ahead() -> dict[str, str]:
    """The environment of a process whose clock runs a year ahead (libfaketime)."""
    [library] = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    return {"LD_PRELOAD": library, "FAKETIME": "+365d"}


def test_a_box_a_year_ahead_is_refused_until_its_clock_is_right_and_then_wins_nothing(fleet):
    hub = fleet.hubs[0]
    sane = fleet.enrol(VILLAGE_A, "edge-a1")
    ahead = fleet.enrol(VILLAGE_A, "edge-a2")
    ahead.service.env = year_ahead()
    fleet.start()
    household = register(ahead, 11)

    def refusal() -> str | None:
        reject = ahead.api("/api/v1/sync/status")["last_reject"]
        return reject["reason"] if reject else None

    wait_for(lambda: refusal() == "clock_ahead", 60, "the hub's refusal")
    assert household not in hub_states(hub, VILLAGE_A)
    assert hub.api("/api/v1/devices/edge-a2")["clock_offset_ms"] > 300 * 86_400_000

    ahead.service.stop()  # the clock is set right, the box restarted
    ahead.service.env = {}
    ahead.service.start()
    wait_for(lambda: household in hub_states(hub, VILLAGE_A), 60, "the re-stamped household")
    now_ms = time.time() * 1000
    stamps = [v for versions in hub_states(hub, VILLAGE_A)[household].values() for v in versions]
    assert all(int(stamp.split("@")[0], 16) >> 16 < now_ms + 300_000 for _, stamp in stamps)

    wait_for(lambda: household in box_states(sane), 60, "the household on the other box")
    edit(sane, household, address="Jl. Baru 5")  # a later edit elsewhere wins, as it should
    wait_for(lambda: converged(hub, VILLAGE_A, [sane, ahead]), 60, "village A in step")
    shown = ahead.api(f"/api/v1/households/{household}")["household"]["values"]
    assert shown["address"] == "Jl. Baru 5"


def test_a_wiped_box_enrolled_again_pulls_its_village_and_goes_on(fleet):
    hub = fleet.hubs[0]
    a1, a2 = fleet.enrol(VILLAGE_A, "edge-a1"), fleet.enrol(VILLAGE_A, "edge-a2")
    fleet.start()
    households = [register(a1, seed) for seed in (21, 22, 23)]
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "village A in step")

    a2.service.kill()  # the SD card dies
    shutil.rmtree(a2.folder)
    fleet.boxes.remove(a2)
    puskesos("hub", "device", "revoke", "--config", str(hub.config), "edge-a2")
    a3 = fleet.enrol(VILLAGE_A, "edge-a3")  # the replacement, a new node id
    fleet.start()

    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a3]), 90, "the new box holding the village")
    assert set(households) <= set(box_states(a3))
    later = register(a3, 24)
    wait_for(lambda: later in box_states(a1), 60, "the new box's work on the other box")


def test_a_box_restored_from_an_old_backup_gets_back_what_it_lost_and_resends_nothing(fleet):
    hub = fleet.hubs[0]
    a1, a2 = fleet.enrol(VILLAGE_A, "edge-a1"), fleet.enrol(VILLAGE_A, "edge-a2")
    fleet.start()
    register(a1, 31)
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "village A in step")
    backup = a1.folder / "backup.sqlite"
    admin, secret = next(iter(a1.users.items()))  # the box is encrypted: a password opens it
    staff = ("--as", admin)
    puskesos("edge", "backup", str(backup), "--config", str(a1.config), *staff, stdin=secret + "\n")
    after_backup = register(a1, 32)  # sent to the hub, then lost with the SD card
    neighbour = register(a2, 33)
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "village A in step again")
    applied = hub.api("/api/v1/devices/edge-a1")["changes_applied"]

    a1.service.kill()
    puskesos(
        "edge", "restore", str(backup), "--config", str(a1.config), *staff, stdin=secret + "\n"
    )
    a1.service.start()
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 90, "the restored box in step")
    assert {after_backup, neighbour} <= set(box_states(a1))
    assert hub.api("/api/v1/devices/edge-a1")["changes_applied"] == applied  # nothing twice
    later = register(a1, 34)  # and it goes on, under sequence numbers the hub never saw
    wait_for(lambda: later in box_states(a2), 60, "the restored box's new work on a2")
