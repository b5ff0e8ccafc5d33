"""`puskesos demo`, the README's first command: a district with sample data comes up,
replicates, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from puskesos.demo import HOUSEHOLDS_PER_BOX
from puskesos.fleet import environment, wait_for

pytestmark = pytest.mark.slow


def trusted(url: str, fingerprints: dict[str, str]) -> ssl.SSLContext:
    """What a person does on the first visit: trust the certificate ``url`` presents once
    its SHA-256 fingerprint is one the demo printed."""
    parts = urllib.parse.urlsplit(url)
    pem = ssl.get_server_certificate((parts.hostname, parts.port))
    seen = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    assert seen in fingerprints.values(), f"{url} shows a certificate the demo did not print"
    return ssl.create_default_context(cadata=pem)


def signed_in_page(
    base_url: str, context: ssl.SSLContext, username: str, password: str, path: str
) -> str:
    """``path`` of the hub's review UI, signed in through its form like a browser."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        urllib.request.HTTPSHandler(context=context),
    )
    form = opener.open(f"{base_url}/masuk", timeout=10).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    body = {"username": username, "password": password, "csrf_token": csrf, "next": "/"}
    opener.open(f"{base_url}/masuk", urllib.parse.urlencode(body).encode(), timeout=30)
    return str(opener.open(base_url + path, timeout=10).read().decode())


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_the_demo_runs_a_district_that_replicates_and_stops_on_ctrl_c(tmp_path, broker):
    demo = subprocess.Popen(
        [sys.executable, "-m", "puskesos", "demo", "--dir", str(tmp_path), "--broker", broker],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        hub_url, token = re.search(
            r"Hub API\s+(\S+)/api/v1/devices\s+\(Authorization: Bearer (\S+)\)", text
        ).groups()
        boxes = re.findall(r"Box (\S+)\s+(https://\S+)/\s+village (\d{10})", text)
        assert len(boxes) == 2 and "admin / kopi-tubruk-2026" in text
        printed = re.findall(r"^ {4}(\S+)\s+((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$", text, re.M)
        fingerprints = {name: value.replace(":", "").lower() for name, value in printed}
        assert set(fingerprints) == {"hub-1", *(node for node, _u, _v in boxes)}
        hub_tls = trusted(hub_url, fingerprints)

        def api(path: str) -> dict:
            request = urllib.request.Request(hub_url + path)
            request.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(request, timeout=10, context=hub_tls) as response:
                return json.loads(response.read())

        def synced() -> bool:
            devices = api("/api/v1/devices")["devices"]
            return len(devices) == 2 and all(
                d["online"] and d["changes_applied"] > 0 and d["reported"]["outbox"] == 0
                for d in devices
            )

        wait_for(synced, 90, "both boxes online and synced")
        for _node, url, village in boxes:
            with urllib.request.urlopen(
                f"{url}/healthz", timeout=10, context=trusted(url, fingerprints)
            ) as response:
                assert response.status == 200
            records = api(f"/api/v1/records?village={village}&limit=1000")["records"]
            entities = {record["entity"] for record in records}
            assert {"household", "member", "complaint", "referral"} <= entities
        # The district's verifier signs in with the printed login; the boxes' households
        # wait in the queue of both villages.
        queue = signed_in_page(hub_url, hub_tls, "verifikator", "sambal-hijau-2026", "/antrian")
        assert all(f"{village} ({HOUSEHOLDS_PER_BOX})" in queue for _n, _u, village in boxes)
        # Signed in as a person, with the role said once ("Pimpinan (Pimpinan (...))" was).
        assert "Rina Marlina · Verifikator kabupaten" in queue
    finally:
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[0]
    assert demo.returncode == 0, rest
    assert "Stopped." in rest
