"""HTTPS on the box and the hub: what `init` prints is the certificate that is served, the
office Wi-Fi sees neither a password nor a NIK, plain HTTP only redirects, and cookies and
HSTS keep the browser on HTTPS."""

from __future__ import annotations

import hashlib
import re
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp

from puskesos.fleet import Service, free_port
from tests.edge.box_process import ServedBox, household_body, init_box, puskesos
from tests.edge.conftest import PASSWORD
from tests.faultproxy import FaultProxy

FINGERPRINT = re.compile(r"SHA-256 fingerprint[^:]*: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")


def served_fingerprint(port: int) -> str:
    """The SHA-256 of the certificate a client is shown on ``port``, as browsers print it."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).digest().hex(":").upper()


def plain_answer(url: str, data: bytes | None = None) -> tuple[int, dict[str, str]]:
    """Status and headers of one plain-HTTP request, redirects not followed."""

    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        with urllib.request.build_opener(Keep).open(url, data, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


async def test_the_box_serves_https_with_the_certificate_init_printed_and_plain_http_redirects(
    tmp_path: Path,
):
    config = tmp_path / "edge.toml"
    made = puskesos(
        "edge", "init", "--config", str(config), "--village", "3201022001",
        "--node", "edge-3201022001-a", "--data-dir", str(tmp_path / "data"), "--plain",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    printed = FINGERPRINT.search(made.stdout)
    assert printed, made.stdout
    key = tmp_path / "data" / "tls" / "box.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        assert box.tls is not None
        assert served_fingerprint(box.tls[0]) == printed[1]
        # A bookmark of the plain address lands on the same page over HTTPS; a form posted
        # there is re-posted (308), not turned into a GET.
        status, headers = plain_answer(f"{box.plain_url}/rumah-tangga?rt=002")
        assert status == 308
        assert headers["Location"] == f"{box.url}/rumah-tangga?rt=002"
        status, headers = plain_answer(f"{box.plain_url}/masuk", b"username=x")
        assert (status, headers["Location"]) == (308, f"{box.url}/masuk")
        # Probes and Prometheus still read the plain port: no personal data is there.
        assert plain_answer(f"{box.plain_url}/healthz")[0] == 200
        assert plain_answer(f"{box.plain_url}/metrics")[0] == 200

        async with box.client() as session, session.get(f"{box.url}/masuk") as page:
            assert page.status == 200
            assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
            assert "Secure" in page.headers["Set-Cookie"]
        assert box.stop() == 0
    finally:
        box.kill()
    # Restarted, the box keeps its certificate: staff compared it once.
    box = ServedBox(config, tmp_path / "serve-again.log").start()
    try:
        assert box.tls is not None
        assert served_fingerprint(box.tls[0]) == printed[1]
    finally:
        box.kill()


async def test_a_sniffer_on_the_office_wifi_sees_no_password_and_no_nik(tmp_path: Path):
    config = init_box(tmp_path, users={"operator1": ("operator", PASSWORD)})
    box = ServedBox(config, tmp_path / "serve.log").start()
    assert box.tls is not None
    wifi = FaultProxy(box.tls[0])
    body = household_body(seed=41)
    nik = body["members"][0]["nik"]  # type: ignore[index]
    url = f"https://127.0.0.1:{wifi.port}"
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{url}/masuk") as page:
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
            assert csrf
            form = {"username": "operator1", "password": PASSWORD, "csrf_token": csrf[1]}
            async with session.post(f"{url}/masuk", data=form) as home:
                assert "Beranda" in await home.text()
                token = re.search(r'name="csrf_token" value="([^"]+)"', await home.text())
            assert token
            headers = {"X-CSRF-Token": token[1]}
            async with session.post(
                f"{url}/api/v1/households", json=body, headers=headers
            ) as saved:
                assert saved.status == 201, await saved.text()
                household = (await saved.json())["id"]
            async with session.get(f"{url}/rumah-tangga/{household}") as page:
                assert nik in await page.text()
        assert box.stop() == 0
    finally:
        wifi.stop()
        box.kill()
    assert len(wifi.seen) > 10_000, "the pages went through the sniffed link"
    for secret in (PASSWORD, nik, "operator1", "psk_session"):
        assert secret.encode() not in bytes(wifi.seen), f"{secret!r} crossed the Wi-Fi in clear"


def test_the_hub_serves_https_with_the_certificate_init_printed(tmp_path: Path):
    config = tmp_path / "hub.toml"
    made = puskesos(
        "hub", "init", "--config", str(config), "--data-dir", str(tmp_path / "data")
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    printed = FINGERPRINT.search(made.stdout)
    assert printed, made.stdout
    port, tls_port = free_port(), free_port()
    hub = Service(
        ["hub", "serve", "--config", str(config)], tmp_path / "hub.log", port,
        tls=(tls_port, tmp_path / "data" / "tls" / "hub.crt"),
    )  # fmt: skip
    hub.env = {
        "PUSKESOS_HUB_LISTEN_PORT": str(port),
        "PUSKESOS_HUB_TLS_PORT": str(tls_port),
        "PUSKESOS_BROKER_PORT": str(free_port()),  # nobody there: the hub serves alone
    }
    hub.start()
    try:
        assert served_fingerprint(tls_port) == printed[1]
        status, headers = plain_answer(f"{hub.plain_url}/antrian")
        assert (status, headers["Location"]) == (308, f"{hub.url}/antrian")
        status, headers = plain_answer(f"{hub.plain_url}/api/v1/devices")
        assert (status, headers["Location"]) == (308, f"{hub.url}/api/v1/devices")
        assert plain_answer(f"{hub.plain_url}/metrics")[0] == 200
        with hub.opener().open(f"{hub.url}/masuk", timeout=10) as page:
            assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
            assert "Secure" in page.headers["Set-Cookie"]
        assert hub.stop() == 0
    finally:
        hub.kill()
