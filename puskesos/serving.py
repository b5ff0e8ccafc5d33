"""Run an aiohttp application as a service: what `puskesos edge|hub|national serve` share."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from puskesos import logs
from puskesos.commands import CommandError

__all__ = ["GC_THRESHOLD", "serve"]

#: Allocations between two collections of the youngest generation in a served process.
GC_THRESHOLD = 50_000


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    name: str,
    ready: Callable[[], None] | None = None,
    shutdown_timeout: float = 60.0,
    tls: tuple[int, ssl.SSLContext] | None = None,
    **facts: Any,
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT, then stop cleanly. Logs
    as ``puskesos.<name>`` (the ``serving`` event carries ``facts``), access lines as
    ``puskesos.<name>.access``. ``ready`` runs once the app has started, before it
    listens. ``tls`` = (port, context): the app also answers HTTPS there (see
    :mod:`puskesos.tls` for what the plain port then does). A port that cannot be bound is
    a :class:`CommandError`."""
    log = logging.getLogger(f"puskesos.{name}")
    runner = web.AppRunner(
        app,
        access_log_class=logs.AccessLogger,
        access_log=logging.getLogger(f"puskesos.{name}.access"),
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    # What start-up made (modules, the app, its engine and links) lives as long as the
    # process: frozen out of the collector's way, full collections stop walking it. A
    # decoded batch is tens of thousands of small objects that live until it is applied:
    # with the default threshold (700) the collector ran dozens of times per batch,
    # promoting them all (issue 18: a third of the hub's CPU while it applied batches).
    # Reference counting still frees everything that is not in a cycle at once.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD)
    try:
        if ready is not None:
            ready()
        sites = [web.TCPSite(runner, host, port)]
        if tls is not None:
            sites.append(web.TCPSite(runner, host, tls[0], ssl_context=tls[1]))
        for site in sites:
            try:
                await site.start()
            except OSError as exc:
                raise CommandError(f"cannot listen on {site.name}: {exc.strerror}") from None
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
