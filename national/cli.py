"""``puskesos national ...``: set up and run the reference national receiver, register
districts, publish a period's results."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from national.config import NationalConfig, load_config, render_toml
from puskesos.commands import guarded

__all__ = ["add_parser"]

DEFAULT_CONFIG = Path("/etc/puskesos/national.toml")


def add_parser(subparsers: Any) -> None:
    """Add ``national`` and its subcommands to the ``puskesos`` parser's subparsers."""
    national = subparsers.add_parser(
        "national",
        help="the reference national receiver",
        description="Commands of the reference national receiver.",
    )
    commands = national.add_subparsers(dest="national_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the receiver's TOML configuration (default {DEFAULT_CONFIG})",
    )

    def command(
        parent: Any, name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> Any:
        parser = parent.add_parser(
            name, parents=[common], help=text, description=text, allow_abbrev=False
        )
        parser.set_defaults(handler=guarded(f"national {name}", handler))
        return parser

    init = command(commands, "init", _init, "write the configuration and the receiver's key")
    init.add_argument("--data-dir", type=Path, help="folder of the data (new config only)")
    command(commands, "serve", _serve, "serve the delivery API")
    district = commands.add_parser(
        "district", help="registered districts", description="Registered districts."
    ).add_subparsers(dest="district_command", metavar="COMMAND", required=True)
    add = command(district, "add", _district_add, "register a district; prints its token once")
    add.add_argument("--code", required=True, help="4-digit regency/city code, e.g. 3201")
    add.add_argument(
        "--public-key", type=Path, required=True, help="the district's public key (PEM file)"
    )
    publish = command(commands, "publish", _publish, "write a period's published-results file")
    publish.add_argument("--district", required=True, help="4-digit regency/city code")
    publish.add_argument("--period", required=True, help="YYYY-MM")
    publish.add_argument("--out", type=Path, required=True, help="the file to write (+ .sig)")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _init(args: argparse.Namespace) -> int:
    from hub.keys import generate_key_pair

    path: Path = args.config
    if not path.exists():
        config = NationalConfig()
        if args.data_dir is not None:
            config = replace(config, data_dir=args.data_dir.resolve())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_toml(config), encoding="utf-8")
    config = load_config(path)
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not config.key_path.exists():
        generate_key_pair(config.key_path)
    print(f"receiver ready: data {config.data_dir}, key {config.key_path}, configuration {path}")
    return 0


def _key(config: NationalConfig) -> Any:
    from hub.keys import load_private_key

    return load_private_key(config.key_path)


def _district_add(args: argparse.Namespace) -> int:
    from national.store import Registry

    config = load_config(args.config)
    registry = Registry(config.data_dir / "registry.sqlite")
    token = registry.add_district(args.code, args.public_key.read_bytes(), _now_ms())
    print(token)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from national.publish import publish

    config = load_config(args.config)
    signed = publish(
        config.data_dir,
        args.district,
        args.period,
        key=_key(config),
        out=args.out,
        now_ms=_now_ms(),
    )
    statement = signed["statement"]
    print(f"{statement['households']} households published to {args.out} (+ {args.out}.sig)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from puskesos import logs

    config = load_config(args.config)
    logs.configure()
    asyncio.run(_run(config, _key(config)))
    return 0


async def _run(config: NationalConfig, key: Any) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    from national.web import create_app
    from puskesos.serving import serve

    await serve(create_app(config, key), config.listen_host, config.listen_port, name="national")
