"""``puskesos hub cycle ...`` and ``puskesos hub import-published``: the monthly cycle's
steps from the command line, for operators and tests (the review UI calls the same
services in :mod:`hub.cycle`)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from hub.cli import HubCommands
    from hub.config import HubConfig
    from hub.store import HubStore

__all__ = ["add_commands"]

T = TypeVar("T")


def add_commands(commands: HubCommands) -> None:
    """Register ``cycle status|freeze|submit|sign`` and ``import-published``."""
    commands.group("cycle", "the monthly cycle: freeze, submit, sign a period")
    for name, handler, text in (
        ("status", _status, "show a period (default: the open one) as JSON"),
        ("freeze", _freeze, "freeze a period before its cut-off"),
        ("submit", _submit, "submit a frozen period to the regent's office"),
        ("sign", _sign, "sign a period: export and sign its dataset"),
    ):
        parser = commands.command(f"cycle {name}", handler, text)
        parser.add_argument("--period", required=name != "status", help="YYYY-MM")
        if name != "status":
            parser.add_argument("--as", dest="actor", required=True, help="who takes the step")
    published = commands.command(
        "import-published",
        _import_published,
        "import a period's published results (checked against hub.national_key_file)",
    )
    published.add_argument("file", type=Path, help="the published-results file (.sig beside it)")
    published.add_argument("--as", dest="actor", default="admin", help="who imports it")


def run_with_store(
    config_path: Path,
    work: Callable[[HubStore, HubConfig], Awaitable[T]],
    *,
    actor: str | None = None,
    action: str | None = None,
) -> T:
    """Run ``work`` with the hub's store; a refused step becomes a command error. With
    ``actor`` and ``action``, the step is taken only for an active account whose role may
    take it by hand (as on the Siklus page): the audit trail names a real person."""
    from hub.cli import _open_store
    from hub.config import load_config
    from hub.cycle_rules import CycleError
    from puskesos.commands import CommandError

    config = load_config(config_path)

    async def run() -> T:
        store = _open_store(config)
        try:
            if actor is not None and action is not None:
                await _check_actor(store, actor, action)
            return await work(store, config)
        finally:
            await store.engine.dispose()

    try:
        return asyncio.run(run())
    except CycleError as exc:
        raise CommandError(f"{exc.code}: {exc.message}") from None


async def _check_actor(store: HubStore, actor: str, action: str) -> None:
    from hub.auth import list_users
    from hub.cycle_rules import Action, CycleError, allowed

    user = next((u for u in await list_users(store) if u.username == actor), None)
    if user is None or not user.active:
        raise CycleError("unknown_actor", f"{actor} is not an active account of this hub")
    if not allowed(Action(action), user.role):
        raise CycleError("forbidden", f"{actor} ({user.role.value}) may not {action} a period")


def _show(period: Any) -> int:
    from dataclasses import asdict

    print(json.dumps(asdict(period), indent=2, sort_keys=True, default=str))
    return 0


def _status(args: argparse.Namespace) -> int:
    from hub import cycle
    from hub.cycle_rules import CycleError

    async def work(store: HubStore, config: HubConfig) -> Any:
        if args.period is None:
            return await cycle.ensure_current(store, config, store.wall())
        found = await cycle.get(store.engine, args.period)
        if found is None:
            raise CycleError("unknown_period", f"Periode {args.period} tidak ditemukan.")
        return found

    return _show(run_with_store(args.config, work))


def _freeze(args: argparse.Namespace) -> int:
    from hub import cycle

    return _show(
        run_with_store(
            args.config,
            lambda store, config: cycle.freeze(store, config, args.period, args.actor),
            actor=args.actor,
            action="freeze",
        )
    )


def _submit(args: argparse.Namespace) -> int:
    from hub import cycle

    return _show(
        run_with_store(
            args.config,
            lambda store, _: cycle.submit(store, args.period, args.actor),
            actor=args.actor,
            action="submit",
        )
    )


def _sign(args: argparse.Namespace) -> int:
    from hub import cycle

    return _show(
        run_with_store(
            args.config,
            lambda store, config: cycle.sign(store, config, args.period, args.actor),
            actor=args.actor,
            action="sign",
        )
    )


def _import_published(args: argparse.Namespace) -> int:
    from hub import cycle_delivery

    written = run_with_store(
        args.config,
        lambda store, config: cycle_delivery.import_published(store, config, args.file, args.actor),
        actor=args.actor,
        action="publish",
    )
    print(f"{written} households updated")
    return 0
