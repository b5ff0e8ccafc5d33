"""The verification round at the hub: each village's progress (Ringkasan, /metrics) and the
verifier's printable "periksa lapangan" list, from the visits the boxes send up (on SQLite
and on PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import generate_latest

from hub.metrics import HubMetrics
from hub.progress import VillageProgress, round_progress
from hub.store import HubStore
from protocol.entities import SCHEMA_VERSION
from protocol.rounds import round_of
from protocol.status import Status
from tests.factories import DEFAULT_VILLAGE
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family
from tests.hub.test_review import downlink_values

OTHER_VILLAGE = "3201022002"


def _today(store: HubStore) -> date:
    """Today where the hub's decisions are dated (its default time zone)."""
    return datetime.fromtimestamp(store.wall() / 1000, ZoneInfo("Asia/Jakarta")).date()


async def district_with_visits(store: HubStore) -> dict[str, str]:
    """Four households in one village, one in another, in every state the page counts."""
    box, other = Box("edge-a"), Box("edge-b", OTHER_VILLAGE)
    await enrol(store, box, other)
    today = _today(store)
    visited, _ = await send_family(store, box, head="Siti Aminah")
    lacking, _ = await send_family(store, box, head="Budi Santoso", Dewi={"education": None})
    gone, _ = await send_family(store, box, head="Joko Susilo")
    long_ago, _ = await send_family(store, box, head="Rina Marlina")
    elsewhere, _ = await send_family(store, other, head="Ahmad Fauzi")
    visits = (
        (visited, today, "ditemukan"),
        (gone, today, "tidak_ditemukan"),
        (long_ago, today - timedelta(days=200), "ditemukan"),
    )
    for n, (household_id, day, outcome) in enumerate(visits):
        await change(
            store, box, f"01900000-0000-7000-8000-00000000000{n}", "visit",
            household_id=household_id, visit_date=day.isoformat(), officer="Petugas Desa",
            outcome=outcome,
        )  # fmt: skip
        if outcome != "ditemukan":  # what the box's visit form writes with it
            await change(store, box, household_id, "household", presence_status=outcome)
    return {"visited": visited, "lacking": lacking, "gone": gone, "long_ago": long_ago,
            "elsewhere": elsewhere}  # fmt: skip


async def test_each_village_shows_its_round_progress(hub_store: HubStore):
    await district_with_visits(hub_store)
    today = _today(hub_store)
    period, villages = await round_progress(hub_store, today=today, round_months=3)
    assert period == round_of(today, 3)
    assert villages[DEFAULT_VILLAGE] == VillageProgress(
        total=4, visited=2, incomplete=1, not_found=1, stale=2
    )
    assert villages[OTHER_VILLAGE] == VillageProgress(total=1, stale=1)

    metrics = HubMetrics(stale_after_s=900)
    await metrics.refresh(hub_store)  # starts counting in the background
    for _ in range(100):
        text = generate_latest(metrics.registry).decode()
        if "puskesos_hub_village_round_households{" in text:
            break
        await asyncio.sleep(0.05)
    for state, value in (("total", 4), ("visited", 2), ("incomplete", 1), ("not_found", 1)):
        sample = (
            f'puskesos_hub_village_round_households{{district="3201",'
            f'state="{state}",village="{DEFAULT_VILLAGE}"}} {value}.0'
        )
        assert sample in text, sample


async def test_a_box_from_before_visits_is_sent_none_until_it_upgrades(hub_store: HubStore):
    """Visits (entity schema 4) and the proposal kind ``tidak_ditemukan`` stay away from a
    box of version 3, which would refuse the batch, and reach it once it upgrades."""
    here, old = Box("edge-a"), Box("edge-old")
    await enrol(hub_store, here)
    await enrol(hub_store, old, schema=3)
    household, _ = await send_family(hub_store, here, head="Joko Susilo")
    visit, proposal = "01900000-0000-7000-8000-0000000000a1", "01900000-0000-7000-8000-0000000000a2"
    await change(
        hub_store, here, visit, "visit", household_id=household, officer="Petugas Desa",
        visit_date=_today(hub_store).isoformat(), outcome="tidak_ditemukan",
    )  # fmt: skip
    await change(
        hub_store, here, proposal, "proposal", household_id=household, kind="tidak_ditemukan",
        period="2026-12", status="draf",
    )  # fmt: skip
    sent = await downlink_values(hub_store, old.node, household)
    assert sent["address"], "the household itself goes down"
    assert await downlink_values(hub_store, old.node, visit) == {}
    assert "kind" not in await downlink_values(hub_store, old.node, proposal)

    await hub_store.note_status(old.node, Status("online", schema=SCHEMA_VERSION))
    assert (await downlink_values(hub_store, old.node, visit))["outcome"] == "tidak_ditemukan"
    assert (await downlink_values(hub_store, old.node, proposal))["kind"] == "tidak_ditemukan"
