"""Antrian verifikasi as a verifier works through it: searched by name or by NIK/KK (never
with the number in a URL), sorted, each village's agreed proposals, and the next household
of the same queue after a decision (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from hub import db
from protocol.identity import mask_number
from tests.factories import DEFAULT_VILLAGE, new_id
from tests.hub import test_ui
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family
from tests.hub.test_ui import OTHER_VILLAGE, login

#: The review UI with one account per role (the fixture of tests/hub/test_ui.py).
client = test_ui.client

_LINK = re.compile(r'(?:href|action)="([^"]*)"')


async def _numbers(store, household: str) -> tuple[str, list[str]]:
    """A household's KK number and its members' NIKs, as the hub holds them."""
    r = db.records
    async with store.engine.connect() as conn:
        kk = (await conn.execute(sa.select(r.c.data).where(r.c.id == household))).scalar_one()
        niks = (
            await conn.execute(
                sa.select(r.c.nik).where(r.c.household_id == household, r.c.entity == "member")
            )
        ).scalars()
        return re.search(r'"kk_number": ?"(\d+)"', kk).group(1), list(niks)


def _heads(page: str) -> list[str]:
    """The heads' names in the queue's table, in its order."""
    return re.findall(r'<td><a href="/antrian/[^"]+">([^<]+)</a></td>', page)


async def test_the_verifier_finds_a_family_by_a_members_name_or_number_never_put_in_a_url(
    client, hub_store
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    asep, _ = await send_family(hub_store, box, Siti={"sex": "perempuan"})
    dede, _ = await send_family(hub_store, box, head="Dede Hidayat")
    csrf = await login(client, "verif")

    by_name = await client.post(
        "/antrian/cari", data={"csrf_token": csrf, "q": "siti"}, allow_redirects=False
    )
    assert by_name.status == 303 and by_name.headers["Location"] == "/antrian?q=siti"
    assert _heads(await (await client.get(by_name.headers["Location"])).text()) == ["Asep Saepudin"]

    kk, _ = await _numbers(hub_store, dede)
    _, niks = await _numbers(hub_store, asep)
    for number, found in ((niks[-1], "Asep Saepudin"), (kk, "Dede Hidayat")):
        typed = f"{number[:6]}.{number[6:12]}.{number[12:]}"  # as printed on the card
        answer = await client.post(
            "/antrian/cari", data={"csrf_token": csrf, "q": typed}, allow_redirects=False
        )
        location = answer.headers["Location"]
        assert answer.status == 303 and location.startswith("/antrian?cari=")
        assert number not in location and number[:10] not in location
        page = await (await client.get(location)).text()
        assert _heads(page) == [found]
        assert all(number not in link for link in _LINK.findall(page))
        assert number not in page, "not even in the search box"
        # The household's page, opened from this answer, keeps the number out of its links.
        detail_link = re.search(r'href="(/antrian/[^"?]+\?cari=[^"]+)"', page).group(1)
        detail = await (await client.get(detail_link)).text()
        assert all(number not in link for link in _LINK.findall(detail))

    # Each lookup is in the trail: the number masked, the family it showed.
    a = db.audit
    async with hub_store.engine.connect() as conn:
        searches = (
            await conn.execute(
                sa.select(a.c.actor, a.c.detail)
                .where(a.c.action == "queue.search")
                .order_by(a.c.seq)
            )
        ).all()
    assert [(row.actor, json.loads(row.detail)) for row in searches] == [
        ("verif", {"nik_or_kk": mask_number(niks[-1]), "shown": [asep]}),
        ("verif", {"nik_or_kk": mask_number(kk), "shown": [dede]}),
    ]

    # A number typed in the address is sent away unsearched; a short one is refused in place.
    sent_away = await client.get(f"/antrian?q={niks[-1]}", allow_redirects=False)
    assert sent_away.status == 303 and sent_away.headers["Location"] == "/antrian"
    short = await client.post("/antrian/cari", data={"csrf_token": csrf, "q": "3201 1234 5678"})
    assert short.status == 422
    assert re.search(
        r'id="q-pesan">Untuk mencari NIK atau nomor KK, ketik 16 angka lengkap \(sekarang 12',
        await short.text(),
    )
    # Another user cannot read the verifier's search by its token.
    await login(client, "pimpinan")
    other = await (await client.get(location)).text()
    assert "Hasil pencarian NIK/KK ini sudah tidak tersedia" in other
    assert _heads(other) == []


async def test_the_queue_sorts_masks_numbers_and_says_which_villages_agreed_proposals(
    client, hub_store
):
    here, there = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, here, there)
    cecep, _ = await send_family(hub_store, here, head="Cecep Gorbacep")
    await send_family(hub_store, there, head="Asep Saepudin")
    await send_family(hub_store, here, head="Budi Santoso")
    await change(
        hub_store, here, new_id(), "proposal", household_id=cecep, kind="usulan_baru",
        period="2026-11", status="disepakati_musdes", agreement_ref="BA/01/2026",
    )  # fmt: skip
    csrf = await login(client, "verif")

    oldest_first = await (await client.get("/antrian")).text()
    assert _heads(oldest_first) == ["Cecep Gorbacep", "Asep Saepudin", "Budi Santoso"]
    assert _heads(await (await client.get("/antrian?urut=nama")).text()) == [
        "Asep Saepudin", "Budi Santoso", "Cecep Gorbacep",
    ]  # fmt: skip
    by_village = await client.post(
        "/antrian/cari", data={"csrf_token": csrf, "urut": "desa", "q": ""}, allow_redirects=False
    )
    page = await (await client.get(by_village.headers["Location"])).text()
    villages = sorted([DEFAULT_VILLAGE, OTHER_VILLAGE])
    expected = {
        DEFAULT_VILLAGE: ["Cecep Gorbacep", "Budi Santoso"],
        OTHER_VILLAGE: ["Asep Saepudin"],
    }
    assert _heads(page) == expected[villages[0]] + expected[villages[1]]

    rows = {name: row for row in re.findall(r"<tr>(.*?)</tr>", page, re.S) for name in _heads(row)}
    assert "Usulan disepakati: 1 lewat musdes" in rows["Cecep Gorbacep"]
    assert "Belum ada usulan yang disepakati musdes" in rows["Asep Saepudin"]
    kk, _ = await _numbers(hub_store, cecep)
    assert mask_number(kk) in rows["Cecep Gorbacep"] and kk not in page


async def test_after_a_decision_the_next_family_of_the_same_queue_opens(client, hub_store):
    here, there = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, here, there)
    cecep, _ = await send_family(hub_store, here, head="Cecep Gorbacep")
    asep, _ = await send_family(hub_store, here, head="Asep Saepudin")
    await send_family(hub_store, there, head="Agus Salim")
    budi, _ = await send_family(hub_store, here, head="Budi Santoso")
    csrf = await login(client, "verif")
    listing = await (await client.get(f"/antrian?desa={DEFAULT_VILLAGE}&urut=nama")).text()
    link = re.search(r'href="(/antrian/' + budi + r'[^"]*)"', listing).group(1)

    detail = await (await client.get(link.replace("&amp;", "&"))).text()
    # The decision comes first, the long list of changes after it.
    assert detail.index("<h2>Keputusan</h2>") < detail.index('class="perubahan"')
    hidden = dict(re.findall(r'<input type="hidden" name="(desa|urut)" value="([^"]*)">', detail))
    assert hidden == {"desa": DEFAULT_VILLAGE, "urut": "nama"}

    decided = await client.post(
        f"/antrian/{budi}", data={"csrf_token": csrf, "keputusan": "disetujui", **hidden}
    )
    page = await decided.text()
    assert decided.url.path == f"/antrian/{cecep}", "the next by name in the same village"
    assert "<h1>Keluarga Cecep Gorbacep</h1>" in page
    assert re.search(r"Keputusan untuk <a [^>]+>Keluarga Budi Santoso</a> tersimpan", page)

    # Cecep was the last by name: the queue starts over at the first one left, Asep.
    decided = await client.post(
        f"/antrian/{cecep}",
        data={"csrf_token": csrf, "keputusan": "ditolak", "alasan": "KK belum sesuai", **hidden},
    )
    assert decided.url.path == f"/antrian/{asep}"
    # After the last of the village, the village's (now empty) queue, not Agus elsewhere.
    decided = await client.post(
        f"/antrian/{asep}", data={"csrf_token": csrf, "keputusan": "disetujui", **hidden}
    )
    page = await decided.text()
    assert decided.url.path == "/antrian" and decided.url.query["desa"] == DEFAULT_VILLAGE
    assert "Perubahan disetujui." in page and "Tidak ada perubahan yang menunggu" in page
