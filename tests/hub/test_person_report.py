"""A person asks the district what it holds about them (UU 27/2022): the pimpinan or the
admin prints the member's data report at the hub, with who viewed, decided on or read it."""

from __future__ import annotations

from hub.tokens import add_token
from tests.factories import DEFAULT_VILLAGE
from tests.hub.boxes import Box, enrol
from tests.hub.families import send_family
from tests.hub.test_ui import audit_actions, client, login  # noqa: F401 (fixture)


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
