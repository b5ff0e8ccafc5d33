"""`puskesos demo`, the README's first command: a district with sample data comes up on the
documented ports, replicates, takes a visitor in Chromium through the whole month (intake on
a box on a phone, the hub's review and cycle on a laptop, delivery to the national receiver,
published deciles back on the box), and Ctrl-C stops it cleanly. Each page's certificate is
accepted only once its fingerprint is one the demo printed. Screenshots of the key pages go
to /tmp/demo-*.png for a person to look at."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from puskesos.demo import HOUSEHOLDS_PER_BOX, PORTS, VILLAGES
from puskesos.fleet import environment, wait_for
from puskesos.samples import make_household_with_members
from tests.browser import LAPTOP, PHONE, notice, reload_until, sign_in
from tests.edge.test_browser import fill_member

pytestmark = pytest.mark.slow


def trusted(url: str, fingerprints: dict[str, str]) -> ssl.SSLContext:
    """What a person does on the first visit: trust the certificate ``url`` presents once
    its SHA-256 fingerprint is one the demo printed."""
    parts = urllib.parse.urlsplit(url)
    pem = ssl.get_server_certificate((parts.hostname, parts.port))
    seen = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    assert seen in fingerprints.values(), f"{url} shows a certificate the demo did not print"
    return ssl.create_default_context(cadata=pem)


@dataclass
class Demo:
    """A running ``puskesos demo`` and what it printed."""

    process: subprocess.Popen[str]
    text: str
    hub_url: str
    token: str
    boxes: list[tuple[str, str, str]]  # (node, URL, village)
    fingerprints: dict[str, str]
    port_base: int

    def api(self, path: str) -> dict:
        request = urllib.request.Request(self.hub_url + path)
        request.add_header("Authorization", f"Bearer {self.token}")
        context = trusted(self.hub_url, self.fingerprints)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return json.loads(response.read())

    def login(self, service: str, username: str) -> str:
        """The password the demo printed for ``username`` under "Logins on ``service``"."""
        block = self.text.split(f"Logins on {service}", 1)[1].split("\n\n", 1)[0]
        found = re.search(rf"^ {{4}}{username} / (\S+) ", block, re.M)
        assert found, block
        return found[1]

    @asynccontextmanager
    async def window(
        self, browser: Any, url: str, username: str, viewport: dict[str, int]
    ) -> AsyncIterator[Any]:
        """A browser window on ``url`` (the hub or a box), signed in as ``username`` with
        the password the demo printed. Its certificate is accepted as a person accepts it:
        only once its fingerprint is one the demo printed."""
        await asyncio.to_thread(trusted, url, self.fingerprints)
        context = await browser.new_context(
            viewport=viewport, locale="id-ID", ignore_https_errors=True
        )
        try:
            page = await context.new_page()
            page.set_default_timeout(30_000)
            service = "hub-1" if url == self.hub_url else "every box"
            await sign_in(page, url, username, self.login(service, username))
            yield page
        finally:
            await context.close()

    def synced(self) -> bool:
        devices = self.api("/api/v1/devices")["devices"]
        return len(devices) == len(VILLAGES) and all(
            d["online"] and d["changes_applied"] > 0 and d["reported"]["outbox"] == 0
            for d in devices
        )


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports nobody listens on right now, below the
    range the OS hands out for "any free port", where the other tests' servers and
    connections would take them while the demo sets up."""
    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        base, probes = random.randrange(10_000, ephemeral - count), []
        try:
            for port in range(base, base + count):
                probes.append(socket.socket())
                probes[-1].bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def start_demo(folder: Path, broker: str, port_base: int) -> Demo:
    """Run ``puskesos demo`` as a visitor does and read what it prints until it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "puskesos", "demo", "--dir", str(folder), "--broker", broker,
         "--port-base", str(port_base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment(),
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    text = "".join(lines)
    hub_url, token = re.search(
        r"Hub API\s+(\S+)/api/v1/devices\s+\(Authorization: Bearer (\S+)\)", text
    ).groups()
    boxes = re.findall(r"Box (\S+)\s+(https://\S+)/\s+village (\d{10})", text)
    printed = re.findall(r"^ {4}(\S+)\s+((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$", text, re.M)
    fingerprints = {name: value.replace(":", "").lower() for name, value in printed}
    return Demo(process, text, hub_url, token, boxes, fingerprints, port_base)


def stop(demo: Demo) -> str:
    """Ctrl-C; what the demo printed on its way out."""
    demo.process.send_signal(signal.SIGINT)
    rest = demo.process.communicate(timeout=60)[0]
    assert demo.process.returncode == 0, rest
    return str(rest)


@pytest.fixture
def demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Demo]:
    """The demo with the broker of the test's ``broker`` parameter (default Mosquitto)."""
    running = start_demo(tmp_path, getattr(request, "param", "mosquitto"), free_ports(len(PORTS)))
    yield running
    if running.process.poll() is None:
        stop(running)


@pytest.mark.parametrize("demo", ["mosquitto", "amqtt"], indirect=True)
async def test_the_demo_runs_a_district_that_replicates_and_stops_on_ctrl_c(demo, browser):
    assert [(node, village) for node, _url, village in demo.boxes] == [
        (node, village) for village, node in VILLAGES
    ]
    assert demo.login("every box", "admin") == "kopi-tubruk-2026"  # as before: bookmarks
    # --port-base: every service on the port the README's table gives it, so bookmarks
    # survive a restart.
    base = demo.port_base
    assert f"mqtt://127.0.0.1:{base} " in demo.text
    assert f"http://127.0.0.1:{base + 1}/metrics" in demo.text
    assert demo.hub_url == f"https://127.0.0.1:{base + 2}"
    assert f"http://127.0.0.1:{base + 3}/healthz" in demo.text
    assert [url for _n, url, _v in demo.boxes] == [
        f"https://127.0.0.1:{base + port}" for port in (5, 7, 9)
    ]
    assert set(demo.fingerprints) == {"hub-1", *(node for node, _u, _v in demo.boxes)}
    await asyncio.to_thread(wait_for, demo.synced, 120, "every box online and synced")
    for port in (base + 1, base + 3, base + 4, base + 6, base + 8):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
    for _node, url, village in demo.boxes:
        with urllib.request.urlopen(
            f"{url}/healthz", timeout=10, context=trusted(url, demo.fingerprints)
        ) as response:
            assert response.status == 200
        records = demo.api(f"/api/v1/records?village={village}&limit=1000")["records"]
        entities = {record["entity"] for record in records}
        assert {"household", "member", "complaint", "referral"} <= entities
    # Every sample household can be told apart: its own address and its own head.
    records = [
        record
        for village in {village for village, _node in VILLAGES}
        for record in demo.api(f"/api/v1/records?village={village}&limit=1000")["records"]
    ]
    addresses = [r["values"]["address"] for r in records if r["entity"] == "household"]
    heads = [
        r["values"]["name"]
        for r in records
        if r["entity"] == "member" and r["values"]["relation_to_head"] == "kepala_keluarga"
    ]
    assert len(addresses) == len(heads) == len(VILLAGES) * HOUSEHOLDS_PER_BOX
    assert len(set(addresses)) == len(set(heads)) == len(addresses)
    # The district's verifier signs in with the printed login; the boxes' households wait
    # in the queue of both villages (two boxes' worth in Wanaherang).
    async with demo.window(browser, demo.hub_url, "verifikator", LAPTOP) as page:
        await page.click("nav >> text=Antrian verifikasi")
        villages = await page.locator("#desa option").all_inner_texts()
        assert f"Desa Wanaherang, Kec. Gunungputri ({2 * HOUSEHOLDS_PER_BOX})" in villages
        assert f"Desa Bojongkulur, Kec. Gunungputri ({HOUSEHOLDS_PER_BOX})" in villages
        # Signed in as a person, with the role said once ("Pimpinan (Pimpinan (...))" was).
        assert "Rina Marlina · Verifikator kabupaten" in await page.inner_text("header.top")
        # The two boxes of Wanaherang changed one address concurrently: a conflict.
        conflicts = await asyncio.to_thread(
            wait_for, lambda: demo.api("/api/v1/conflicts")["conflicts"], 120, "a conflict"
        )
        versions = {version["value"] for version in conflicts[0]["versions"]}
        assert versions == {"Kp. Pasir Angin No. 7", "Kp. Pasir Angin No. 7A"}
        await page.click("nav >> text=Konflik")
        assert "Kp. Pasir Angin No. 7A" in await page.inner_text("main")
    # Every role can sign in: the district's IT on the hub, the village head on a box.
    async with demo.window(browser, demo.hub_url, "it", LAPTOP) as page:
        assert await page.locator("nav >> text=Perangkat").count() == 1
    async with demo.window(browser, demo.boxes[0][1], "kades", PHONE) as page:
        assert await page.locator("nav >> text=Jejak audit").count() == 1
    assert "Stopped." in await asyncio.to_thread(stop, demo)


async def test_a_visitor_goes_through_the_whole_month_of_the_demo(demo, browser):
    """Intake on a box on a phone, approval, freeze, submission and signature at the hub on
    a laptop, delivery to the demo's national receiver, published deciles imported on
    Siklus bulanan and shown to the village head on the box, each step in Chromium."""
    _node, box_url, village = demo.boxes[0]
    hub_url = demo.hub_url
    await asyncio.to_thread(wait_for, demo.synced, 120, "every box online and synced")

    # A village operator registers a household with three members on a 360-px phone.
    household, members = make_household_with_members(3, village=village, seed=17_2026)
    head = members[0]["name"]
    async with demo.window(browser, box_url, "operator", PHONE) as page:
        await page.click("nav >> text=Rumah tangga")
        await page.click("text=Daftarkan rumah tangga")
        for name in ("address", "rt", "rw", "kk_number"):
            await page.fill(f"#{name}", household[name])
        for name in ("floor_material", "wall_material", "roof_material"):
            await page.select_option(f"#{name}", household[name])
        await page.check(f"input[name='programmes'][value='{household['programmes'][0]}']")
        for index, member in enumerate(members):
            if index:
                await page.click("button:has-text('Tambah anggota')")
            await fill_member(page, index, member)
        await page.screenshot(path="/tmp/demo-box-form-360.png", full_page=True)
        await page.click("button:has-text('Simpan')")
        await notice(page, "Data tersimpan.")
        household_id = page.url.split("/rumah-tangga/")[1].split("?")[0]

    # It reaches the hub; the district's verifier approves it, freezes and submits the
    # period, each step after its confirmation page.
    async with demo.window(browser, hub_url, "verifikator", LAPTOP) as page:
        await reload_until(page, f"{hub_url}/antrian", head, 60)
        link = page.locator(f"a[href='/antrian/{household_id}']")
        assert "Keluarga baru" in await page.locator("tr", has=link).inner_text()
        await link.click()
        assert household["address"] in await page.inner_text("main")
        await page.screenshot(path="/tmp/demo-hub-antrian-1280.png", full_page=True)
        await page.click("button:has-text('Setujui')")
        await notice(page, "Perubahan disetujui.")
        await page.click("nav >> text=Siklus bulanan")
        open_period = page.locator(
            "section.periode", has=page.locator(".status:text-is('Terbuka')")
        )
        period = (await open_period.get_attribute("id")).removeprefix("periode-")
        await open_period.locator("button:has-text('Bekukan sekarang')").click()
        assert await page.inner_text("h1") == f"Bekukan periode {period}?"
        rows = await page.locator("tbody tr").all_inner_texts()
        assert f"Desa Wanaherang, Kec. Gunungputri {village}\t1" in rows  # ours, only
        await page.click("button:has-text('Ya, bekukan')")
        await notice(page, "Periode dibekukan.")
        await page.click(f"#periode-{period} button:has-text('Ajukan ke pimpinan')")
        await page.click("button:has-text('Ya, ajukan')")
        await notice(page, "Periode diajukan ke pimpinan.")

    # The regent's office signs (the demo has its district and its key): the hub delivers
    # to the demo's national receiver by itself.
    async with demo.window(browser, hub_url, "pimpinan", LAPTOP) as page:
        await page.click("nav >> text=Siklus bulanan")
        await page.click(f"#periode-{period} button:has-text('Tandatangani')")
        assert await page.inner_text("h1") == f"Tandatangani periode {period}?"
        await page.screenshot(path="/tmp/demo-hub-tandatangani-1280.png", full_page=True)
        await page.click("button:has-text('Ya, tandatangani')")
        await notice(page, "Periode ditandatangani.")
        await reload_until(
            page, f"{hub_url}/siklus", "Diteruskan ke pusat", 60, f"#periode-{period} .status"
        )

    # The receiver publishes the period with the command the demo printed; the hub's
    # admin imports the results through the page's file inputs.
    printed = next(line for line in demo.text.splitlines() if "national publish" in line)
    command = shlex.split(printed.replace("YYYY-MM", period))
    assert command[:3] == ["puskesos", "national", "publish"]
    published = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "puskesos", *command[1:]],
        capture_output=True, text=True, env=environment(), timeout=120, check=False,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    results = Path(command[command.index("--out") + 1])
    decile = next(
        item["decile"]
        for item in map(json.loads, results.read_text(encoding="utf-8").splitlines()[1:])
        if item["id"] == household_id
    )
    async with demo.window(browser, hub_url, "admin", LAPTOP) as page:
        await page.click("nav >> text=Siklus bulanan")
        await page.set_input_files("#hasil", str(results))
        await page.set_input_files("#tanda_tangan", f"{results}.sig")
        await page.click("button:has-text('Impor hasil')")
        await notice(page, "Hasil pusat diimpor.")
        assert await page.inner_text(f"#periode-{period} .status") == "Diterbitkan"
        await page.screenshot(path="/tmp/demo-hub-siklus-1280.png", full_page=True)

    # The village head finds the household on the box, on a phone: decision and decile.
    async with demo.window(browser, box_url, "kades", PHONE) as page:
        await page.click("nav >> text=Rumah tangga")
        await page.fill("#q", head)
        await page.click("button:has-text('Cari')")
        await page.click(f"a[href='/rumah-tangga/{household_id}']")
        shown = await reload_until(
            page, page.url, f"{decile} (periode {period})", 60, "#dari-kabupaten"
        )
        assert "Disetujui" in shown
        await page.screenshot(path="/tmp/demo-box-desil-360.png", full_page=True)
