"""Field verification on the box: the round's worklist by RT/RW, a visit recorded in a few
taps, the usulan a household not found, moved or dead needs, the printable door-to-door
list, and the progress Beranda shows."""

from __future__ import annotations

from datetime import date

import pytest

from edge.web.app import STORE
from protocol.rounds import round_of
from tests.edge.conftest import login
from tests.edge.test_ui import household_form, replace
from tests.factories import make_household_with_members


async def _household(client, csrf: str, seed: int, *, rt: str, rw: str = "001") -> str:
    household, members = make_household_with_members(2, seed=seed)
    form = replace(replace(household_form(csrf, household, members), "rt", rt), "rw", rw)
    saved = await client.post("/rumah-tangga/baru", data=form, allow_redirects=False)
    assert saved.status == 303, await saved.text()
    return saved.headers["Location"].split("/")[-1].split("?")[0]


async def _visit(client, csrf: str, household_id: str, outcome: str, **more: str):
    form = {"csrf_token": csrf, "outcome": outcome, "visit_date": "", "officer": "", **more}
    return await client.post(
        f"/rumah-tangga/{household_id}/kunjungan", data=form, allow_redirects=False
    )


async def test_a_visit_takes_a_household_off_the_worklist_and_counts_in_the_progress(client):
    csrf = await login(client, "operator1")
    first = await _household(client, csrf, 31, rt="001")
    second = await _household(client, csrf, 32, rt="002")

    listing = await (await client.get("/verifikasi")).text()
    assert "<strong>0</strong> dari 2 rumah tangga sudah diverifikasi" in listing
    assert f"/rumah-tangga/{first}/kunjungan" in listing
    assert f"/rumah-tangga/{second}/kunjungan" in listing
    only_rt1 = await (await client.get("/verifikasi", params={"rt": "001"})).text()
    assert first in only_rt1 and second not in only_rt1

    form = await (await client.get(f"/rumah-tangga/{first}/kunjungan?kembali=rt%3D001")).text()
    assert 'value="Operator1"' in form, "the officer is the logged-in user"
    saved = await _visit(client, csrf, first, "ditemukan", kembali="rt=001&next=//evil")
    assert saved.status == 303
    assert saved.headers["Location"] == "/verifikasi?rt=001&pesan=kunjungan"

    listing = await (await client.get("/verifikasi", params={"daftar": "belum"})).text()
    assert "Kunjungan dicatat." not in listing
    assert f"/rumah-tangga/{first}/kunjungan" not in listing
    assert f"/rumah-tangga/{second}/kunjungan" in listing
    assert "<strong>1</strong> dari 2 rumah tangga sudah diverifikasi" in listing
    progress = listing.split('id="kemajuan-rt-rw"')[1]
    assert '<td data-label="RT/RW">001/001</td><td data-label="Rumah tangga">1</td>' in (progress)
    beranda = await (await client.get("/")).text()
    assert "<strong>1</strong> dari 2 rumah tangga sudah diverifikasi" in beranda
    page = await (await client.get(f"/rumah-tangga/{first}")).text()
    visits = page.split('id="kunjungan"')[1].split("</section>")[0]
    assert "Ditemukan, oleh operator1" in visits


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [("tidak_ditemukan", "Tidak ditemukan saat verifikasi lapangan"), ("pindah", "Pindah")],
)
async def test_a_household_not_found_or_moved_gets_its_usulan_once(client, outcome, kind):
    csrf = await login(client, "operator1")
    household_id = await _household(client, csrf, 33, rt="003")
    for _ in range(2):  # a second visit the same month makes no second proposal
        saved = await _visit(client, csrf, household_id, outcome, notes="Rumah kosong")
        assert saved.status == 303
    store = client.app[STORE]
    household = await store.get(household_id, "household")
    assert household.get("presence_status") == outcome
    proposals = [
        p for p in await store.related("proposal", household_id) if p.get("kind") == outcome
    ]
    assert len(proposals) == 1 and proposals[0].get("status") == "draf"
    drafts = await (await client.get("/usulan", params={"status": "draf"})).text()
    assert kind in drafts
    visits = await store.related("visit", household_id)
    assert len(visits) == 2 and {v.get("notes") for v in visits} == {"Rumah kosong"}


async def test_a_visit_without_an_outcome_or_in_the_future_is_refused_next_to_the_field(client):
    csrf = await login(client, "operator1")
    household_id = await _household(client, csrf, 34, rt="004")
    store = client.app[STORE]
    before = (await store.get(household_id, "household")).values
    missing = await _visit(client, csrf, household_id, "")
    assert missing.status == 422
    page = await missing.text()
    assert 'id="outcome-pesan"' in page and "wajib diisi" in page
    future = await _visit(client, csrf, household_id, "ditemukan", visit_date="2999-01-01")
    assert future.status == 422
    assert 'id="visit_date-pesan"' in await future.text()
    assert await store.related("visit", household_id) == []
    assert (await store.get(household_id, "household")).values == before
    assert await store.related("proposal", household_id) == [
        p for p in await store.related("proposal", household_id) if p.get("kind") == "usulan_baru"
    ]


async def test_the_door_to_door_list_masks_the_nik_and_follows_the_selection(client):
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(2, seed=35)
    form = replace(household_form(csrf, household, members), "rt", "007")
    await client.post("/rumah-tangga/baru", data=form)
    head = next(m for m in members if m["relation_to_head"] == "kepala_keluarga")
    printed = await (await client.get("/verifikasi/cetak", params={"rt": "007"})).text()
    assert head["name"] in printed
    assert head["nik"] not in printed and head["nik"][-4:] in printed
    assert "1 rumah tangga" in printed
    other = await (await client.get("/verifikasi/cetak", params={"rt": "008"})).text()
    assert head["name"] not in other


def test_rounds_cut_the_year_from_january():
    autumn = round_of(date(2026, 12, 4))
    assert (autumn.start, autumn.end, autumn.code, autumn.label) == (
        date(2026, 10, 1), date(2026, 12, 31), "2026-10", "Okt–Des 2026",
    )  # fmt: skip
    assert date(2026, 9, 30) not in autumn and date(2026, 10, 1) in autumn
    assert round_of(date(2024, 2, 29), 1).end == date(2024, 2, 29)
    assert round_of(date(2026, 7, 1), 6).label == "Jul–Des 2026"
    assert round_of(date(2026, 3, 3), 12).code == "2026-01"
    with pytest.raises(ValueError, match="round_months"):
        round_of(date(2026, 1, 1), 5)
