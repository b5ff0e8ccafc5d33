"""`puskesos demo`, the README's first command: a district with sample data comes up,
replicates, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from puskesos.fleet import environment, wait_for

pytestmark = pytest.mark.slow


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
        boxes = re.findall(r"Box (\S+)\s+(http://\S+)/\s+village (\d{10})", text)
        assert len(boxes) == 2 and "admin / demo-admin-2026" in text

        def api(path: str) -> dict:
            request = urllib.request.Request(hub_url + path)
            request.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        def synced() -> bool:
            devices = api("/api/v1/devices")["devices"]
            return len(devices) == 2 and all(
                d["online"] and d["changes_applied"] > 0 and d["reported"]["outbox"] == 0
                for d in devices
            )

        wait_for(synced, 90, "both boxes online and synced")
        for _node, url, village in boxes:
            with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
                assert response.status == 200
            records = api(f"/api/v1/records?village={village}&limit=1000")["records"]
            entities = {record["entity"] for record in records}
            assert {"household", "member", "complaint", "referral"} <= entities
    finally:
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[0]
    assert demo.returncode == 0, rest
    assert "Stopped." in rest
