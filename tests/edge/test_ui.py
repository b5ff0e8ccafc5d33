"""The HTML pages as a village operator, a kepala desa and an admin use them (no browser:
forms are posted like a browser without JavaScript would post them)."""

from __future__ import annotations

import html
import re
import sqlite3
import time
from typing import Any

from edge.downlink import apply_remote
from edge.store import Store
from edge.web.app import STORE
from protocol.changes import Batch, Change, Direction, FieldVersion
from protocol.clock import pack
from protocol.entities import HOUSEHOLD, MEMBER
from protocol.identity import mask_number
from protocol.schema import FieldKind
from tests.edge.conftest import login, search
from tests.factories import DEFAULT_VILLAGE, make_household_with_members

Form = list[tuple[str, str]]


def _inputs(schema: Any, values: dict[str, Any], prefix: str = "") -> Form:
    """What a browser posts for a record's fields (skipping ids, links and hub-only fields)."""
    form: Form = []
    for spec in schema.field_list:
        if spec.readonly or spec.name in ("village_code", "household_id"):
            continue
        value = values.get(spec.name)
        name = prefix + spec.name
        if spec.kind is FieldKind.ENUM_SET:
            form += [(name, code) for code in value or []]
        elif spec.kind is FieldKind.BOOL:
            form += [(name, "1")] if value else []
        else:
            form.append((name, "" if value is None else str(value)))
    return form


def household_form(
    csrf: str, household: dict[str, Any], members: list[dict[str, Any]], *, ids: bool = False
) -> Form:
    """The household form filled with ``household`` and ``members`` (their ids when
    ``ids``: an edit of stored members)."""
    form: Form = [("csrf_token", csrf), ("member_count", str(len(members)))]
    form += _inputs(HOUSEHOLD, household)
    for index, member in enumerate(members):
        prefix = f"members-{index}-"
        form.append((prefix + "id", member["id"] if ids else ""))
        form += _inputs(MEMBER, member, prefix)
    return form


def replace(form: Form, name: str, value: str) -> Form:
    return [(k, value if k == name else v) for k, v in form]


def field_block(page: str, name: str) -> str:
    """The HTML of the form field ``name``: its label, input and the messages under it."""
    for block in page.split('<div class="field">')[1:]:
        if f'name="{name}"' in block:
            return block.split("</div>")[0]
    raise AssertionError(f"no field {name}")


def store_of(client: Any) -> Store:
    return client.server.app[STORE]


async def register(client: Any, csrf: str, n: int = 3, seed: int = 1) -> tuple[str, list]:
    household, members = make_household_with_members(n, seed=seed)
    response = await client.post(
        "/rumah-tangga/baru", data=household_form(csrf, household, members), allow_redirects=False
    )
    assert response.status == 303, await response.text()
    household_id = response.headers["Location"].split("/")[2].split("?")[0]
    return household_id, members


async def test_operator_registers_a_household_with_three_members(client):
    csrf = await login(client, "operator1")
    page = await (await client.get("/rumah-tangga/baru")).text()
    assert 'name="members-0-nik"' in page and "Tambah anggota" in page

    household, members = make_household_with_members(3, seed=7)
    # "Tambah anggota" shows one more empty member block and keeps what was typed.
    typed = [*household_form(csrf, household, members[:1]), ("action", "tambah_anggota")]
    response = await client.post("/rumah-tangga/baru", data=typed)
    page = await response.text()
    assert response.status == 200
    assert 'name="members-1-nik"' in page
    assert f'value="{members[0]["nik"]}"' in page
    assert f'value="{html.escape(household["address"])}"' in page

    response = await client.post(
        "/rumah-tangga/baru", data=household_form(csrf, household, members)
    )
    page = await response.text()
    assert response.status == 200 and "Data tersimpan." in page
    for member in members:  # the detail page shows every member with the full NIK
        assert member["name"] in page and member["nik"] in page
    assert "Usulan keluarga baru" in page

    found = await (await client.get("/rumah-tangga", params={"q": members[1]["nik"]})).text()
    assert members[0]["name"] in found  # the head is listed
    assert mask_number(members[0]["nik"]) in found and members[0]["nik"] not in found
    assert household["kk_number"] not in found


async def test_numbers_are_written_the_indonesian_way(client):
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(1, seed=8)
    form = replace(household_form(csrf, household, members), "floor_area_m2", "1234,5")
    page = await (await client.post("/rumah-tangga/baru", data=form)).text()
    assert "Data tersimpan." in page
    assert "<dd>1.234,5</dd>" in page and "1234.5" not in page
    edit_link = re.search(r'href="(/rumah-tangga/[^"]+/ubah)"', page)
    assert edit_link is not None
    edit = await (await client.get(edit_link.group(1))).text()
    assert 'value="1234,5"' in edit


async def test_beranda_names_households_not_visited_for_long_by_their_head(client, edge_config):
    csrf = await login(client, "operator1")
    household_id, members = await register(client, csrf, seed=12)
    with sqlite3.connect(edge_config.database_path) as connection:
        connection.execute("UPDATE records SET updated_ms = 1 WHERE id = ?", (household_id,))
    home = await (await client.get("/")).text()
    stale = home.split("tidak diperbarui lebih dari")[1].split("</ul>")[0]
    assert f'<a href="/rumah-tangga/{household_id}">{members[0]["name"]}</a>' in stale


async def test_a_bad_nik_is_refused_next_to_its_field_and_the_form_keeps_what_was_typed(client):
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(3, seed=8)
    form = replace(household_form(csrf, household, members), "members-1-nik", "32010112")
    response = await client.post("/rumah-tangga/baru", data=form)
    page = await response.text()
    assert response.status == 422
    block = field_block(page, "members-1-nik")
    assert "NIK harus 16 angka (sekarang 8)." in block
    assert 'aria-invalid="true"' in block and 'value="32010112"' in block
    assert "NIK harus 16 angka" not in field_block(page, "members-0-nik")
    for member in members:
        assert html.escape(member["name"]) in page
    assert (await store_of(client).counts()).get("household", 0) == 0


async def test_a_refused_form_opens_at_the_first_error_and_its_banner_links_each(client):
    """On a phone's long page the banner at the top lists each error, in the order of the
    page, as a link to its field, and the page opens (``autofocus``) at the first."""
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(3, seed=8)
    form = replace(household_form(csrf, household, members), "members-2-nik", "32010112")
    form = replace(form, "floor_area_m2", "luas")
    response = await client.post("/rumah-tangga/baru", data=form)
    page = await response.text()
    assert response.status == 422
    banner = page.split('id="daftar-isian"')[1].split("</div>")[0]
    assert re.findall(r'<a href="#([^"]+)">([^<]+)</a>', banner) == [
        ("floor_area_m2", "Luas lantai (m²): Luas lantai (m²) harus berupa angka."),
        ("members-2-nik", "Anggota 3, NIK: NIK harus 16 angka (sekarang 8)."),
    ]
    assert " autofocus" in field_block(page, "floor_area_m2")
    assert page.count(" autofocus") == 1
    assert "NIK harus 16 angka (sekarang 8)." in field_block(page, "members-2-nik")


async def test_the_form_comes_back_at_an_added_member(client):
    """After "+ Tambah anggota" the page opens at the new block's first input without
    JavaScript: the button posts to the form's address with that input as the fragment,
    and the input has ``autofocus``."""
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(2, seed=7)
    page = await (await client.get("/rumah-tangga/baru")).text()
    assert 'formaction="/rumah-tangga/baru#members-1-nik"' in page
    assert " autofocus" not in page
    typed = [*household_form(csrf, household, members), ("action", "tambah_anggota")]
    page = await (await client.post("/rumah-tangga/baru", data=typed)).text()
    assert " autofocus" in field_block(page, "members-2-nik")
    assert 'formaction="/rumah-tangga/baru#members-3-nik"' in page


async def test_a_nik_that_disagrees_with_the_birth_date_needs_confirmation(client):
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(3, seed=9)
    members[2]["birth_date"] = "2010-01-01"  # the NIK says otherwise
    form = household_form(csrf, household, members)
    response = await client.post("/rumah-tangga/baru", data=form)
    page = await response.text()
    assert "berbeda dengan tanggal lahir" in field_block(page, "members-2-birth_date") + (
        field_block(page, "members-2-nik")
    )
    assert "Simpan dengan peringatan" in page
    assert (await store_of(client).counts()).get("household", 0) == 0

    response = await client.post("/rumah-tangga/baru", data=[*form, ("confirm_warnings", "1")])
    page = await response.text()
    assert response.status == 200 and "tersimpan dengan peringatan" in page
    assert (await store_of(client).counts())["member"] == 3


async def test_the_member_form_records_school_breastfeeding_and_health_insurance(client):
    csrf = await login(client, "operator1")
    page = await (await client.get("/rumah-tangga/baru")).text()
    assert "Status sekolah saat ini" in field_block(page, "members-0-school_status")
    assert "Putus sekolah / tidak melanjutkan" in field_block(page, "members-0-school_status")
    assert "Sedang menyusui" in field_block(page, "members-0-breastfeeding")
    assert "PBI daerah (dibayar APBD)" in field_block(page, "members-0-health_insurance")

    household, members = make_household_with_members(3, seed=21)
    father, mother, son = members  # born 1990, 1987 and 2010
    assert (father["sex"], mother["sex"], son["relation_to_head"]) == (
        "laki_laki", "perempuan", "anak",
    )  # fmt: skip
    form = household_form(csrf, household, [{**father, "breastfeeding": "ya"}, mother, son])
    response = await client.post("/rumah-tangga/baru", data=form)
    page = await response.text()
    assert response.status == 422
    message = "Status menyusui hanya untuk perempuan."
    assert message in field_block(page, "members-0-breastfeeding")

    members = [
        {**father, "health_insurance": "bpjs_ppu"},
        {**mother, "breastfeeding": "ya", "health_insurance": "bpjs_ppu"},
        {**son, "school_status": "putus_sekolah", "health_insurance": "tidak_ada"},
    ]
    response = await client.post(
        "/rumah-tangga/baru", data=household_form(csrf, household, members)
    )
    page = await response.text()
    assert response.status == 200 and "Data tersimpan." in page
    household_id = re.search(r'href="/rumah-tangga/([^"/]+)/ubah"', page).group(1)
    stored = {m.get("name"): m for m in await store_of(client).related("member", household_id)}
    assert stored[mother["name"]].get("breastfeeding") == "ya"
    # Left at "— pilih —", the answer stays empty: the register keeps its estimate for her.
    assert stored[father["name"]].get("breastfeeding") is None
    assert stored[son["name"]].get("school_status") == "putus_sekolah"
    assert stored[son["name"]].get("health_insurance") == "tidak_ada"
    assert stored[father["name"]].get("health_insurance") == "bpjs_ppu"
    expected = {"anak-usia-sekolah": son, "ibu-menyusui": mother, "tanpa-pbi-jk": son}
    for code, listed in expected.items():
        register = await (await client.get(f"/kelompok-rentan/{code}")).text()
        rows = [m["name"] for m in members if f'data-label="Nama">{m["name"]}<' in register]
        assert rows == [listed["name"]], code


async def test_marking_a_member_deceased_keeps_them_and_makes_a_proposal(client):
    csrf = await login(client, "operator1")
    household_id, _ = await register(client, csrf, seed=10)
    store = store_of(client)
    stored = [dict(m.values, id=m.id) for m in await store.related("member", household_id)]
    edit_page = await (await client.get(f"/rumah-tangga/{household_id}/ubah")).text()
    assert f'value="{stored[2]["id"]}"' in edit_page  # members carry their id
    assert "Meninggal" in field_block(edit_page, "members-2-status")

    household = (await store.get(household_id)).values
    form = household_form(csrf, dict(household), stored, ids=True)
    form = replace(form, "members-2-status", "meninggal")
    # The form asks when, and on which document: a warning to confirm, not a refusal.
    response = await client.post(f"/rumah-tangga/{household_id}/ubah", data=form)
    page = await response.text()
    assert "Tanggal meninggal/pindah belum diisi." in field_block(page, "members-2-status_date")
    assert 'class="only-left"' in page
    form = replace(form, "members-2-status_date", "2026-11-30")
    form = replace(form, "members-2-status_document", "474.3/KM/17/2026")
    response = await client.post(f"/rumah-tangga/{household_id}/ubah", data=form)
    page = await response.text()
    assert response.status == 200 and "Data tersimpan." in page
    assert stored[2]["name"] in page  # still listed, never deleted
    members = await store.related("member", household_id)
    assert [m.get("status") for m in members] == ["aktif", "aktif", "meninggal"]
    assert members[2].get("status_date") == "2026-11-30"
    proposals = {str(p.get("kind")): p for p in await store.related("proposal", household_id)}
    assert sorted(proposals) == ["meninggal", "usulan_baru"]
    musdes = await (
        await client.get("/musdes", params={"period": proposals["meninggal"].get("period")})
    ).text()
    assert f"{stored[2]['name']} (Anak), 30 November 2026, 474.3/KM/17/2026" in musdes


async def test_complaint_moves_through_its_statuses_and_a_refusal_needs_a_reason(client):
    csrf = await login(client, "operator1")
    form = {
        "csrf_token": csrf,
        "channel": "whatsapp",
        "category": "bantuan_belum_cair",
        "reporter_name": "Ibu Euis",
        "received_date": "2025-01-06",
        "chronology": "",
    }
    response = await client.post("/pengaduan/baru", data=form)
    page = await response.text()
    assert response.status == 422
    assert "Kronologi/uraian masalah wajib diisi." in field_block(page, "chronology")
    assert 'value="Ibu Euis"' in page
    chronology = "PKH tidak cair sejak tiga bulan."
    response = await client.post("/pengaduan/baru", data=form | {"chronology": chronology})
    page = await response.text()
    complaint_url = str(response.url.path)
    assert 'Status: <strong class="status">Baru' in page
    facts = page.split('class="facts"')[1].split("</dl>")[0]
    assert "Alasan ditolak" not in facts, "a reason for a refusal that did not happen"
    assert '<div class="only-ditolak">' in page  # on the form only once "Ditolak" is chosen

    status_url = complaint_url + "/status"
    page = await (
        await client.post(status_url, data={"csrf_token": csrf, "status": "diproses"})
    ).text()
    assert 'Status: <strong class="status">Diproses' in page
    response = await client.post(status_url, data={"csrf_token": csrf, "status": "ditolak"})
    page = await response.text()
    assert response.status == 422
    assert "Alasan ditolak wajib diisi untuk status Ditolak." in field_block(
        page, "rejection_reason"
    )
    response = await client.post(
        status_url,
        data={"csrf_token": csrf, "status": "ditolak", "rejection_reason": "Sudah cair 2 Jan."},
    )
    page = await response.text()
    assert 'Status: <strong class="status">Ditolak' in page
    assert "sudah ditutup" in page  # no further status change offered
    history = page.split("<h2>Riwayat</h2>")[1]
    assert history.count("operator1") == 3
    assert "Alasan ditolak" in history


async def test_referring_a_complaint_marks_it_referred(client):
    csrf = await login(client, "operator1")
    store = store_of(client)
    response = await client.post(
        "/pengaduan/baru",
        data={"csrf_token": csrf, "channel": "langsung", "category": "akses_kesehatan_bpjs",
              "received_date": "2025-01-06", "chronology": "Tidak ada ongkos ke RS."},
    )  # fmt: skip
    complaint_id = response.url.path.split("/")[2]
    assert f"/rujukan/baru?complaint={complaint_id}" in await response.text()
    response = await client.post(
        "/rujukan/baru",
        data={"csrf_token": csrf, "complaint_id": complaint_id, "destination": "dinas_sosial",
              "need": "Bantuan transport ke RSUD", "letter_number": "045/PSK/I/2025"},
    )  # fmt: skip
    page = await response.text()
    assert response.status == 200 and "Rujukan ke Dinas Sosial" in page
    assert (await store.get(complaint_id)).get("status") == "dirujuk"
    listed = await (await client.get("/rujukan", params={"status": "dirujuk"})).text()
    assert "045/PSK/I/2025" in listed


async def test_a_referral_from_a_complaint_keeps_its_household_and_member_and_prints(client):
    csrf = await login(client, "operator1")
    household_id, members = await register(client, csrf, seed=21)

    async def pick(text: str) -> Any:
        return await client.post("/pengaduan/baru/cari", data={"csrf_token": csrf, "cari": text})

    surname = members[0]["name"].split()[-1]
    picker = await pick(surname)
    assert picker.url.query["cari"] == surname
    page = await picker.text()
    assert f'href="/pengaduan/baru?household={household_id}"' in page.split('id="hasil-pilih"')[1]
    spaced = " ".join(members[0]["nik"][i : i + 4] for i in range(0, 16, 4))
    by_number = await pick(spaced)
    page = await by_number.text()
    assert by_number.status == 422 and by_number.url.path == "/pengaduan/baru/cari"
    assert "NIK/KK dicari di menu Rumah tangga" in page and 'id="hasil-pilih"' not in page
    typed = await client.get("/pengaduan/baru", params={"cari": spaced}, allow_redirects=False)
    assert typed.status == 303 and typed.headers["Location"] == "/pengaduan/baru"
    response = await client.post(
        "/pengaduan/baru",
        data={"csrf_token": csrf, "household_id": household_id, "channel": "langsung",
              "category": "akses_kesehatan_bpjs", "received_date": "2025-01-06",
              "chronology": "Anak sakit, tidak punya BPJS."},
    )  # fmt: skip
    complaint_id = response.url.path.split("/")[2]
    form = await (await client.get("/rujukan/baru", params={"complaint": complaint_id})).text()
    stored = (await store_of(client).related_to_each("member", [household_id]))[household_id]
    child = next(m for m in stored if m.get("nik") == members[2]["nik"])
    assert f'<option value="{child.id}">{members[2]["name"]}' in form
    response = await client.post(
        "/rujukan/baru",
        data={"csrf_token": csrf, "complaint_id": complaint_id, "member_id": child.id,
              "destination": "puskesmas_posyandu", "need": "Pemeriksaan dan pendaftaran PBI-JK",
              "letter_number": "046/PSK/I/2025"},
    )  # fmt: skip
    page = await response.text()
    assert response.status == 200, page
    facts = page.split('class="facts"')[1].split("</dl>")[0]
    assert members[2]["name"] in facts
    assert f'<a href="/rumah-tangga/{household_id}">' in facts, "Rumah tangga: -"

    letter = await (await client.get(response.url.path + "/surat")).text()
    subject = letter.split('id="yang-dirujuk"')[1].split("</dl>")[0]
    assert members[2]["name"] in subject and members[2]["nik"] in subject
    assert "Desa Wanaherang, Kec. Gunungputri" in subject
    assert "Nomor: 046/PSK/I/2025" in letter and "Pemeriksaan dan pendaftaran PBI-JK" in letter
    trail, _ = await store_of(client).audit_log(record_id=child.id, actions=("view",))
    assert trail, "the letter shows a full NIK: its viewing is audited"
    elsewhere = await register(client, csrf, seed=22)
    stranger = (await store_of(client).related_to_each("member", [elsewhere[0]]))[elsewhere[0]][0]
    refused = await client.post(
        "/rujukan/baru",
        data={"csrf_token": csrf, "complaint_id": complaint_id, "member_id": stranger.id,
              "destination": "puskesmas_posyandu", "need": "x"},
    )  # fmt: skip
    assert refused.status == 400


async def test_kepala_desa_agrees_proposals_and_an_operator_cannot(client):
    csrf = await login(client, "operator1")
    household_id, members = await register(client, csrf, seed=11)
    page = await (await client.get("/usulan")).text()
    assert "Usulan keluarga baru" in page and "/usulan/sepakati" not in page
    proposal = (await store_of(client).related("proposal", household_id))[0]
    denied = await client.post(
        "/usulan/sepakati", data={"csrf_token": csrf, "proposal": proposal.id}
    )
    assert denied.status == 403
    printout = await (await client.get("/musdes")).text()
    assert mask_number(members[0]["nik"]) in printout and members[0]["nik"] not in printout

    csrf = await login(client, "kades")
    form = {"csrf_token": csrf, "proposal": proposal.id, "how": "disepakati_musdes"}
    response = await client.post("/usulan/sepakati", data=form)
    assert response.status == 422
    assert "Nomor berita acara musdes / SPTJM wajib diisi" in await response.text()
    response = await client.post("/usulan/sepakati", data=form | {"reference": "BA/03/2025"})
    page = await response.text()
    assert "Disepakati musyawarah desa" in page and "BA/03/2025" in page


async def test_kepala_desa_picks_every_draft_on_the_page_and_is_told_in_plain_words(client):
    csrf = await login(client, "operator1")
    households = [(await register(client, csrf, seed=seed))[0] for seed in (21, 22, 23)]
    store = store_of(client)
    drafts = [(await store.related("proposal", h))[0].id for h in households]

    csrf = await login(client, "kades")
    page = await (await client.get("/usulan", params={"status": "draf"})).text()
    assert "Pilih semua draf di halaman ini (3)" in page
    nothing = await client.post(
        "/usulan/sepakati?status=draf", data={"csrf_token": csrf, "how": "disepakati_musdes"}
    )
    page = await nothing.text()
    assert nothing.status == 422
    picker = page.split('class="pilih-semua"')[1].split("</form>")[0]
    assert "Pilih minimal satu usulan." in picker

    # Without JavaScript: the button ticks every draft shown and says how many.
    picked = await client.post(
        "/usulan/sepakati?status=draf", data={"csrf_token": csrf, "pilih": "semua"}
    )
    page = await picked.text()
    assert "Semua usulan draf di halaman ini (3 usulan) sudah dipilih." in page
    assert sorted(ticked(page)) == sorted(drafts)

    form = [("csrf_token", csrf), ("how", "disepakati_sptjm"), ("reference", "")]
    form += [("proposal", i) for i in drafts]
    refused = await client.post("/usulan/sepakati?status=draf", data=form)
    page = await refused.text()
    assert refused.status == 422
    reference = page.split('id="reference"')[1].split("</fieldset>")[0]
    assert "Nomor berita acara musdes / SPTJM wajib diisi" in reference
    assert sorted(ticked(page)) == sorted(drafts)  # what was ticked and typed stays
    assert 'value="disepakati_sptjm" checked' in page

    form = replace(form, "reference", "SPTJM/07/2026")
    agreed = await client.post("/usulan/sepakati?status=draf", data=form)
    assert "Usulan yang dipilih sudah ditandai disepakati." in await agreed.text()
    stored = await store.get_each("proposal", drafts)
    assert {p.get("status") for p in stored.values()} == {"disepakati_sptjm"}


def ticked(page: str) -> list[str]:
    """The proposal ids ticked on a /usulan page."""
    return re.findall(r'name="proposal" value="([^"]+)"[^>]* checked>', page)


async def test_operator_is_refused_users_and_audit_pages(client):
    await login(client, "operator1")
    home = await (await client.get("/")).text()
    assert 'href="/pengguna"' not in home and 'href="/audit"' not in home
    assert (await client.get("/pengguna")).status == 403
    assert (await client.get("/audit")).status == 403
    await login(client, "kades")
    assert (await client.get("/audit")).status == 200
    assert (await client.get("/pengguna")).status == 403


async def test_viewing_a_household_shows_up_in_the_audit_trail(client):
    csrf = await login(client, "operator1")
    household_id, _ = await register(client, csrf, seed=12)
    await login(client, "admin")
    await client.get(f"/rumah-tangga/{household_id}")
    page = await (await client.get("/audit")).text()
    row = re.search(
        r"<tr>\s*<td[^>]*>[^<]*</td>\s*<td[^>]*>admin</td>\s*<td[^>]*>Melihat data pribadi", page
    )
    assert row is not None, page
    assert f"/rumah-tangga/{household_id}" in page


async def test_admin_adds_a_user_and_an_api_token_is_shown_once(client):
    csrf = await login(client, "admin")
    response = await client.post(
        "/pengguna",
        data={"csrf_token": csrf, "username": "operator2", "full_name": "Dewi",
              "role": "operator", "password": "rahasia-baru-1", "password2": "rahasia-baru-2"},
    )  # fmt: skip
    assert response.status == 422 and "Kedua kata sandi tidak sama." in await response.text()
    response = await client.post(
        "/pengguna",
        data={"csrf_token": csrf, "username": "operator2", "full_name": "Dewi",
              "role": "operator", "password": "rahasia-baru-1", "password2": "rahasia-baru-1"},
    )  # fmt: skip
    assert "Pengguna operator2 ditambahkan." in await response.text()

    response = await client.post(
        "/pengguna/token", data={"csrf_token": csrf, "name": "ekspor", "user_id": "1"}
    )
    token = re.search(r'id="token-baru">(psk_[^<]+)<', await response.text()).group(1)
    answer = await client.get("/api/v1/sync/status", headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200
    assert token not in await (await client.get("/pengguna")).text()


async def test_sync_page_is_honest_before_any_contact(client):
    await login(client, "operator1")
    page = await (await client.get("/sinkronisasi")).text()
    assert "Perubahan menunggu dikirim</dt><dd><strong>0</strong>" in page
    assert page.count("belum pernah") >= 2 and "Tidak ada konflik." in page


async def test_sync_page_lists_what_came_down_per_household_and_who_wrote_it(client, edge_config):
    csrf = await login(client, "operator1")
    household_id, members = await register(client, csrf, seed=13)
    store = store_of(client)
    household = await store.get(household_id, "household")
    [second] = [
        m for m in await store.related("member", household_id) if m.get("nik") == members[1]["nik"]
    ]
    now = int(time.time() * 1000)

    def down(seq: int, entity: str, record_id: str, writes: dict[str, tuple[Any, str]]) -> Batch:
        versions = {
            name: FieldVersion(value, pack(now, seq), node, ())
            for name, (value, node) in writes.items()
        }
        change = Change(entity, record_id, DEFAULT_VILLAGE, "hub-1", versions)
        return Batch(edge_config.node, seq, (change,), Direction.DOWN)

    await apply_remote(store, down(1, "household", household_id, {
        "decile": (2, "hub-1"),
        "review_status": ("periksa_lapangan", "hub-1"),
        "registry_id": ("DTSEN-0042", "registry"),
    }))  # fmt: skip
    await apply_remote(
        store, down(2, "member", second.id, {"occupation": ("Buruh tani", "box-wanaherang-2")})
    )
    await apply_remote(store, down(3, "household", household_id, {
        "floor_area_m2": (1250.5, "box-wanaherang-2"),
        "review_status": ("disetujui", "hub-1"),
        "review_date": ("2026-11-18", "hub-1"),
    }))  # fmt: skip

    page = await (await client.get("/sinkronisasi")).text()
    card = page.split('id="diterima"')[1].split("</section>")[0]
    heading = card.split("<h3>")[1].split("</h3>")[0]
    assert f'<a href="/rumah-tangga/{household_id}">{members[0]["name"]}</a>' in heading
    assert f"RT {household.get('rt')}/RW {household.get('rw')}" in heading
    _, newest, oldest = card.split("Keluarga, diterima")
    by = '</strong> <span class="muted">(oleh '
    assert (
        f"Luas lantai (m²): <strong>1.250,5{by}perangkat lain di desa ini (box-wanaherang-2))"
        in newest
    )
    assert f"Hasil verifikasi kabupaten: <strong>Disetujui{by}keputusan kabupaten)" in newest
    assert f"Tanggal verifikasi: <strong>18 November 2026{by}keputusan kabupaten)" in newest
    assert f"Desil: <strong>2{by}desil terbitan nasional)" in oldest
    assert (
        f"ID keluarga DTSEN: <strong>DTSEN-0042{by}impor data registri (DTSEN) kabupaten)" in oldest
    )
    # The first decision was replaced by the second: the page does not pretend it holds.
    assert 'kabupaten: <span class="muted">sudah berubah lagi sesudahnya' in oldest
    member = card.split(f"Anggota keluarga {second.get('name')}, diterima")[1].split("</li>")[0]
    assert "Pekerjaan: <strong>Buruh tani</strong>" in member


async def test_what_the_district_decided_and_published_shows_on_the_household_and_its_nik(
    client, edge_config
):
    csrf = await login(client, "operator1")
    household, members = make_household_with_members(2, seed=11)
    saved = await client.post("/rumah-tangga/baru", data=household_form(csrf, household, members))
    household_id = saved.url.path.rsplit("/", 1)[1]
    page = await saved.text()
    assert "belum diverifikasi" in page and "Desil</dt><dd>belum ada" in page

    # The hub's decision and the published decile arrive with the normal downlink.
    stamp = pack(int(time.time() * 1000), 0)
    published = {
        "decile": 2,
        "decile_period": "2026-11",
        "eligible_programmes": ["pkh", "sembako_bpnt"],
        "review_status": "ditolak",
        "review_note": "Foto rumah belum ada",
        "review_date": "2026-11-18",
    }
    versions = {name: FieldVersion(value, stamp, "hub-1", ()) for name, value in published.items()}
    change = Change("household", household_id, DEFAULT_VILLAGE, "hub-1", versions)
    store: Store = client.app[STORE]
    await apply_remote(store, Batch(edge_config.node, 1, (change,), Direction.DOWN))

    page = await (await client.get(f"/rumah-tangga/{household_id}")).text()
    card = page.split('id="dari-kabupaten"')[1].split("</section>")[0]
    assert "2 (periode 2026-11)" in card
    assert "PKH, Sembako/BPNT" in card
    assert "Ditolak, 18 November 2026: Foto rumah belum ada" in card

    # Beranda says what the district asks of the village, and about whom.
    home = await (await client.get("/")).text()
    asks = home.split('id="keputusan-kabupaten"')[1].split("</section>")[0]
    assert "perlu periksa lapangan (1)" in asks
    assert members[0]["name"] in asks and f'href="/rumah-tangga/{household_id}"' in asks
    assert "Ditolak</strong> (18 November 2026). Foto rumah belum ada" in asks
    assert "Anggota ditandai data ganda (0)" in asks
    stored = (await store.related_to_each("member", [household_id]))[household_id]
    [second] = [m for m in stored if m.get("nik") == members[1]["nik"]]
    marked = FieldVersion("ganda", pack(int(time.time() * 1000), 1), "hub-1", ())
    duplicate = Change("member", second.id, DEFAULT_VILLAGE, "hub-1", {"status": marked})
    await apply_remote(store, Batch(edge_config.node, 2, (duplicate,), Direction.DOWN))
    home = await (await client.get("/")).text()
    asks = home.split('id="keputusan-kabupaten"')[1].split("</section>")[0]
    assert "Anggota ditandai data ganda (1)" in asks and members[1]["name"] in asks

    nik = members[1]["nik"]
    found = await (await search(client, csrf, nik)).text()
    answer = found.split('id="jawaban-nik"')[1].split("</div>")[0]
    assert f"NIK {nik} terdaftar" in answer and members[1]["name"] in answer
    assert "Desil: <strong>2</strong> (periode 2026-11)" in answer
    unknown = await (await search(client, csrf, "3201020101900099")).text()
    assert "NIK atau nomor KK 3201020101900099 belum terdaftar" in unknown
