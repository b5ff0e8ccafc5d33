"""The device registry: enrol boxes, list and revoke them, and give the broker its files.

A box is enrolled once under a node id that is never used again: a wiped or replaced box
is enrolled as a new node (its old id stays revoked), so no stamp, sequence number or
broker session of the old box can be mistaken for the new one's. Enrolling makes a random
broker password, shown once; the registry keeps an argon2 hash of it and the Mosquitto
hash for the password file. ``broker-config`` writes the password file and the ACL
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.mosquitto import acl_text, check_username, passwd_text, verify_mosquitto_hash
from protocol.ids import is_node_id
from protocol.regions import Region, RegionCodeError, lookup

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "Device",
    "DeviceError",
    "add_commands",
    "add_device",
    "list_devices",
    "revoke_device",
    "write_broker_config",
]

ACTIVE = "active"
#: Where ``device add`` tells the operator to put a box's broker password.
BOX_PASSWORD_FILE = "/etc/puskesos/broker.password"
REVOKED = "revoked"


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


async def add_device(engine: AsyncEngine, *, village: str, node: str, now_ms: int) -> str:
    """Enrol a box; returns its broker password (the only time it exists in clear).

    Raises :class:`DeviceError` for an unknown village, an invalid node id, or a node id
    already enrolled (revoked ones included: node ids are never reused).
    """
    import sqlalchemy as sa
    from argon2 import PasswordHasher
    from sqlalchemy.exc import IntegrityError

    from hub import db
    from hub.mosquitto import mosquitto_hash

    if not is_node_id(node):
        raise DeviceError(f"node id {node!r} is not valid (3-48 characters of a-z, 0-9, -)")
    region = await _village(village)
    password = secrets.token_urlsafe(24)
    password_hash = await asyncio.to_thread(PasswordHasher().hash, password)
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
                    password_hash=password_hash,
                    broker_hash=mosquitto_hash(password),
                    created_ms=now_ms,
                )
            )
    except IntegrityError:  # the same node enrolled at the same moment elsewhere
        raise refused from None
    return password


async def list_devices(engine: AsyncEngine) -> list[Device]:
    """Every enrolled box, revoked ones included, by village then node."""
    import sqlalchemy as sa

    from hub import db

    d = db.devices
    query = sa.select(d).order_by(d.c.village, d.c.node)
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
            )
        )
    return devices


async def revoke_device(engine: AsyncEngine, node: str, now_ms: int) -> bool:
    """Revoke a box: the hub refuses its batches from now on, the broker after the next
    ``broker-config`` and reload. False if it was revoked already (nothing changes);
    :class:`DeviceError` if no such node was ever enrolled."""
    import sqlalchemy as sa

    from hub import db

    d = db.devices
    async with engine.begin() as conn:
        status = (await conn.execute(sa.select(d.c.status).where(d.c.node == node))).scalar()
        if status is None:
            raise DeviceError(f"no device {node!r} is enrolled")
        if status == REVOKED:
            return False
        await conn.execute(
            d.update().where(d.c.node == node).values(status=REVOKED, revoked_ms=now_ms)
        )
    return True


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
    engine: AsyncEngine, out_dir: Path, *, hub_username: str, hub_password: str
) -> tuple[Path, Path]:
    """Write ``passwd`` (mode 0600) and ``acl`` (0640) for Mosquitto into ``out_dir``.

    Only active devices are in them, plus the hub account. Returns (passwd, acl). The
    broker applies them on reload (``kill -HUP``) or restart.
    """
    import sqlalchemy as sa

    from hub import db

    check_username(hub_username)
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
    if any(row.node == hub_username for row in rows):
        raise DeviceError(f"a device is enrolled as {hub_username!r}, the hub's broker user")
    passwd, acl = out_dir / "passwd", out_dir / "acl"

    def write() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        hub_hash = _hub_hash(passwd, hub_username, hub_password)
        accounts = [(hub_username, hub_hash), *((row.node, row.broker_hash) for row in rows)]
        _write_private(passwd, passwd_text(accounts), 0o600)
        _write_private(acl, acl_text(hub_username, ((r.node, r.village) for r in rows)), 0o640)

    await asyncio.to_thread(write)
    return passwd, acl


# --- the `puskesos hub device ...` and `puskesos hub broker-config` commands --------------


def add_commands(commands: Any, command: Callable[..., Any]) -> None:
    """Register ``device add|list|revoke`` and ``broker-config`` under ``puskesos hub``.

    ``commands`` is the hub's subparsers; ``command(name, handler, help)`` makes one
    hub command with ``--config`` (see :func:`hub.cli.add_parser`).
    """
    from hub.cli import DEFAULT_CONFIG
    from puskesos.commands import guarded

    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the hub's TOML configuration (default {DEFAULT_CONFIG})",
    )
    device = commands.add_parser(
        "device", help="enrol, list and revoke boxes", description="The device registry."
    ).add_subparsers(dest="device_command", metavar="COMMAND", required=True)

    def sub(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        parser = device.add_parser(
            name, parents=[common], help=text, description=text, allow_abbrev=False
        )
        parser.set_defaults(handler=guarded(f"hub device {name}", handler))
        return parser

    add = sub("add", _add, "enrol a box; prints its broker password once")
    add.add_argument("--village", required=True, help="10-digit Kemendagri code of the village")
    add.add_argument("--node", required=True, help="a node id never used before")
    add.add_argument(
        "--broker-host", help="the broker's address as boxes reach it (default: [broker] host)"
    )
    sub("list", _list, "every box with its sync state")
    revoke = sub("revoke", _revoke, "revoke a box (then run broker-config and reload)")
    revoke.add_argument("node")
    broker = command("broker-config", _broker_config, "write Mosquitto's password file and ACL")
    broker.add_argument("--out", type=Path, required=True, help="folder for passwd and acl")


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _load(args: argparse.Namespace) -> Any:
    from hub.config import load_config

    return load_config(args.config)


def _engine(config: Any) -> Any:
    from hub import db

    db.upgrade(config.url)
    return db.create_engine(config.url)


def _add(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from puskesos.tomlconfig import BROKER_KEYS, render_section

    config = _load(args)
    if args.node in (config.node, config.broker.username):
        raise DeviceError(f"{args.node!r} is the hub's own name; pick another node id")
    region = lookup(args.village)
    if region is not None and not region.code.startswith(config.district):
        raise DeviceError(f"village {region.code} is not in this hub's district {config.district}")
    engine = _engine(config)

    async def add() -> str:
        try:
            return await add_device(engine, village=args.village, node=args.node, now_ms=_now_ms())
        finally:
            await engine.dispose()

    password = asyncio.run(add())
    assert region is not None  # add_device checked it
    box_broker = replace(
        config.broker,
        host=args.broker_host or config.broker.host,
        ca_file="",
        username=args.node,
        password_file=BOX_PASSWORD_FILE,
    )
    lines = [
        f"device {args.node} enrolled for village {region.code} {region.name} "
        f"(kec. {region.kecamatan}, {region.regency})",
        "broker password (shown only this once):",
        password,
        "",
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
    engine = _engine(_load(args))

    async def fetch() -> list[Device]:
        try:
            return await list_devices(engine)
        finally:
            await engine.dispose()

    devices = asyncio.run(fetch())
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
    engine = _engine(_load(args))

    async def revoke() -> bool:
        try:
            return await revoke_device(engine, args.node, _now_ms())
        finally:
            await engine.dispose()

    if asyncio.run(revoke()):
        print(f"device {args.node} revoked; run `puskesos hub broker-config` and reload the broker")
    else:
        print(f"device {args.node} was already revoked")
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
    engine = _engine(config)

    async def write() -> tuple[Path, Path]:
        try:
            return await write_broker_config(
                engine, args.out, hub_username=config.broker.username, hub_password=password
            )
        finally:
            await engine.dispose()

    passwd, acl = asyncio.run(write())
    print(f"wrote {passwd} and {acl}; reload the broker (kill -HUP) to apply them")
    return 0
