"""A person asks the village what it holds about them and who processed it (UU 27/2022):
the kepala desa or the admin prints the member's data report, with the trail of who
created, viewed or searched their data, and nothing about other people."""

from __future__ import annotations

from protocol.identity import mask_number
from tests.edge.api_client import household_body, store_of, token_headers
from tests.edge.conftest import login, search


async def test_a_person_s_data_report_shows_their_data_and_who_processed_it(client):
    operator = await token_headers(client, "operator1")
    body = household_body(3, seed=71)
    made = await client.post("/api/v1/households", json=body, headers=operator)
    household_id = (await made.json())["id"]
    other = await client.post(
        "/api/v1/households", json=household_body(2, seed=72), headers=operator
    )
    other_nik = household_body(2, seed=72)["members"][0]["nik"]
    shown = await client.get(f"/api/v1/households/{household_id}", headers=operator)
    person = next(
        {"id": m["id"], **m["values"]}
        for m in (await shown.json())["members"]
        if m["values"]["nik"] == body["members"][1]["nik"]
    )
    assert other.status == 201

    # The kades looks the person up by NIK, and someone else is looked up too.
    csrf = await login(client, "kades")
    assert (await search(client, csrf, person["nik"])).status == 200
    assert (await search(client, csrf, other_nik)).status == 200
    await client.get("/keluar")
    client.session.cookie_jar.clear()

    await login(client, "admin")
    household_page = await (await client.get(f"/rumah-tangga/{household_id}")).text()
    report_url = f"/rumah-tangga/{household_id}/anggota/{person['id']}/data-pribadi"
    assert report_url in household_page, "the household page links each member's report"
    answer = await client.get(report_url)
    assert answer.status == 200
    page = await answer.text()
    assert person["name"] in page and person["nik"] in page
    assert body["household"]["address"] in page
    # Who processed it: the operator made it and viewed it (the API read above), the kades
    # searched for it (the number masked), the admin opened the household.
    assert page.count("Membuat") >= 1 and "operator1" in page
    assert page.count("Melihat data pribadi") >= 2
    assert page.count("Mencari NIK/KK") == 1, "only the search that found this person"
    assert mask_number(person["nik"]) in page and mask_number(other_nik) not in page

    # Making the report is itself processing: it is in the trail.
    rows, _ = await store_of(client).audit_log(record_id=person["id"])
    assert ("admin", "pdp_report") in [(row.actor, row.action) for row in rows]

    # Another household's member under this household's address is not found.
    everyone, _ = await store_of(client).list("member", limit=100)
    stranger = next(m for m in everyone if m.get("household_id") != household_id)
    wrong = f"/rumah-tangga/{household_id}/anggota/{stranger.id}/data-pribadi"
    assert (await client.get(wrong)).status == 404


async def test_an_operator_cannot_print_a_person_s_data_report(client):
    operator = await token_headers(client, "operator1")
    body = household_body(2, seed=73)
    made = await client.post("/api/v1/households", json=body, headers=operator)
    household_id = (await made.json())["id"]
    shown = await client.get(f"/api/v1/households/{household_id}", headers=operator)
    member = (await shown.json())["members"][0]["id"]
    await login(client, "operator1")
    report = f"/rumah-tangga/{household_id}/anggota/{member}/data-pribadi"
    assert (await client.get(report)).status == 403
    page = await (await client.get(f"/rumah-tangga/{household_id}")).text()
    assert "data-pribadi" not in page
