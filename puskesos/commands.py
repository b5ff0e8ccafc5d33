"""How every ``puskesos`` command fails: one line on stderr and an exit status.

0 done, 2 usage or configuration error, 1 any other failure (see the README).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from puskesos.tomlconfig import ConfigError

__all__ = ["CommandError", "guarded"]

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A command cannot go on; ``status`` is its exit status (2 usage/config, 1 other)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def guarded(name: str, handler: Handler) -> Handler:
    """``handler`` with the expected failures turned into one line on stderr and the exit
    status (``name`` is the command, e.g. ``edge init``)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ConfigError as exc:
            return _fail(name, f"configuration: {exc}", 2)
        except CommandError as exc:
            return _fail(name, str(exc), exc.status)
        except (ValueError, OSError) as exc:
            return _fail(name, str(exc), 1)
        except KeyboardInterrupt:
            return _fail(name, "interrupted", 1)

    return run


def _fail(name: str, message: str, status: int) -> int:
    print(f"puskesos {name}: error: {' '.join(message.split())}", file=sys.stderr)
    return status
