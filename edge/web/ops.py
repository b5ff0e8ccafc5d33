"""Health and metrics endpoints for operators and Prometheus (no personal data)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.disk import DiskState
from edge.metrics import take_snapshot
from edge.web.app import METRICS, STORE, is_locked
from edge.web.routing import PUBLIC, RouteTable

__all__ = ["routes"]

routes = RouteTable()


@routes.get(
    "/healthz", roles=PUBLIC, summary="Liveness: database writable, disk not full, clock sane"
)
async def healthz(request: web.Request) -> web.Response:
    """200 when the box can do its work, else 503 naming the failing check; 200 with
    ``locked: true`` while an encrypted box waits for a sign-in. The database
    probe takes the write lock but writes nothing, so it cannot see a full disk: the
    ``disk`` check does (``edge.disk``), and a ``low`` disk is reported without failing."""
    store = request.app[STORE]
    if is_locked(request.app):
        # Up and waiting for a sign-in: 200, so that the watchdog does not restart it.
        return web.json_response({"status": "locked", "locked": True, "node": store.node})
    checks: dict[str, str] = {}
    try:
        await store.run_write(lambda conn: conn.execute(sa.text("SELECT 1")))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not healthy; say which
        checks["database"] = f"error: {type(exc).__name__}"
    disk = await store.disk_report()
    checks["disk"] = disk.state.value
    ahead = store.clock.ahead_ms(store.now_ms())
    checks["clock"] = "ok" if ahead <= store.clock.max_drift_ms else f"ahead by {ahead} ms"
    healthy = all(value in ("ok", DiskState.LOW) for value in checks.values())
    return web.json_response(
        {
            "status": "ok" if healthy else "error",
            "checks": checks,
            "disk": {
                "free_bytes": disk.free_bytes,
                "size_bytes": disk.size_bytes,
                "write_failed_ms": disk.write_failed_ms,
            },
            "node": store.node,
        },
        status=200 if healthy else 503,
    )


@routes.get("/metrics", roles=PUBLIC, summary="Prometheus metrics")
async def metrics(request: web.Request) -> web.Response:
    edge_metrics = request.app[METRICS]
    edge_metrics.store_collector.snapshot = await take_snapshot(request.app[STORE])
    body = generate_latest(edge_metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
