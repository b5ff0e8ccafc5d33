"""The village's long lists on the box, a page at a time: an operator still finds and
reaches every household (next/previous links that keep the filter), the counts stay the
whole village's, and the printed lists hold every household."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest

from edge.config import EdgeConfig
from edge.records import Edit
from edge.store import Store
from edge.web.app import STORE
from edge.web.ui_registry import walk_village
from tests.edge.conftest import login
from tests.edge.test_vulnerable_pages import _names
from tests.factories import make_household, make_member, make_service, new_id

#: Five elderly heads of household, by RT (the lists' order: RT/RW, then the head's name).
HEADS = {"Abah Asep": "001", "Abah Budi": "001", "Abah Cecep": "001", "Aki Dadang": "002",
         "Aki Engkos": "002"}  # fmt: skip


@pytest.fixture
def edge_config(edge_config: EdgeConfig) -> EdgeConfig:
    return dataclasses.replace(edge_config, page_size=2)


async def _village(store: Store) -> dict[str, str]:
    """The five households (head's name → household id), nobody visited yet."""
    today = store.box_time().today
    born = today.replace(year=today.year - 70).isoformat()
    edits, ids = [], {}
    for name, rt in reversed(HEADS.items()):  # saved in another order than listed
        household = make_household(id=new_id(), rt=rt, rw="001")
        ids[name] = household_id = household.pop("id")
        head = make_member(household_id, name=name, birth_date=born)
        edits += [Edit("household", household_id, household), Edit("member", head.pop("id"), head)]
    await store.write(edits, actor="registry")
    return ids


def _next(page: str) -> str | None:
    """Where the page's "Berikutnya" link goes (``None``: the last page)."""
    found = re.search(r'<a href="([^"]+)">Berikutnya', page)
    return html.unescape(found[1]) if found else None


async def _every_page(client, path: str, params: dict[str, str]) -> list[str]:
    """The pages of a list, followed from the first by its "Berikutnya" links."""
    pages = [await (await client.get(path, params=params)).text()]
    while (following := _next(pages[-1])) is not None:
        assert len(pages) < 10
        pages.append(await (await client.get(following)).text())
    return pages


def _listed(page: str) -> list[str]:
    """The households a worklist page links to, in order."""
    return re.findall(r'href="/rumah-tangga/([^"/]+)/kunjungan', page)


async def test_the_worklist_pages_reach_every_household_and_keep_the_filter(client):
    ids = await _village(client.server.app[STORE])
    csrf = await login(client, "operator1")

    pages = await _every_page(client, "/verifikasi", {})

    assert len(pages) == 3
    assert [_listed(p) for p in pages] == [[ids[n] for n in list(HEADS)[i : i + 2]]
                                           for i in (0, 2, 4)]  # fmt: skip
    for number, page in enumerate(pages, 1):
        assert "5 rumah tangga dalam daftar." in page
        assert "<strong>0</strong> dari 5 rumah tangga sudah diverifikasi" in page
        assert f"Halaman {number} dari 3" in page
    assert (
        "Sebelumnya" not in pages[0] and 'href="/verifikasi?page=1">&larr; Sebelumnya' in pages[1]
    )

    rt_one = await _every_page(client, "/verifikasi", {"rt": "001", "daftar": "belum"})
    assert [_listed(p) for p in rt_one] == [[ids["Abah Asep"], ids["Abah Budi"]],
                                            [ids["Abah Cecep"]]]  # fmt: skip
    assert 'href="/verifikasi?rt=001&amp;daftar=belum&amp;page=2"' in rt_one[0]
    assert "3 rumah tangga dalam daftar." in rt_one[1]

    # A visit recorded from page 2 returns there, with the filter.
    back = "rt=001&daftar=belum&page=2"
    assert f"kembali={back.replace('=', '%3D').replace('&', '%26')}" in rt_one[1]
    form = {"csrf_token": csrf, "outcome": "ditemukan", "visit_date": "", "officer": ""}
    saved = await client.post(
        f"/rumah-tangga/{ids['Abah Cecep']}/kunjungan", data=form | {"kembali": back},
        allow_redirects=False,
    )  # fmt: skip
    assert saved.headers["Location"] == f"/verifikasi?{back}&pesan=kunjungan"
    after = await _every_page(client, "/verifikasi", {"daftar": "belum"})
    left = [household for page in after for household in _listed(page)]
    assert left == [ids[n] for n in HEADS if n != "Abah Cecep"]


async def test_the_printed_worklist_holds_every_household_and_is_streamed(client):
    await _village(client.server.app[STORE])
    await login(client, "operator1")

    answer = await client.get("/verifikasi/cetak")

    assert answer.status == 200
    assert answer.headers["Transfer-Encoding"] == "chunked"  # sent while it renders
    assert "Content-Security-Policy" in answer.headers
    assert answer.headers["Cache-Control"] == "no-store"
    printed = await answer.text()
    assert "· 5 rumah tangga</p>" in printed
    rows = re.findall(r"<td>(Abah [A-Za-z]+|Aki [A-Za-z]+)</td>", printed)
    assert rows == list(HEADS)
    only = await (await client.get("/verifikasi/cetak", params={"rt": "002"})).text()
    assert re.findall(r"<td>(Aki [A-Za-z]+)</td>", only) == ["Aki Dadang", "Aki Engkos"]
    assert "Abah" not in only


async def test_a_register_pages_its_people_and_prints_them_all(client):
    await _village(client.server.app[STORE])
    await login(client, "operator1")

    pages = await _every_page(client, "/kelompok-rentan/lansia", {})

    assert [_names(p) for p in pages] == [list(HEADS)[i : i + 2] for i in (0, 2, 4)]
    for page in pages:
        assert "<strong>5</strong> orang termasuk, <strong>0</strong> orang belum lengkap" in page
    assert '<td data-label="No">3</td>' in pages[1]  # numbered through the whole list
    rt_one = await _every_page(client, "/kelompok-rentan/lansia", {"rt": "001"})
    assert [_names(p) for p in rt_one] == [["Abah Asep", "Abah Budi"], ["Abah Cecep"]]
    assert 'href="/kelompok-rentan/lansia?rt=001&amp;page=2"' in rt_one[0]
    assert 'href="/kelompok-rentan/lansia/cetak?rt=001"' in rt_one[0]

    printed = await client.get("/kelompok-rentan/lansia/cetak")
    assert printed.headers["Transfer-Encoding"] == "chunked"
    text = await printed.text()
    assert _names(text) == list(HEADS)
    assert "data-cetak" in text and "Berikutnya" not in text
    rt_two = await (await client.get("/kelompok-rentan/lansia/cetak", params={"rt": "002"})).text()
    assert _names(rt_two) == ["Aki Dadang", "Aki Engkos"]
    assert "<strong>2</strong> orang termasuk" in rt_two


async def test_the_posyandu_screen_pages_a_group_and_a_service_returns_to_its_page(client):
    ids = await _village(client.server.app[STORE])
    csrf = await login(client, "operator1")
    today = client.server.app[STORE].box_time().today

    day = {"kelompok": "lansia", "tanggal": today.isoformat()}
    pages = await _every_page(client, "/posyandu", day)

    assert len(pages) == 3
    for page in pages:
        assert "<strong>0</strong> dari <strong>5</strong> orang sudah dilayani" in page
    listed = [re.findall(r'<td data-label="Nama"><a [^>]+>([^<]+)</a>', p) for p in pages]
    assert listed == [list(HEADS)[i : i + 2] for i in (0, 2, 4)]
    assert _next(pages[0]) == f"/posyandu?kelompok=lansia&tanggal={today.isoformat()}&page=2"

    # Recorded from page 2, the check-up shows on that page's row.
    record = re.search(r'href="(/posyandu/layanan/[^"]+)">Catat', pages[1])
    form_page = await (await client.get(html.unescape(record[1]))).text()
    assert 'name="page" value="2"' in form_page
    member = record[1].split("/")[3].split("?")[0]
    saved = await client.post(
        f"/posyandu/layanan/{member}",
        data={
            "csrf_token": csrf, "service_type": "pemeriksaan_lansia", "officer": "Kader",
            "officer_role": "kader", "service_date": today.isoformat(),
            "tanggal": today.isoformat(), "kelompok": "lansia", "rt": "", "rw": "", "page": "2",
        },
        allow_redirects=False,
    )  # fmt: skip
    assert saved.status == 303, await saved.text()
    location = saved.headers["Location"]
    assert "page=2" in location and location.endswith(f"#anggota-{member}")
    page = await (await client.get(location)).text()
    assert "<strong>1</strong> dari <strong>5</strong> orang sudah dilayani" in page
    assert ids["Abah Cecep"] in page


async def test_the_walk_reads_each_household_once_with_its_own_people_and_visits(client):
    store = client.server.app[STORE]
    ids = await _village(store)
    cecep = ids["Abah Cecep"]
    wife = make_member(cecep, name="Euis", relation_to_head="istri", sex="perempuan")
    gone = make_member(cecep, name="Ujang", relation_to_head="anak", status="meninggal")
    head = next(iter(await store.related("member", cecep)))
    visit = {"household_id": cecep, "visit_date": store.box_time().today.isoformat(),
             "officer": "Kader", "outcome": "ditemukan"}  # fmt: skip
    await store.write(
        [Edit("member", wife.pop("id"), wife), Edit("member", gone.pop("id"), gone),
         Edit("visit", new_id(), visit),
         Edit("layanan", new_id(), make_service({"id": head.id, "household_id": cecep}))],
        actor="kader",
    )  # fmt: skip

    walked = await store.read(lambda conn: list(walk_village(conn)))

    # One statement reads the village a household at a time, in the lists' order; a
    # household's services (same household_id) are not among its people.
    assert [h.head for h in walked] == list(HEADS)
    household = walked[2]
    assert household.id == cecep and household.members == 2
    assert [m.get("name") for m in household.active] == ["Abah Cecep", "Euis"]
    assert [v.outcome for v in household.visits] == ["ditemukan"]
    assert [h.members for h in walked if h.id != cecep] == [1, 1, 1, 1]
    only = await store.read(lambda conn: [h.head for h in walk_village(conn, rt="002")])
    assert only == ["Aki Dadang", "Aki Engkos"]
    # A page that stops reading early leaves its reader usable.
    first = await store.read(lambda conn: next(walk_village(conn)).head)
    assert first == "Abah Asep"
    assert len(await store.read(lambda conn: list(walk_village(conn)))) == 5
