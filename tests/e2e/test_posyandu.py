"""A service a kader records at the Posyandu on a box reaches the district hub over the
real broker, with its measurements."""

from __future__ import annotations

import urllib.error

import pytest

from puskesos.fleet import Hub
from tests.e2e.conftest import VILLAGE_A, register, wait_for

pytestmark = pytest.mark.slow


def fields_on_hub(hub: Hub, record_id: str) -> dict:
    try:
        return hub.api(f"/api/v1/records/{record_id}")["fields"]
    except urllib.error.HTTPError:
        return {}


def test_a_weighing_recorded_on_the_box_reaches_the_hub(fleet):
    hub = fleet.hubs[0]
    box = fleet.enrol(VILLAGE_A, "edge-a1")
    fleet.start()
    household = register(box, seed=19)
    child = box.api(f"/api/v1/households/{household}")["members"][-1]["id"]
    answer = box.api(
        "/api/v1/services",
        {"layanan": {"household_id": household, "member_id": child,
                     "service_type": "penimbangan_balita", "officer_role": "kader",
                     "weight_kg": 11.4, "height_cm": 84.5}},
    )  # fmt: skip
    service = answer["id"]
    wait_for(lambda: "weight_kg" in fields_on_hub(hub, service), 60, "the weighing at the hub")
    values = {name: frontier[0]["value"] for name, frontier in fields_on_hub(hub, service).items()}
    assert values["weight_kg"] == 11.4 and values["member_id"] == child
    assert values["spm_field"] == "kesehatan" and values["service_date"]
