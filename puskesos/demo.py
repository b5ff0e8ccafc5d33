"""``puskesos demo``: a district on this machine, with sample data, until Ctrl-C.

A Mosquitto broker (with the password file and ACL that ``hub broker-config`` writes;
without Mosquitto, the pure-Python amqtt, MQTT 3.1.1 only), a hub worker on SQLite for
Kabupaten Bogor with its signing key, the reference national receiver it delivers to, and
three village boxes (two in one village) with households, complaints and referrals, all
set up with the same commands an operator runs (see :mod:`puskesos.fleet`), on the same
ports every time (:data:`PORTS`). It prints the URLs, certificate fingerprints and logins,
then waits; Ctrl-C stops everything cleanly. Data, configurations and logs stay in the
folder afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import signal
import socket
import tempfile
import threading
import time
import urllib.error
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from edge.config import SyncConfig, load_config
from puskesos.fleet import MOSQUITTO, Box, Fleet, Service, puskesos, wait_for
from puskesos.tls import fingerprint

__all__ = ["add_parser"]

T = TypeVar("T")

#: Kabupaten Bogor.
DISTRICT = "3201"
#: The boxes, in the order of their ports: two in Desa Wanaherang (so that their concurrent
#: edits become conflicts at the hub), one in Desa Bojong Kulur, Kecamatan Gunung Putri.
VILLAGES = (
    ("3201022001", "edge-wanaherang"),
    ("3201022001", "edge-wanaherang-2"),
    ("3201022002", "edge-bojong-kulur"),
)
#: Accounts of every box: username → (role, password). The passwords follow the rule of
#: puskesos/passwords.py (long enough, not common, no user name in them).
USERS = {
    "admin": ("admin", "kopi-tubruk-2026"),
    "operator": ("operator", "teh-manis-2026"),
    "kades": ("kepala_desa", "bajigur-hangat-2026"),
}
#: Accounts of the hub's review UI: username → (role, password, the person's name).
HUB_USERS = {
    "verifikator": ("verifikator", "sambal-hijau-2026", "Rina Marlina"),
    "pimpinan": ("pimpinan", "rendang-padang-2026", "H. Asep Gunawan"),
    "admin": ("admin", "kopi-tubruk-2026", "Dedi Kurniawan"),
    "it": ("it", "cilok-goreng-2026", "Yudi Pratama"),
}
HOUSEHOLDS_PER_BOX = 12
#: The first of the demo's ports, unless ``--port-base`` says otherwise.
PORT_BASE = 8600
#: What listens at ``port base + offset``: the broker, the hub, the receiver, then each
#: box of :data:`VILLAGES` (plain HTTP answers /healthz and /metrics; pages are HTTPS).
PORTS = (
    "broker (MQTT)",
    "hub-1 /healthz, /metrics",
    "hub-1 HTTPS",
    "national receiver",
    *(f"{node} {kind}" for _v, node in VILLAGES for kind in ("/healthz, /metrics", "HTTPS")),
)


def add_parser(subparsers: Any) -> None:
    """Add ``demo`` to the ``puskesos`` parser's subparsers."""
    parser = subparsers.add_parser(
        "demo",
        help="run a hub, a broker and two village boxes with sample data",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--dir", type=Path, help="folder for all data (default: a new temporary folder)"
    )
    parser.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "amqtt"),
        default="auto",
        help="auto: the installed Mosquitto, else amqtt (pip install 'puskesos[demo]')",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=PORT_BASE,
        metavar="PORT",
        help=f"the first of the {len(PORTS)} ports the demo listens on, one after another "
        f"(default {PORT_BASE}: broker, hub, hub HTTPS, national receiver, then the boxes)",
    )
    parser.set_defaults(handler=_demo)


def _offline(box: Box, work: Callable[[Any, Any], Awaitable[T]]) -> T:
    """``work(store, actor)`` on the box's own store and services, as its admin, while the
    box is not serving."""
    from edge.services import Actor
    from edge.store import Store

    async def run() -> T:
        store = Store(load_config(box.config), key=box.data_key())
        await store.open()
        try:
            return await work(store, Actor("admin", "admin", "demo"))
        finally:
            await store.close()

    return asyncio.run(run())


def _samples(rng: random.Random) -> list[list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """:data:`HOUSEHOLDS_PER_BOX` sample households with their members for each box of
    :data:`VILLAGES`, no two with one address or one head, so that each can be told apart
    at the hub."""
    from puskesos.samples import make_household_with_members

    seen: set[str] = set()
    boxes = []
    for village, _node in VILLAGES:
        households: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        while len(households) < HOUSEHOLDS_PER_BOX:
            household, members = make_household_with_members(
                rng.randint(1, 6), village=village, seed=rng.randrange(1, 10**9)
            )
            names = {household["address"], members[0]["name"]}
            if not names & seen:
                seen.update(names)
                households.append((household, members))
        boxes.append(households)
    return boxes


def _seed(box: Box, samples: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[str]:
    """The ``samples`` households (with members and their proposals), complaints and
    referrals, saved through the box's own services (the box is not serving yet); returns
    the households' ids."""
    from edge.services import create_record, save_household

    async def seed(store: Any, actor: Any) -> list[str]:
        today = date.today()
        households: list[str] = []
        for household, members in samples:
            household.pop("id")
            for member in members:
                member.pop("id"), member.pop("household_id")
            outcome = await save_household(
                store,
                actor,
                household_id=None,
                household=household,
                members=members,
                today=today,
                confirm_warnings=True,
            )
            households.append(_saved(outcome))
        for number, household_id in enumerate(households[:3]):
            complaint_id = _saved(
                await create_record(
                    store,
                    actor,
                    "complaint",
                    {
                        "channel": "langsung",
                        "category": ("bantuan_belum_cair", "data_tidak_valid", "salah_sasaran")[
                            number
                        ],
                        "reporter_name": "Warga RT 00" + str(number + 1),
                        "household_id": household_id,
                        "chronology": "Contoh pengaduan untuk demo Puskesos Sync.",
                    },
                    today=today,
                    confirm_warnings=True,
                )
            )
            if number == 0:
                referral = await create_record(
                    store,
                    actor,
                    "referral",
                    {
                        "complaint_id": complaint_id,
                        "need": "Pemeriksaan kesehatan lansia",
                        "destination": "puskesmas_posyandu",
                    },
                    today=today,
                    confirm_warnings=True,
                )
                _saved(referral)
        return households

    return _offline(box, seed)


def _conflict(first: Box, second: Box, household_id: str) -> None:
    """Both boxes of one village change the address of a household of ``first``, ``second``
    while it is off (as if its link were down): two concurrent edits, so the hub's
    Konflik page has one to resolve."""
    from edge.services import save_household

    def arrived() -> bool:
        try:
            return bool(second.api(f"/api/v1/households/{household_id}"))
        except urllib.error.HTTPError:
            return False

    wait_for(arrived, 300, f"household {household_id} on {second.node}")
    second.service.stop()
    path = f"/api/v1/households/{household_id}"
    first.api(path, {"household": {"address": "Kp. Pasir Angin No. 7"}}, method="PATCH")
    _offline(
        second,
        lambda store, actor: save_household(
            store, actor, household_id=household_id, members=[], today=date.today(),
            household={"address": "Kp. Pasir Angin No. 7A"}, confirm_warnings=True,
        ),
    )  # fmt: skip
    second.service.start()


def _broker(choice: str) -> str | None:
    """Which broker to run: Mosquitto when installed (or asked for), else amqtt."""
    if choice == "mosquitto" or (choice == "auto" and Path(MOSQUITTO).exists()):
        return "mosquitto" if Path(MOSQUITTO).exists() else None
    return "amqtt" if importlib.util.find_spec("amqtt") is not None else None


def _saved(outcome: Any) -> str:
    if not outcome.saved:
        raise RuntimeError(f"sample record not saved: {outcome.issues}")
    return str(outcome.record_id)


def _demo(args: argparse.Namespace) -> int:
    root: Path = (args.dir or Path(tempfile.mkdtemp(prefix="puskesos-demo-"))).resolve()
    broker = _broker(args.broker)
    if broker is None:
        print(
            "puskesos demo: error: no MQTT broker: install Mosquitto (Debian: apt-get install "
            "mosquitto) or the pure-Python one (pip install 'puskesos[demo]')"
        )
        return 1
    if root.exists() and any(root.iterdir()):
        print(f"puskesos demo: error: {root} is not empty; give a new or empty --dir")
        return 2
    ports = range(args.port_base, args.port_base + len(PORTS))
    if ports.start < 1 or ports.stop > 65536:
        print(f"puskesos demo: error: --port-base must be 1..{65536 - len(PORTS)}")
        return 2
    busy = [port for port in ports if _in_use(port)]
    if busy:
        print(
            f"puskesos demo: error: port {', '.join(map(str, busy))} already in use (another "
            f"demo?); stop it or give another --port-base (the demo uses {ports.start}-"
            f"{ports.stop - 1})"
        )
        return 2
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"  [{time.monotonic() - started:4.0f} s] {text}", flush=True)

    print(f"Setting up a district in {root} ...", flush=True)
    if broker == "amqtt":
        print("No Mosquitto here: using amqtt (MQTT 3.1.1, no passwords, no ACL).")
    fleet = Fleet(
        root,
        sync=SyncConfig(ack_timeout_s=10, status_interval_s=15),
        district=DISTRICT,
        broker=broker,
        port_base=args.port_base,
    )
    try:
        step("hub-1: its database")
        hub = fleet.add_hub(start=False)
        step(f"national receiver: district {DISTRICT} registered with the hub's signing key")
        fleet.add_national()

        def add_account(username: str, role: str, secret: str, full_name: str) -> str:
            return puskesos(
                "hub", "user", "add", "--config", str(hub.config), "--username", username,
                "--role", role, "--full-name", full_name, stdin=secret + "\n",
            )  # fmt: skip

        # Each command is a process that spends most of its time starting Python: the hub's
        # accounts are added while the boxes are set up (one after another, each on the
        # next ports).
        with ThreadPoolExecutor() as pool:
            step(f"hub-1: {len(HUB_USERS)} accounts, meanwhile the boxes")
            accounts = pool.map(add_account, HUB_USERS, *zip(*HUB_USERS.values(), strict=True))
            households, samples = [], _samples(random.Random(2026))
            for (village, node), ours in zip(VILLAGES, samples, strict=True):
                step(f"box {node} (village {village}): registered, accounts, sample households")
                households.append(_seed(fleet.enrol(village, node, users=USERS), ours))
            list(accounts)
        step("starting the broker, the receiver, the hub and the boxes")
        fleet.start()
        first, second = fleet.boxes[:2]
        step(f"a conflict: {first.node} and {second.node} change one household's address")
        _conflict(first, second, households[0][0])
        step("ready")
        _print_welcome(fleet)
        _wait_for_ctrl_c()
    finally:
        print("\nStopping ...", flush=True)
        fleet.stop()
    print(f"Stopped. Data, configurations and logs stay in {root}.")
    return 0


def _in_use(port: int) -> bool:
    """Whether something listens on ``port`` (bound like the servers: with SO_REUSEADDR,
    so a closed connection's TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _print_welcome(fleet: Fleet) -> None:
    from edge.auth import ROLE_LABELS as BOX_ROLES
    from edge.auth import Role as BoxRole
    from hub.roles import ROLE_LABELS as HUB_ROLES
    from hub.roles import Role as HubRole

    hub, receiver = fleet.hubs[0], fleet.receivers[0]
    published = fleet.root / "hasil.jsonl"
    hub_logins = [
        f"    {name} / {secret:<22} {HUB_ROLES[HubRole(role)]}, {full_name}"
        for name, (role, secret, full_name) in HUB_USERS.items()
    ]
    box_logins = [
        f"    {name} / {secret:<22} {BOX_ROLES[BoxRole(role)]}"
        for name, (role, secret) in USERS.items()
    ]
    lines = [
        "",
        "Puskesos Sync demo is running.",
        "",
        f"  Hub review  {hub.service.url}/   (review UI of the district office)",
        f"  Hub API     {hub.service.url}/api/v1/devices   (Authorization: Bearer {hub.token})",
        f"  Hub metrics {hub.service.plain_url}/metrics",
        f"  National    {receiver.plain_url}/healthz   (reference receiver, {receiver.folder})",
        f"  Broker      mqtt://127.0.0.1:{fleet.broker.port}  (log {fleet.broker.log_file})",
    ]
    for box in fleet.boxes:
        lines.append(f"  Box {box.node:<18} {box.service.url}/  village {box.village}")
    lines += [
        "",
        "  Pages are HTTPS with each service's own self-signed certificate: the browser warns",
        "  once; accept it when the SHA-256 fingerprint it shows is the one here.",
    ]
    for name, service in [(hub.node, hub.service)] + [(b.node, b.service) for b in fleet.boxes]:
        lines.append(f"    {name:<20} {_fingerprint(service)}")
    lines += [
        "",
        f"  Logins on {hub.node} (user / password, role):",
        *hub_logins,
        "  Logins on every box:",
        *box_logins,
        "",
        "  The month: register a household on a box (operator); approve it in Antrian at",
        "  the hub (verifikator), then on Siklus bulanan 'Bekukan sekarang' and 'Ajukan ke",
        "  pimpinan'; 'Tandatangani' (pimpinan): the hub delivers to the national receiver",
        "  by itself. Publish the results of the signed period YYYY-MM:",
        f"    puskesos national publish --config {receiver.config} --district {DISTRICT}"
        f" --period YYYY-MM --out {published}",
        f"  import {published.name} and {published.name}.sig on Siklus bulanan (admin); the",
        "  decile shows on the household's page of its box.",
        "",
        f"  Data, configurations and logs: {fleet.root}",
        "",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def _fingerprint(service: Service) -> str:
    assert service.tls is not None
    return fingerprint(x509.load_pem_x509_certificate(service.tls[1].read_bytes()))


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    while not stop.wait(1):
        pass
