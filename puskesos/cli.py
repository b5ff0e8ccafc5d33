"""The ``puskesos`` command. Subcommands (``edge``, ``hub``, ``demo``) join as they are built."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from protocol.codec import WIRE_VERSION
from puskesos import __version__

__all__ = ["build_parser", "main"]

#: Each subcommand and the module that adds it (``add_parser``). A command line naming one
#: imports that module only: ``puskesos edge serve`` does not keep the hub's modules (and
#: their Alembic) in memory, about 18 MB of the box's RSS.
COMMANDS = {
    "edge": "edge.cli",
    "hub": "hub.cli",
    "national": "national.cli",
    "demo": "puskesos.demo",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand, or with subcommand ``only``."""
    parser = argparse.ArgumentParser(
        prog="puskesos",
        description=(
            "Puskesos Sync: offline-first village social-welfare intake boxes that "
            "replicate to a district hub over MQTT."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"puskesos {__version__} (wire format v{WIRE_VERSION})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only in (None, name):
            importlib.import_module(module).add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    named = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(named if named in COMMANDS else None)
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
