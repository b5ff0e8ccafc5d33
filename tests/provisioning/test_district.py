"""A district set up by the playbooks, then run from what they rendered: site.yml twice
(the second run changes nothing), the units checked by systemd, a box syncing to the hub
through Mosquitto, a dead box replaced, a rollout stopped by a box that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
import socket
import sqlite3
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.boxsecrets import broker_password, session_secret
from edge.config import load_config as load_edge_config
from edge.db import connect
from edge.keys import encrypted, open_with_password, setup_key
from hub.config import load_config as load_hub_config
from protocol.topics import Topic, TopicKind
from puskesos.fleet import Box, Hub, sign_in, wait_for
from puskesos.keyslots import load_recovery_private, open_district, read_slots
from puskesos.mqtt import MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.edge.box_process import household_body
from tests.edge.test_box_secrets import files_holding
from tests.provisioning.conftest import (
    HUB_VPN_ADDRESS,
    VILLAGE_A,
    District,
    ProvisionedMosquitto,
    UnitService,
    build_wheel,
    recap,
    unit_settings,
)

pytestmark = pytest.mark.slow

BOXES = ("desa-a", "desa-b")
EDGE_UNITS = (
    "puskesos-edge.service",
    "puskesos-edge-backup.service",
    "puskesos-edge-backup.timer",
    "puskesos-edge-health.service",
    "puskesos-edge-health.timer",
)


def broker_accepts(district: District, username: str, password: str) -> bool:
    """Whether the provisioned broker lets ``username`` in over TLS with ``password``."""

    async def attempt() -> bool:
        link = MqttLink(
            BrokerConfig(
                host="127.0.0.1",
                port=district.broker_port,
                tls=True,
                ca_file=str(district.ca_dir / "ca.crt"),
                username=username,
            ),
            client_id=f"{username}-probe",
            password=password,
            backoff_min_s=0.2,
            backoff_max_s=0.5,
        )
        await link.start()
        try:
            return await link.wait_connected(5)
        finally:
            await link.stop()

    return asyncio.run(attempt())


def box_password(district: District, host: str) -> str:
    """The broker password a box has: in its plain file, or sealed to an encrypted box (opened
    with its setup slot, or once it has an account with that admin's password)."""
    edge = load_edge_config(district.config(host))
    key = None
    if encrypted(edge):
        key = setup_key(edge) or open_with_password(edge, "admin", "rahasia-balai-123")
        assert key is not None
    password = broker_password(edge, key)
    assert password
    return password


def start_box(district: District, host: str) -> Box:
    """Start a provisioned box from its unit, with an admin account and an API token."""
    config = district.config(host)
    edge = load_edge_config(config)
    district.puskesos(
        host, "edge", "user", "add", "--config", str(config), "--username", "admin",
        "--full-name", "Admin Desa", "--role", "admin", stdin="rahasia-balai-123\n",
    )  # fmt: skip
    token = district.puskesos(
        host, "edge", "token", "add", "--config", str(config), "--username", "admin",
        "--name", "uji",
    ).strip()  # fmt: skip
    service = UnitService(
        district.unit(host, "puskesos-edge.service"),
        district.machine(host) / "edge.log",
        edge.listen_port,
        tls=(edge.tls_port, district.ca_dir / "ca.crt"),  # the district CA signed it
    )
    district.services.append(service)
    service.start(healthy=True)
    return Box(edge.village, edge.node, district.machine(host), config, service, token)


def holds(box: Box, household: str) -> bool:
    """Whether the box shows the household."""
    try:
        box.api(f"/api/v1/households/{household}")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True


def at_hub(hub: Hub, village: str) -> set[str]:
    """The ids of a village's records at the hub."""
    return {
        row["id"] for row in hub.api(f"/api/v1/records?village={village}&limit=1000")["records"]
    }


@dataclass
class Running:
    """The provisioned broker, hub and the box of host desa-a (its successor once replaced),
    started; a household saved on the first box."""

    broker: ProvisionedMosquitto
    hub: Hub
    box: Box
    household: str


@pytest.fixture(scope="module")
def running(district: District) -> Iterator[Running]:
    """Broker, hub and box A started from what site.yml rendered; a household saved on A."""
    broker = ProvisionedMosquitto(district.machine("broker"), district.broker_port)
    district.services.append(broker)
    broker.start()
    hub_config = district.config("hub")
    service = UnitService(
        district.unit("hub", "puskesos-hub@.service"),
        district.machine("hub") / "hub.log",
        district.hub_port,
        instance="hub-1",
        tls=(district.hub_tls_port, district.ca_dir / "ca.crt"),  # the district CA signed it
    )
    district.services.append(service)
    service.start(healthy=True)  # healthy: connected to the broker
    token = district.puskesos(
        "hub", "hub", "token", "add", "--config", str(hub_config), "--name", "uji"
    )
    hub = Hub("hub-1", district.machine("hub"), hub_config, service, token.strip())
    box = start_box(district, "desa-a")
    body = household_body(41)
    body["household"].pop("village_code", None)  # the box fills in its own village
    yield Running(broker, hub, box, str(box.api("/api/v1/households", body)["id"]))


def test_site_installs_the_release_and_renders_hub_broker_and_boxes(district: District) -> None:
    version = district.wheel.name.split("-")[1]
    for host in ("hub", *BOXES):
        assert district.puskesos(host, "--version").split()[1] == version
        python = district.machine(host) / "opt/puskesos/venv/bin/python"
        where = subprocess.run(
            [str(python), "-c", "import edge; print(edge.__file__)"],
            cwd=district.root, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert where.startswith(str(district.machine(host))), "the package is not in the venv"

    for host in BOXES:
        edge = load_edge_config(district.config(host))
        wanted = district.boxes[host]
        assert (edge.village, edge.node) == (wanted["edge_village"], wanted["edge_node"])
        assert (edge.broker.port, edge.broker.tls, edge.sync.enabled) == (
            district.broker_port, True, True
        )  # fmt: skip
        assert edge.sync.ack_timeout_s == 3  # edge_settings reach the file
        # The nightly backups' folder: `edge backup` and the securing of a plain box know it.
        assert edge.path(edge.backup_dir) == district.machine(host) / "var/lib/puskesos/backups"
        # HTTPS from the start, with a certificate the district CA signed for the box's
        # address; its key private to the box.
        assert edge.tls
        assert stat.S_IMODE(edge.path(edge.tls_key).stat().st_mode) == 0o600
        signed = subprocess.run(
            ["openssl", "verify", "-CAfile", str(district.ca_dir / "ca.crt"), "-verify_ip",
             "127.0.0.1", str(edge.path(edge.tls_cert))],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert signed.returncode == 0, signed.stdout + signed.stderr
        # desa-b (the defaults) is encrypted, and its password is sealed to it: `edge init`
        # sealed the file enrolment wrote; desa-a is `edge_plain`.
        keyed = not wanted.get("edge_plain")
        plain = district.machine(host) / "etc/puskesos/broker.password"
        sealed = edge.data_dir / "broker-password.sealed"
        if keyed:
            assert not plain.exists() and stat.S_IMODE(sealed.stat().st_mode) == 0o600
        else:
            assert stat.S_IMODE(plain.stat().st_mode) == 0o640 and not sealed.exists()
        # Its setup slot opens it until its first account exists.
        key = setup_key(edge) if keyed else None
        with contextlib.closing(connect(edge.database_path, key)) as db:
            claimed = dict(
                db.execute("SELECT key, value FROM meta WHERE key IN ('village', 'node')")
            )
        assert claimed == {"village": edge.village, "node": edge.node}
    plain, secured = (load_edge_config(district.config(host)) for host in BOXES)
    assert plain.recovery_key == "" and not encrypted(plain)
    # The hub made the district's recovery key pair; only its public key went to the
    # control host and from there to the box, whose district slot it opens.
    recovery = district.machine("hub") / "var/lib/puskesos-hub/recovery.key"
    public = recovery.with_suffix(".pub").read_bytes()
    assert (district.root / "district-recovery.pub").read_bytes() == public
    assert Path(secured.recovery_key).read_bytes() == public
    with pytest.raises(sqlite3.DatabaseError), sqlite3.connect(secured.database_path) as db:
        db.execute("SELECT count(*) FROM meta").fetchone()
    slots = read_slots(secured.data_dir, secured.node)
    district_slot = slots.district() if slots is not None else None
    assert district_slot is not None
    private_key = load_recovery_private(recovery)
    opened = open_district(district_slot, node=secured.node, private_key=private_key)
    assert opened == setup_key(secured)
    assert list(district.root.rglob("recovery.key")) == [recovery]
    private = recovery.read_bytes()
    box_files = (
        path
        for host in BOXES
        for folder in ("etc", "var")
        for path in (district.machine(host) / folder).rglob("*")
        if path.is_file()
    )
    assert not any(private in path.read_bytes() for path in box_files)
    hub = load_hub_config(district.config("hub"))
    assert (hub.district, hub.broker.tls, hub.sweep_interval_s) == ("3201", True, 1)

    broker_files = district.machine("broker") / "etc/mosquitto/puskesos"
    users = {line.split(":")[0] for line in (broker_files / "passwd").read_text().splitlines()}
    assert users == {"hub-1", "edge-3201022001-a", "edge-3201022002-a"}  # a worker's account
    conf = (district.machine("broker") / "etc/mosquitto/mosquitto.conf").read_text().splitlines()
    listeners = [i for i, line in enumerate(conf) if line.startswith("listener ")]
    assert listeners and all(conf[i + 1] == "use_username_as_clientid true" for i in listeners)
    acl = (broker_files / "acl").read_text()
    assert f"topic write {Topic(VILLAGE_A, 'edge-3201022001-a', TopicKind.UP)}" in acl

    certificate = district.machine("broker") / "etc/mosquitto/certs/server.crt"
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(district.ca_dir / "ca.crt"), "-verify_ip",
         "127.0.0.1", str(certificate)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    keys = {
        path.name
        for host in ("hub", "broker", *BOXES)
        for path in district.machine(host).rglob("*.key")
    }
    # The broker's, the boxes' and the hub's own keys, the district's recovery key on the
    # hub; never the CA's.
    assert keys == {"server.key", "session.key", "box.key", "hub.key", "recovery.key"}, (
        "the CA's key left the control host"
    )


def test_a_second_run_of_site_changes_nothing(district: District) -> None:
    assert all(stats["changed"] > 0 for stats in recap(district.first_run).values())
    hub_tls = district.machine("hub") / "var/lib/puskesos-hub/tls"
    before = {name: (hub_tls / name).read_bytes() for name in ("hub.key", "hub.crt")}
    result = district.play("site.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    # The hub keeps its key and the certificate office computers already trust.
    assert {name: (hub_tls / name).read_bytes() for name in before} == before
    stats = recap(result.stdout)
    assert set(stats) == {"hub", "broker", *BOXES}
    assert {host: (s["changed"], s["failed"]) for host, s in stats.items()} == {
        host: (0, 0) for host in stats
    }, result.stdout[-6000:]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_finds_nothing_wrong_in_the_rendered_units(district: District) -> None:
    units = [district.unit("desa-a", name) for name in EDGE_UNITS]
    # The hub's template unit, checked as the instance systemd would start.
    units.append(district.unit("hub", "puskesos-hub@hub-1.service"))
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_the_provisioned_box_answers_and_its_work_reaches_the_provisioned_hub(
    running: Running,
) -> None:
    health = running.box.api("/healthz")
    assert (health["status"], health["node"]) == ("ok", "edge-3201022001-a")
    wait_for(lambda: running.household in at_hub(running.hub, VILLAGE_A), 60, "the hub to have it")


def test_office_computers_with_the_district_ca_open_the_hub_without_a_warning(
    district: District, running: Running
) -> None:
    # A browser that trusts only the district CA, reaching the hub by its inventory name
    # or by the address in hub_tls_names (both resolve to this worker here).
    office = ssl.create_default_context(cafile=district.ca_dir / "ca.crt")
    for name in ("hub", HUB_VPN_ADDRESS):
        with (
            socket.create_connection(("127.0.0.1", district.hub_tls_port), timeout=10) as raw,
            office.wrap_socket(raw, server_hostname=name) as tls,
        ):
            subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
        assert subject["commonName"] == "hub"
    # A name the hub was not certified for is refused: the check above is real.
    with (
        socket.create_connection(("127.0.0.1", district.hub_tls_port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        office.wrap_socket(raw, server_hostname="desa-a")
    # The sign-in page, over HTTPS with that trust anchor.
    with running.hub.service.opener().open(f"{running.hub.service.url}/masuk", timeout=10) as page:
        assert page.status == 200


def disconnects(url: str, metric: str) -> float:
    """A ``*_disconnects_total`` counter from a process's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(metric))


def test_one_box_s_password_knocks_neither_another_box_nor_the_hub_off(
    district: District, running: Running
) -> None:
    box, hub = running.box, running.hub
    wait_for(lambda: box.api("/api/v1/sync/status")["connected"], 60, "the box to be connected")
    counters = [(box.service.plain_url, "puskesos_edge_sync_disconnects_total"),
                (hub.service.plain_url, "puskesos_hub_broker_disconnects_total")]  # fmt: skip
    before = [disconnects(*counter) for counter in counters]
    node = district.boxes["desa-b"]["edge_node"]
    password = box_password(district, "desa-b")

    async def attack() -> None:
        # desa-b's password with desa-a's client id and the hub worker's, and in the hub
        # workers' shared group.
        settings = BrokerConfig(
            host="127.0.0.1",
            port=district.broker_port,
            tls=True,
            ca_file=str(district.ca_dir / "ca.crt"),
            username=node,
        )
        rogues = [
            MqttLink(
                settings,
                client_id=client_id,
                password=password,
                subscriptions=[("$share/hub/puskesos/v1/+/+/+/up", 1)],
                backoff_min_s=0.2,
                backoff_max_s=0.5,
            )
            for client_id in (box.node, "hub-1")
        ]
        for rogue in rogues:
            await rogue.start()
        await asyncio.sleep(3)
        for rogue in rogues:
            await rogue.stop()

    asyncio.run(attack())
    assert [disconnects(*counter) for counter in counters] == before
    body = household_body(43)
    body["household"].pop("village_code", None)
    saved = str(box.api("/api/v1/households", body)["id"])
    wait_for(lambda: saved in at_hub(hub, VILLAGE_A), 60, "the hub to have it")


def test_a_box_set_up_with_the_defaults_is_backed_up_at_night_by_the_running_box(
    district: District,
) -> None:
    config = district.config("desa-b")
    edge = load_edge_config(config)
    # The box's first account opens the setup slot: no --as (provisioning/README.md, step 6).
    district.puskesos(
        "desa-b", "edge", "user", "add", "--config", str(config), "--username", "admin",
        "--full-name", "Admin Desa", "--role", "admin", stdin="rahasia-balai-123\n",
    )  # fmt: skip
    service = UnitService(
        district.unit("desa-b", "puskesos-edge.service"),
        district.machine("desa-b") / "edge.log",
        edge.listen_port,
        tls=(edge.tls_port, district.ca_dir / "ca.crt"),
    )
    district.services.append(service)
    nightly = shlex.split(
        unit_settings(district.unit("desa-b", "puskesos-edge-backup.service"))["ExecStart"]
    )
    backups = district.machine("desa-b") / "var/lib/puskesos/backups"
    service.start()
    try:
        locked = subprocess.run(nightly, capture_output=True, text=True, check=False)
        assert locked.returncode == 3, locked.stderr  # the timer shows the failure
        assert "the box is locked" in locked.stderr
        assert list(backups.glob("puskesos-*.sqlite")) == []

        sign_in(service, "admin", "rahasia-balai-123")
        made = subprocess.run(nightly, capture_output=True, text=True, check=False)
        assert made.returncode == 0, made.stderr
        (copy,) = backups.glob("puskesos-*.sqlite")
        assert Path(made.stdout.strip()) == copy
    finally:
        assert service.stop() == 0
    key = open_with_password(edge, "admin", "rahasia-balai-123")
    with contextlib.closing(connect(f"file:{copy}?mode=ro", key, uri=True)) as db:
        assert dict(db.execute("SELECT key, value FROM meta WHERE key = 'node'")) == {
            "node": edge.node
        }
    with pytest.raises(sqlite3.DatabaseError), sqlite3.connect(copy) as db:
        db.execute("SELECT count(*) FROM meta").fetchone()


def test_a_replaced_box_is_shut_out_and_its_successor_gets_the_village_back(
    district: District, running: Running
) -> None:
    wait_for(lambda: running.household in at_hub(running.hub, VILLAGE_A), 60, "the hub to have it")
    old = district.boxes["desa-a"]
    old_password = box_password(district, "desa-a")
    running.box.service.kill()  # the SD card dies
    assert broker_accepts(district, old["edge_node"], old_password)

    # The district's IT gives the village's host the new box, under a new node id.
    district.add_box(
        "desa-a", VILLAGE_A, "edge-3201022001-b", edge_replaces=old["edge_node"], edge_plain=True
    )
    result = district.play("replace-edge.yml", "-e", "boxes=desa-a")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert recap(result.stdout)["desa-a"]["changed"] > 0
    running.broker.reload()  # what the broker role's handler does with systemd

    assert not broker_accepts(district, old["edge_node"], old_password)
    listed = district.puskesos("hub", "hub", "device", "list", "--config", str(running.hub.config))
    status = {line.split()[0]: line.split()[2] for line in listed.splitlines()[1:]}
    assert status["edge-3201022001-a"] == "revoked"
    successor = start_box(district, "desa-a")
    assert successor.node == "edge-3201022001-b"
    running.box = successor
    wait_for(lambda: holds(successor, running.household), 90, "the village on the new box")


def test_rotating_credentials_retires_the_old_passwords_and_the_broker_certificate(
    district: District, running: Running
) -> None:
    hub_password_file = district.machine("hub") / "var/lib/puskesos-hub/broker.password"
    certificate = district.machine("broker") / "etc/mosquitto/certs/server.crt"
    box, nodes = running.box, {host: district.boxes[host]["edge_node"] for host in BOXES}

    old = {
        "hub": hub_password_file.read_text().strip(),
        **{host: box_password(district, host) for host in BOXES},
    }
    old_certificate = certificate.read_text()
    wait_for(lambda: box.api("/api/v1/sync/status")["connected"], 60, "the box to be connected")
    # The encrypted box runs too, unlocked by a sign-in: it is not restarted below.
    edge_b = load_edge_config(district.config("desa-b"))
    box_b = UnitService(
        district.unit("desa-b", "puskesos-edge.service"),
        district.machine("desa-b") / "edge.log",
        edge_b.listen_port,
        tls=(edge_b.tls_port, district.ca_dir / "ca.crt"),
    )
    district.services.append(box_b)
    box_b.start()
    staff = sign_in(box_b, "admin", "rahasia-balai-123")

    def b_connected() -> bool:
        with staff.open(f"{box_b.url}/api/v1/sync/status", timeout=10) as answer:
            return bool(json.load(answer)["connected"])

    wait_for(b_connected, 60, "the encrypted box to be connected")

    result = district.play("rotate-credentials.yml")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert all(stats["changed"] > 0 for stats in recap(result.stdout).values()), result.stdout
    assert "shown only this once" not in result.stdout + result.stderr
    new = {
        "hub": hub_password_file.read_text().strip(),
        **{host: box_password(district, host) for host in BOXES},
    }
    assert all(new[name] != old[name] for name in old), "a password was not rotated"
    assert not any(password in result.stdout for password in new.values())
    # What the handlers do with systemd: the broker restarts (new certificate), then the hub
    # workers and the box restart with their new passwords.
    running.broker.restart()
    assert certificate.read_text() != old_certificate
    assert not broker_accepts(district, "hub-1", old["hub"])
    assert broker_accepts(district, "hub-1", new["hub"])  # over TLS: the new certificate holds
    for host in BOXES:
        assert not broker_accepts(district, nodes[host], old[host]), f"{host}'s old password"
        assert broker_accepts(district, nodes[host], new[host])
    running.hub.service.stop()
    running.hub.service.start(healthy=True)
    box.service.stop()
    box.service.start(healthy=True)
    # The broker's restart made the encrypted box reconnect: with the new password, sealed.
    wait_for(b_connected, 60, "the encrypted box to connect with its new password")
    assert box_b.stop() == 0

    body = household_body(42)
    body["household"].pop("village_code", None)
    saved = str(box.api("/api/v1/households", body)["id"])
    wait_for(lambda: saved in at_hub(running.hub, VILLAGE_A), 60, "the hub to have it")
    # Signed in, synced, rotated: the card holds neither password nor the session key.
    key = open_with_password(edge_b, "admin", "rahasia-balai-123")
    assert key is not None
    secrets = {"old password": old["desa-b"], "new password": new["desa-b"],
               "session key": session_secret(key, edge_b.node)}  # fmt: skip
    card = district.machine("desa-b")
    assert files_holding(secrets, card / "etc", card / "var") == []


def test_a_rollout_backs_up_and_upgrades_a_box_and_stops_at_the_first_that_does_not_answer(
    district: District, running: Running
) -> None:
    for service in district.services:
        if isinstance(service, UnitService) and service.argv[:2] == ["edge", "serve"]:
            service.stop()  # desa-a, first in the inventory, will not answer after the upgrade
    current = district.wheel.name.split("-")[1]
    parts = current.split(".")
    release = ".".join([*parts[:-1], str(int(parts[-1]) + 1)])
    wheel = build_wheel(district.root / "next", release)

    result = district.play(
        "upgrade.yml", "-e", f"puskesos_version={release}", "-e", f"puskesos_wheel={wheel}",
        "-e", "upgrade_batch=1", "-e", "upgrade_health_retries=2",
    )  # fmt: skip
    assert result.returncode != 0
    stats = recap(result.stdout)
    assert stats["hub"]["failed"] == 0  # upgraded, and its worker answered healthy
    assert stats["desa-a"]["failed"] == 1
    assert "desa-b" not in stats, "the rollout went on after a box failed its health check"
    assert district.puskesos("desa-a", "--version").split()[1] == release
    backups = district.machine("desa-a") / "var/lib/puskesos/backups"
    assert (backups / f"before-upgrade-to-{release}.sqlite").stat().st_size > 0
    assert district.puskesos("desa-b", "--version").split()[1] == current
