"""``puskesos hub ...``: set up and run a district hub worker, manage its API tokens.

The device registry's commands (``device``, ``broker-config``) are in :mod:`hub.devices`,
``keys`` in :mod:`hub.keys`, ``forward`` in :mod:`hub.forward`, ``cycle`` and
``import-published`` in :mod:`hub.cycle_commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hub import audit, auth, cycle_commands, devices, forward, keys, registry_commands
from hub.config import HubConfig, load_config, render_toml
from hub.tokens import DEFAULT_DAYS, TokenError, add_token, list_tokens, revoke_token
from protocol.ids import is_node_id
from puskesos.commands import CommandError, guarded
from puskesos.tls import certificate_note
from puskesos.webauth import load_secret

__all__ = ["HubCommands", "add_parser", "broker_password"]

DEFAULT_CONFIG = Path("/etc/puskesos/hub.toml")


class HubCommands:
    """The ``puskesos hub`` subcommands, each with ``--config``. Modules add their own
    (:mod:`hub.devices`, :mod:`hub.keys`, :mod:`hub.forward`) through :meth:`command`."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self._groups: dict[str, Any] = {}
        self._common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        self._common.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG,
            help=f"the hub's TOML configuration (default {DEFAULT_CONFIG})",
        )

    def group(self, name: str, text: str) -> None:
        """Add a group of commands (``device``, ``keys``, ...)."""
        self._groups[name] = self._subparsers.add_parser(
            name, help=text, description=text
        ).add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    def command(
        self, name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        """Add ``name`` (``"serve"``, or ``"device add"`` inside a :meth:`group`)."""
        *group, last = name.split()
        where = self._groups[group[0]] if group else self._subparsers
        parser: argparse.ArgumentParser = where.add_parser(
            last, parents=[self._common], help=text, description=text, allow_abbrev=False
        )
        parser.set_defaults(handler=guarded(f"hub {name}", handler))
        return parser


def add_parser(subparsers: Any) -> None:
    """Add ``hub`` and its subcommands to the ``puskesos`` parser's subparsers."""
    hub = subparsers.add_parser(
        "hub", help="the district hub", description="Commands of a district hub worker."
    )
    commands = HubCommands(hub.add_subparsers(dest="hub_command", metavar="COMMAND", required=True))
    init = commands.command(
        "init", _init, "set up the hub: configuration, database, broker password"
    )
    init.add_argument("--data-dir", type=Path, help="folder of the data (new config only)")
    init.add_argument("--database-url", help="PostgreSQL URL (new config only; default SQLite)")
    init.add_argument("--node", help="node id of this hub worker (new config only)")
    commands.command("serve", _serve, "run pending migrations, then the ingest worker and the API")
    commands.group("token", "manage API tokens")
    token_add = commands.command("token add", _token_add, "make an API token; printed once")
    token_add.add_argument("--name", required=True, help="what the token is for")
    token_add.add_argument(
        "--write", action="store_true", help="may also resolve conflicts (default: read only)"
    )
    token_add.add_argument(
        "--village", action="append", default=[], metavar="CODE",
        help="a village it may see (repeat; none: every village of the hub)",
    )  # fmt: skip
    token_add.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"days it lasts (default {DEFAULT_DAYS})"
    )
    commands.command("token list", _token_list, "every API token: scope, villages, expiry")
    token_revoke = commands.command("token revoke", _token_revoke, "revoke the tokens of a name")
    token_revoke.add_argument("--name", required=True, help="the name given at `token add`")
    audit.add_commands(commands)
    devices.add_commands(commands)
    keys.add_commands(commands)
    forward.add_commands(commands)
    cycle_commands.add_commands(commands)
    auth.add_commands(commands)
    registry_commands.add_commands(commands)


def broker_password(config: HubConfig) -> str | None:
    """The hub account's broker password (file ``[broker] password_file``), if set."""
    if not config.broker.password_file:
        return None
    return config.path(config.broker.password_file).read_text(encoding="utf-8").strip()


def _init(args: argparse.Namespace) -> int:
    from hub import db

    path: Path = args.config
    if not path.exists():
        config = HubConfig(
            broker=replace(HubConfig().broker, password_file="broker.password"), tls=True
        )
        if args.data_dir is not None:
            config = replace(config, data_dir=args.data_dir.resolve())
        if args.database_url:
            config = replace(config, database_url=args.database_url)
        if args.node:
            config = replace(config, node=args.node)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_toml(config), encoding="utf-8")
    config = load_config(path)
    if not is_node_id(config.node):
        raise CommandError(f"node id {config.node!r} is not valid", 2)
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db.upgrade(config.url)
    password_file = config.broker.password_file
    if password_file:
        secret = config.path(password_file)
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
    load_secret(config.path(config.session_secret_file))  # the review UI's CSRF key
    print(f"hub ready: node {config.node}, database {config.url}, configuration {path}")
    if config.tls:
        print(certificate_note(config))
    return 0


def _open_store(config: HubConfig) -> Any:
    from hub import db
    from hub.store import HubStore

    engine = db.create_engine(config.url)
    return HubStore(engine, node=config.node, max_clock_drift_ms=config.max_clock_drift_ms)


T = TypeVar("T")


def _with_tokens(args: argparse.Namespace, work: Callable[[Any], Awaitable[T]]) -> T:
    config = load_config(args.config)

    async def run() -> T:
        store = _open_store(config)
        try:
            return await work(store)
        finally:
            await store.engine.dispose()

    try:
        return asyncio.run(run())
    except TokenError as exc:
        raise CommandError(str(exc), 2) from None


def _token_add(args: argparse.Namespace) -> int:
    scope = "write" if args.write else "read"
    print(
        _with_tokens(
            args,
            lambda store: add_token(
                store, args.name, scope=scope, villages=args.village, days=args.days
            ),
        )
    )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    for token in _with_tokens(args, list_tokens):
        expires = "never" if token.expires_ms is None else _day(token.expires_ms)
        state = "revoked" if token.revoked else f"expires {expires}"
        villages = ",".join(sorted(token.villages)) or "every village"
        print(f"{token.name}\t{token.scope}\t{villages}\tmade {_day(token.created_ms)}\t{state}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    revoked = _with_tokens(args, lambda store: revoke_token(store, args.name))
    if not revoked:
        raise CommandError(f"no live token called {args.name!r}", 1)
    print(f"{revoked} token(s) revoked")
    return 0


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def _serve(args: argparse.Namespace) -> int:
    from hub import db
    from puskesos import logs

    config = load_config(args.config)
    logs.configure()
    db.upgrade(config.url)
    asyncio.run(_run(config))
    return 0


async def _run(config: HubConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    from hub.web import create_app
    from puskesos.serving import serve
    from puskesos.tls import listener

    tls, facts = listener(config)
    store = _open_store(config)
    try:
        await serve(
            create_app(config, store, password=broker_password(config)),
            config.listen_host, config.listen_port, name="hub", tls=tls, node=config.node,
            **facts,
        )  # fmt: skip
    finally:
        await store.engine.dispose()
