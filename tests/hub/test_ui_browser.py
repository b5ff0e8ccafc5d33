"""The review UI in a real browser (Debian's Chromium, headless, through Playwright) on the
hub served on a free port: a verifier works through the queue on a laptop, the leader
reads the audit trail. A screenshot of the household page goes to /tmp for a person to
look at. The leader signs a period after its confirmation page, having cancelled once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from hub import auth, cycle, db, review
from hub.config import HubConfig
from hub.cycle_rules import State
from hub.keys import generate_key_pair
from hub.roles import Role
from hub.store import HubStore
from hub.web import create_app
from tests.browser import LAPTOP, PHONE, notice
from tests.edge.test_browser import _free_port
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family

pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.slow

PASSWORD = "rahasia-kabupaten-1"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite'}"
    db.upgrade(url)
    return url


@pytest.fixture
async def hub(sqlite_url, tmp_path) -> AsyncIterator[tuple[str, HubStore]]:
    """The hub (SQLite) on a real HTTP server, with a verifier and a leader."""
    engine = db.create_engine(sqlite_url)
    store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
    for username, role in (("verif", Role.VERIFIER), ("pimpinan", Role.LEADER)):
        await auth.create_user(
            store, username=username, full_name=username.title(), role=role,
            password=PASSWORD, actor="test",
        )  # fmt: skip
    config = HubConfig(data_dir=tmp_path, district="3201")
    app = create_app(config, store, password=None, with_ingest=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", store
    await runner.cleanup()
    await engine.dispose()


async def sign_in(page: Any, base_url: str, username: str) -> None:
    await page.goto(f"{base_url}/")  # not signed in: sent to /masuk
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button:has-text('Masuk')")
    await page.wait_for_url(f"{base_url}/")


async def test_a_verifier_works_through_the_queue_in_a_real_browser(hub, browser):
    base_url, store = hub
    box = Box("edge-a")
    await enrol(store, box)
    _, (head,) = await send_family(store, box)
    context = await browser.new_context(viewport=LAPTOP, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    blocked: list[str] = []  # anything the Content Security Policy refused
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )

    await sign_in(page, base_url, "verif")
    assert await page.locator("h1").inner_text() == "Ringkasan"
    await page.click("nav >> text=Antrian verifikasi")
    await page.click("text=Asep Saepudin")
    await page.click("button:has-text('Setujui')")
    await notice(page, "Perubahan disetujui.")

    # The box changes the head's occupation: old → new, and which box.
    await change(store, box, head, "member", occupation="Petani")
    await page.goto(f"{base_url}/antrian")
    await page.click("text=Asep Saepudin")
    row = page.locator("tr.perubahan", has_text="Petani")
    cells = await row.locator("td").all_inner_texts()
    assert cells[1:4] == ["Buruh harian lepas", "Petani", "edge-a"]
    await page.screenshot(path="/tmp/hub-antrian-detail.png", full_page=True)

    # Rejecting needs a reason, said next to the field; nothing is decided.
    await page.click("button:has-text('Tolak')")
    message = page.locator("#alasan-pesan")
    await message.wait_for()
    assert await message.inner_text() == (
        "Alasan wajib diisi untuk keputusan ditolak atau periksa lapangan."
    )
    assert await page.get_attribute("#alasan", "aria-invalid") == "true"
    await page.fill("#alasan", "Pekerjaan belum sesuai surat keterangan desa")
    await page.click("button:has-text('Tolak')")
    await notice(page, "Perubahan ditolak")
    await page.goto(f"{base_url}/antrian")
    await page.locator("text=Tidak ada perubahan yang menunggu verifikasi.").wait_for()

    # The page is styled by the shared stylesheet; the CSP ('self' only) blocked nothing.
    colour = await page.eval_on_selector("header.top", "el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(11, 79, 108)"
    assert blocked == []
    await page.click("button:has-text('Keluar')")
    await page.wait_for_url(f"{base_url}/masuk")

    # The leader reads who did what, newest first; the verifier sees no audit menu.
    await sign_in(page, base_url, "pimpinan")
    await page.click("nav >> text=Jejak audit")
    first = await page.locator("tbody tr").first.locator("td").all_inner_texts()
    assert first[1:3] == ["pimpinan", "Masuk"]
    assert await page.locator("td", has_text="Memutuskan verifikasi").count() == 2
    assert await page.locator("td", has_text="Melihat data keluarga").count() >= 2
    await context.close()


async def test_the_leader_cancels_then_confirms_the_signature_in_a_real_browser(
    hub, browser, tmp_path
):
    base_url, store = hub
    box = Box("edge-a")
    await enrol(store, box)
    household, _ = await send_family(store, box)
    config = HubConfig(data_dir=tmp_path, district="3201")
    generate_key_pair(tmp_path / "signing.key")
    period = (await cycle.ensure_current(store, config, store.wall())).period
    await review.decide(store, household, "disetujui", "", "verif", period=period)
    await cycle.freeze(store, config, period, "verif")
    await cycle.submit(store, period, "verif")
    context = await browser.new_context(viewport=LAPTOP, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await sign_in(page, base_url, "pimpinan")
    await page.click("nav >> text=Siklus bulanan")

    await page.click("button:has-text('Tandatangani')")
    heading = page.locator("h1")
    assert await heading.inner_text() == f"Tandatangani periode {period}?"
    assert "Data 1 keluarga dari 1 desa" in await page.inner_text("main")
    await page.click("text=Batal")
    await page.wait_for_url(f"{base_url}/siklus#periode-{period}")
    assert (await cycle.get(store.engine, period)).signed_ms is None  # nothing signed

    await page.click("button:has-text('Tandatangani')")
    await page.click("button:has-text('Ya, tandatangani')")
    await notice(page, "Periode ditandatangani.")
    assert (await cycle.get(store.engine, period)).state is State.SIGNED
    await context.close()


async def test_the_verifiers_guide_fits_a_phone(hub, browser):
    """The verifier opens Panduan from the menu on a 360-px phone: their own guide first,
    nothing to scroll sideways."""
    base_url, _ = hub
    context = await browser.new_context(viewport=PHONE, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await sign_in(page, base_url, "verif")
    await page.click("nav >> text=Panduan")
    await page.wait_for_url(f"{base_url}/bantuan")
    assert await page.inner_text("h1") == "Panduan: Verifikator kabupaten"
    await page.screenshot(path="/tmp/hub-panduan-360.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_a_verifier_decides_and_lands_on_the_next_family_in_a_real_browser(hub, browser):
    base_url, store = hub
    box = Box("edge-a")
    await enrol(store, box)
    await send_family(store, box, head="Budi Santoso")
    await send_family(store, box, head="Asep Saepudin")
    context = await browser.new_context(viewport=LAPTOP, locale="id-ID")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await sign_in(page, base_url, "verif")
    await page.click("nav >> text=Antrian verifikasi")
    await page.select_option("#urut", "nama")
    await page.click("button:has-text('Tampilkan')")
    await page.wait_for_url("**/antrian?urut=nama")
    await page.click("text=Asep Saepudin")

    # The decision form is on the first screen, above the changes.
    form = await page.locator("form.keputusan").bounding_box()
    assert form is not None and form["y"] + form["height"] < LAPTOP["height"]
    await page.click("button:has-text('Setujui')")
    await page.locator("h1", has_text="Keluarga Budi Santoso").wait_for()
    saved = await page.locator(".alert.ok").inner_text()
    assert saved.startswith("Keputusan untuk Keluarga Asep Saepudin tersimpan")
    assert "urut=nama" in page.url, "still in the queue the verifier chose"

    await page.click("button:has-text('Setujui')")
    await page.locator("text=Tidak ada perubahan yang menunggu verifikasi.").wait_for()
    await context.close()
