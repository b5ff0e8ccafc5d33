"""The period's summary printed for the regent (Bupati) and the head of the social office
to sign: per village by name what the verifier decided, who froze and submitted it when
(on SQLite and on PostgreSQL)."""

from __future__ import annotations

import re

from tests.hub import test_ui
from tests.hub.boxes import Box, enrol
from tests.hub.families import send_family
from tests.hub.test_ui import OTHER_VILLAGE, confirmed, login

#: The review UI with one account per role (the fixture of tests/hub/test_ui.py).
client = test_ui.client


def _cells(page: str) -> dict[str, list[str]]:
    """Each village's row of the printout: its name → the numbers after it."""
    rows = re.findall(r"<tr>\s*<td>\d+</td>\s*<td>([^<]+?) <span.*?</td>(.*?)</tr>", page, re.S)
    return {name: re.findall(r"<td>([^<]*)</td>", rest) for name, rest in rows}


async def test_the_period_summary_prints_per_village_decisions_and_lines_to_sign(client, hub_store):
    here, there = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, here, there)
    families = [await send_family(hub_store, here, head=name) for name in ("Asep", "Budi", "Cecep")]
    await send_family(hub_store, there, head="Dede Hidayat")  # left undecided
    csrf = await login(client, "verif")
    for (household, _), decision in zip(
        families, ("disetujui", "ditolak", "periksa_lapangan"), strict=True
    ):
        data = {"csrf_token": csrf, "keputusan": decision, "alasan": "Cek surat keterangan"}
        await client.post(f"/antrian/{household}", data=data)
    cycle_page = await (await client.get("/siklus")).text()
    period = re.search(r'action="/siklus/([0-9-]+)/bekukan"', cycle_page).group(1)
    link = f"/siklus/{period}/ringkasan-cetak"
    assert f'href="{link}"' in cycle_page

    printout = await (await client.get(link)).text()
    assert f"Kabupaten Bogor (3201) · periode {period}" in printout
    assert '<span class="muted">Kabupaten Bogor</span>' in printout, "the header names it too"
    assert "Ditandatangani</dt><dd>belum" in printout
    # Villages by name, in the order of their names; approved, rejected, field check, waiting.
    assert list(_cells(printout)) == [
        "Desa Bojongkulur, Kec. Gunungputri", "Desa Wanaherang, Kec. Gunungputri",
    ]  # fmt: skip
    assert _cells(printout)["Desa Bojongkulur, Kec. Gunungputri"] == ["0", "0", "0", "1"]
    assert _cells(printout)["Desa Wanaherang, Kec. Gunungputri"] == ["1", "1", "1", "1"]
    assert "Bupati" in printout and "Kepala Dinas Sosial" in printout
    assert "data-cetak hidden>Cetak</button>" in printout
    assert re.search(r'<script src="/static/cetak\.js\?v=[^"]+" defer>', printout)

    await client.post(f"/siklus/{period}/bekukan", data=confirmed(csrf))
    await client.post(f"/siklus/{period}/ajukan", data=confirmed(csrf))
    await login(client, "pimpinan")
    printout = await (await client.get(link)).text()
    assert re.search(r"Dibekukan</dt><dd>\d+ \w+ \d{4} \d\d:\d\d oleh verif", printout)
    assert re.search(r"Diajukan ke pimpinan</dt><dd>\d+ \w+ \d{4} \d\d:\d\d oleh verif", printout)
    # Frozen: the households in the period's data instead of those still waiting.
    assert "Belum diputuskan" not in printout and "Keluarga dalam data periode" in printout
    assert (await client.get("/siklus/1999-01/ringkasan-cetak")).status == 404
