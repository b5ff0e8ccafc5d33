"""The review UI's lists downloaded as spreadsheets: the verification queue and a period's
per-village totals, masked or in full by role, every download audited (on SQLite and on
PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime

import sqlalchemy as sa
from openpyxl import load_workbook

from hub import db, review_queue
from protocol.identity import mask_number
from tests.factories import DEFAULT_VILLAGE
from tests.hub import test_ui
from tests.hub.boxes import Box, enrol
from tests.hub.families import send_family
from tests.hub.test_ui import OTHER_VILLAGE, login

#: The review UI with one account per role (the fixture of tests/hub/test_ui.py).
client = test_ui.client


async def list_exports(store) -> list[tuple[str, dict]]:
    a = db.audit
    query = sa.select(a.c.actor, a.c.detail).where(a.c.action == "list.export").order_by(a.c.id)
    async with store.engine.connect() as conn:
        return [(row.actor, json.loads(row.detail)) for row in await conn.execute(query)]


async def test_the_queue_of_one_village_downloads_masked_for_the_verifier_full_for_the_leader(
    client, hub_store
):
    one, two = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, one, two)
    await send_family(hub_store, one, head="Asep Saepudin")
    await send_family(hub_store, two, head="Dede Hidayat")
    [item] = await review_queue.queue(
        hub_store.engine, review_queue.QueueFilter(village=DEFAULT_VILLAGE)
    )
    await login(client, "verif")

    page = await (await client.get(f"/antrian?desa={DEFAULT_VILLAGE}")).text()
    assert f'href="/antrian.xlsx?desa={DEFAULT_VILLAGE}"' in page and "Unduh CSV" in page
    response = await client.get("/antrian.xlsx", params={"desa": DEFAULT_VILLAGE})

    assert response.status == 200
    assert re.fullmatch(
        rf'attachment; filename="antrian-verifikasi-{DEFAULT_VILLAGE}-\d{{4}}-\d\d-\d\d\.xlsx"',
        response.headers["Content-Disposition"],
    )
    book = load_workbook(io.BytesIO(await response.read()), read_only=True)
    rows = [list(row) for row in book.active.iter_rows(values_only=True)]
    assert rows[0] == [
        "Kepala keluarga", "No. KK", "Kode desa", "Data berubah", "Terakhir berubah",
        "Keluarga baru", "Perlu periksa lapangan",
    ]  # fmt: skip
    assert len(rows) == 2, "the other village's family is not in this village's list"
    head, kk, village, changed, when, new, flagged = rows[1]
    assert (head, village, changed, new, flagged) == (
        "Asep Saepudin", DEFAULT_VILLAGE, 2, "Ya", "Tidak",
    )  # fmt: skip
    assert kk == mask_number(item.kk_number) != item.kk_number
    assert isinstance(when, datetime)

    await login(client, "pimpinan")
    answer = await client.get("/antrian.csv")
    body = await answer.read()
    assert body.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))
    assert [line[0] for line in lines[1:]] == ["Asep Saepudin", "Dede Hidayat"]
    assert item.kk_number in {line[1] for line in lines}

    assert await list_exports(hub_store) == [
        ("verif", {"list": "antrian-verifikasi", "filter": {"desa": DEFAULT_VILLAGE},
                   "rows": 1, "numbers": "disamarkan", "format": "xlsx"}),
        ("pimpinan", {"list": "antrian-verifikasi", "filter": {}, "rows": 2,
                      "numbers": "lengkap", "format": "csv"}),
    ]  # fmt: skip
    trail = await (await client.get("/audit")).text()
    assert "Mengunduh daftar" in trail


async def test_a_frozen_periods_totals_per_village_download_for_the_leader(client, hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    csrf = await login(client, "verif")
    await client.post(f"/antrian/{household}", data={"csrf_token": csrf, "keputusan": "disetujui"})
    page = await (await client.get("/siklus")).text()
    period = re.search(r'action="/siklus/([0-9-]+)/bekukan"', page).group(1)
    assert f"/siklus/{period}.xlsx" not in page, "no totals before the freeze"
    assert (await client.get(f"/siklus/{period}.xlsx")).status == 404
    await client.post(f"/siklus/{period}/bekukan", data={"csrf_token": csrf, "konfirmasi": "ya"})

    await login(client, "pimpinan")
    page = await (await client.get("/siklus")).text()
    assert f'href="/siklus/{period}.xlsx"' in page
    response = await client.get(f"/siklus/{period}.xlsx")

    assert response.status == 200
    name = response.headers["Content-Disposition"]
    assert f'filename="rekap-desa-3201-{period}-' in name
    book = load_workbook(io.BytesIO(await response.read()), read_only=True)
    rows = [list(row) for row in book.active.iter_rows(values_only=True)]
    assert rows[0][:3] == ["Kode desa", "Keluarga", "Anggota aktif"]
    assert rows[1][:3] == [DEFAULT_VILLAGE, 1, 1]
    assert await list_exports(hub_store) == [
        ("pimpinan", {"list": "rekap-desa", "filter": {"periode": period}, "rows": 1,
                      "numbers": "tidak ada", "format": "xlsx"}),
    ]  # fmt: skip
