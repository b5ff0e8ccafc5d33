"""The district's registry extract comes down: imported at the hub with the operator's
command, it reaches every box of its village (a box that was off catches up when it
returns) and no box of another village."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from puskesos.fleet import Box, Hub, puskesos
from tests.e2e.conftest import VILLAGE_A, VILLAGE_B, converged, wait_for
from tests.hub.test_registry import household_row, member_rows, write_csv

pytestmark = pytest.mark.slow


def households_on(box: Box) -> dict[str, dict]:
    """The households a box lists, by their registry id."""
    items = box.api("/api/v1/households?limit=100")["items"]
    return {item["household"]["values"].get("registry_id"): item for item in items}


def visit_on_hub(hub: Hub, visit_id: str) -> bool:
    try:
        return "outcome" in hub.api(f"/api/v1/records/{visit_id}")["fields"]
    except urllib.error.HTTPError:
        return False


def round_households(hub: Hub, village: str) -> dict[str, int]:
    """The hub's ``puskesos_hub_village_round_households`` of ``village``, by state."""
    with urllib.request.urlopen(hub.service.plain_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("puskesos_hub_village_round_households{") and village in line:
            state = line.split('state="')[1].split('"')[0]
            found[state] = int(float(line.rsplit(" ", 1)[1]))
    return found


def test_an_import_reaches_the_boxes_of_its_village_and_no_other(fleet, tmp_path):
    hub = fleet.hubs[0]
    a1, a2 = fleet.enrol(VILLAGE_A, "edge-a1"), fleet.enrol(VILLAGE_A, "edge-a2")
    b = fleet.enrol(VILLAGE_B, "edge-b")
    fleet.start()
    a2.service.stop()  # switched off during the import
    rows = []
    for number in (1, 2, 3):
        rows += [household_row(number), *member_rows(number)]
    rows += [household_row(4, village=VILLAGE_B), *member_rows(4)]
    extract = write_csv(tmp_path / "dtsen.csv", rows)

    out = puskesos("hub", "registry", "import", str(extract), "--config", str(hub.config))
    assert "12 rows read" in out and "12 written" in out and "0 refused" in out
    assert (tmp_path / "dtsen.kesalahan.csv").read_text().count("\n") == 1  # the header only

    wait_for(lambda: len(households_on(a1)) == 3, 60, "village A's households on edge-a1")
    wait_for(lambda: len(households_on(b)) == 1, 60, "village B's household on edge-b")
    assert set(households_on(a1)) == {"DTSEN-000001", "DTSEN-000002", "DTSEN-000003"}
    assert set(households_on(b)) == {"DTSEN-000004"}
    listed = households_on(a1)["DTSEN-000001"]
    assert len(listed["members"]) == 2
    a2.service.start()
    wait_for(lambda: converged(hub, VILLAGE_A, [a1, a2]), 60, "edge-a2 caught up")
    assert set(households_on(a2)) == set(households_on(a1))
    # The same extract again changes nothing and sends nothing.
    before = hub.api("/api/v1/devices/edge-a1")["down_seq"]
    again = puskesos("hub", "registry", "import", str(extract), "--config", str(hub.config))
    assert "0 written, 12 unchanged" in again
    assert hub.api("/api/v1/devices/edge-a1")["down_seq"] == before

    # A field visit on a box comes up to the hub and into the village's round progress.
    household_id = households_on(a1)["DTSEN-000002"]["household"]["id"]
    answer = a1.api(
        "/api/v1/visits",
        {"visit": {"household_id": household_id, "outcome": "tidak_ditemukan",
                   "notes": "Rumah kosong"}},
    )  # fmt: skip
    visit_id = answer["id"]
    wait_for(lambda: visit_on_hub(hub, visit_id), 60, "the visit at the hub")
    expected = {"total": 3, "visited": 1, "not_found": 1}
    wait_for(
        lambda: expected.items() <= round_households(hub, VILLAGE_A).items(),
        60,
        "the visit in the round's progress",
    )
