"""The review UI of the district hub (Bahasa Indonesia): one module per page.

:func:`setup` adds every page to the hub's app; :mod:`hub.ui.base` holds what they share
(roles per route, the session guard, CSRF, rendering).
"""

from __future__ import annotations

from aiohttp import web

from hub.config import HubConfig
from hub.ui import (
    antrian,
    audit,
    bantuan,
    base,
    duplikat,
    konflik,
    lapangan,
    masuk,
    pengguna,
    perangkat,
    posyandu,
    ringkasan,
    sandi,
    siklus,
)

__all__ = ["PAGES", "setup"]

#: The page modules, each with its ``routes``.
PAGES = (
    masuk, ringkasan, antrian, konflik, duplikat, lapangan, posyandu, siklus, perangkat, audit,
    pengguna, sandi, bantuan,
)  # fmt: skip


def setup(app: web.Application, config: HubConfig) -> None:
    """Add the pages and what their middlewares need to ``app``."""
    base.setup(app, config, PAGES)
