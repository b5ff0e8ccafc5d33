"""The household search box and the lists that name households, as an operator uses them:
a part of anyone's name, the address or the RT/RW finds the household and says what
matched; a NIK or KK number is searched by POST and never shows in an address; lists name
a household by its head and RT/RW (many households share one address)."""

from __future__ import annotations

import html
import re
from typing import Any

from edge.store import Store
from edge.web.app import STORE
from tests.edge.api_client import household_body
from tests.edge.conftest import login, search


async def save(
    client: Any, csrf: str, seed: int, *, names: tuple[str, ...] = (), **household: str
) -> tuple[str, dict[str, Any]]:
    """A household saved through the API (cookie session): its id and the body sent, with
    ``names`` for its first members and ``household`` fields replaced."""
    body = household_body(3, seed=seed)
    body["household"].update(household)
    for member, name in zip(body["members"], names, strict=False):
        member["name"] = name
    answer = await client.post("/api/v1/households", json=body, headers={"X-CSRF-Token": csrf})
    assert answer.status == 201, await answer.text()
    return (await answer.json())["id"], body


def rows(page: str) -> list[str]:
    """The result rows of the household list, as text."""
    body = page.split("<tbody>")[1].split("</tbody>")[0] if "<tbody>" in page else ""
    cells = [re.sub(r"<[^>]+>", " ", row) for row in body.split("</tr>")[:-1]]
    return [" ".join(html.unescape(cell).split()) for cell in cells]


async def test_a_part_of_a_surname_finds_the_household_and_names_the_member(client):
    csrf = await login(client, "operator1")
    await save(client, csrf, 1, names=("Ujang Kurniawan", "Siti Aminah"))
    await save(client, csrf, 2, names=("Désy Ratnasari",))
    await save(client, csrf, 3, names=("Budi Santoso",))

    found = await search(client, csrf, "aminah")
    assert found.url.path_qs == "/rumah-tangga?q=aminah"  # a text search can be bookmarked
    [row] = rows(await found.text())
    assert row.startswith("Ujang Kurniawan cocok: nama anggota Siti Aminah")

    # Capitals and Latin accents do not matter, either way round.
    assert rows(await (await search(client, csrf, "AMÍNAH")).text()) == [row]
    [desy] = rows(await (await search(client, csrf, "desy")).text())
    assert desy.startswith("Désy Ratnasari cocok: nama anggota Désy Ratnasari")
    empty = await (await search(client, csrf, "Aminah Siti")).text()
    assert rows(empty) == [] and "sebagian nama anggota" in empty


async def test_the_address_and_the_rt_rw_find_households(client):
    csrf = await login(client, "operator1")
    await save(
        client, csrf, 4, names=("Asep Hidayat",), address="Kp. Babakan No. 12", rt="003", rw="005"
    )
    await save(
        client, csrf, 5, names=("Dadan Rohmat",), address="Jl. Merdeka No. 3", rt="001", rw="002"
    )

    [babakan] = rows(await (await search(client, csrf, "babakan")).text())
    assert babakan.startswith("Asep Hidayat cocok: alamat RT 003/RW 005 Kp. Babakan No. 12")
    for text in ("RT 3/RW 5", "rt 003 rw 005", "3/5", "babakan rt 3"):
        [row] = rows(await (await search(client, csrf, text)).text())
        assert row.startswith("Asep Hidayat"), text
    [merdeka] = rows(await (await search(client, csrf, "rw 2")).text())
    assert merdeka.startswith("Dadan Rohmat cocok: RT/RW RT 001/RW 002 Jl. Merdeka")
    assert rows(await (await search(client, csrf, "merdeka rt 3")).text()) == []
    [three] = rows(await (await search(client, csrf, "3")).text())  # not RT 003's household
    assert three.startswith("Dadan Rohmat cocok: alamat")


async def test_a_nik_search_never_puts_the_number_in_an_address(client):
    csrf = await login(client, "operator1")
    household_id, body = await save(client, csrf, 6, names=("Imas Sopiah", "Cecep Saepudin"))
    nik = body["members"][1]["nik"]

    found = await search(client, csrf, nik)
    page = await found.text()
    assert "Cecep Saepudin" in page and f"NIK {nik} terdaftar" in page
    assert "cocok: NIK anggota Cecep Saepudin" in " ".join(rows(page))
    assert nik not in str(found.url) and "cari=" in found.url.query_string
    assert all(nik not in hop.headers["Location"] for hop in found.history)
    links = re.findall(r'(?:href|action|src)="([^"]*)"', page)
    assert links and not [link for link in links if nik in link], "no link carries it on"

    # The back button (or a reload) shows the answer again, and the view is audited again.
    again = await client.get(found.url.path_qs)
    assert f"NIK {nik} terdaftar" in await again.text()
    store: Store = client.server.app[STORE]
    searches, _ = await store.audit_log(actions=("search",))
    assert len(searches) == 2 and all(household_id in row.detail for row in searches)
    assert all(nik not in row.detail for row in searches)  # masked

    # The number typed into an address is not searched and does not stay there.
    typed = await client.get("/rumah-tangga", params={"q": nik}, allow_redirects=False)
    assert typed.status == 303 and typed.headers["Location"] == "/rumah-tangga"

    # Another person cannot use the answer's address.
    client.session.cookie_jar.clear()
    await login(client, "kades")
    stolen = await (await client.get(found.url.path_qs)).text()
    assert nik not in stolen and "Hasil pencarian NIK/KK ini sudah tidak tersedia" in stolen


async def test_a_number_of_the_wrong_length_is_explained_next_to_the_search_box(client):
    csrf = await login(client, "operator1")
    answer = await search(client, csrf, "320102010190009")
    assert answer.status == 422 and answer.url.path == "/rumah-tangga/cari"
    box = (await answer.text()).split('role="search"')[1].split("</form>")[0]
    assert 'value="320102010190009"' in box and 'aria-invalid="true"' in box
    message = "Untuk mencari NIK atau nomor KK, ketik 16 angka lengkap (sekarang 15 angka)."
    assert f'id="q-pesan">{message}</p>' in box


async def test_lists_name_households_by_head_and_rt_rw(client):
    csrf = await login(client, "kades")
    heads = ("Agus Hidayat", "Euis Nurhayati", "Rudi Kurniawan")
    for seed, (head, rt) in enumerate(zip(heads, ("001", "002", "003"), strict=True), 7):
        await save(client, csrf, seed, names=(head,), address="Kp. Babakan No. 12", rt=rt, rw="004")

    listed = rows(await (await search(client, csrf, "babakan")).text())
    proposals = rows(await (await client.get("/usulan")).text())
    printout = rows(await (await client.get("/musdes")).text())
    for head, rt in zip(heads, ("001", "002", "003"), strict=True):
        assert any(f"{head} cocok: alamat RT {rt}/RW 004" in row for row in listed)
        assert any(f"{head} RT {rt}/RW 004 Kp. Babakan No. 12 Usulan" in row for row in proposals)
        assert any(re.search(rf"{head} \S+ RT {rt}/RW 004 Kp. Babakan", r) for r in printout)
