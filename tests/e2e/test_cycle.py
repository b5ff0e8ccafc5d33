"""A whole month of the district in a real browser: households registered on a village box
reach the hub over the real broker; the verifier approves one and rejects another; the
period is frozen and submitted; the regent's office signs; the hub delivers the signed
dataset to the reference national receiver; the admin imports the published results; and
the village box's household page shows the decision and the decile."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.config import load_config
from puskesos.fleet import Fleet, puskesos, wait_for
from tests.browser import LAPTOP, reload_until, sign_in
from tests.e2e.conftest import VILLAGE_A, converged, register
from tests.national.receiver import ServedReceiver

pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.slow

DISTRICT = VILLAGE_A[:4]
PASSWORD = "rahasia-kabupaten-1"
BOX_PASSWORD = "rahasia-balai-123"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ServedReceiver]:
    served = ServedReceiver(tmp_path / "national")
    served.start()
    yield served
    served.stop()


def district_with_national(make_fleet: Callable[..., Fleet], receiver: ServedReceiver) -> Fleet:
    """A district (broker, hub, one box of village A) whose hub delivers to ``receiver``:
    signing key made and registered, token stored, the receiver's key trusted."""
    fleet = make_fleet(
        district=DISTRICT,
        hub_settings={
            "national_url": receiver.url,
            "national_token_file": "national.token",
            "national_key_file": str(receiver.data_dir / "receiver.pub"),
        },
    )
    hub = fleet.hubs[0]
    data_dir = load_config(hub.config).data_dir
    puskesos("hub", "keys", "init", "--config", str(hub.config))
    token = receiver.add_district(DISTRICT, data_dir / "signing.key")
    (data_dir / "national.token").write_text(token + "\n", encoding="utf-8")
    for username, role in (("verif", "verifikator"), ("bupati", "pimpinan"), ("admin", "admin")):
        puskesos(
            "hub", "user", "add", "--config", str(hub.config), "--username", username,
            "--role", role, "--full-name", username.title(), stdin=PASSWORD + "\n",
        )  # fmt: skip
    fleet.enrol(VILLAGE_A, "edge-a1")
    fleet.write_broker_config()
    fleet.start()
    return fleet


async def test_a_month_from_village_intake_to_the_published_decile_on_the_box(
    make_fleet, receiver, browser, tmp_path
):
    fleet = await asyncio.to_thread(district_with_national, make_fleet, receiver)
    hub, box = fleet.hubs[0], fleet.boxes[0]
    hub_url = hub.service.url
    approved, rejected = register(box, 501), register(box, 502)
    await asyncio.to_thread(
        wait_for, lambda: converged(hub, VILLAGE_A, [box]), 60, "the households at the hub"
    )

    # The verifier works through the queue.
    context = await browser.new_context(viewport=LAPTOP, ignore_https_errors=True)
    page = await context.new_page()
    await sign_in(page, hub_url, "verif", PASSWORD)
    await page.goto(f"{hub_url}/antrian")
    assert approved in await page.content() and rejected in await page.content()
    await page.goto(f"{hub_url}/antrian/{approved}")
    assert "Alamat" in await page.inner_text("main")  # old → new per field
    await page.click("button[name=keputusan][value=disetujui]")
    await page.goto(f"{hub_url}/antrian/{rejected}")
    await page.click("button[name=keputusan][value=ditolak]")
    assert "wajib" in await page.inner_text("main")  # no reason: refused next to the field
    await page.fill("#alasan", "Foto rumah belum dilampirkan")
    await page.click("button[name=keputusan][value=ditolak]")
    await page.goto(f"{hub_url}/antrian")
    assert approved not in await page.content() and rejected not in await page.content()

    # The verifier freezes the period early and submits it; a verifier cannot sign.
    await page.goto(f"{hub_url}/siklus")
    await page.click("button:has-text('Bekukan sekarang')")
    await page.click("button:has-text('Ya, bekukan')")  # its confirmation page
    await reload_until(page, f"{hub_url}/siklus", "Dibekukan", 10)
    await page.click("button:has-text('Ajukan ke pimpinan')")
    await page.click("button:has-text('Ya, ajukan')")  # its confirmation page
    await reload_until(page, f"{hub_url}/siklus", "Ditinjau pimpinan", 10)
    assert await page.locator("button:has-text('Tandatangani')").count() == 0
    await context.close()

    # The regent's office signs; the hub delivers to the national receiver by itself.
    context = await browser.new_context(viewport=LAPTOP, ignore_https_errors=True)
    page = await context.new_page()
    await sign_in(page, hub_url, "bupati", PASSWORD)
    await page.goto(f"{hub_url}/siklus")
    await page.click("button:has-text('Tandatangani')")
    await page.click("button:has-text('Ya, tandatangani')")  # its confirmation page
    await reload_until(page, f"{hub_url}/siklus", "Diteruskan ke pusat", 60)
    receipt = await page.inner_text("main")
    assert "Tanda terima pusat: diterima" in receipt and "received_ms" not in receipt
    await context.close()
    (delivery,) = (receiver.data_dir / "deliveries" / DISTRICT).iterdir()
    period = delivery.name
    households = (delivery / "household.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in households] == [approved]  # not the rejected

    # The receiver publishes the period's results; the admin imports them.
    results = tmp_path / "published.jsonl"
    puskesos(
        "national", "publish", "--config", str(receiver.config), "--district", DISTRICT,
        "--period", period, "--out", str(results),
    )  # fmt: skip
    context = await browser.new_context(viewport=LAPTOP, ignore_https_errors=True)
    page = await context.new_page()
    await sign_in(page, hub_url, "admin", PASSWORD)
    await page.goto(f"{hub_url}/siklus")
    await page.set_input_files("#hasil", str(results))
    await page.set_input_files("#tanda_tangan", f"{results}.sig")
    await page.click("button:has-text('Impor hasil')")
    await reload_until(page, f"{hub_url}/siklus", "Diterbitkan", 10)
    await context.close()
    decile = json.loads(results.read_text(encoding="utf-8").splitlines()[1])["decile"]

    # The village box shows the decision and the decile on its household pages.
    context = await browser.new_context(viewport=LAPTOP, ignore_https_errors=True)
    page = await context.new_page()
    await sign_in(page, box.service.url, "admin", BOX_PASSWORD)

    async def card(household: str) -> str:
        await page.goto(f"{box.service.url}/rumah-tangga/{household}")
        return str(await page.inner_text("#dari-kabupaten"))

    for _ in range(60):
        shown = await card(approved)
        if f"{decile} (periode {period})" in shown:
            break
        await asyncio.sleep(1)
    assert f"{decile} (periode {period})" in shown and "Disetujui" in shown
    assert "Ditolak" in await card(rejected)
    assert "Foto rumah belum dilampirkan" in await card(rejected)
    await context.close()
