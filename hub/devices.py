"""The device registry: enrol boxes, list, revoke and re-key them, and give the broker its files.

A box is enrolled once under a node id that is never used again: a wiped or replaced box
is enrolled as a new node (its old id stays revoked), so no stamp, sequence number or
broker session of the old box can be mistaken for the new one's. Enrolling makes a random
broker password, shown once; the registry keeps an argon2 hash of it and the Mosquitto
hash for the password file. ``device rotate`` replaces both with a new password's (a
leaked one, a routine change). ``broker-config`` writes the password file and the ACL
(:mod:`hub.mosquitto`) from the active devices; the broker reads them again on SIGHUP.

SQLAlchemy, argon2 and the database module are imported inside the functions: this module
is imported whenever the ``puskesos`` command builds its parser, also on a box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hub.mosquitto import acl_text, check_username, passwd_text, verify_mosquitto_hash
from protocol.ids import is_node_id
from protocol.regions import Region, RegionCodeError, lookup

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from hub.cli import HubCommands

__all__ = [
    "Device",
    "DeviceError",
    "add_commands",
    "add_device",
    "list_devices",
    "revoke_device",
    "rotate_device",
    "write_broker_config",
]

ACTIVE = "active"
#: The broker's TLS listener, where ``device add`` points a box unless told otherwise.
BOX_BROKER_PORT = 8883
#: Where ``device add`` tells the operator to put a box's broker password.
BOX_PASSWORD_FILE = "/etc/puskesos/broker.password"
REVOKED = "revoked"

_T = TypeVar("_T")


class DeviceError(ValueError):
    """A registry request that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class Device:
    """One enrolled box and what the hub knows of its streams."""

    node: str
    village: str
    status: str
    created_ms: int
    revoked_ms: int | None
    online: bool
    last_seen_ms: int | None
    up_watermark: int
    down_seq: int
    down_watermark: int
    outbox: int | None
    clock_offset_ms: int | None
    rejected: int
    #: Anti-entropy: the last comparison ("match", "diverged", ``None`` before one) and
    #: when, divergences found, records sent again; the records the box reported and the
    #: hub holds of the village.
    digest_state: str | None = None
    digest_ms: int | None = None
    divergences: int = 0
    repaired: int = 0
    box_records: int | None = None
    hub_records: int = 0
    #: The box's audit chain (``hub/auditchain.py``): "ok", "broken" or ``None`` (the box
    #: sends none), its verified length, problems found and the last one.
    audit_state: str | None = None
    audit_seq: int = 0
    audit_breaks: int = 0
    audit_problem: str | None = None
    audit_problem_seq: int | None = None
    audit_problem_ms: int | None = None


async def _village(code: str) -> Region:
    try:
        region = await asyncio.to_thread(lookup, code)  # the first lookup reads the table
    except RegionCodeError:
        region = None
    if region is None or region.level != "desa":
        raise DeviceError(f"{code!r} is not a village code (10 digits, Kemendagri 2025)")
    return region


def _insert(conn: AsyncConnection, table: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


async def _new_password() -> tuple[str, dict[str, str]]:
    """A random broker password, and the registry's columns for it: its argon2 hash and the
    Mosquitto hash that goes into the broker's password file."""
    from argon2 import PasswordHasher

    from hub.mosquitto import mosquitto_hash

    password = secrets.token_urlsafe(24)
    password_hash = await asyncio.to_thread(PasswordHasher().hash, password)
    return password, {"password_hash": password_hash, "broker_hash": mosquitto_hash(password)}


async def _status(conn: AsyncConnection, node: str) -> str:
    """A node's status in the registry; :class:`DeviceError` if it was never enrolled."""
    import sqlalchemy as sa

    from hub import db

    d = db.devices
    status = (await conn.execute(sa.select(d.c.status).where(d.c.node == node))).scalar()
    if status is None:
        raise DeviceError(f"no device {node!r} is enrolled")
    return str(status)


async def add_device(engine: AsyncEngine, *, village: str, node: str, now_ms: int) -> str:
    """Enrol a box; returns its broker password (the only time it exists in clear).

    Raises :class:`DeviceError` for an unknown village, an invalid node id, or a node id
    already enrolled (revoked ones included: node ids are never reused).
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    from hub import db

    if not is_node_id(node):
        raise DeviceError(f"node id {node!r} is not valid (3-48 characters of a-z, 0-9, -)")
    region = await _village(village)
    password, hashes = await _new_password()
    refused = DeviceError(
        f"node {node} is already enrolled; node ids are never reused: "
        "enrol a new or wiped box under a new node id"
    )
    try:
        async with engine.begin() as conn:
            known = await conn.execute(
                sa.select(db.devices.c.status).where(db.devices.c.node == node)
            )
            if known.first() is not None:
                raise refused
            await conn.execute(
                _insert(conn, db.villages)
                .values(code=region.code, log_seq=0)
                .on_conflict_do_nothing(index_elements=["code"])
            )
            await conn.execute(
                db.devices.insert().values(
                    node=node,
                    village=region.code,
                    status=ACTIVE,
                    created_ms=now_ms,
                    **hashes,
                )
            )
    except IntegrityError:  # the same node enrolled at the same moment elsewhere
        raise refused from None
    return password


async def list_devices(engine: AsyncEngine) -> list[Device]:
    """Every enrolled box, revoked ones included, by village then node."""
    import sqlalchemy as sa

    from hub import db

    d, v = db.devices, db.villages
    query = (
        sa.select(d, v.c.records.label("hub_records"))
        .outerjoin(v, v.c.code == d.c.village)
        .order_by(d.c.village, d.c.node)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    devices = []
    for row in rows:
        reported = json.loads(row.reported) if row.reported else {}
        devices.append(
            Device(
                node=row.node,
                village=row.village,
                status=row.status,
                created_ms=row.created_ms,
                revoked_ms=row.revoked_ms,
                online=bool(row.online),
                last_seen_ms=row.last_seen_ms,
                up_watermark=row.up_watermark,
                down_seq=row.down_seq,
                down_watermark=row.down_watermark,
                outbox=reported.get("outbox"),
                clock_offset_ms=row.clock_offset_ms,
                rejected=row.rejected,
                digest_state=row.digest_state,
                digest_ms=row.digest_ms,
                divergences=row.divergences,
                repaired=row.repaired,
                box_records=reported.get("records"),
                hub_records=row.hub_records or 0,
                audit_state=row.audit_state,
                audit_seq=row.audit_seq,
                audit_breaks=row.audit_breaks,
                audit_problem=row.audit_problem,
                audit_problem_seq=row.audit_problem_seq,
                audit_problem_ms=row.audit_problem_ms,
            )
        )
    return devices


async def revoke_device(engine: AsyncEngine, node: str, now_ms: int) -> bool:
    """Revoke a box: the hub refuses its batches from now on, the broker after the next
    ``broker-config`` and reload. False if it was revoked already (nothing changes);
    :class:`DeviceError` if no such node was ever enrolled."""
    from hub import db

    d = db.devices
    async with engine.begin() as conn:
        if await _status(conn, node) == REVOKED:
            return False
        await conn.execute(
            d.update().where(d.c.node == node).values(status=REVOKED, revoked_ms=now_ms)
        )
    return True


async def rotate_device(engine: AsyncEngine, node: str) -> str:
    """Give an active box a new broker password; returns it (the only time it exists in
    clear). The broker takes the new one instead of the old after the next
    ``broker-config`` and reload; the box needs it before that.

    Raises :class:`DeviceError` for a node never enrolled or revoked (a revoked node stays
    shut out: a box back in service is enrolled under a new node id).
    """
    from hub import db

    d = db.devices
    password, hashes = await _new_password()
    async with engine.begin() as conn:
        # One statement decides: a revocation at the same moment cannot be undone by it.
        renewed = await conn.execute(
            d.update().where(d.c.node == node, d.c.status == ACTIVE).values(**hashes)
        )
        if renewed.rowcount == 0:
            await _status(conn, node)  # raises for an unknown node
            raise DeviceError(
                f"device {node} is revoked and gets no new password; node ids are never "
                "reused: enrol the box under a new node id"
            )
    return password


def _write_private(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` in one step (the broker may reload at any moment), made ``mode``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)  # whatever the umask took away
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _hub_hash(passwd: Path, username: str, password: str) -> str:
    """The hub account's hash: the one already in the file if it still matches, so that
    writing the same registry twice gives the same file (no needless broker reload)."""
    from hub.mosquitto import mosquitto_hash

    try:
        lines = passwd.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        user, _, hashed = line.partition(":")
        if user == username and verify_mosquitto_hash(password, hashed):
            return hashed
    return mosquitto_hash(password)


async def write_broker_config(
    engine: AsyncEngine, out_dir: Path, *, hub_users: Sequence[str], hub_password: str
) -> tuple[Path, Path]:
    """Write ``passwd`` (mode 0600) and ``acl`` (0640) for Mosquitto into ``out_dir``.

    Only active devices are in them, plus one account per hub worker (``hub_users``, all
    with the hub's password). Returns (passwd, acl). The broker applies them on reload
    (``kill -HUP``) or restart.
    """
    import sqlalchemy as sa

    from hub import db

    for user in hub_users:
        check_username(user)
    if not hub_password:
        raise DeviceError("the hub's broker password is empty")
    d = db.devices
    query = (
        sa.select(d.c.node, d.c.village, d.c.broker_hash)
        .where(d.c.status == ACTIVE)
        .order_by(d.c.node)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    taken = sorted({row.node for row in rows} & set(hub_users))
    if taken:
        raise DeviceError(f"a device is enrolled as {taken[0]!r}, a hub worker's broker user")
    passwd, acl = out_dir / "passwd", out_dir / "acl"

    def write() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        hubs = [(user, _hub_hash(passwd, user, hub_password)) for user in hub_users]
        accounts = [*hubs, *((row.node, row.broker_hash) for row in rows)]
        _write_private(passwd, passwd_text(accounts), 0o600)
        _write_private(acl, acl_text(hub_users, ((r.node, r.village) for r in rows)), 0o640)

    await asyncio.to_thread(write)
    return passwd, acl


# --- the `puskesos hub device ...` and `puskesos hub broker-config` commands --------------


def add_commands(commands: HubCommands) -> None:
    """Register ``device add|list|revoke|rotate`` and ``broker-config`` under ``puskesos hub``."""
    commands.group("device", "enrol, list, revoke boxes and give them new passwords")
    add = commands.command("device add", _add, "enrol a box; prints its broker password once")
    add.add_argument("--village", required=True, help="10-digit Kemendagri code of the village")
    add.add_argument("--node", required=True, help="a node id never used before")
    add.add_argument(
        "--broker-host", help="the broker's address as boxes reach it (default: [broker] host)"
    )
    add.add_argument(
        "--broker-port", type=int, default=BOX_BROKER_PORT,
        help=f"its port for boxes (default: {BOX_BROKER_PORT}, the TLS listener)",
    )  # fmt: skip
    add.add_argument(
        "--broker-ca-file", default="",
        help="the district CA's certificate as the box keeps it (default: the system's CAs)",
    )  # fmt: skip
    add.add_argument(
        "--no-broker-tls", dest="broker_tls", action="store_false",
        help="boxes connect without TLS (a test bench; never over the internet)",
    )  # fmt: skip
    commands.command("device list", _list, "every box with its sync state")
    revoke = commands.command(
        "device revoke", _revoke, "revoke a box (then run broker-config and reload)"
    )
    revoke.add_argument("node")
    rotate = commands.command(
        "device rotate", _rotate, "a new broker password for a box; prints it once"
    )
    rotate.add_argument("node")
    broker = commands.command(
        "broker-config", _broker_config, "write Mosquitto's password file and ACL"
    )
    broker.add_argument("--out", type=Path, required=True, help="folder for passwd and acl")


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _load(args: argparse.Namespace) -> Any:
    from hub.config import load_config

    return load_config(args.config)


def _run(config: Any, work: Callable[[AsyncEngine], Awaitable[_T]]) -> _T:
    """Run ``work`` on the hub's database (migrated first), closing it after."""
    from hub import db

    db.upgrade(config.url)
    engine = db.create_engine(config.url)

    async def run() -> _T:
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _shown_once(password: str) -> list[str]:
    """How ``device add`` and ``device rotate`` print a password (provisioning reads it)."""
    return ["broker password (shown only this once):", password, ""]


def _add(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from puskesos.tomlconfig import BROKER_KEYS, render_section

    config = _load(args)
    if args.node in (config.node, *config.broker_users):
        raise DeviceError(f"{args.node!r} is the hub's own name; pick another node id")
    region = lookup(args.village)
    if region is not None and not region.code.startswith(config.district):
        raise DeviceError(f"village {region.code} is not in this hub's district {config.district}")
    password = _run(
        config,
        lambda engine: add_device(engine, village=args.village, node=args.node, now_ms=_now_ms()),
    )
    assert region is not None  # add_device checked it
    # What the box needs, not what the hub uses: workers reach the broker on its local
    # plain listener, boxes over the internet on the TLS one.
    box_broker = replace(
        config.broker,
        host=args.broker_host or config.broker.host,
        port=args.broker_port,
        tls=args.broker_tls,
        ca_file=args.broker_ca_file if args.broker_tls else "",
        username=args.node,
        password_file=BOX_PASSWORD_FILE,
    )
    lines = [
        f"device {args.node} enrolled for village {region.code} {region.name} "
        f"(kec. {region.kecamatan}, {region.regency})",
        *_shown_once(password),
        f"On the box, put the password alone in {BOX_PASSWORD_FILE} (mode 0600)",
        "and these lines in its configuration:",
        "",
        "[edge]",
        f'village = "{region.code}"',
        f'node = "{args.node}"',
        "",
        *render_section("broker", box_broker, BROKER_KEYS),
    ]
    print("\n".join(lines))
    print("Then run `puskesos hub broker-config` and reload the broker.", file=sys.stderr)
    return 0


def _ago(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "never"
    seconds = max(0, (now_ms - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _list(args: argparse.Namespace) -> int:
    devices = _run(_load(args), list_devices)
    if not devices:
        print("no devices enrolled")
        return 0
    now = _now_ms()
    header = ("NODE", "VILLAGE", "STATUS", "LAST SEEN", "UP", "DOWN SEQ/ACKED", "OUTBOX", "CLOCK")
    rows = [header]
    for dev in devices:
        status = dev.status if dev.status != ACTIVE else ("online" if dev.online else "offline")
        offset = "-" if dev.clock_offset_ms is None else f"{dev.clock_offset_ms / 1000:+.1f}s"
        rows.append(
            (
                dev.node,
                dev.village,
                status,
                _ago(dev.last_seen_ms, now),
                str(dev.up_watermark),
                f"{dev.down_seq}/{dev.down_watermark}",
                "-" if dev.outbox is None else str(dev.outbox),
                offset,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if _run(_load(args), lambda engine: revoke_device(engine, args.node, _now_ms())):
        print(f"device {args.node} revoked; run `puskesos hub broker-config` and reload the broker")
    else:
        print(f"device {args.node} was already revoked")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    password = _run(_load(args), lambda engine: rotate_device(engine, args.node))
    lines = [
        f"device {args.node} has a new broker password",
        *_shown_once(password),
        f"On the box, replace the password in {BOX_PASSWORD_FILE} with it and restart the box",
        "(an encrypted box: `puskesos edge secret set broker-password` with it on stdin, no",
        "restart).",
    ]
    print("\n".join(lines))
    print(
        "Then run `puskesos hub broker-config` and reload the broker: from then on the old "
        "password is refused.",
        file=sys.stderr,
    )
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    from hub.cli import broker_password

    config = _load(args)
    password = broker_password(config)
    if not password:
        raise DeviceError(
            "the hub's broker account has no password: set [broker] password_file "
            "(`puskesos hub init` makes one)"
        )
    passwd, acl = _run(
        config,
        lambda engine: write_broker_config(
            engine, args.out, hub_users=config.broker_users, hub_password=password
        ),
    )
    print(f"wrote {passwd} and {acl}; reload the broker (kill -HUP) to apply them")
    return 0
