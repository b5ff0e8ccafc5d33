"""The vulnerable-group registers on the box (kelompok rentan): the counts a Posyandu
cadre reads, each list by RT/RW with masked NIKs, and the audited spreadsheet."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from edge.records import Edit
from edge.store import Store
from edge.web.app import STORE
from protocol.identity import mask_number
from tests.edge.conftest import login
from tests.edge.test_export import _csv, _exports, _sheet
from tests.factories import DEFAULT_VILLAGE, make_household, make_member, new_id


def _born(today: date, years: int, days: int = 0) -> str:
    return (today.replace(year=today.year - years) + timedelta(days=days)).isoformat()


async def _village(store: Store) -> dict[str, dict[str, Any]]:
    """Two households, as the district's extract or a form would leave them: RT 001 with
    an elderly head, a pregnant wife, a baby and a grandfather who moved away; RT 003 with
    a grandmother turning 60 today and an imported member without a birth date."""
    today = store.box_time().today
    first = make_household(id=new_id(), rt="001", rw="002", programmes=[], decile=2)
    second = make_household(id=new_id(), rt="003", rw="002", programmes=["pkh"])
    second.pop("kk_number")
    people = {
        "head": make_member(first["id"], name="Bapak Sutisna", birth_date=_born(today, 65)),
        "wife": make_member(
            first["id"], name="Ibu Neneng", sex="perempuan", relation_to_head="istri_suami",
            birth_date=_born(today, 30), pregnant=True,
        ),
        "baby": make_member(
            first["id"], name="Bayi Raka", relation_to_head="anak", birth_date=_born(today, 1)
        ),
        "moved": make_member(
            first["id"], name="Kakek Odang", relation_to_head="orang_tua",
            birth_date=_born(today, 82), status="pindah",
        ),
        "turning": make_member(
            second["id"], name="Nenek Icih", sex="perempuan", birth_date=_born(today, 60)
        ),
        "undated": make_member(
            second["id"], name="Ujang Tanpa Tanggal", relation_to_head="anak", birth_date=None
        ),
    }  # fmt: skip
    edits = [Edit("household", h.pop("id"), h) for h in (first, second)]
    edits += [
        Edit("member", m["id"], {k: v for k, v in m.items() if k != "id"}) for m in people.values()
    ]
    await store.write(edits, actor="registry")
    return people


def _row(page: str, name: str) -> str:
    return page.split(f'data-label="Nama">{name}<', 1)[1].split("</tr>", 1)[0]


def _names(page: str) -> list[str]:
    """The people a register page lists, in order."""
    return [cell.split("<", 1)[0] for cell in page.split('data-label="Nama">')[1:]]


async def test_the_registers_count_the_village_and_each_rt(client):
    people = await _village(client.server.app[STORE])
    await login(client, "operator1")

    home = await (await client.get("/")).text()
    assert '<a href="/kelompok-rentan"' in home  # in the box's menu
    overview = await (await client.get("/kelompok-rentan")).text()
    lansia = overview.split('id="kelompok-lansia"')[1].split("</tr>")[0]
    assert "2 orang" in lansia.split('data-label="Termasuk"')[1].split("</td>")[0]
    assert "1 orang" in lansia.split('data-label="Belum lengkap"')[1].split("</td>")[0]
    assert "Tanggal lahir" in lansia  # what it derives from
    school = overview.split('id="kelompok-anak-usia-sekolah"')[1].split("</tr>")[0]
    assert "Status sekolah saat ini" in school  # schema 7's field it derives from
    low = overview.split('id="kelompok-desil-1-4-tanpa-bantuan"')[1].split("</tr>")[0]
    assert "1 keluarga" in low and "Desil" in low

    rt_one = await (await client.get("/kelompok-rentan", params={"rt": "001"})).text()
    lansia = rt_one.split('id="kelompok-lansia"')[1].split("</tr>")[0]
    assert "1 orang" in lansia and 'href="/kelompok-rentan/lansia?rt=001"' in lansia
    assert "0 orang" in lansia.split('data-label="Belum lengkap"')[1]

    page = await (await client.get("/kelompok-rentan/lansia")).text()
    assert "<strong>2</strong> orang termasuk, <strong>1</strong> orang belum lengkap" in page
    # Kakek Odang moved away: in no register.
    assert _names(page) == ["Bapak Sutisna", "Nenek Icih", "Ujang Tanpa Tanggal"]
    assert "Tanggal lahir belum diisi" in _row(page, "Ujang Tanpa Tanggal")
    assert "60 tahun" in _row(page, "Nenek Icih")  # her birthday is today
    nik = people["head"]["nik"]
    assert mask_number(nik) in _row(page, "Bapak Sutisna") and nik not in page
    assert 'href="/kelompok-rentan/lansia/cetak"' in page and "/kelompok-rentan/lansia.xlsx" in page
    printed = await (await client.get("/kelompok-rentan/lansia/cetak")).text()
    assert "data-cetak" in printed
    assert _names(printed) == ["Bapak Sutisna", "Nenek Icih", "Ujang Tanpa Tanggal"]

    rt_three = await (await client.get("/kelompok-rentan/lansia", params={"rt": "003"})).text()
    assert _names(rt_three) == ["Nenek Icih", "Ujang Tanpa Tanggal"]
    incomplete = await (
        await client.get("/kelompok-rentan/lansia", params={"keterangan": "belum_lengkap"})
    ).text()
    assert _names(incomplete) == ["Ujang Tanpa Tanggal"]

    balita = await (await client.get("/kelompok-rentan/balita")).text()
    assert _names(balita) == ["Bayi Raka", "Ujang Tanpa Tanggal"]  # his age is unknown
    pregnant = await (await client.get("/kelompok-rentan/ibu-hamil")).text()
    assert _names(pregnant) == ["Ibu Neneng"]
    nursing = await (await client.get("/kelompok-rentan/ibu-menyusui")).text()
    assert _names(nursing) == ["Ibu Neneng"]  # estimated: her breastfeeding field is empty
    assert "Sedang menyusui" in nursing.split('id="aturan"')[1].split("</p>")[0]
    school = await (await client.get("/kelompok-rentan/anak-usia-sekolah")).text()
    assert _names(school) == ["Ujang Tanpa Tanggal"]
    missing = "Status sekolah saat ini, Tanggal lahir belum diisi"
    assert missing in _row(school, "Ujang Tanpa Tanggal")
    low = await (await client.get("/kelompok-rentan/desil-1-4-tanpa-bantuan")).text()
    assert "1</strong> keluarga termasuk" in low
    assert _names(low) == ["Bapak Sutisna"]  # Nenek Icih's household receives PKH
    missing = await client.get("/kelompok-rentan/yatim")
    assert missing.status == 404
    assert "Daftar kelompok rentan itu tidak ada." in await missing.text()


async def test_a_register_downloads_masked_and_audited(client):
    store = client.server.app[STORE]
    people = await _village(store)
    await login(client, "operator1")

    response = await client.get("/kelompok-rentan/lansia.xlsx", params={"rt": "003"})

    assert response.status == 200
    disposition = response.headers["Content-Disposition"]
    assert f'filename="kelompok-rentan-lansia-{DEFAULT_VILLAGE}-' in disposition
    rows = _sheet(await response.read())
    header = rows[0]
    assert header[:5] == ["Nama lengkap", "NIK", "Jenis kelamin", "Tanggal lahir", "Umur (tahun)"]
    assert header[-1] == "Keterangan"
    listed = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert set(listed) == {"Nenek Icih", "Ujang Tanpa Tanggal"}
    assert listed["Nenek Icih"]["NIK"] == mask_number(people["turning"]["nik"])
    assert listed["Nenek Icih"]["Umur (tahun)"] == 60
    assert listed["Nenek Icih"]["Keterangan"] == "Termasuk"
    assert listed["Ujang Tanpa Tanggal"]["Keterangan"] == "Belum lengkap: Tanggal lahir belum diisi"
    assert people["turning"]["nik"] not in json.dumps(rows, default=str)

    [audit] = await _exports(store)
    assert (audit.actor, audit.entity) == ("operator1", "member")
    assert json.loads(audit.detail) == {
        "list": "kelompok-rentan-lansia", "filter": {"rt": "003"}, "rows": 2,
        "numbers": "disamarkan", "format": "xlsx",
    }  # fmt: skip

    await login(client, "kades")
    school = await client.get("/kelompok-rentan/desil-1-4-tanpa-bantuan.csv")
    rows = _csv(await school.read())
    assert rows[0][-2:] == ["Desil", "Keterangan"]
    assert [row[0] for row in rows[1:]] == ["Bapak Sutisna"]
    assert rows[1][1] == people["head"]["nik"]  # the kepala desa reads numbers in full
    assert json.loads((await _exports(store))[-1].detail)["numbers"] == "lengkap"


async def test_the_household_page_shows_what_the_registers_read_of_each_member(client):
    store = client.server.app[STORE]
    today = store.box_time().today
    household = make_household(id=new_id(), rt="001", rw="002")
    mother = make_member(
        household["id"], name="Ibu Euis", sex="perempuan", birth_date=_born(today, 28),
        pregnant=True, breastfeeding="tidak", health_insurance="pbi_jk",
    )  # fmt: skip
    child = make_member(
        household["id"], name="Asep Putus", relation_to_head="anak",
        birth_date=_born(today, 14), school_status="putus_sekolah",
    )  # fmt: skip
    await store.write(
        [Edit("household", household.pop("id"), household)]
        + [Edit("member", m.pop("id"), m) for m in (mother, child)],
        actor="registry",
    )
    await login(client, "operator1")

    page = await (await client.get(f"/rumah-tangga/{mother['household_id']}")).text()

    row = _row(page, "Ibu Euis")
    assert 'data-label="Sedang hamil">Ya<' in row
    assert 'data-label="Sedang menyusui">Tidak menyusui<' in row
    assert 'data-label="Jaminan kesehatan">PBI-JK (dibayar APBN)<' in row
    assert 'data-label="Status sekolah saat ini">-<' in row  # not filled in
    row = _row(page, "Asep Putus")
    assert 'data-label="Status sekolah saat ini">Putus sekolah / tidak melanjutkan<' in row
    assert 'data-label="Jaminan kesehatan">-<' in row
