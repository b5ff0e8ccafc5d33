"""Run an aiohttp application as a service: what `puskesos edge|hub|national serve` share."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from puskesos import logs
from puskesos.commands import CommandError

__all__ = ["serve"]


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    name: str,
    ready: Callable[[], None] | None = None,
    shutdown_timeout: float = 60.0,
    **facts: Any,
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT, then stop cleanly. Logs
    as ``puskesos.<name>`` (the ``serving`` event carries ``facts``), access lines as
    ``puskesos.<name>.access``. ``ready`` runs once the app has started, before it
    listens. A port that cannot be bound is a :class:`CommandError`."""
    log = logging.getLogger(f"puskesos.{name}")
    runner = web.AppRunner(
        app,
        access_log_class=logs.AccessLogger,
        access_log=logging.getLogger(f"puskesos.{name}.access"),
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        if ready is not None:
            ready()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        log.info("serving", extra={"host": host, "port": port, **facts})
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
    log.info("stopped")
