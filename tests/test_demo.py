"""`puskesos demo`, the README's first command: a district with sample data comes up on the
documented ports, replicates, takes a visitor through the whole month (intake on a box, the
hub's review and cycle, delivery to the national receiver, published deciles back on the
box), and Ctrl-C stops it cleanly."""

from __future__ import annotations

import hashlib
import http.cookiejar
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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from puskesos.demo import HOUSEHOLDS_PER_BOX, PORTS, VILLAGES
from puskesos.fleet import environment, wait_for
from puskesos.samples import make_household_with_members
from tests.edge.test_ui import household_form

pytestmark = pytest.mark.slow


def trusted(url: str, fingerprints: dict[str, str]) -> ssl.SSLContext:
    """What a person does on the first visit: trust the certificate ``url`` presents once
    its SHA-256 fingerprint is one the demo printed."""
    parts = urllib.parse.urlsplit(url)
    pem = ssl.get_server_certificate((parts.hostname, parts.port))
    seen = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    assert seen in fingerprints.values(), f"{url} shows a certificate the demo did not print"
    return ssl.create_default_context(cadata=pem)


class Visitor:
    """A person in a browser on one service: a cookie jar, forms posted with the page's
    CSRF token, redirects followed."""

    def __init__(self, base_url: str, context: ssl.SSLContext) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=context),
        )
        self.url = ""

    def get(self, path: str) -> str:
        with self.opener.open(self.base_url + path, timeout=30) as response:
            self.url = response.geturl()
            return str(response.read().decode())

    def post(self, path: str, fields: list[tuple[str, str]], *, page: str | None = None) -> str:
        """Post ``fields`` to ``path`` with the CSRF token of ``page`` (default: ``path``'s)."""
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', self.get(page or path))
        assert csrf, f"{page or path} has no form"
        data = urllib.parse.urlencode([("csrf_token", csrf[1]), *fields]).encode()
        with self.opener.open(self.base_url + path, data, timeout=120) as response:
            self.url = response.geturl()
            return str(response.read().decode())

    def sign_in(self, username: str, password: str) -> None:
        fields = [("username", username), ("password", password), ("next", "/")]
        self.post("/masuk", fields)
        assert not self.url.endswith("/masuk"), f"{username} was not signed in"

    def upload(self, path: str, page: str, files: dict[str, Path]) -> str:
        """A multipart form: the CSRF token first, then ``files`` (field name → file)."""
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', self.get(page))
        assert csrf
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
                 f"{csrf[1]}\r\n".encode()]  # fmt: skip
        for name, file in files.items():
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            )
            parts.append(head.encode() + file.read_bytes() + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        request = urllib.request.Request(self.base_url + path, b"".join(parts))
        request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
        with self.opener.open(request, timeout=120) as response:
            self.url = response.geturl()
            return str(response.read().decode())


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

    def visitor(self, url: str) -> Visitor:
        return Visitor(url, trusted(url, self.fingerprints))

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
def test_the_demo_runs_a_district_that_replicates_and_stops_on_ctrl_c(demo):
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
    hub_tls = trusted(demo.hub_url, demo.fingerprints)
    wait_for(demo.synced, 120, "every box online and synced")
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
    verifier = Visitor(demo.hub_url, hub_tls)
    verifier.sign_in("verifikator", demo.login("hub-1", "verifikator"))
    queue = verifier.get("/antrian")
    assert f"Desa Wanaherang, Kec. Gunungputri ({2 * HOUSEHOLDS_PER_BOX})" in queue
    assert f"Desa Bojongkulur, Kec. Gunungputri ({HOUSEHOLDS_PER_BOX})" in queue
    # Signed in as a person, with the role said once ("Pimpinan (Pimpinan (...))" was).
    assert "Rina Marlina · Verifikator kabupaten" in queue
    # The two boxes of Wanaherang changed one address concurrently: a conflict to resolve.
    conflicts = wait_for(lambda: demo.api("/api/v1/conflicts")["conflicts"], 120, "a conflict")
    versions = {version["value"] for version in conflicts[0]["versions"]}
    assert versions == {"Kp. Pasir Angin No. 7", "Kp. Pasir Angin No. 7A"}
    assert "Kp. Pasir Angin No. 7A" in verifier.get("/konflik")
    # Every role can sign in: the district's IT on the hub, the village head on a box.
    Visitor(demo.hub_url, hub_tls).sign_in("it", demo.login("hub-1", "it"))
    _node, url, _village = demo.boxes[0]
    demo.visitor(url).sign_in("kades", demo.login("every box", "kades"))
    assert "Stopped." in stop(demo)


def test_a_visitor_goes_through_the_whole_month_of_the_demo(demo, tmp_path):
    """Intake on a box, approval, freeze, submission and signature at the hub, delivery
    to the demo's national receiver, published deciles imported and shown on the box."""
    node, box_url, village = demo.boxes[0]
    wait_for(demo.synced, 120, "every box online and synced")

    # A village operator registers a household on the box's form.
    operator = demo.visitor(box_url)
    operator.sign_in("operator", demo.login("every box", "operator"))
    household, members = make_household_with_members(3, village=village, seed=17_2026)
    fields = household_form("", household, members)[1:]  # the page's own token instead
    operator.post("/rumah-tangga/baru", fields)
    registered = re.fullmatch(r".*/rumah-tangga/([0-9a-f-]{36})(\?.*)?", operator.url)
    assert registered, operator.url
    household_id = registered[1]

    # It reaches the hub; the district's verifier approves it, freezes and submits.
    verifier = demo.visitor(demo.hub_url)
    verifier.sign_in("verifikator", demo.login("hub-1", "verifikator"))
    wait_for(lambda: household_id in verifier.get("/antrian"), 60, "the household in the queue")
    verifier.post(
        f"/antrian/{household_id}", [("keputusan", "disetujui")], page=f"/antrian/{household_id}"
    )
    siklus = verifier.get("/siklus")
    period = re.search(r'Periode (\d{4}-\d{2}) · <span class="status">Terbuka<', siklus)[1]
    page = verifier.post(f"/siklus/{period}/bekukan", [("konfirmasi", "ya")], page="/siklus")
    assert "Periode dibekukan." in page
    page = verifier.post(f"/siklus/{period}/ajukan", [("konfirmasi", "ya")], page="/siklus")
    assert "Periode diajukan ke pimpinan." in page

    # The regent's office signs (the demo has its district and its key): the hub delivers
    # to the demo's national receiver by itself.
    leader = demo.visitor(demo.hub_url)
    leader.sign_in("pimpinan", demo.login("hub-1", "pimpinan"))
    page = leader.post(f"/siklus/{period}/tandatangani", [("konfirmasi", "ya")], page="/siklus")
    assert "Periode ditandatangani." in page, page
    wait_for(
        lambda: (
            f'Periode {period} · <span class="status">Diteruskan ke pusat' in leader.get("/siklus")
        ),
        60,
        "the delivery to the national receiver",
    )

    # The receiver publishes the period with the command the demo printed; the hub's
    # admin imports the results.
    printed = next(line for line in demo.text.splitlines() if "national publish" in line)
    command = shlex.split(printed.replace("YYYY-MM", period))
    assert command[:3] == ["puskesos", "national", "publish"]
    published = subprocess.run(
        [sys.executable, "-m", "puskesos", *command[1:]],
        capture_output=True, text=True, env=environment(), timeout=120, check=False,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    results = Path(command[command.index("--out") + 1])
    decile = next(
        item["decile"]
        for item in map(json.loads, results.read_text(encoding="utf-8").splitlines()[1:])
        if item["id"] == household_id
    )
    admin = demo.visitor(demo.hub_url)
    admin.sign_in("admin", demo.login("hub-1", "admin"))
    page = admin.upload(
        "/siklus/impor",
        "/siklus",
        {"hasil": results, "tanda_tangan": results.with_name(results.name + ".sig")},
    )
    assert "Hasil pusat diimpor." in page, page

    # The village head sees the decile on the household's page of the box.
    head = demo.visitor(box_url)
    head.sign_in("kades", demo.login("every box", "kades"))
    shown = f"{decile} (periode {period})"
    wait_for(
        lambda: shown in head.get(f"/rumah-tangga/{household_id}"),
        60,
        f"decile {shown} on {node}",
    )
