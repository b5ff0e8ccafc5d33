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
from hub.posyandu import PAST_MONTHS_KEPT, PastMonths, village_posyandu
from hub.store import Outcome
from protocol.posyandu import Flag, previous_month
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


async def test_a_schema_6_box_is_sent_no_register_field_and_its_members_keep_syncing(
    hub_store,
):
    new, old = Box("edge-new"), Box("edge-old")
    await enrol(hub_store, new)
    await enrol(hub_store, old, schema=6)
    registers = {"school_status": "putus_sekolah", "health_insurance": "tidak_ada"}
    _, (_, child) = await send_family(
        hub_store, new, Ujang={"birth_date": "2012-03-01", **registers}
    )
    sent = await downlink_values(hub_store, old.node, child)
    assert sent["name"] == "Ujang" and not set(registers) & set(sent)
    # The old box's own member edits, without the fields it does not know, are taken.
    edit = old.edit(child, hub_store.wall(), entity="member", name="Ujang Saepudin")
    assert (await hub_store.apply(old.batch(edit), old.node)).outcome is Outcome.APPLIED
    newer = Box("edge-newer")
    await enrol(hub_store, newer)
    assert (await downlink_values(hub_store, newer.node, child)).items() >= registers.items()


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
    month = _today(hub_store).strftime("%Y-%m")
    assert f'href="/posyandu.csv?bulan={month}"' in page
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


async def _with_last_months_check(store, ids: dict[str, str]) -> str:
    """The mother's pregnancy check last month, at risk of KEK; returns last month."""
    box = Box("edge-c")  # a second box of the same village
    await enrol(store, box)
    last_month = _months_before(_today(store), 1)
    await send_service(
        store, box, **make_service({"id": ids["mother"], "household_id": ids["household"]},
                                   "pemeriksaan_ibu_hamil", service_date=last_month,
                                   weight_kg=49.0, muac_cm=22.0),
    )  # fmt: skip
    return last_month[:7]


async def _past_month_page(client, month: str) -> str:  # noqa: F811
    """The page of a past month as a browser gets it: "sedang dihitung" (reloading
    itself) until the background count is there, then the figures."""
    first = await client.get("/posyandu", params={"bulan": month})
    assert first.status == 200
    page = await first.text()
    assert 'id="sedang-dihitung"' in page and f"Layanan bulan {month} sedang dihitung" in page
    assert '<meta http-equiv="refresh" content="5">' in page
    for _ in range(200):
        await asyncio.sleep(0.05)
        answer = await client.get("/posyandu", params={"bulan": month})
        assert answer.status == 200
        page = await answer.text()
        if 'id="sedang-dihitung"' not in page:
            assert "http-equiv" not in page
            return page
    raise AssertionError(f"{month} still counting after 10 s")


def _service_cells(page: str) -> list[str]:
    row = page.split(f'id="layanan-{DEFAULT_VILLAGE}"')[1].split("</tr>")[0]
    return [cell.split("</td>")[0] for cell in row.split("<td>")[2:]]


async def test_a_verifier_picks_a_past_month_and_sees_that_months_services_only(
    client,  # noqa: F811
    hub_store,
):
    ids = await district_with_services(hub_store)
    last_month = await _with_last_months_check(hub_store, ids)
    this_month = _today(hub_store).strftime("%Y-%m")
    await login(client, "verif")

    default = await (await client.get("/posyandu")).text()
    # All, the six SPM fields, balita and ibu hamil served/expected, 2T, KEK, referrals.
    assert _service_cells(default)[:7] == ["3", "0", "2", "0", "0", "0", "1"]
    assert _service_cells(default)[-3:] == ["1", "1", "1"]
    picker = default.split('id="pilih-bulan"')[1].split("</nav>")[0]
    assert f'<strong aria-current="page">{this_month}</strong>' in picker
    assert f'href="/posyandu?bulan={last_month}"' in picker
    assert picker.count("<a href=") == 11  # twelve months, the shown one not a link
    assert "<form" not in default.split("<h1>")[1]  # still read-only

    page = await _past_month_page(client, last_month)
    # Last month: the child's weighing and the mother's check; no 2T (two weighings only).
    cells = _service_cells(page)
    assert cells[:7] == ["2", "0", "2", "0", "0", "0", "0"]
    assert cells[-3:] == ["0", "1", "0"]
    assert f"Layanan bulan {last_month}" in page
    assert "kelompok rentan menurut data saat ini" in page
    registers = page.split(f'id="kelompok-{DEFAULT_VILLAGE}"')[1].split("</tr>")[0]
    assert "<td>1</td>" in registers  # the registers stay the current ones
    assert f'href="/posyandu.csv?bulan={last_month}"' in page

    again = await (await client.get(f"/posyandu?bulan={this_month}")).text()
    assert _service_cells(again) == _service_cells(default)


async def test_a_malformed_or_future_month_is_refused_in_indonesian_and_nothing_is_exported(
    client,  # noqa: F811
    hub_store,
):
    await district_with_services(hub_store)
    await login(client, "verif")
    next_month = _months_before(_today(hub_store), -1)[:7]
    for path in ("/posyandu", "/posyandu.csv", "/posyandu.xlsx"):
        for asked in ("2026-13", "abc", "2026-1", "0000-01"):
            answer = await client.get(path, params={"bulan": asked})
            assert answer.status == 400, (path, asked)
            assert "Bulan tidak dikenal. Tulis bulan sebagai TTTT-BB" in await answer.text()
        answer = await client.get(path, params={"bulan": next_month})
        assert answer.status == 400
        assert f"Bulan {next_month} belum tiba" in await answer.text()
    assert await list_exports(hub_store) == []


async def test_the_download_of_a_past_month_holds_its_counts_and_names_the_month(
    client,  # noqa: F811
    hub_store,
):
    ids = await district_with_services(hub_store)
    last_month = await _with_last_months_check(hub_store, ids)
    await login(client, "verif")
    answer = await client.get("/posyandu.csv", params={"bulan": last_month})
    assert answer.status == 200
    assert f"posyandu-3201-{last_month}-" in answer.headers["Content-Disposition"]
    lines = list(csv.reader(io.StringIO((await answer.read()).decode("utf-8-sig")), delimiter=";"))
    rows = {line[0]: dict(zip(lines[0], line, strict=True)) for line in lines[1:]}
    here, total = rows[DEFAULT_VILLAGE], rows[""]
    shown = (here["Layanan"], here["Kesehatan"], here["Sosial"], here["Rujukan"])
    assert shown == ("2", "2", "0", "0")
    assert (here["Tanda 2T"], here["Tanda KEK"], total["Layanan"]) == ("0", "1", "2")
    [(actor, detail)] = await list_exports(hub_store)
    assert (actor, detail["list"], detail["filter"]) == ("verif", "posyandu", {"bulan": last_month})


async def test_a_past_month_is_counted_again_only_for_a_village_that_changed(hub_store):
    ids = await district_with_services(hub_store)
    today = _today(hub_store)
    last_month = previous_month(today.strftime("%Y-%m"))
    past = PastMonths()
    first = await past.count(hub_store, last_month, today=today)
    assert first[DEFAULT_VILLAGE].report.services == 1
    second = await past.count(hub_store, last_month, today=today)
    assert second[DEFAULT_VILLAGE] is first[DEFAULT_VILLAGE]  # nothing recounted

    await _with_last_months_check(hub_store, ids)
    third = await past.count(hub_store, last_month, today=today)
    assert third[DEFAULT_VILLAGE].report.services == 2
    assert third[OTHER_VILLAGE] is first[OTHER_VILLAGE]

    # Only the last few months viewed stay: viewing as many others forgets this one.
    other = last_month
    for _ in range(PAST_MONTHS_KEPT):
        other = previous_month(other)
        await past.count(hub_store, other, today=today)
    fourth = await past.count(hub_store, last_month, today=today)
    assert fourth[OTHER_VILLAGE] is not third[OTHER_VILLAGE]
    assert fourth[DEFAULT_VILLAGE].report.services == 2


async def test_a_past_month_is_counted_once_in_the_background_while_verifiers_look(hub_store):
    await district_with_services(hub_store)
    today = _today(hub_store)
    last_month = previous_month(today.strftime("%Y-%m"))
    counts = []

    class Watched(PastMonths):
        async def count(self, store, month, *, today):
            counts.append(month)
            return await super().count(store, month, today=today)

    past = Watched()
    try:
        assert past.latest(hub_store, last_month, today=today) is None  # nothing to wait for
        await asyncio.sleep(0)
        assert past.latest(hub_store, last_month, today=today) is None  # a second verifier
        assert counts == [last_month]  # one count for both
        for _ in range(200):
            found = past.latest(hub_store, last_month, today=today)
            if found is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the count did not finish")
        assert found[DEFAULT_VILLAGE].report.services == 1
    finally:
        await past.stop()
