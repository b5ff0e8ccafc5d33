"""The JSON API (``/api/v1``): same validation and permissions as the UI."""

from __future__ import annotations

from aiohttp import web

from edge.web.app import STORE
from edge.web.routing import ALL_ROLES, RouteTable

__all__ = ["routes"]

routes = RouteTable(api=True)


@routes.get(
    "/api/v1/sync/status",
    roles=ALL_ROLES,
    summary="What waits for the hub and when the hub was last heard from",
)
async def sync_status(request: web.Request) -> web.Response:
    store = request.app[STORE]
    pending, oldest = await store.outbox_pending()
    last_contact = await store.get_meta("last_hub_contact_ms")
    last_ack = await store.get_meta("last_ack_ms")
    now = store.now_ms()
    return web.json_response(
        {
            "node": store.node,
            "village": store.village,
            "outbox_pending": pending,
            "outbox_oldest_ms": oldest,
            "last_hub_contact_ms": int(last_contact) if last_contact else None,
            "last_ack_ms": int(last_ack) if last_ack else None,
            "clock_ahead_ms": store.clock.ahead_ms(now),
        }
    )
