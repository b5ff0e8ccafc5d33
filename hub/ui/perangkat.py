"""Perangkat: the enrolled boxes, whether they are online, their streams and telemetry."""

from __future__ import annotations

from aiohttp import web

from hub.devices import list_devices
from hub.roles import Role
from hub.ui.base import STORE, RouteTable, render

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/perangkat", roles={Role.IT, Role.ADMIN})
async def perangkat(request: web.Request) -> web.Response:
    store = request.app[STORE]
    devices = await list_devices(store.engine)
    return render(request, "perangkat.html", devices=devices, now_ms=store.wall())
