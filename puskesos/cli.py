"""The ``puskesos`` command. Subcommands (``edge``, ``hub``, ``demo``) join as they are built."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edge import cli as edge_cli
from hub import cli as hub_cli
from national import cli as national_cli
from protocol.codec import WIRE_VERSION
from puskesos import __version__, demo

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
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
    edge_cli.add_parser(commands)
    hub_cli.add_parser(commands)
    national_cli.add_parser(commands)
    demo.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
