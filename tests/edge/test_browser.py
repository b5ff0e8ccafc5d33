"""A real browser (Debian's Chromium, headless, through Playwright) on the real app served
on a free port: what a village operator does in a day, on a phone-sized screen and on a
laptop. Screenshots of the household form and the search go to /tmp for a person to look at."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from openpyxl import load_workbook

from edge import auth, services
from edge.web.app import STORE, create_app
from protocol.identity import mask_number
from tests.browser import LAPTOP, PHONE
from tests.edge.conftest import PASSWORD
from tests.edge.test_vulnerable_pages import _village
from tests.factories import make_household_with_members

pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def box_app(edge_config) -> web.Application:
    """The edge app that ``base_url`` serves (its store is open while it is served)."""
    return create_app(edge_config)


@pytest.fixture
async def base_url(box_app) -> AsyncIterator[str]:
    """The edge app on a real HTTP server in the test's event loop, with two accounts."""
    app = box_app
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    for username, role in (("operator1", auth.Role.OPERATOR), ("admin", auth.Role.ADMIN)):
        await auth.create_user(
            app[STORE], username=username, full_name=username.title(), role=role,
            password=PASSWORD, actor="test",
        )  # fmt: skip
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def log_in(page: Any, base_url: str, username: str) -> None:
    await page.goto(f"{base_url}/masuk")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button:has-text('Masuk')")
    await page.wait_for_url(f"{base_url}/")


async def fill_member(page: Any, index: int, member: dict[str, Any]) -> None:
    prefix = f"#members-{index}-"
    await page.fill(prefix + "nik", member["nik"])
    await page.fill(prefix + "name", member["name"])
    await page.select_option(prefix + "relation_to_head", member["relation_to_head"])
    await page.select_option(prefix + "sex", member["sex"])
    await page.fill(prefix + "birth_date", member["birth_date"])


def error_next_to(page: Any, input_id: str) -> Any:
    """The error message inside the same form field as the input ``input_id``."""
    return page.locator(".field", has=page.locator(f"#{input_id}")).locator(".field-error")


async def test_an_operators_day_in_a_real_browser(base_url, browser):
    household, members = make_household_with_members(3, seed=21)
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")

    # Register a household with three members, on a 360-px phone.
    await page.click("nav >> text=Rumah tangga")
    await page.click("text=Daftarkan rumah tangga")
    await page.fill("#address", household["address"])
    await page.fill("#rt", household["rt"])
    await page.fill("#rw", household["rw"])
    await page.fill("#kk_number", household["kk_number"])
    await page.select_option("#floor_material", "keramik")
    await page.check("input[name='programmes'][value='pkh']")
    await fill_member(page, 0, members[0])
    await page.click("button:has-text('Tambah anggota')")
    await fill_member(page, 1, members[1])
    await page.click("button:has-text('Tambah anggota')")
    assert await page.input_value("#members-0-nik") == members[0]["nik"]  # kept
    await fill_member(page, 2, members[2] | {"nik": members[2]["nik"][:-2]})
    await page.screenshot(path="/tmp/household-form-360.png", full_page=True)
    await page.click("button:has-text('Simpan')")

    # The bad NIK is explained in Indonesian next to its own field; the rest is kept.
    message = error_next_to(page, "members-2-nik")
    await message.wait_for()
    assert await message.inner_text() == "NIK harus 16 angka (sekarang 14)."
    assert await page.get_attribute("#members-2-nik", "aria-invalid") == "true"
    assert await error_next_to(page, "members-1-nik").count() == 0
    assert await page.input_value("#members-1-name") == members[1]["name"]
    assert await page.is_checked("input[name='programmes'][value='pkh']")
    await page.fill("#members-2-nik", members[2]["nik"])
    await page.click("button:has-text('Simpan')")
    await page.wait_for_selector("text=Data tersimpan.")
    household_url = page.url.split("?")[0]
    assert members[2]["nik"] in await page.inner_text("main")  # full NIK on the detail page

    # Find it again by a member's NIK: the list shows it masked.
    await page.click("nav >> text=Rumah tangga")
    await page.fill("#q", members[2]["nik"])
    await page.click("button:has-text('Cari')")
    results = await page.inner_text("table")
    assert members[0]["name"] in results and mask_number(members[0]["nik"]) in results
    assert members[0]["nik"] not in results

    # Log a complaint for the household, then refer it.
    await page.goto(household_url)
    await page.click("text=Pengaduan baru")
    await page.select_option("#channel", "rt_rw")
    await page.select_option("#category", "biaya_sekolah_ijazah")
    await page.fill("#reporter_name", members[1]["name"])
    await page.fill("#chronology", "Ijazah SMP anak ditahan karena tunggakan biaya sekolah.")
    await page.click("button:has-text('Simpan pengaduan')")
    await page.wait_for_selector("text=Data tersimpan.")
    assert await page.inner_text(".status") == "Baru"
    await page.click("main a:text-is('Rujuk')")
    await page.select_option("#destination", "sekolah")
    await page.fill("#destination_name", "SMPN 1 Gunung Putri")
    await page.fill("#need", "Penebusan ijazah dengan keringanan biaya.")
    await page.fill("#letter_number", "012/PSK/2025")
    await page.click("button:has-text('Simpan rujukan')")
    await page.wait_for_selector("h1:has-text('Rujukan ke Sekolah')")
    await page.click("dd >> a:has-text('Biaya sekolah')")
    assert await page.inner_text(".status") == "Dirujuk"

    # The musdes list prints without the navigation, with masked NIKs.
    await page.goto(f"{base_url}/musdes")
    await page.emulate_media(media="print")
    assert await page.is_hidden("header.top")
    assert await page.is_hidden("form.no-print")
    table = await page.inner_text("table.musdes")
    assert "Usulan keluarga baru" in table and mask_number(members[0]["nik"]) in table
    await page.emulate_media(media="screen")

    # An operator has no Pengguna page.
    assert await page.locator("nav >> text=Pengguna").count() == 0
    response = await page.goto(f"{base_url}/pengguna")
    assert response is not None and response.status == 403

    # The same form on a laptop.
    await page.set_viewport_size(LAPTOP)
    await page.goto(f"{household_url}/ubah")
    await page.screenshot(path="/tmp/household-form-1280.png", full_page=True)
    assert await page.input_value("#members-2-nik") == members[2]["nik"]
    await context.close()


async def test_searching_by_name_and_by_nik_leaves_no_number_in_the_browser(base_url, browser):
    """An operator finds a family by a part of the wife's surname, then by her NIK, opens
    the household and comes back: the answer is still there, and no address the browser
    kept holds the number."""
    household, members = make_household_with_members(2, seed=31)
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")
    await page.goto(f"{base_url}/rumah-tangga/baru")
    await page.fill("#address", household["address"])
    await page.fill("#rt", "004")
    await page.fill("#rw", "007")
    await fill_member(page, 0, members[0])
    await page.click("button:has-text('Tambah anggota')")
    await fill_member(page, 1, members[1])
    await page.click("button:has-text('Simpan')")
    await page.wait_for_selector("text=Data tersimpan.")
    head, wife = members[0]["name"], members[1]["name"]

    await page.click("nav >> text=Rumah tangga")
    await page.fill("#q", wife.split()[-1][1:].upper())
    await page.click("button:has-text('Cari')")
    await page.screenshot(path="/tmp/household-search-360.png", full_page=True)
    row = await page.inner_text("tbody tr")
    assert row.startswith(head) and "RT 004/RW 007" in row
    assert f"nama anggota {wife}" in row

    nik = members[1]["nik"]
    await page.fill("#q", nik)
    await page.click("button:has-text('Cari')")
    assert f"NIK {nik} terdaftar" in await page.inner_text("#jawaban-nik")
    assert nik not in page.url and "cari=" in page.url
    await page.click(f"tbody >> text={head}")
    await page.wait_for_selector("h1:has-text('Rumah tangga:')")
    await page.go_back()
    assert f"NIK {nik} terdaftar" in await page.inner_text("#jawaban-nik")
    history = await (await context.new_cdp_session(page)).send("Page.getNavigationHistory")
    addresses = [entry["url"] for entry in history["entries"]]
    assert len(addresses) >= 5 and not [a for a in addresses if nik in a]
    await context.close()


async def test_field_verification_on_a_phone(base_url, browser, edge_config):
    """An operator works through the round's worklist on a 360-px phone: records a visit in a
    few taps, sees the completeness list and prints the door-to-door list."""
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")
    heads = []
    for seed, rt, floor in ((41, "001", "keramik"), (42, "002", "")):
        household, members = make_household_with_members(2, seed=seed)
        await page.goto(f"{base_url}/rumah-tangga/baru")
        await page.fill("#address", household["address"])
        await page.fill("#rt", rt)
        await page.fill("#rw", "003")
        if floor:
            await page.select_option("#floor_material", floor)
        await fill_member(page, 0, members[0])
        await page.click("button:has-text('Simpan')")
        await page.wait_for_selector("text=Data tersimpan.")
        heads.append(members[0])

    await page.goto(f"{base_url}/")
    await page.click("nav >> text=Verifikasi")
    progress = page.locator("#kemajuan-putaran")
    assert "0 dari 2 rumah tangga sudah diverifikasi" in await progress.inner_text()
    await page.select_option("#rt", "002")
    await page.click("button:has-text('Tampilkan')")
    rows = page.locator("#daftar-kunjungan tbody tr")
    assert await rows.count() == 1
    assert "Belum lengkap" in await rows.first.inner_text()
    await page.click("#daftar-kunjungan >> text=Catat kunjungan")
    await page.check("input[name='outcome'][value='tidak_ditemukan']")
    await page.fill("#notes", "Rumah kosong sejak Agustus, kata ketua RT.")
    await page.screenshot(path="/tmp/visit-form-360.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.click("button:has-text('Simpan kunjungan')")
    await page.wait_for_selector("text=Kunjungan dicatat.")
    assert "rt=002" in page.url, "back on the worklist the officer came from"
    assert "1 dari 2 rumah tangga sudah diverifikasi" in await progress.inner_text()
    assert "1 tidak ditemukan" in await progress.inner_text()
    assert await rows.count() == 1, "still listed: its ranking variables are missing"
    assert "Belum dikunjungi" not in await rows.first.inner_text()
    await page.click("nav >> text=Usulan")
    assert "Tidak ditemukan saat verifikasi lapangan" in await page.inner_text("main")

    await page.click("nav >> text=Kelengkapan")
    assert "2 dari 2 rumah tangga belum lengkap" in await page.inner_text("main")
    await page.select_option("#rt", "002")
    await page.click("button:has-text('Tampilkan')")
    listed = await page.inner_text("table")
    assert heads[1]["name"] in listed and "Jenis lantai terluas" in listed
    assert heads[0]["name"] not in listed

    await page.goto(f"{base_url}/verifikasi?daftar=belum")
    await page.click("#cetak-daftar")
    await page.emulate_media(media="print")
    assert await page.is_hidden("header.top")
    printed = await page.inner_text("table.door-to-door")
    assert heads[0]["name"] in printed and heads[1]["name"] not in printed
    assert mask_number(heads[0]["nik"]) in printed and heads[0]["nik"] not in printed
    await context.close()


async def focused(page: Any) -> str:
    """The id of the element that has the keyboard focus."""
    return str(await page.evaluate("document.activeElement.id"))


async def in_viewport(page: Any, selector: str) -> bool:
    """Whether the element is wholly on the screen, without scrolling."""
    return bool(
        await page.evaluate(
            """(selector) => { const box = document.querySelector(selector).getBoundingClientRect();
                 return box.top >= 0 && box.bottom <= window.innerHeight; }""",
            selector,
        )
    )


async def test_the_household_form_opens_where_the_work_is_on_a_phone(base_url, browser):
    """The household form is some 3,000 px long on a 360-px phone. It opens at the member just
    added, and after a refused save at the first field to fix; the banner at the top lists
    each error as a link to its field."""
    household, members = make_household_with_members(3, seed=23)
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")
    await page.goto(f"{base_url}/rumah-tangga/baru")
    await page.fill("#address", household["address"])
    await page.fill("#kk_number", household["kk_number"])
    await fill_member(page, 0, members[0])
    for index in (1, 2):
        await page.click("button:has-text('Tambah anggota')")
        await page.wait_for_url(f"{base_url}/rumah-tangga/baru#members-{index}-nik")
        assert await focused(page) == f"members-{index}-nik"
        assert await in_viewport(page, f"#members-{index}-nik")
        assert await in_viewport(page, f"#anggota-{index} legend"), "its block's title shows"
        await fill_member(page, index, members[index])
    await page.fill("#members-2-nik", members[2]["nik"][:-2])
    await page.click("button:has-text('Simpan')")

    await error_next_to(page, "members-2-nik").wait_for()
    assert await focused(page) == "members-2-nik"
    assert await in_viewport(page, "#members-2-nik")
    assert await page.evaluate("window.scrollY") > PHONE["height"], "not the top of the page"
    await page.screenshot(path="/tmp/form-360.png")
    links = page.locator("#daftar-isian a")
    assert await links.all_inner_texts() == ["Anggota 3, NIK: NIK harus 16 angka (sekarang 14)."]
    await page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    assert not await in_viewport(page, "#members-2-nik")
    await links.first.click()
    await page.wait_for_url(f"{base_url}/rumah-tangga/baru#members-2-nik")
    assert await focused(page) == "members-2-nik"
    assert await in_viewport(page, "#members-2-nik")
    await context.close()


#: The box's pages with tables of rows: the lists, and a household's members and the audit
#: rows of a person's data report.
LIST_PAGES = (
    "/rumah-tangga",
    "/rumah-tangga?q={nik}",
    "/rumah-tangga/{household}",
    "/rumah-tangga/{household}/anggota/{member}/data-pribadi",
    "/usulan",
    "/musdes",
    "/pengaduan",
    "/rujukan",
    "/verifikasi",
    "/kelengkapan",
    "/audit",
    "/pengguna",
)

_STACKED = """() => [...document.querySelectorAll("main table")].map((table) => {
    const cell = table.querySelector("td[data-label]");
    return {
        wrapFits: table.parentElement.scrollWidth <= table.parentElement.clientWidth,
        rows: table.tBodies[0].rows.length,
        head: getComputedStyle(table.tHead).display,
        row: getComputedStyle(table.tBodies[0].rows[0]).display,
        label: cell && getComputedStyle(cell, "::before").content,
        expected: cell && `"${cell.dataset.label}: "`,
    };
})"""


async def test_every_list_fits_a_phone_as_stacked_rows(base_url, box_app, browser):
    """On a 360-px phone no list scrolls sideways: each row is a small card naming each of
    its values. On a laptop the lists are tables with their column heads."""
    store = box_app[STORE]
    actor = services.Actor("operator1", "operator", "127.0.0.1")
    today = store.box_time().today
    niks = []
    for seed in range(60, 66):
        household, members = make_household_with_members(3, seed=seed)
        household.pop("id")
        household["address"] = "Kp. Sukamaju Hilir, Gang Masjid Al-Ikhlas No. 12 (belakang balai)"
        if seed % 2:
            household.pop("floor_material")  # incomplete: on Kelengkapan
        for member in members:
            member.pop("id")
            member.pop("household_id")
        saved = await services.save_household(
            store, actor, household_id=None, household=household, members=members, today=today
        )
        assert saved.saved, saved.issues
        complaint = await services.create_record(
            store, actor, "complaint",
            {"channel": "rt_rw", "category": "bantuan_belum_cair", "household_id": saved.record_id,
             "reporter_name": "Sri Wahyuningsih Kusumawardhani",
             "chronology": "Bantuan PKH tahap ketiga belum diterima sampai sekarang."},
            today=today,
        )  # fmt: skip
        referral = await services.create_record(
            store, actor, "referral",
            {"complaint_id": complaint.record_id, "destination": "dinas_sosial",
             "destination_name": "Dinas Sosial Kabupaten Bogor, Bidang Perlindungan dan Jaminan",
             "need": "Pemeriksaan data penerima PKH yang belum cair tahap ketiga tahun ini.",
             "letter_number": "474/012/PSK/XII/2026"},
            today=today,
        )  # fmt: skip
        assert complaint.saved and referral.saved, complaint.issues + referral.issues
        niks.append(members[0]["nik"])
    head = (await store.related("member", saved.record_id))[0]
    ids = {"nik": niks[0], "household": saved.record_id, "member": head.id}
    for number in range(3):
        await auth.create_user(
            store, username=f"kader.posyandu{number}", full_name="Siti Nurhaliza Kusumawardhani",
            role=auth.Role.OPERATOR, password=PASSWORD, actor="test",
        )  # fmt: skip

    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "admin")
    for path in LIST_PAGES:
        await page.goto(base_url + path.format(**ids))
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= await page.evaluate("window.innerWidth"), path
        tables = await page.evaluate(_STACKED)
        assert tables and tables[0]["rows"] >= (1 if "q=" in path else 3), path
        for table in tables:
            assert table["wrapFits"], path
            assert (table["head"], table["row"]) == ("none", "block"), path
            assert table["label"] == table["expected"], path

    await page.set_viewport_size(LAPTOP)
    for path in LIST_PAGES:
        await page.goto(base_url + path.format(**ids))
        for table in await page.evaluate(_STACKED):
            assert (table["head"], table["row"]) == ("table-header-group", "table-row"), path


async def test_the_household_list_downloads_as_a_spreadsheet_excel_opens(
    base_url, browser, tmp_path
):
    """An operator searches the household list and clicks "Unduh XLSX": the file the
    browser saves opens as a workbook holding the found household, its NIK masked."""
    context = await browser.new_context(viewport=LAPTOP, locale="id-ID", accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")
    heads = []
    for seed in (51, 52):
        household, members = make_household_with_members(1, seed=seed)
        await page.goto(f"{base_url}/rumah-tangga/baru")
        await page.fill("#address", household["address"])
        await fill_member(page, 0, members[0])
        await page.click("button:has-text('Simpan')")
        await page.wait_for_selector("text=Data tersimpan.")
        heads.append(members[0])

    await page.goto(f"{base_url}/rumah-tangga")
    await page.fill("#q", heads[1]["name"])
    await page.click("button:has-text('Cari')")
    async with page.expect_download() as started:
        await page.click("#unduh-rumah-tangga >> text=Unduh XLSX")
    download = await started.value
    assert re.fullmatch(r"rumah-tangga-\d{10}-\d{4}-\d\d-\d\d\.xlsx", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    book = load_workbook(saved, read_only=True)
    rows = [list(row) for row in book.active.iter_rows(values_only=True)]
    assert rows[0][:2] == ["Kepala keluarga", "NIK kepala keluarga"]
    assert [row[:2] for row in rows[1:]] == [[heads[1]["name"], mask_number(heads[1]["nik"])]]
    await context.close()


async def test_the_guide_fits_a_phone_and_prints_without_the_menu(base_url, browser):
    """An operator opens Panduan from the menu on a 360-px phone: their own guide, nothing
    to scroll sideways; printed, it is the guide alone."""
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")
    await page.click("nav >> text=Panduan")
    await page.wait_for_url(f"{base_url}/bantuan")
    assert await page.inner_text("h1") == "Panduan: Operator desa"
    await page.screenshot(path="/tmp/panduan-360.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.click("#panduan-peran >> text=Kepala desa / lurah")
    assert await page.is_visible("#panduan-kepala_desa")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.emulate_media(media="print")
    assert await page.is_hidden("header.top") and await page.is_hidden("#panduan-peran")
    assert await page.is_visible("#panduan-kepala_desa #menyepakati")
    await context.close()


async def test_kepala_desa_agrees_every_draft_at_once_on_a_phone(base_url, box_app, browser):
    """The kepala desa, on a 360-px phone, picks every draft proposal with one button (no
    script needed), is told how many are picked, and agrees them with the SPTJM number."""
    store = box_app[STORE]
    await auth.create_user(
        store, username="kades", full_name="Kades", role=auth.Role.KEPALA_DESA,
        password=PASSWORD, actor="test",
    )  # fmt: skip
    actor = services.Actor("operator1", "operator", "127.0.0.1")
    households = []
    for seed in (71, 72, 73):
        household, members = make_household_with_members(2, seed=seed)
        household.pop("id")
        for member in members:
            member.pop("id")
            member.pop("household_id")
        saved = await services.save_household(
            store, actor, household_id=None, household=household, members=members,
            today=store.box_time().today,
        )  # fmt: skip
        assert saved.saved, saved.issues
        households.append(saved.record_id)
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "kades")
    await page.goto(f"{base_url}/usulan?status=draf")

    await page.click("button:has-text('Sepakati usulan terpilih')")
    assert await page.locator(".pilih-semua .field-error").inner_text() == (
        "Pilih minimal satu usulan."
    )
    await page.click("button:has-text('Pilih semua draf di halaman ini (3)')")
    await page.wait_for_selector("text=Semua usulan draf di halaman ini (3 usulan) sudah dipilih.")
    boxes = page.locator("input[name='proposal']")
    assert [await boxes.nth(i).is_checked() for i in range(await boxes.count())] == [True] * 3
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.screenshot(path="/tmp/usulan-pilih-semua-360.png", full_page=True)

    await page.check("input[name='how'][value='disepakati_sptjm']")
    await page.fill("#reference", "SPTJM/07/2026")
    await page.press("#reference", "Enter")  # Enter agrees; it does not pick again
    await page.wait_for_selector("text=Usulan yang dipilih sudah ditandai disepakati.")
    for household_id in households:
        [proposal] = await store.related("proposal", household_id)
        assert proposal.get("status") == "disepakati_sptjm"
        assert proposal.get("agreement_ref") == "SPTJM/07/2026"
    await context.close()


async def test_a_cadre_reads_a_vulnerable_group_register_on_a_phone(base_url, box_app, browser):
    """A Posyandu cadre opens Kelompok rentan on a 360-px phone, picks the lansia of one RT
    and prints it: no sideways scroll, rows as cards on the phone, a table on paper."""
    people = await _village(box_app[STORE])
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")

    await page.click("nav >> text=Kelompok rentan")
    await page.screenshot(path="/tmp/kelompok-rentan-ringkasan-360.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    lansia = await page.inner_text("#kelompok-lansia")
    assert "2 orang\n1 orang" in lansia  # termasuk, belum lengkap
    await page.click("#kelompok-lansia >> text=Lansia")
    await page.select_option("#rt", "003")
    await page.click("button:has-text('Tampilkan')")
    rows = page.locator("#daftar-rentan tbody tr")
    assert await rows.count() == 2
    first = await rows.first.inner_text()
    assert "Nenek Icih" in first and mask_number(people["turning"]["nik"]) in first
    await page.screenshot(path="/tmp/kelompok-rentan-360.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    [table] = await page.evaluate(_STACKED)
    assert table["wrapFits"] and (table["head"], table["row"]) == ("none", "block")

    await page.click("text=Cetak daftar lengkap")  # every row, the RT kept
    assert await page.locator("#daftar-rentan tbody tr").count() == 2
    assert await page.is_visible("button[data-cetak]")  # cetak.js shows it
    await page.emulate_media(media="print")
    assert await page.is_hidden("nav") and await page.is_hidden("p.no-print")
    [printed] = await page.evaluate(_STACKED)
    assert (printed["head"], printed["row"]) == ("table-header-group", "table-row")
    await context.close()


async def test_a_cadre_runs_a_hari_buka_session_on_a_phone_without_javascript(
    base_url, box_app, browser
):
    """On the Posyandu day a cadre, on a 360-px phone with JavaScript off, opens the
    balita list, weighs the child in three taps and lands back on the child's row; a
    mistyped weight is refused next to the field and the next try saves."""
    people = await _village(box_app[STORE])
    baby = people["baby"]["id"]
    context = await browser.new_context(viewport=PHONE, locale="id-ID", java_script_enabled=False)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await log_in(page, base_url, "operator1")

    await page.click("nav >> text=Posyandu")
    assert "0/1" in await page.inner_text("#kelompok-balita")
    await page.screenshot(path="/tmp/hari-buka-balita-360.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.click(f"#anggota-{baby} >> text=Catat")
    assert await page.is_visible("#weight_kg") and await page.is_visible("#muac_cm")
    assert await page.evaluate("document.activeElement.id") == "weight_kg"
    await page.fill("#weight_kg", "94")
    await page.click("button:has-text('Simpan layanan')")
    assert "harus antara 1 dan 30" in await page.inner_text("#weight_kg-pesan")
    await page.fill("#weight_kg", "9,6")
    await page.click("button:has-text('Simpan layanan')")
    await page.wait_for_selector("text=Layanan dicatat.")
    assert page.url.endswith(f"#anggota-{baby}")
    row = await page.inner_text(f"#anggota-{baby}")
    assert "Penimbangan balita 9.6 kg" in row
    assert "1/1" in await page.inner_text("#kelompok-balita")
    await page.screenshot(path="/tmp/hari-buka-360.png", full_page=True)
    await context.close()
