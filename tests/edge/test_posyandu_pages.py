"""The Posyandu's day on the box: a kader opens the hari-buka screen, records a weighing
in a few taps, sees it on the member's row and the household page, and the flags the
weighings and pregnancy checks raise."""

from __future__ import annotations

import json
from datetime import date

from edge.records import Edit
from edge.store import Store
from edge.web.app import STORE
from tests.edge.conftest import login
from tests.edge.test_export import _csv, _exports, _sheet
from tests.edge.test_vulnerable_pages import _village
from tests.factories import make_service


def _row(page: str, member_id: str) -> str:
    return page.split(f'id="anggota-{member_id}"', 1)[1].split("</tr>", 1)[0]


def _months_before(day: date, months: int) -> str:
    month = day.month - months
    year = day.year + (month - 1) // 12
    return date(year, (month - 1) % 12 + 1, 1).isoformat()


async def _saved(store: Store, *services: dict) -> None:
    edits = [Edit("layanan", s.pop("id"), s) for s in services]
    await store.write(edits, actor="kader")


async def test_a_kader_records_a_weighing_and_returns_to_the_childs_row(client):
    store = client.server.app[STORE]
    people = await _village(store)
    today = store.box_time().today
    csrf = await login(client, "operator1")
    baby = people["baby"]["id"]

    home = await (await client.get("/")).text()
    assert '<a href="/posyandu"' in home
    page = await (await client.get("/posyandu", params={"kelompok": "balita"})).text()
    assert "Bayi Raka" in _row(page, baby) and "Belum" in _row(page, baby)
    assert "0/1" in page.split('id="kelompok-balita"')[1].split("</a>")[0]  # served / expected
    form = await (
        await client.get(f"/posyandu/layanan/{baby}", params={"kelompok": "balita"})
    ).text()
    assert 'id="weight_kg"' in form and "autofocus" in form.split('id="weight_kg"')[1][:40]

    bad = await client.post(
        f"/posyandu/layanan/{baby}",
        data={"csrf_token": csrf, "kelompok": "balita", "service_type": "penimbangan_balita",
              "weight_kg": "94", "officer": "Lilis", "officer_role": "kader",
              "service_date": today.isoformat()},
    )  # fmt: skip
    assert bad.status == 422
    text = await bad.text()
    next_to_field = text.split('id="weight_kg"')[1].split('class="field"')[0]
    assert "Berat badan (kg) untuk Penimbangan balita harus antara 1 dan 30." in next_to_field
    assert (await store.counts()).get("layanan", 0) == 0

    saved = await client.post(
        f"/posyandu/layanan/{baby}",
        data={"csrf_token": csrf, "kelompok": "balita", "service_type": "penimbangan_balita",
              "weight_kg": "9,4", "officer": "Lilis", "officer_role": "kader",
              "service_date": today.isoformat()},
        allow_redirects=False,
    )  # fmt: skip
    assert saved.status == 303
    assert saved.headers["Location"].endswith(f"#anggota-{baby}")
    after = await (await client.get(saved.headers["Location"])).text()
    assert "Layanan dicatat." in after
    assert "Penimbangan balita 9.4 kg" in _row(after, baby)
    assert "1/1" in after.split('id="kelompok-balita"')[1].split("</a>")[0]

    household = people["baby"]["household_id"]
    detail = await (await client.get(f"/rumah-tangga/{household}")).text()
    listed = detail.split('id="layanan"')[1].split("</section>")[0]
    assert "Bayi Raka: Penimbangan balita (Kesehatan), 9.4 kg; oleh Lilis (Kader)" in listed


async def test_the_screen_flags_2t_and_kek(client):
    store = client.server.app[STORE]
    people = await _village(store)
    today = store.box_time().today
    baby, wife = people["baby"], people["wife"]
    await _saved(
        store,
        make_service(baby, service_date=_months_before(today, 2), weight_kg=8.0),
        make_service(baby, service_date=_months_before(today, 1), weight_kg=8.0),
        make_service(baby, service_date=_months_before(today, 0), weight_kg=7.9),
        make_service(wife, "pemeriksaan_ibu_hamil", service_date=_months_before(today, 0),
                     weight_kg=52.0, muac_cm=23.0),
    )  # fmt: skip
    await login(client, "operator1")
    balita = await (await client.get("/posyandu", params={"kelompok": "balita"})).text()
    assert ">2T<" in _row(balita, baby["id"])
    pregnant = await (await client.get("/posyandu", params={"kelompok": "ibu-hamil"})).text()
    assert ">KEK<" in _row(pregnant, wife["id"]) and "LiLA 23.0 cm" in _row(pregnant, wife["id"])
    last_month = await (
        await client.get(
            "/posyandu", params={"kelompok": "balita", "tanggal": _months_before(today, 1)}
        )
    ).text()
    assert "2T" not in _row(last_month, baby["id"])  # one month without a gain is not 2T


async def test_the_mbg_list_gives_the_meal_provider_only_what_it_needs(client):
    store = client.server.app[STORE]
    people = await _village(store)
    today = store.box_time().today
    baby, wife = people["baby"], people["wife"]
    await _saved(store, make_service(baby, service_date=_months_before(today, 4), weight_kg=8.2))
    await login(client, "operator1")

    page = await (await client.get("/posyandu/mbg")).text()
    listed = page.split('id="daftar-mbg"')[1]
    assert listed.count("Ibu Neneng") == 2  # pregnant, and living with a child under 2
    assert "Bayi Raka" in listed and "8.2 kg" in listed
    assert "12 bulan" in listed.split("Bayi Raka")[1].split("</tr>")[0]
    assert "Bapak Sutisna" not in listed and wife["nik"] not in page
    assert "/posyandu/mbg.xlsx" in page and "data-cetak" in page
    only_balita = await (await client.get("/posyandu/mbg", params={"sasaran": "balita"})).text()
    assert "Ibu Neneng" not in only_balita.split('id="daftar-mbg"')[1]

    response = await client.get("/posyandu/mbg.xlsx", params={"sasaran": "ibu-hamil"})
    rows = _sheet(await response.read())
    assert rows[0] == ["Nama", "Sasaran", "Umur", "RT", "RW", "Alamat",
                       "Tanggal penimbangan terakhir", "Berat terakhir (kg)", "Tanda"]  # fmt: skip
    assert [row[:3] for row in rows[1:]] == [["Ibu Neneng", "Ibu hamil", "30 tahun"]]
    [audit] = await _exports(store)
    assert json.loads(audit.detail) == {
        "list": "sasaran-mbg-3b", "filter": {"sasaran": "ibu-hamil"}, "rows": 1,
        "numbers": "tidak ada", "format": "xlsx",
    }  # fmt: skip

    await login(client, "kades")
    rows = _csv(await (await client.get("/posyandu/mbg.csv", params={"sasaran": "balita"})).read())
    assert rows[0][:2] == ["Nama", "NIK"] and rows[1][1] == baby["nik"]
    assert json.loads((await _exports(store))[-1].detail)["numbers"] == "lengkap"


def _cell(page: str, row_id: str, column: int) -> str:
    row = page.split(f'id="{row_id}"', 1)[1].split("</tr>", 1)[0]
    return row.split("<td>")[column].split("</td>")[0]


async def test_the_monthly_report_reconciles_with_the_services_recorded(client):
    store = client.server.app[STORE]
    people = await _village(store)
    today = store.box_time().today
    month = today.strftime("%Y-%m")
    baby, wife, head = people["baby"], people["wife"], people["head"]
    recorded = [
        make_service(baby, service_date=today.isoformat(), weight_kg=9.0),
        make_service(baby, "imunisasi", service_date=today.isoformat()),
        make_service(wife, "pemeriksaan_ibu_hamil", service_date=today.isoformat(),
                     weight_kg=51.0, muac_cm=23.0, referred=True),
        make_service(head, "pengurusan_adminduk", service_date=today.isoformat()),
        make_service(head, "rujukan_dinas_sosial", service_date=today.isoformat()),
    ]  # fmt: skip
    earlier = make_service(baby, service_date=_months_before(today, 1), weight_kg=8.8)
    await _saved(store, *recorded, earlier)
    await login(client, "operator1")

    page = await (await client.get("/posyandu/laporan", params={"bulan": month})).text()
    assert "<strong>5</strong> layanan, <strong>2</strong> rujukan dibuat." in page
    by_spm = {code: int(_cell(page, f"spm-{code}", 2)) for code in ("kesehatan", "sosial")}
    assert by_spm == {"kesehatan": 3, "sosial": 2}
    assert sum(int(_cell(page, f"spm-{c}", 2)) for c in ("pendidikan", "pekerjaan_umum",
               "perumahan_rakyat", "trantibum")) == 0  # fmt: skip
    assert _cell(page, "jenis-penimbangan_balita", 3) == "1"
    assert (_cell(page, "kelompok-balita", 2), _cell(page, "kelompok-balita", 3)) == ("1", "1")
    assert (_cell(page, "kelompok-lansia", 2), _cell(page, "kelompok-lansia", 3)) == ("0", "2")
    assert _cell(page, "tanda-KEK", 2) == "1" and _cell(page, "tanda-2T", 2) == "0"

    rows = _csv(await (await client.get("/posyandu/laporan.csv", params={"bulan": month})).read())
    by_part = {(row[0], row[1]): row[2:] for row in rows[1:]}
    assert by_part[("Jumlah", "Semua layanan")] == ["5", ""]
    assert sum(int(v[0]) for (part, _), v in by_part.items() if part == "Bidang SPM") == 5
    assert sum(int(v[0]) for (part, _), v in by_part.items() if part == "Jenis layanan") == 5
    assert by_part[("Sasaran dilayani", "Ibu hamil")] == ["1", "1"]
    [audit] = await _exports(store)
    assert json.loads(audit.detail)["numbers"] == "tidak ada"

    last = await (
        await client.get("/posyandu/laporan", params={"bulan": _months_before(today, 1)[:7]})
    ).text()
    assert "<strong>1</strong> layanan, <strong>0</strong> rujukan dibuat." in last
