"""A person asks the district what it holds about them (UU 27/2022): the pimpinan or the
admin prints the member's data report at the hub, with who viewed, decided on or read it."""

from __future__ import annotations

import json
from datetime import date

from hub.auditchain import receive
from hub.store import Outcome
from hub.tokens import add_token
from protocol.auditchain import GENESIS, AuditBatch, AuditEntry, seal
from protocol.identity import mask_number
from tests.factories import DEFAULT_VILLAGE, make_nik, new_id
from tests.hub.boxes import Box, enrol
from tests.hub.families import send_family
from tests.hub.test_ui import audit_actions, client, login  # noqa: F401 (fixture)

OTHER_VILLAGE = "3201022002"


async def test_the_district_prints_a_person_s_data_report_with_who_processed_it(
    client,  # noqa: F811
    hub_store,
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, (head, child) = await send_family(hub_store, box, **{"Siti Aminah": {}})
    other, _ = await send_family(hub_store, box, head="Budi Santoso")
    csrf = await login(client, "verif")
    await client.get(f"/antrian/{household}")  # the verifier views the family
    decided = await client.post(
        f"/antrian/{household}", data={"csrf_token": csrf, "keputusan": "disetujui"}
    )
    assert decided.status == 200
    await client.get(f"/antrian/{other}")  # another family: not in this person's report
    token = await add_token(hub_store, "dinsos", villages=[DEFAULT_VILLAGE])
    read = await client.get(
        "/api/v1/records", params={"village": DEFAULT_VILLAGE},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert read.status == 200

    # The verifier may not print it; the pimpinan may, from the family's page.
    url = f"/antrian/{household}/anggota/{child}/data-pribadi"
    assert (await client.get(url)).status == 403
    await login(client, "pimpinan")
    assert url in await (await client.get(f"/antrian/{household}")).text()
    answer = await client.get(url)
    assert answer.status == 200
    page = await answer.text()
    assert "Siti Aminah" in page and "Disetujui" in page
    assert "data-cetak" in page  # a Cetak button for the printout handed to the person
    # The verifier's view before the decision (the decision then opens the next family
    # of the queue) and the pimpinan's; not the views of the other family.
    assert page.count("Melihat data keluarga") == 2
    assert "Membaca data desa lewat API" in page and "dinsos" in page
    assert "Memutuskan verifikasi" in page
    assert ("pimpinan", "person.report", child) in await audit_actions(hub_store)

    # A member asked for under another family is not found.
    assert (await client.get(f"/antrian/{other}/anggota/{child}/data-pribadi")).status == 404
    assert (await client.get(f"/antrian/{household}/anggota/{head}x/data-pribadi")).status == 404


async def test_the_report_shows_the_person_s_records_duplicates_lists_and_the_box_s_trail(
    client,  # noqa: F811
    hub_store,
):
    """Beyond the family's data: a proposal of the family, the other record holding the
    same NIK in another village, the queue downloaded for the village, and what the
    village's box recorded (views, a NIK search that showed the family, a list downloaded
    there), as the box sent it; not another family's or another village's."""
    box, far = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, box, far)
    girl = {"nik": make_nik(date(2012, 4, 9), "perempuan", serial=77), "sex": "perempuan",
            "birth_date": "2012-04-09"}  # fmt: skip
    household, (_, child) = await send_family(hub_store, box, **{"Siti Aminah": girl})
    other, (other_head,) = await send_family(hub_store, box, head="Budi Santoso")
    await send_family(hub_store, far, head="Ujang", **{"Siti A.": girl})
    proposal = new_id()
    edit = box.edit(
        proposal, hub_store.wall(), entity="proposal", household_id=household,
        kind="perbaikan_data", period="2026-11", status="draf",
    )  # fmt: skip
    assert (await hub_store.apply(box.batch(edit), box.node)).outcome is Outcome.APPLIED
    trail = [
        ("view", "household", household, {}),
        ("search", "household", None, {"nik_or_kk": "3201••••••••0077", "shown": [household]}),
        ("export", "household", None, {"list": "rumah-tangga", "rows": 2, "numbers": "lengkap"}),
        ("view", "household", other, {}),
        ("update", "member", other_head, {"fields": ["name"]}),
    ]
    entries, previous = [], GENESIS
    for seq, (action, entity, record_id, detail) in enumerate(trail, start=1):
        text = json.dumps(detail)
        entry = AuditEntry(seq, 1_000 * seq, "kader1", action, entity, record_id, text, "10.0.0.7")
        entries.append(seal(previous, entry))
        previous = entries[-1].hash
    assert await receive(hub_store, box.node, AuditBatch(box.node, tuple(entries)), grace_ms=1)
    csrf = await login(client, "admin")
    searched = await client.post("/antrian/cari", data={"csrf_token": csrf, "q": girl["nik"]})
    assert searched.status == 200  # the answer, after the redirect
    assert (await client.get("/antrian.xlsx", params={"desa": DEFAULT_VILLAGE})).status == 200
    assert (await client.get("/antrian.csv", params={"desa": OTHER_VILLAGE})).status == 200

    page = await (await client.get(f"/antrian/{household}/anggota/{child}/data-pribadi")).text()
    assert "Usulan" in page and "Perbaikan data" in page
    assert "Siti A." in page and "Ujang" in page  # the same NIK in the other village
    assert page.count("Mengunduh daftar") == 2  # this village's queue; the box's list
    assert "Daftar: antrian-verifikasi" in page and f"desa: {DEFAULT_VILLAGE}" in page
    assert "Mencari NIK/KK di antrian" in page and mask_number(girl["nik"]) in page
    assert "kader1" in page and "edge-a" in page and "10.0.0.7" in page
    assert "Mencari NIK/KK" in page and "3201••••••••0077" in page
    assert page.count("Melihat data pribadi") == 1  # not the other family's view
    assert "Mengubah" not in page
