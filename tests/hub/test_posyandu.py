"""The Posyandu's services at the hub: stored like every record, kept from boxes too old
to read them, and counted per village (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, timedelta

import sqlalchemy as sa
from prometheus_client import generate_latest

from hub import db
from hub.metrics import HubMetrics
from hub.posyandu import village_posyandu
from hub.store import Outcome
from protocol.posyandu import Flag
from tests.factories import DEFAULT_VILLAGE, make_service
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family
from tests.hub.test_list_export import list_exports
from tests.hub.test_progress import OTHER_VILLAGE, _today
from tests.hub.test_review import downlink_values
from tests.hub.test_ui import client, login  # noqa: F401 (fixture)


async def send_service(store, box: Box, **service) -> str:
    record_id = service.pop("id")
    await change(store, box, record_id, "layanan", **service)
    return record_id


async def test_an_old_box_keeps_syncing_and_is_sent_no_service_while_a_new_box_sends_them(
    hub_store,
):
    new, old = Box("edge-new"), Box("edge-old")
    await enrol(hub_store, new)
    await enrol(hub_store, old, schema=5)
    household, (_, child) = await send_family(hub_store, new, Ujang={"birth_date": "2024-03-01"})
    weighing = await send_service(
        hub_store, new, **make_service({"id": child, "household_id": household}, weight_kg=11.2)
    )
    async with hub_store.engine.connect() as conn:
        stored = (
            await conn.execute(sa.select(db.records.c.entity).where(db.records.c.id == weighing))
        ).scalar_one()
    assert stored == "layanan"

    assert await downlink_values(hub_store, old.node, weighing) == {}
    assert (await downlink_values(hub_store, old.node, child))["name"] == "Ujang"
    # The old box's own edits are still taken.
    edit = old.edit(household, hub_store.wall(), entity="household", rt="009")
    assert (await hub_store.apply(old.batch(edit), old.node)).outcome is Outcome.APPLIED

    newer = Box("edge-newer")
    await enrol(hub_store, newer)
    assert (await downlink_values(hub_store, newer.node, weighing))["weight_kg"] == 11.2


def _months_before(day: date, months: int) -> str:
    month = day.month - months
    return date(day.year + (month - 1) // 12, (month - 1) % 12 + 1, 1).isoformat()


async def district_with_services(store) -> dict[str, str]:
    """Village A: a family with a pregnant mother and a child of two whose weight stayed
    flat for three months; village B: a family and no service."""
    box, other = Box("edge-a"), Box("edge-b", OTHER_VILLAGE)
    await enrol(store, box, other)
    today = _today(store)
    born = today.replace(year=today.year - 2, day=1).isoformat()
    household, (head, mother, child) = await send_family(
        store, box, Ujang={"birth_date": born},
        Euis={"sex": "perempuan", "birth_date": "1998-03-04", "pregnant": True},
    )  # fmt: skip
    # send_family adds members in the order given: the child first.
    child, mother = mother, child
    await send_family(store, other, head="Ahmad Fauzi")
    owner = {"household_id": household}
    for months, kg in ((2, 10.0), (1, 10.0), (0, 9.9)):
        await send_service(
            store, box, **make_service(owner | {"id": child},
                                       service_date=_months_before(today, months), weight_kg=kg),
        )  # fmt: skip
    await send_service(
        store, box, **make_service(owner | {"id": mother}, "pemeriksaan_ibu_hamil",
                                   service_date=today.isoformat(), weight_kg=50.0, muac_cm=22.5,
                                   referred=True),
    )  # fmt: skip
    await send_service(
        store, box, **make_service(owner | {"id": head}, "pengurusan_adminduk",
                                   service_date=today.isoformat()),
    )  # fmt: skip
    return {"child": child, "mother": mother, "household": household}


async def test_the_hub_totals_each_villages_registers_and_services(hub_store):
    await district_with_services(hub_store)
    villages = await village_posyandu(hub_store, today=_today(hub_store))

    here = villages[DEFAULT_VILLAGE]
    assert (here.registers["balita"], here.registers["ibu-hamil"]) == (1, 1)
    report = here.report
    assert report.services == 3  # this month's: the last weighing, the check, adminduk
    assert report.by_spm == {"kesehatan": 2, "sosial": 1}
    assert report.flags == {Flag.TWO_T: 1, Flag.KEK: 1}
    assert report.referrals == 1
    assert (report.groups["balita"], report.groups["ibu-hamil"]) == ((1, 1), (1, 1))
    there = villages[OTHER_VILLAGE]
    assert there.report.services == 0 and there.registers["lansia"] == 0

    metrics = HubMetrics(stale_after_s=900)
    await metrics.refresh(hub_store)  # starts counting in the background
    for _ in range(100):
        text = generate_latest(metrics.registry).decode()
        if "puskesos_hub_village_posyandu_services{" in text:
            break
        await asyncio.sleep(0.05)
    village = f'village="{DEFAULT_VILLAGE}"'
    for sample in (
        f'puskesos_hub_village_posyandu_services{{district="3201",spm="kesehatan",{village}}} 2.0',
        f'puskesos_hub_village_posyandu_flags{{district="3201",flag="2T",{village}}} 1.0',
        f'puskesos_hub_village_register_entries{{district="3201",register="balita",{village}}} 1.0',
        f'puskesos_hub_village_posyandu_referrals{{district="3201",{village}}} 1.0',
    ):
        assert sample in text, sample
    assert "Ujang" not in text  # village-level labels only


async def test_a_recount_follows_a_new_service_and_a_new_day_and_reuses_unchanged_villages(
    hub_store,
):
    ids = await district_with_services(hub_store)
    today = _today(hub_store)
    first = await village_posyandu(hub_store, today=today)

    box = Box("edge-c")  # a second box of the same village
    await enrol(hub_store, box)
    await send_service(
        hub_store, box, **make_service({"id": ids["mother"], "household_id": ids["household"]},
                                       "pemeriksaan_ibu_hamil", service_date=today.isoformat(),
                                       weight_kg=51.0, muac_cm=24.0),
    )  # fmt: skip
    second = await village_posyandu(hub_store, today=today, known=first)
    assert second[DEFAULT_VILLAGE].report.services == 4  # the new check is counted
    assert second[OTHER_VILLAGE] is first[OTHER_VILLAGE]  # nothing changed there

    tomorrow = await village_posyandu(hub_store, today=today + timedelta(days=1), known=second)
    assert tomorrow[OTHER_VILLAGE] is not second[OTHER_VILLAGE]  # ages move with the day


async def test_a_verifier_reads_the_posyandu_of_each_village_and_a_line_in_ringkasan(
    client,  # noqa: F811
    hub_store,
):
    await district_with_services(hub_store)
    await login(client, "verif")
    summary = await (await client.get("/")).text()
    line = summary.split('id="posyandu-ringkasan"')[1].split("</p>")[0]
    assert "3 layanan di 1 desa; tanda 2T: 1 orang; tanda KEK: 1 orang" in line
    page = await (await client.get("/posyandu")).text()
    registers = page.split(f'id="kelompok-{DEFAULT_VILLAGE}"')[1].split("</tr>")[0]
    assert "<td>1</td>" in registers
    services = page.split(f'id="layanan-{DEFAULT_VILLAGE}"')[1].split("</tr>")[0]
    cells = [cell.split("</td>")[0] for cell in services.split("<td>")[2:]]
    assert cells[:7] == ["3", "0", "2", "0", "0", "0", "1"]  # all, then the six SPM fields
    assert "1/1" in services
    assert "<form" not in page.split("<h1>")[1]  # read-only


async def test_the_district_downloads_the_posyandu_figures_per_village_and_it_is_audited(
    client,  # noqa: F811
    hub_store,
):
    await district_with_services(hub_store)
    await login(client, "verif")
    page = await (await client.get("/posyandu")).text()
    assert 'href="/posyandu.csv"' in page
    answer = await client.get("/posyandu.csv")
    assert answer.status == 200
    lines = list(csv.reader(io.StringIO((await answer.read()).decode("utf-8-sig")), delimiter=";"))
    header, rows = lines[0], {line[0]: dict(zip(lines[0], line, strict=True)) for line in lines[1:]}
    assert header[:2] == ["Kode desa", "Desa"]
    here, total = rows[DEFAULT_VILLAGE], rows[""]
    shown = (here["Layanan"], here["Kesehatan"], here["Sosial"], here["Rujukan"])
    assert shown == ("3", "2", "1", "1")
    assert (here["Tanda 2T"], total["Layanan"], total["Desa"]) == ("1", "3", "Kabupaten/kota")
    assert "Ujang" not in "".join(map(str, lines))  # counts only
    assert [detail["list"] for _, detail in await list_exports(hub_store)] == ["posyandu"]
