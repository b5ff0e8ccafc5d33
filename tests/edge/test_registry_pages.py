"""The registry in the village: which households still lack what the ranking needs, and
who receives which programme, for households the village typed and those the district
imported alike."""

from __future__ import annotations

import time

from edge.downlink import apply_remote
from edge.records import Edit
from edge.store import Store
from edge.web.app import STORE
from protocol.changes import Batch, Change, Direction, FieldVersion
from protocol.clock import pack
from tests.edge.conftest import login, search
from tests.edge.test_ui import household_form, replace
from tests.factories import DEFAULT_VILLAGE, make_household_with_members, new_id


async def test_incomplete_households_are_listed_with_what_they_lack(client):
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(2, seed=21)
    form = replace(household_form(csrf, household, members), "floor_material", "")
    form = replace(form, "members-1-education", "")
    saved = await client.post("/rumah-tangga/baru", data=form)
    assert saved.status == 200
    page = await saved.text()
    card = page.split('id="kelengkapan"')[1].split("</section>")[0]
    assert "Jenis lantai terluas" in card and f"({members[1]['name']})" in card
    complete, more = make_household_with_members(2, seed=22)
    await client.post("/rumah-tangga/baru", data=household_form(csrf, complete, more))

    listing = await (await client.get("/kelengkapan")).text()
    assert "<strong>1</strong> dari 2 rumah tangga belum lengkap" in listing
    assert members[0]["name"] in listing and more[0]["name"] not in listing
    other_rt = await (await client.get("/kelengkapan", params={"rt": "999"})).text()
    assert members[0]["name"] not in other_rt and "sudah lengkap" in other_rt


async def test_only_active_members_keep_a_household_on_the_completeness_list(client):
    """The village scan reads a record whole only where it lacks a ranking variable: a
    member who moved away lacking one does not count; once the household itself lacks one
    it is listed, with the field's label."""
    await login(client, "operator1")
    store: Store = client.app[STORE]
    household, members = make_household_with_members(2, seed=24)
    household_id = household.pop("id")
    members[1].update(status="pindah", status_date="2026-01-05", education=None)
    await store.write(
        [Edit("household", household_id, household)]
        + [Edit("member", m.pop("id"), m) for m in members],
        actor="test",
    )
    listing = await (await client.get("/kelengkapan")).text()
    assert "<strong>0</strong> dari 1 rumah tangga belum lengkap" in listing
    assert members[1]["name"] not in listing

    await store.write([Edit("household", household_id, {"floor_material": None})], actor="test")
    listing = await (await client.get("/kelengkapan")).text()
    assert "<strong>1</strong> dari 1 rumah tangga belum lengkap" in listing
    row = listing.split(f"/rumah-tangga/{household_id}#kelengkapan")[1].split("</tr>")[0]
    assert "Jenis lantai terluas" in row and members[1]["name"] not in row


async def test_beneficiaries_include_households_the_district_imported(client, edge_config):
    csrf = await login(client, "operator1")
    # A household of the district's extract arrives through the downlink, with its ids.
    household, member = new_id(), new_id()
    stamp = pack(int(time.time() * 1000), 0)

    def change(entity: str, record_id: str, values: dict) -> Change:
        versions = {n: FieldVersion(v, stamp, "registry", ()) for n, v in values.items()}
        return Change(entity, record_id, DEFAULT_VILLAGE, "registry", versions)

    head = make_household_with_members(1, seed=23)[1][0]
    batch = Batch(
        edge_config.node,
        1,
        (
            change("household", household, {
                "village_code": DEFAULT_VILLAGE, "rt": "004", "rw": "002",
                "address": "Kp. Sukamaju No. 3", "programmes": ["pkh", "sembako_bpnt"],
                "decile": 1, "decile_period": "2026-11", "registry_id": "DTSEN-000777",
            }),
            change("member", member, {
                "household_id": household, "nik": head["nik"], "name": "Siti Aminah",
                "relation_to_head": "kepala_keluarga", "sex": "perempuan",
                "birth_date": head["birth_date"], "status": "aktif",
                "registry_id": "ART-000777-0", "civil_flags": ["name_differs"],
            }),
        ),
        Direction.DOWN,
    )  # fmt: skip
    store: Store = client.app[STORE]
    await apply_remote(store, batch)

    listing = await (await client.get("/penerima-bantuan", params={"program": "pkh"})).text()
    assert "1 rumah tangga menerima PKH" in listing
    row = listing.split("Siti Aminah")[1].split("</tr>")[0]
    assert "004/002" in listing and "PKH, Sembako/BPNT" in row and "1 (2026-11)" in row
    none = await (await client.get("/penerima-bantuan", params={"program": "pip"})).text()
    assert "Siti Aminah" not in none
    page = await (await client.get(f"/rumah-tangga/{household}")).text()
    assert "DTSEN-000777" in page
    # The district's matching with the civil registry shows before the month's submission.
    assert 'id="dukcapil"' in page and "Nama berbeda dengan Dukcapil" in page
    found = await (await search(client, csrf, head["nik"])).text()
    assert f"NIK {head['nik']} terdaftar" in found  # the NIK lookup answers for imported people
