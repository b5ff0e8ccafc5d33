"""Lists downloaded as spreadsheets: what opens in Excel, what a role may see in it, and the
audit row every download leaves."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from openpyxl import load_workbook

from edge import db, services
from edge.services import Actor
from edge.store import Store
from edge.web.app import STORE
from protocol.identity import mask_number
from tests.edge.conftest import login
from tests.factories import DEFAULT_VILLAGE, make_household_with_members

TODAY = date(2026, 11, 24)
OPERATOR = Actor("operator1", "operator", "10.0.0.5")


async def _register(store: Store, seed: int) -> tuple[str, list[dict[str, Any]]]:
    household, members = make_household_with_members(3, seed=seed)
    household.pop("id")
    for member in members:
        member.pop("id")
        member.pop("household_id", None)
    outcome = await services.save_household(
        store, OPERATOR, household_id=None, household=household, members=members, today=TODAY
    )
    assert outcome.saved, outcome.issues
    return outcome.record_id, members


def _sheet(body: bytes) -> list[list[Any]]:
    book = load_workbook(io.BytesIO(body), read_only=True)
    return [list(row) for row in book.active.iter_rows(values_only=True)]


def _csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))


async def _exports(store: Store) -> list[Any]:
    query = sa.select(db.audit).where(db.audit.c.action == "export").order_by(db.audit.c.id)
    return await store.read(lambda conn: conn.execute(query).all())


async def test_an_operator_downloads_the_searched_households_with_numbers_masked(client):
    store = client.server.app[STORE]
    await _register(store, seed=11)
    _, members = await _register(store, seed=12)
    head = members[0]
    await login(client, "operator1")

    page = await (await client.get("/rumah-tangga", params={"q": head["name"]})).text()
    assert "Unduh XLSX" in page and "Unduh CSV" in page
    response = await client.get("/rumah-tangga.xlsx", params={"q": head["name"]})

    assert response.status == 200
    disposition = response.headers["Content-Disposition"]
    assert f'filename="rumah-tangga-{DEFAULT_VILLAGE}-' in disposition
    assert disposition.endswith('.xlsx"')
    rows = _sheet(await response.read())
    header = rows[0]
    assert header[:3] == ["Kepala keluarga", "NIK kepala keluarga", "Kode desa/kelurahan"]
    assert "Nomor Kartu Keluarga (KK)" in header and "Terakhir diubah" in header
    assert len(rows) == 2, "only the household the search found"
    row = dict(zip(header, rows[1], strict=True))
    assert row["Kepala keluarga"] == head["name"]
    assert row["NIK kepala keluarga"] == mask_number(head["nik"])
    assert head["nik"] not in json.dumps(rows, default=str)
    assert row["Jumlah anggota"] == 3
    assert isinstance(row["Terakhir diubah"], datetime)

    [audit] = await _exports(store)
    detail = json.loads(audit.detail)
    assert (audit.actor, audit.entity) == ("operator1", "household")
    assert detail == {
        "list": "rumah-tangga", "filter": {"q": head["name"]}, "rows": 1,
        "numbers": "disamarkan", "format": "xlsx",
    }  # fmt: skip
    trail = await client.get("/audit")
    assert trail.status == 403  # an operator does not read the trail; the kepala desa does

    # A NIK in the URL, even spaced, is not searched nor written to the trail.
    spaced = " ".join(head["nik"][i : i + 4] for i in range(0, 16, 4))
    refused = await client.get("/anggota.csv", params={"q": spaced})
    assert refused.status == 400
    assert len(await _exports(store)) == 1


async def test_the_kepala_desa_gets_full_numbers_and_the_members_sheet_as_csv(client):
    store = client.server.app[STORE]
    _, members = await _register(store, seed=21)
    await login(client, "kades")

    response = await client.get("/anggota.csv")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = _csv(await response.read())
    header = rows[0]
    assert header[:3] == ["Nomor Kartu Keluarga (KK)", "NIK", "Nama lengkap"]
    niks = {row[1] for row in rows[1:]}
    assert niks == {m["nik"] for m in members}
    sex = header.index("Jenis kelamin")
    assert {row[sex] for row in rows[1:]} <= {"Laki-laki", "Perempuan"}
    born = header.index("Tanggal lahir")
    first = date.fromisoformat(members[0]["birth_date"])
    assert first.strftime("%d/%m/%Y") in {row[born] for row in rows[1:]}

    [audit] = await _exports(store)
    assert json.loads(audit.detail)["numbers"] == "lengkap"
    assert json.loads(audit.detail)["rows"] == 3
    trail = await (await client.get("/audit")).text()
    assert "Mengunduh daftar" in trail and "3 baris, NIK/KK lengkap" in trail


async def test_complaints_follow_the_lists_filter_and_an_anonymous_reporter_stays_hidden(client):
    store = client.server.app[STORE]
    for category, name, anonymous in (
        ("salah_sasaran", "Ujang Saepudin", True),
        ("salah_sasaran", "Euis Nurhayati", False),
        ("data_tidak_valid", "Dede\x0bHidayat", False),  # a vertical tab, pasted
    ):
        outcome = await services.create_record(
            store, OPERATOR, "complaint",
            {"channel": "langsung", "category": category, "reporter_name": name,
             "anonymous": anonymous, "chronology": "=HYPERLINK(\"http://x\")"},
            today=TODAY, confirm_warnings=True,  # a name kept with "anonymous" is a warning
        )  # fmt: skip
        assert outcome.saved, outcome.issues
    await login(client, "operator1")

    page = await (await client.get("/pengaduan", params={"category": "salah_sasaran"})).text()
    assert 'href="/pengaduan.csv?category=salah_sasaran"' in page
    response = await client.get("/pengaduan.csv", params={"category": "salah_sasaran"})

    rows = _csv(await response.read())
    header = rows[0]
    assert len(rows) == 3
    by_name = {row[header.index("Nama pelapor")] for row in rows[1:]}
    assert by_name == {"Dirahasiakan", "Euis Nurhayati"}
    category = header.index("Kategori pengaduan")
    assert {row[category] for row in rows[1:]} == {"Bantuan salah sasaran"}
    assert rows[1][header.index("Tanggal diterima")] == "24/11/2026"
    # A typed formula stays text in the spreadsheet of whoever opens it.
    assert rows[1][header.index("Kronologi/uraian masalah")].startswith("'=")

    body = await (await client.get("/pengaduan.xlsx", params={"status": "baru"})).read()
    xlsx = _sheet(body)
    assert len(xlsx) == 4
    received = xlsx[0].index("Tanggal diterima")
    assert xlsx[1][received] == datetime(2026, 11, 24)
    chronology = load_workbook(io.BytesIO(body)).active.cell(
        2, xlsx[0].index("Kronologi/uraian masalah") + 1
    )
    assert (chronology.value, chronology.data_type) == ('=HYPERLINK("http://x")', "s")
    names = {row[xlsx[0].index("Nama pelapor")] for row in xlsx[1:]}
    assert "Dede Hidayat" in names, "a control character XLSX cannot hold became a space"
    assert [json.loads(a.detail)["filter"] for a in await _exports(store)] == [
        {"category": "salah_sasaran"}, {"status": "baru"},
    ]  # fmt: skip


async def test_proposals_and_referrals_download_with_their_labels(client):
    store = client.server.app[STORE]
    household_id, members = await _register(store, seed=31)
    [member] = [
        m for m in await store.related("member", household_id) if m.get("nik") == members[0]["nik"]
    ]
    outcome = await services.create_record(
        store, OPERATOR, "referral",
        {"member_id": member.id, "destination": "dinas_sosial", "need": "Kursi roda"},
        today=TODAY,
    )  # fmt: skip
    assert outcome.saved, outcome.issues
    await login(client, "operator1")

    proposals = _sheet(
        await (await client.get("/usulan.xlsx", params={"kind": "usulan_baru"})).read()
    )
    assert proposals[0][:2] == ["Kepala keluarga", "Nomor Kartu Keluarga (KK)"]
    assert len(proposals) == 2
    assert proposals[1][0] == members[0]["name"]
    assert proposals[1][1] == mask_number(proposals[1][1]) != ""

    referrals = _sheet(await (await client.get("/rujukan.xlsx")).read())
    assert referrals[1][referrals[0].index("Kebutuhan")] == "Kursi roda"
    assert len(await _exports(store)) == 2


def test_a_box_loads_the_spreadsheet_library_only_for_a_download(edge_config):
    """openpyxl (with the numpy it loads) is 16 MB of a box's memory: the app is built
    without it, and the first XLSX download imports it."""
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from edge.config import EdgeConfig\n"
        "from edge.web import create_app\n"
        f"create_app(EdgeConfig(village={edge_config.village!r}, node={edge_config.node!r}, "
        f"data_dir=Path({str(edge_config.data_dir)!r})))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'openpyxl', 'numpy'}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
