"""``puskesos demo``: a district on this machine, with sample data, until Ctrl-C.

A Mosquitto broker (with the password file and ACL that ``hub broker-config`` writes;
without Mosquitto, the pure-Python amqtt, MQTT 3.1.1 only),
a hub worker on SQLite, and two village boxes with households, complaints and referrals,
all set up with the same commands an operator runs (see :mod:`puskesos.fleet`). It prints
the URLs and logins, then waits; Ctrl-C stops everything cleanly. Data, configurations
and logs stay in the folder afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import signal
import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import Any

from cryptography import x509

from edge.config import SyncConfig, load_config
from puskesos.fleet import MOSQUITTO, Box, Fleet, Service, puskesos
from puskesos.tls import fingerprint

__all__ = ["add_parser"]

#: Two villages of Kecamatan Gunung Putri, Kabupaten Bogor.
VILLAGES = (("3201022001", "edge-wanaherang"), ("3201022002", "edge-bojong-kulur"))
#: Accounts of every box: username → (role, password). The passwords follow the rule of
#: puskesos/passwords.py (long enough, not common, no user name in them).
USERS = {
    "admin": ("admin", "kopi-tubruk-2026"),
    "operator": ("operator", "teh-manis-2026"),
}
#: Accounts of the hub's review UI: username → (role, password, the person's name).
HUB_USERS = {
    "verifikator": ("verifikator", "sambal-hijau-2026", "Rina Marlina"),
    "pimpinan": ("pimpinan", "rendang-padang-2026", "H. Asep Gunawan"),
    "admin": ("admin", "kopi-tubruk-2026", "Dedi Kurniawan"),
}
HOUSEHOLDS_PER_BOX = 12


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
    parser.set_defaults(handler=_demo)


def _seed(box: Box, rng: random.Random) -> None:
    """Sample households (with members and their proposals), complaints and referrals,
    saved through the box's own services (the box is not serving yet)."""
    from edge.services import Actor, create_record, save_household
    from edge.store import Store
    from puskesos.samples import make_household_with_members

    async def seed() -> None:
        store = Store(load_config(box.config))
        await store.open()
        try:
            actor = Actor("admin", "admin", "demo")
            today = date.today()
            households = []
            for _ in range(HOUSEHOLDS_PER_BOX):
                household, members = make_household_with_members(
                    rng.randint(1, 6), seed=rng.randrange(1, 10**9)
                )
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
        finally:
            await store.close()

    asyncio.run(seed())


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
    print(f"Setting up a district in {root} ...", flush=True)
    if broker == "amqtt":
        print("No Mosquitto here: using amqtt (MQTT 3.1.1, no passwords, no ACL).")
    fleet = Fleet(root, sync=SyncConfig(ack_timeout_s=10, status_interval_s=15), broker=broker)
    try:
        hub = fleet.add_hub(start=False)
        puskesos("hub", "keys", "init", "--config", str(hub.config))
        for username, (role, secret, full_name) in HUB_USERS.items():
            puskesos(
                "hub", "user", "add", "--config", str(hub.config), "--username", username,
                "--role", role, "--full-name", full_name, stdin=secret + "\n",
            )  # fmt: skip
        rng = random.Random(2026)
        for village, node in VILLAGES:
            _seed(fleet.enrol(village, node, users=USERS), rng)
        fleet.start()
        _print_welcome(fleet)
        _wait_for_ctrl_c()
    finally:
        print("\nStopping ...", flush=True)
        fleet.stop()
    print(f"Stopped. Data, configurations and logs stay in {root}.")
    return 0


def _print_welcome(fleet: Fleet) -> None:
    hub = fleet.hubs[0]
    lines = [
        "",
        "Puskesos Sync demo is running.",
        "",
        f"  Hub review  {hub.service.url}/   (review UI of the district office)",
        f"  Hub API     {hub.service.url}/api/v1/devices   (Authorization: Bearer {hub.token})",
        f"  Hub metrics {hub.service.plain_url}/metrics",
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
        "  Logins on the hub: "
        + ", ".join(f"{name} / {secret}" for name, (_, secret, _) in HUB_USERS.items()),
        "  Logins on every box: "
        + ", ".join(f"{name} / {secret}" for name, (_, secret) in USERS.items()),
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
