"""What an ops team sees at the hub's ``/metrics``: every box's health as it reported it over
a real, secured Mosquitto, the broker's own statistics, and a box that went silent marked
stale, while the others stay fresh."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace

import pytest

from protocol.codec import WIRE_VERSION
from puskesos import __version__
from puskesos.fleet import Box, Hub
from tests.e2e.conftest import QUICK, VILLAGE_A, VILLAGE_B, converged, register, sign_in, wait_for
from tests.metrics_text import value

pytestmark = pytest.mark.slow

#: Quick reports and a short patience, so that silence shows within seconds.
TELEMETRY = replace(QUICK, telemetry_interval_s=1)
STALE_AFTER_S = 4


def scrape(hub: Hub) -> str:
    """The hub's /metrics page (no token needed)."""
    with urllib.request.urlopen(hub.service.plain_url + "/metrics", timeout=10) as response:
        return response.read().decode()


def fail_login(box: Box, username: str) -> None:
    """Try to log in on the box's web UI with a wrong password, as a stranger would."""
    try:
        sign_in(box, username, "bukan-sandinya")
    except urllib.error.HTTPError as refused:
        assert refused.code in (400, 401, 403, 429), refused.code


def test_the_hub_shows_each_boxs_health_and_marks_a_silent_box_stale(make_fleet):
    fleet = make_fleet(sync=TELEMETRY, hub_settings={"box_stale_after_s": STALE_AFTER_S})
    a = fleet.enrol(VILLAGE_A, "edge-a")
    b = fleet.enrol(VILLAGE_B, "edge-b")
    fleet.start()
    hub = fleet.hubs[0]
    started = time.time()
    register(a, seed=1)
    wait_for(lambda: converged(hub, VILLAGE_A, [a]), 60, "the household to reach the hub")
    fail_login(a, "admin")

    where = {"a": {"node": "edge-a"}, "b": {"node": "edge-b"}}

    def reported() -> str | None:
        text = scrape(hub)
        ready = (
            value(text, "puskesos_box_login_failures_total", **where["a"]) == 1
            and value(text, "puskesos_box_uptime_seconds", **where["b"])
            # The hub and two boxes (what was retained at subscribe time may be older).
            and (value(text, "puskesos_broker_clients_connected") or 0) >= 3
        )
        return text if ready else None

    # $SYS comes every 10 s (Mosquitto's default sys_interval).
    text = wait_for(reported, 40, "both boxes' reports and the broker's statistics")

    labels_a = {"district": "3201", "village": VILLAGE_A, "node": "edge-a"}
    assert value(text, "puskesos_box_online", **labels_a) == 1
    assert value(text, "puskesos_box_stale", **labels_a) == 0
    assert value(text, "puskesos_box_outbox_pending_changes", **labels_a) == 0
    assert value(text, "puskesos_box_outbox_oldest_pending_age_seconds", **labels_a) == 0
    assert value(text, "puskesos_box_changes_applied_total", **labels_a) >= 1
    assert value(text, "puskesos_box_batches_rejected_total", **labels_a) == 0
    disk = shutil.disk_usage(a.folder / "data")
    assert value(text, "puskesos_box_disk_size_bytes", **labels_a) == disk.total
    assert 0 < value(text, "puskesos_box_disk_free_bytes", **labels_a) <= disk.total
    assert value(text, "puskesos_box_database_size_bytes", **labels_a) >= a.database.stat().st_size
    assert abs(value(text, "puskesos_box_clock_offset_seconds", **labels_a)) < 2
    assert 0 <= value(text, "puskesos_box_last_ack_age_seconds", **labels_a) < 60
    assert 0 < value(text, "puskesos_box_uptime_seconds", **labels_a) < time.time() - started + 60
    assert value(text, "puskesos_box_login_failures_total", **where["b"]) == 0
    assert (
        value(text, "puskesos_box_info", software=__version__, wire=str(WIRE_VERSION), **labels_a)
        == 1
    )

    village_a = {"district": "3201", "village": VILLAGE_A}
    assert value(text, "puskesos_hub_village_records", entity="household", **village_a) == 1
    assert value(text, "puskesos_hub_village_conflicts_open", **village_a) == 0
    assert value(text, "puskesos_hub_village_last_change_timestamp_seconds", **village_a) >= (
        started - 1
    )
    # Village B sent nothing yet: its clock starts when its box was registered.
    assert value(text, "puskesos_hub_village_last_change_timestamp_seconds", village=VILLAGE_B) < (
        started + 1
    )
    assert value(text, "puskesos_broker_uptime_seconds") > 0
    assert value(text, "puskesos_hub_broker_connected") == 1
    assert value(text, "puskesos_hub_telemetry_messages_total", outcome="stored") >= 2

    # A power cut at box B: no offline status goes out (the broker's last will comes only
    # after the keepalive), but the hub notices the silence.
    b.service.kill()
    killed = time.time()

    def b_is_stale() -> str | None:
        text = scrape(hub)
        return text if value(text, "puskesos_box_stale", **where["b"]) == 1 else None

    text = wait_for(b_is_stale, STALE_AFTER_S + 10, "box B to be marked stale")
    assert time.time() - killed >= STALE_AFTER_S - 1
    assert value(text, "puskesos_box_online", **where["b"]) == 0
    assert value(text, "puskesos_box_last_seen_timestamp_seconds", **where["b"]) <= killed + 1
    assert value(text, "puskesos_box_disk_size_bytes", **where["b"]) > 0, "last values stay"
    assert value(text, "puskesos_box_stale", **where["a"]) == 0, "box A still reports"
    assert value(text, "puskesos_box_online", **where["a"]) == 1

    b.service.start()

    def b_is_back() -> bool:
        text = scrape(hub)
        return value(text, "puskesos_box_stale", **where["b"]) == 0 and bool(
            value(text, "puskesos_box_online", **where["b"])
        )

    wait_for(b_is_back, 30, "box B to be fresh again after its restart")
