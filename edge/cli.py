"""The ``puskesos edge`` commands: init, user add, token add, secret set, serve, backup,
restore.

Every command reads ``--config`` (TOML, see :mod:`edge.config`, with ``PUSKESOS_*``
environment overrides). ``init`` makes a new box's database encrypted, with a district slot
sealed to ``--recovery-key FILE`` or ``[edge] recovery_key``; without either it refuses,
unless ``--no-recovery-key`` (no district slot) or ``--plain`` (not encrypted) says so. On an
encrypted box (``docs/storage.md``) the commands that open the
database take ``--as NAME``: that staff member's password (asked, or the first line of
stdin) opens their key slot; before the first account exists the setup slot does. A backup
of an encrypted box carries its key slots (``<backup>.keys.json``): ``restore`` opens them
with ``--as NAME`` (a password of the backup's time) or the district's ``--recovery-key``.
``backup`` without ``--as`` asks the running box over its control socket (:mod:`edge.control`).
Exit status: 0 done, 2 usage or configuration error, 3 ``backup`` refused by a running box
that is locked, 1 any other failure; an error is one line on stderr. The web stack,
SQLAlchemy and Alembic are imported inside the commands that need them, so
``puskesos --version`` stays fast on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config import (
    BrokerConfig,
    EdgeConfig,
    SyncConfig,
    load_config,
    render_toml,
)
from protocol.ids import is_node_id
from protocol.regions import LEVEL_LABELS, Region, RegionCodeError, lookup, normalize_region_code
from puskesos.commands import CommandError, guarded
from puskesos.tls import certificate_note

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    from edge.store import Store
    from puskesos.keyslots import KeySlots

__all__ = ["add_parser"]

DEFAULT_CONFIG = Path("/etc/puskesos/edge.toml")
#: Exit status of ``edge backup`` when the running box is locked (no data key in memory).
LOCKED_STATUS = 3
AS_USER_HELP = (
    "on an encrypted box: a staff member whose password (asked, or the first line of stdin) "
    "opens the database"
)
RECOVERY_KEY_HELP = "the district's recovery PRIVATE key (from its offline USB stick)"


def add_parser(subparsers: Any) -> None:
    """Add ``edge`` and its subcommands to the ``puskesos`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the box's TOML configuration (default {DEFAULT_CONFIG})",
    )
    edge = subparsers.add_parser(
        "edge", help="the village office box", description="Commands of the village office box."
    )
    commands = edge.add_subparsers(dest="edge_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        parser = commands.add_parser(
            name, parents=[common], help=text, description=text, allow_abbrev=False
        )
        parser.set_defaults(handler=guarded(f"edge {name}", handler))
        return parser

    init = command("init", _init, "set up the box: configuration, database, session key")
    init.add_argument("--village", help="10-digit Kemendagri code of the village")
    init.add_argument("--node", help="node id of this box, e.g. edge-3201022001-a")
    init.add_argument("--data-dir", type=Path, help="folder of the database (new config only)")
    init.add_argument("--broker-host", help="the district's MQTT broker (new config only)")
    init.add_argument("--broker-port", type=int, help="its port (new config only)")
    init.add_argument(
        "--broker-password-file",
        help="file with this box's broker password, relative to the data folder (new config only)",
    )
    encryption = init.add_mutually_exclusive_group()
    encryption.add_argument(
        "--recovery-key", type=Path, metavar="FILE",
        help="the district's recovery public key (`puskesos hub keys recovery-init`; default: "
        "[edge] recovery_key): the new database is encrypted, and the district can recover it "
        "when every password is lost. A new box needs it, --no-recovery-key or --plain",
    )  # fmt: skip
    encryption.add_argument(
        "--no-recovery-key", action="store_true",
        help="encrypt the new database without a district slot (a test bench): if every staff "
        "password is lost, so is the box's data",
    )  # fmt: skip
    encryption.add_argument(
        "--plain", action="store_true",
        help="do NOT encrypt the new database: a stolen SD card (or any copy of its backups) "
        "then gives every household's data away",
    )  # fmt: skip
    as_user = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    as_user.add_argument("--as", dest="as_user", metavar="NAME", help=AS_USER_HELP)

    user = commands.add_parser("user", help="manage accounts").add_subparsers(
        dest="user_command", metavar="COMMAND", required=True
    )
    user_add = user.add_parser(
        "add", parents=[common, as_user], allow_abbrev=False,
        help="add an account (password from a prompt, or stdin when it is not a terminal)",
    )  # fmt: skip
    user_add.set_defaults(handler=guarded("edge user add", _user_add))
    user_add.add_argument("--username", required=True)
    user_add.add_argument("--full-name", required=True)
    user_add.add_argument("--role", required=True, help="admin, kepala_desa or operator")
    user_add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(
        dest="token_command", metavar="COMMAND", required=True
    )
    token_add = token.add_parser(
        "add", parents=[common, as_user], allow_abbrev=False,
        help="make an API token acting as a user; printed once",
    )  # fmt: skip
    token_add.set_defaults(handler=guarded("edge token add", _token_add))
    token_add.add_argument("--username", required=True)
    token_add.add_argument("--name", required=True, help="what the token is for")

    recover = command(
        "recover", _recover,
        "when every staff password is lost: open the box with the district's recovery key "
        "and give an admin account a new password",
    )  # fmt: skip
    recover.add_argument(
        "--recovery-key", type=Path, required=True, metavar="FILE", help=RECOVERY_KEY_HELP
    )
    _recovery_account(recover)

    secret = commands.add_parser("secret", help="the box's secrets").add_subparsers(
        dest="secret_command", metavar="COMMAND", required=True
    )
    secret_set = secret.add_parser(
        "set", parents=[common], allow_abbrev=False,
        help="seal a secret (the first line of stdin) to an encrypted box: no password is "
        "needed, and only the box, unlocked, can open it",
    )  # fmt: skip
    secret_set.set_defaults(handler=guarded("edge secret set", _secret_set))
    secret_set.add_argument("name", metavar="NAME", help="broker-password")

    command("serve", _serve, "run pending migrations, then serve the web UI and API")
    backup = command(
        "backup", _backup,
        "consistent copy of the database, also while serving (then taken by the running box)",
    )  # fmt: skip
    backup.add_argument(
        "dest", nargs="?",
        help="a folder (a dated file is made) or a file; default: [edge] backup_dir",
    )  # fmt: skip
    backup.add_argument("--as", dest="as_user", metavar="NAME", help=AS_USER_HELP)
    restore = command("restore", _restore, "bring a backup back (the box must be stopped)")
    restore.add_argument("source", type=Path, help="the backup file")
    opener = restore.add_mutually_exclusive_group()
    opener.add_argument(
        "--as", dest="as_user", metavar="NAME",
        help="on an encrypted backup: a staff member whose password of the backup's time "
        "(asked, or the first line of stdin) opens it",
    )  # fmt: skip
    opener.add_argument(
        "--recovery-key", type=Path, metavar="FILE",
        help=f"{RECOVERY_KEY_HELP}: opens an encrypted backup, then an admin account gets a "
        "new password as with `edge recover`",
    )  # fmt: skip
    _recovery_account(restore)


def _recovery_account(parser: argparse.ArgumentParser) -> None:
    """The options of the admin account that the district's recovery key gives a password."""
    parser.add_argument(
        "--username", default="admin", help="the admin account to (re)create (default admin)"
    )
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the new password from stdin"
    )


# --- init -----------------------------------------------------------------------------------


def _village(code: str) -> Region:
    """The village of a code, or a usage error that says what is wrong with the code."""
    try:
        plain = normalize_region_code(code)
    except RegionCodeError:
        raise CommandError(
            f"village {code!r} is not a Kemendagri code: give the 10 digits of the "
            "desa/kelurahan, e.g. 3201022001",
            2,
        ) from None
    region = lookup(plain)
    if len(plain) != 10:
        level = LEVEL_LABELS[region.level][0] if region else "region"
        named = f" ({region.name})" if region else ""
        raise CommandError(
            f"{plain}{named} is a {level} code, not a village: give the 10-digit code", 2
        )
    if region is None:
        kecamatan = lookup(plain[:6])
        where = (
            f"; kecamatan {kecamatan.dotted} {kecamatan.name} ({kecamatan.regency}) has no "
            f"village {plain[6:]}"
            if kecamatan
            else f"; there is no kecamatan {plain[:6]} either"
        )
        raise CommandError(f"village {plain} does not exist in the Kemendagri 2025 list{where}", 2)
    return region


def _init(args: argparse.Namespace) -> int:
    from edge import boxsecrets, db, keys

    path: Path = args.config
    given = {"village": args.village, "node": args.node}
    if given["village"]:
        given["village"] = _village(given["village"]).code
    new_file = not path.exists()
    if new_file:
        missing = [f"--{key}" for key, value in given.items() if not value]
        if missing:
            raise CommandError(f"{path} does not exist yet: {' and '.join(missing)} needed", 2)
        broker = replace(BrokerConfig(), **_broker_options(args))
        # A box set up for the field replicates; `[sync] enabled = false` keeps it alone.
        defaults = EdgeConfig(
            village=str(given["village"]),
            node=str(given["node"]),
            broker=broker,
            sync=SyncConfig(enabled=True),
            tls=True,
        )
        if args.data_dir is not None:
            defaults = replace(defaults, data_dir=args.data_dir.resolve())
        path.parent.mkdir(parents=True, exist_ok=True)
        pending = path.with_name(f".{path.name}.new")
        pending.write_text(render_toml(defaults), encoding="utf-8")
        config_path = pending
    else:
        config_path = path
    try:
        config = load_config(config_path)
        for key, value in given.items():
            if value and getattr(config, key) != value:
                raise CommandError(
                    f"{path} says {key} {getattr(config, key) or '(empty)'}, not {value}; "
                    "edit the file or choose another --config",
                    2,
                )
        if (
            not new_file
            and args.data_dir is not None
            and args.data_dir.resolve() != config.data_dir
        ):
            raise CommandError(f"{path} says data_dir {config.data_dir}; edit the file", 2)
        for key, value in _broker_options(args).items():
            if getattr(config.broker, key) != value:
                raise CommandError(
                    f"{path} says broker {key} {getattr(config.broker, key) or '(empty)'}, "
                    f"not {value}; edit the file",
                    2,
                )
        region = _village(config.village)
        if not is_node_id(config.node):
            raise CommandError(
                f"node id {config.node!r} is not valid: 3–48 characters of a–z, 0–9 and '-', "
                "e.g. edge-3201022001-a",
                2,
            )
        encrypted = keys.encrypted(config)
        plain = not encrypted and config.database_path.exists()
        if plain and (args.recovery_key is not None or args.no_recovery_key):
            raise CommandError(
                f"{config.database_path} is a plain database made by an older release: set "
                "[edge] recovery_key to the recovery public key in the configuration instead, "
                "and the box's first staff sign-in encrypts it (docs/storage.md §5)",
                2,
            )
        # A new box is encrypted unless --plain says otherwise (docs/storage.md §3).
        new_key = not (encrypted or plain or args.plain)
        public = _district_key(config, args) if new_key else None
        # Personal data: only the box's user may read the folder.
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if encrypted:
            data_key = keys.setup_key(config)
        elif new_key:
            data_key = keys.create_slots(config, public)
        else:
            data_key = None
        if data_key is not None or not keys.encrypted(config):
            db.upgrade(config.database_path, data_key)
            asyncio.run(_claim(config, data_key))
        boxsecrets.prepare(config, data_key)
        certificate = certificate_note(config)
        if new_file:
            pending.replace(path)
    finally:
        if new_file:
            pending.unlink(missing_ok=True)
    print(
        f"box ready: village {region.code} {region.name} (kec. {region.kecamatan}, "
        f"{region.regency}, {region.province}), node {config.node}, "
        f"database {config.database_path}, configuration {path}"
    )
    if certificate:
        print(certificate)
    print(_encryption_note(config, args))
    return 0


def _district_key(config: EdgeConfig, args: argparse.Namespace) -> X25519PublicKey | None:
    """The recovery public key a new box's district slot is sealed to (``None`` with
    ``--no-recovery-key``), or a usage error when neither option nor configuration gives one."""
    from puskesos.keyslots import load_recovery_public

    if args.no_recovery_key:
        return None
    if args.recovery_key is not None:
        return load_recovery_public(args.recovery_key)
    if config.recovery_key:
        return load_recovery_public(config.path(config.recovery_key))
    raise CommandError(
        "a new box's database is encrypted: give the district's recovery public key with "
        "--recovery-key FILE (or set [edge] recovery_key), --no-recovery-key to encrypt it "
        "without a district slot (a test bench), or --plain to leave it unencrypted (a stolen "
        "SD card then gives its data away)",
        2,
    )


def _encryption_note(config: EdgeConfig, args: argparse.Namespace) -> str:
    """What ``edge init`` says about the encryption of the box's data."""
    from edge import keys

    if not keys.encrypted(config) and config.recovery_key:
        return (
            "the database is NOT encrypted yet: the box's first staff sign-in encrypts it "
            "([edge] recovery_key, docs/storage.md §5)"
        )
    if not keys.encrypted(config):
        return (
            "the database is NOT encrypted: a stolen SD card gives its data away; set [edge] "
            "recovery_key to the district's recovery public key and the box's first staff "
            "sign-in encrypts it (docs/storage.md §5)"
        )
    if args.no_recovery_key:
        return (
            "the database is encrypted WITHOUT a district recovery slot: if every staff "
            "password of this box is lost, its data cannot be recovered on the box"
        )
    return "the database is encrypted; the first `edge user add` can unlock it after a restart"


def _broker_options(args: argparse.Namespace) -> dict[str, object]:
    """The ``[broker]`` keys given on the command line of ``edge init``."""
    given = {
        "host": args.broker_host,
        "port": args.broker_port,
        "password_file": args.broker_password_file,
    }
    return {key: value for key, value in given.items() if value is not None}


async def _claim(config: EdgeConfig, data_key: bytes | None) -> None:
    """Write the box's village and node into its database, or refuse another box's one."""
    from edge.store import Store

    store = Store(config, key=data_key)
    await store.open()
    try:
        stored = {key: await store.get_meta(key) for key in ("village", "node")}
        if any(stored.values()):
            _check_identity(config, stored)
        else:
            for key in ("village", "node"):
                await store.set_meta(key, getattr(config, key))
    finally:
        await store.close()


def _check_identity(config: EdgeConfig, stored: dict[str, str | None]) -> None:
    if not all(stored.values()):
        raise CommandError(
            f"{config.database_path} is not set up: run `puskesos edge init` first", 2
        )
    wanted = {"village": config.village, "node": config.node}
    if stored != wanted:
        raise CommandError(
            f"the database {config.database_path} belongs to village {stored['village']} node "
            f"{stored['node']}, but the configuration says village {config.village} node "
            f"{config.node}; refusing",
            2,
        )


def _data_key(config: EdgeConfig, as_user: str | None) -> bytes | None:
    """The data key of an encrypted box (``None`` for a plain one): from the setup slot
    before the first account, else from ``as_user``'s slot with their password."""
    from edge import keys

    if not keys.encrypted(config):
        return None
    key = keys.setup_key(config)
    if key is not None:
        return key
    if not as_user:
        raise CommandError(
            "the box's database is encrypted: give --as NAME, a staff member whose password "
            "opens it",
            2,
        )
    key = keys.open_with_password(config, as_user, _password_of(as_user))
    if key is None:
        raise CommandError(f"that password does not open the key slot of {as_user!r}")
    return key


def _password_of(name: str) -> str:
    """Staff member ``name``'s password: asked, or the first line of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass(f"Password of {name}: ")
    return sys.stdin.readline().rstrip("\r\n")


@asynccontextmanager
async def _open_box(config: EdgeConfig, as_user: str | None = None) -> AsyncIterator[Store]:
    """The store of an initialised box whose database belongs to this configuration
    (``as_user``: see :func:`_data_key`)."""
    if not config.database_path.exists():
        raise CommandError(
            f"there is no database at {config.database_path}: run `puskesos edge init` first", 2
        )
    async with _opened(config, _data_key(config, as_user)) as store:
        yield store


@asynccontextmanager
async def _opened(config: EdgeConfig, key: bytes | None) -> AsyncIterator[Store]:
    """The store of the box's database (data key ``key``), checked to be this box's."""
    from edge.store import Store

    store = Store(config, key=key)
    await store.open()
    try:
        _check_identity(config, {k: await store.get_meta(k) for k in ("village", "node")})
        yield store
    finally:
        await store.close()


# --- accounts ---------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    """From stdin (one line) when asked or when stdin is not a terminal; else asked twice."""
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise CommandError("the two passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    from edge import auth

    config = load_config(args.config)
    try:
        role = auth.Role(args.role)
    except ValueError:
        roles = ", ".join(role.value for role in auth.Role)
        raise CommandError(f"role {args.role!r} is not one of {roles}", 2) from None

    async def add() -> auth.User:
        async with _open_box(config, args.as_user) as store:
            password = _read_password(args.password_stdin)
            return await auth.create_user(
                store, username=args.username, full_name=args.full_name,
                role=role, password=password, actor="cli",
            )  # fmt: skip

    user = asyncio.run(add())
    print(f"user {user.username} ({user.role.value}) added")
    return 0


def _token_add(args: argparse.Namespace) -> int:
    from edge import auth

    config = load_config(args.config)

    async def add() -> str:
        async with _open_box(config, args.as_user) as store:
            users = {user.username: user for user in await auth.list_users(store)}
            user = users.get(args.username)
            if user is None or not user.active:
                raise CommandError(f"there is no active user {args.username!r}")
            return await auth.create_api_token(store, user, args.name)

    token = asyncio.run(add())
    print(token)
    print("This token is shown only once; keep it like a password.", file=sys.stderr)
    return 0


def _secret_set(args: argparse.Namespace) -> int:
    from edge import boxsecrets

    config = load_config(args.config)
    value = sys.stdin.readline().strip()
    if not value:
        raise CommandError(f"give the {args.name} on the first line of stdin", 2)
    try:
        path = boxsecrets.seal_secret(config, args.name, value)
    except boxsecrets.BoxSecretError as exc:
        raise CommandError(str(exc), 2) from None
    print(f"{args.name} sealed to the box in {path}")
    return 0


def _recover(args: argparse.Namespace) -> int:
    """Open the box with the district slot and give an admin account a new password."""
    from puskesos.keyslots import load_recovery_private, open_district, read_slots

    config = load_config(args.config)
    slots = read_slots(config.data_dir, config.node)
    if slots is None:
        raise CommandError(f"{config.data_dir} holds no encrypted box: nothing to recover", 2)
    district = slots.district()
    if district is None:
        raise CommandError(
            "this box was set up with --no-recovery-key: it has no district slot, and its "
            "data opens only with a staff password"
        )
    key = open_district(
        district, node=config.node, private_key=load_recovery_private(args.recovery_key)
    )
    password = _read_password(args.password_stdin)
    _recover_admin(config, key, district.key_id, args.username, password)
    return 0


def _recover_admin(
    config: EdgeConfig, key: bytes, key_id: str, username: str, password: str
) -> None:
    """Give admin ``username`` of the box opened with the district's key ``key_id`` a new
    password (made when missing); it gets a slot (the store is keyed, so ``auth`` writes
    it) and the act is audited (``keys.recover``)."""
    from edge import auth
    from edge.records import AuditEntry

    async def recover() -> str:
        async with _opened(config, key) as store:
            users = {user.username: user for user in await auth.list_users(store)}
            user = users.get(username)
            if user is None:
                await auth.create_user(
                    store, username=username, full_name="Admin (pemulihan)",
                    role=auth.Role.ADMIN, password=password, actor="cli",
                )  # fmt: skip
                done = "added"
            else:
                if user.role is not auth.Role.ADMIN:
                    raise CommandError(f"{username} is not an admin: choose another --username")
                await auth.set_password(store, user.id, password, actor="cli")
                if not user.active:
                    await auth.set_user_active(store, user.id, True, actor="cli")
                done = "given a new password"
            detail = {"username": username, "key_id": key_id}
            await store.audit(AuditEntry("cli", "keys.recover", detail=detail))
            return done

    done = asyncio.run(recover())
    print(f"recovered with the district's key {key_id}: admin {username} {done}")


# --- serve, backup, restore -------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from edge import db, keys
    from edge.backup import BoxBusy, serving_lock
    from edge.securing import finish_interrupted
    from puskesos import logs

    config = load_config(args.config)
    if not config.database_path.exists():
        raise CommandError(
            f"there is no database at {config.database_path}: run `puskesos edge init` first", 2
        )
    logs.configure()
    try:
        with serving_lock(config):
            finish_interrupted(config)  # a securing cut short by a crash (docs/storage.md §5)
            if not keys.encrypted(config):  # an encrypted box migrates when it is unlocked
                db.upgrade(config.database_path)
            asyncio.run(_run_app(config))
    except BoxBusy as exc:
        raise CommandError(f"{exc}; is the box already serving?") from None
    return 0


async def _run_app(config: EdgeConfig) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and stop."""
    import gc

    from edge import control, keys
    from edge.web import create_app
    from edge.web.app import STORE
    from puskesos import __version__
    from puskesos.serving import serve
    from puskesos.tls import listener

    # Refuse another box's database before listening (an encrypted box's key slots name
    # their node, and it starts locked).
    if not keys.encrypted(config):
        async with _open_box(config):
            pass

    def ready() -> None:
        lookup(config.village)  # load the region tables now, not during the first save
        # What start-up loaded (region tables, templates, schemas) lives as long as the
        # process. Frozen, it is no longer scanned by every full garbage collection, which
        # otherwise pauses requests: p99 of a save at 10 clients went from about 50 to
        # under 30 ms.
        gc.collect()
        gc.freeze()

    app = create_app(config)
    # Last in, first out: the socket closes before the sync and the store.
    app.cleanup_ctx.append(lambda app: control.listen(config, app[STORE]))
    tls, facts = listener(config)
    await serve(
        app, config.listen_host, config.listen_port, name="edge", ready=ready,
        shutdown_timeout=10, tls=tls, village=config.village, node=config.node,
        version=__version__, **facts,
    )  # fmt: skip


def _backup(args: argparse.Namespace) -> int:
    """Without ``--as``, the running box takes the backup when it answers on its control
    socket (it holds the data key); otherwise this process opens the database itself."""
    from edge import control, keys
    from edge.backup import backup

    config = load_config(args.config)
    dest = args.dest or f"{config.path(config.backup_dir)}{os.sep}"
    if args.as_user is None:
        # The serving process has another working directory: give it an absolute path,
        # keeping the trailing "/" that asks for a dated file in a folder.
        destination = os.path.abspath(dest) + (os.sep if dest.endswith(os.sep) else "")
        answer = control.ask(config, {"command": "backup", "destination": destination})
        if answer is not None and answer["ok"]:
            print(answer["path"])
            return 0
        locked = answer is not None and answer["error"] == "locked"
        # A locked box with its setup slot (no account yet) opens without a password.
        if answer is not None and not (locked and keys.setup_key(config) is not None):
            hint = "; or give --as NAME" if locked else ""
            status = LOCKED_STATUS if locked else 1
            raise CommandError(f"the running box refused: {answer['message']}{hint}", status)
    print(backup(config, dest, _data_key(config, args.as_user)))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from edge.backup import BoxBusy, backup_slots, keys_path, restore

    config = load_config(args.config)
    travelling = backup_slots(config, args.source)
    try:
        if travelling is not None:
            kept = _restore_encrypted(config, args, travelling)
        elif args.recovery_key is not None:
            raise CommandError(
                f"there is no {keys_path(args.source)}: without the key slots made with the "
                "backup the district's key cannot open it"
            )
        else:
            kept = restore(config, args.source, _data_key(config, args.as_user))
    except BoxBusy as exc:
        raise CommandError(f"{exc}; stop `puskesos edge serve` before restoring") from None
    print(f"restored {args.source} into {config.database_path}")
    if kept is not None:
        print(f"the database it replaced is kept as {kept}")
    return 0


def _restore_encrypted(
    config: EdgeConfig, args: argparse.Namespace, travelling: KeySlots
) -> Path | None:
    """Restore a backup whose key slots came with it, opened with a staff password of its
    time (``--as``) or the district's key; with the latter, an admin gets a new password."""
    from edge import auth
    from edge.backup import restore
    from puskesos.keyslots import WrongKey, load_recovery_private, open_slots, read_slots

    private = load_recovery_private(args.recovery_key) if args.recovery_key else None
    if private is None and args.as_user is None and travelling.setup() is None:
        raise CommandError(
            f"backup {args.source} is encrypted: give --as NAME (a staff member of the "
            "backup's time) or --recovery-key FILE (the district's private key)",
            2,
        )
    password = _password_of(args.as_user) if args.as_user is not None else None

    def opened(slots: KeySlots) -> bytes:
        return open_slots(slots, user=args.as_user, password=password, private_key=private)

    try:
        key = opened(travelling)
    except WrongKey as exc:
        raise CommandError(f"backup {args.source} does not open: {exc}") from None
    district = travelling.district() if private is not None else None
    new_password = None
    if district is not None:  # asked before anything changes, and refused if weak
        new_password = _read_password(args.password_stdin)
        weak = auth.password_weakness(config, args.username, new_password)
        if weak is not None:
            raise weak
    # The box's current database (kept aside) gives the restored one its clock: it opens
    # with the backup's key on the same box, or with what opens the box's own slots.
    own = read_slots(config.data_dir, config.node)
    box_keys: tuple[bytes | None, ...]
    try:
        box_keys = (None,) if own is None else (opened(own),)
    except WrongKey:
        box_keys = ()
    kept = restore(config, args.source, key, slots=travelling, box_keys=box_keys)
    if district is not None and new_password is not None:
        _recover_admin(config, key, district.key_id, args.username, new_password)
    return kept
