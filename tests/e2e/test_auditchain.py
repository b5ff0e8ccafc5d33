"""The box's audit trail as a hash chain, on a real box, hub and secured Mosquitto: what
people do on the box reaches the hub and checks out, across a broker restart; rows then
removed or changed on the box with sqlite3 (the triggers dropped first) before they were
sent mark the box broken at the hub, on its device API and in /metrics."""

from __future__ import annotations

import contextlib
import urllib.request

import pytest

from puskesos.fleet import Box, Hub
from tests.e2e.conftest import VILLAGE_A, register, wait_for
from tests.metrics_text import value

pytestmark = pytest.mark.slow

#: Seconds a missing entry may take before it counts as a gap (short, for the test).
GRACE_S = 2


def _chain_length(box: Box) -> int:
    with contextlib.closing(box.connect(readonly=True)) as connection:
        return int(connection.execute("SELECT max(seq) FROM audit").fetchone()[0] or 0)


def _device(hub: Hub) -> dict:
    return hub.api("/api/v1/devices/edge-a1")


def _scrape(hub: Hub) -> str:
    with urllib.request.urlopen(hub.service.plain_url + "/metrics", timeout=30) as response:
        return response.read().decode()


def _caught_up(hub: Hub, box: Box) -> bool:
    device = _device(hub)
    return device["audit_chain"] == "ok" and device["audit_seq"] == _chain_length(box)


def test_a_trail_tampered_on_the_box_before_it_was_sent_is_flagged_at_the_hub(make_fleet):
    fleet = make_fleet(hub_settings={"audit_gap_grace_s": GRACE_S})
    hub = fleet.hubs[0]
    box = fleet.enrol(VILLAGE_A, "edge-a1")
    fleet.start()
    register(box, 1)
    wait_for(lambda: _caught_up(hub, box), 60, "the box's audit chain at the hub")
    metrics = _scrape(hub)
    assert value(metrics, "puskesos_box_audit_chain_ok", node="edge-a1") == 1
    assert value(metrics, "puskesos_box_audit_chain_breaks_total", node="edge-a1") == 0

    # The broker goes down and comes back: what was written meanwhile still arrives.
    fleet.broker.stop()
    register(box, 2)
    fleet.broker.start()
    wait_for(lambda: _caught_up(hub, box), 60, "the chain after the broker's restart")
    sent = _chain_length(box)

    # Offline again, people work; then someone with a shell on the box drops the triggers,
    # removes one of the rows not yet sent and changes another.
    fleet.broker.stop()
    for seed in (3, 4, 5):
        register(box, seed)
    assert _chain_length(box) >= sent + 5
    box.service.stop()
    with contextlib.closing(box.connect()) as connection, connection:
        connection.execute("DROP TRIGGER audit_no_delete")
        connection.execute("DROP TRIGGER audit_no_update")
        connection.execute("DELETE FROM audit WHERE seq = ?", (sent + 2,))
        connection.execute("UPDATE audit SET actor = 'bukan-saya' WHERE seq = ?", (sent + 4,))
    fleet.broker.start()
    box.service.start()

    def flagged() -> dict | None:
        # The box's sign-in after its start (the fleet unlocks it) adds a row of its own,
        # which may reach the hub after the break is found: wait for the whole chain.
        device = _device(hub)
        whole = device["audit_seq"] == _chain_length(box)
        return device if device["audit_breaks"] >= 2 and whole else None

    device = wait_for(flagged, 60, "the gap and the break found, the whole chain received")
    assert device["audit_chain"] == "broken"
    metrics = _scrape(hub)
    assert value(metrics, "puskesos_box_audit_chain_ok", node="edge-a1") == 0
    assert value(metrics, "puskesos_box_audit_chain_breaks_total", node="edge-a1") == 2
