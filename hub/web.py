"""The hub's HTTP side: the JSON API for district staff and tools, ``/healthz``, ``/metrics``,
and the review UI's pages (:mod:`hub.ui`, signed in with a session).

Every ``/api/`` route needs an API token (``Authorization: Bearer ...``, made by
``puskesos hub token add``, :mod:`hub.tokens`): a read token only reads, a token of some
villages sees only theirs, and every request that returns personal data leaves one audit
row; ``/healthz`` and ``/metrics`` carry no personal data and are open to the operators'
network. The ingest worker runs in the same process, started and
stopped through ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import audit, db
from hub.config import HubConfig
from hub.ingest import Ingest
from hub.metrics import HubMetrics
from hub.progress import PROGRESS, ProgressCache
from hub.store import HubStore, ResolveError
from hub.tokens import Token, token_for

__all__ = ["INGEST", "STORE", "create_app"]

STORE = web.AppKey("store", HubStore)
METRICS = web.AppKey("metrics", HubMetrics)
INGEST = web.AppKey("ingest", Ingest)
ACTOR = web.RequestKey("actor", str)
TOKEN = web.RequestKey("token", Token)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``/api/`` needs a bearer token; a session cookie is not one. Pages have their own
    guard (:mod:`hub.ui.base`), which in turn ignores bearer tokens."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return _error(401, "unauthorized", "an API token is required")
    token = await token_for(request.app[STORE], secret)
    if token is None:
        return _error(401, "unauthorized", "unknown, revoked or expired API token")
    if request.method != "GET" and not token.may_write:
        return _error(403, "forbidden", "this token may only read")
    request[TOKEN] = token
    request[ACTOR] = f"token:{token.name}"
    return await handler(request)


def _unseen(request: web.Request, village: str | None) -> web.Response | None:
    """The refusal when the token may not see ``village`` (``None``: every village)."""
    token = request[TOKEN]
    if village is None and token.villages:
        return _error(403, "forbidden", "this token sees some villages only: give village")
    if village is not None and not token.sees(village):
        return _error(403, "forbidden", f"this token does not see village {village}")
    return None


async def _audit_read(
    request: web.Request, action: str, subject: str, detail: dict[str, Any]
) -> None:
    """One audit row per API request that returned personal data (UU 27/2022: a record
    of processing), with the filter and how many came back."""
    store = request.app[STORE]
    async with store.engine.begin() as conn:
        await audit.record(
            conn, at_ms=store.wall(), actor=request[ACTOR], action=action, subject=subject,
            detail=detail,
        )  # fmt: skip


routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    checks: dict[str, str] = {}
    try:
        async with store.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not healthy; say which
        checks["database"] = f"error: {type(exc).__name__}"
    ingest = request.app.get(INGEST)
    if ingest is not None:
        checks["broker"] = "ok" if ingest.link.connected else "disconnected"
    healthy = all(value == "ok" for value in checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "error", "checks": checks, "node": store.node},
        status=200 if healthy else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    hub_metrics = request.app[METRICS]
    await hub_metrics.refresh(request.app[STORE])
    body = generate_latest(hub_metrics.registry)
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
    # A district's fleet is ~0.6 MB of text a scrape; Prometheus asks for gzip (~20x less).
    response.enable_compression()
    return response


def _limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    try:
        value = int(request.query.get("limit", default))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be a number") from None
    return max(1, min(value, most))


@routes.get("/api/v1/records")
async def list_records(request: web.Request) -> web.Response:
    village = request.query.get("village", "")
    if len(village) != 10 or not village.isdigit():
        return _error(400, "bad_village", "village must be a 10-digit code")
    if (refused := _unseen(request, village)) is not None:
        return refused
    entity, after = request.query.get("entity") or None, request.query.get("after", "")
    rows = await request.app[STORE].records(
        village, entity=entity, after=after, limit=_limit(request)
    )
    await _audit_read(
        request, "api.records", village, {"entity": entity, "after": after, "count": len(rows)}
    )
    return web.json_response({"records": rows, "next": rows[-1]["id"] if rows else None})


@routes.get("/api/v1/records/{record_id}")
async def get_record(request: web.Request) -> web.Response:
    store = request.app[STORE]
    record_id = request.match_info["record_id"]
    r = db.records
    async with store.engine.connect() as conn:
        village = (
            await conn.execute(sa.select(r.c.village).where(r.c.id == record_id))
        ).scalar_one_or_none()
    state = await store.record_state(record_id)
    if state is None or village is None or not request[TOKEN].sees(village):
        return _error(404, "not_found", "no such record")  # the same for one it may not see
    await _audit_read(request, "api.record", record_id, {"village": village})
    return web.json_response(
        {
            "id": record_id,
            "fields": {
                name: [
                    {"value": v.value, "stamp": f"{v.time:016x}@{v.node}", "node": v.node}
                    for v in frontier
                ]
                for name, frontier in state.items()
            },
        }
    )


@routes.get("/api/v1/conflicts")
async def list_conflicts(request: web.Request) -> web.Response:
    village = request.query.get("village") or None
    if (refused := _unseen(request, village)) is not None:
        return refused
    resolved = request.query.get("resolved") == "true"
    conflicts = await request.app[STORE].conflicts(
        village=village, resolved=None if resolved else False, limit=_limit(request)
    )
    await _audit_read(
        request, "api.conflicts", village or "",
        {"resolved": resolved, "count": len(conflicts)},
    )  # fmt: skip
    return web.json_response({"conflicts": conflicts})


@routes.post("/api/v1/conflicts/{conflict_id}/resolve")
async def resolve_conflict(request: web.Request) -> web.Response:
    try:
        conflict_id = int(request.match_info["conflict_id"])
        body = await request.json()
    except (ValueError, json.JSONDecodeError):
        return _error(400, "bad_request", "expected a conflict id and a JSON body")
    if not isinstance(body, dict) or ("value" in body) == ("choose" in body):
        return _error(400, "bad_request", 'send either {"value": ...} or {"choose": index}')
    choose = body.get("choose")
    if choose is not None and (isinstance(choose, bool) or not isinstance(choose, int)):
        return _error(400, "bad_request", "choose must be the index of a version")
    store = request.app[STORE]
    c = db.conflicts
    async with store.engine.connect() as conn:
        village = (
            await conn.execute(sa.select(c.c.village).where(c.c.id == conflict_id))
        ).scalar_one_or_none()
    if village is not None and not request[TOKEN].sees(village):
        return _error(404, "not_resolved", f"no conflict {conflict_id}")
    try:
        resolved = await store.resolve(
            conflict_id, actor=request[ACTOR], value=body.get("value"), choose=choose
        )
    except ResolveError as exc:
        return _error(exc.status, "not_resolved", str(exc))
    request.app[METRICS].resolutions.inc()
    ingest = request.app.get(INGEST)
    if ingest is not None:
        await ingest.push_village(resolved["village"])
    return web.json_response(resolved)


def _device_json(row: Any) -> dict[str, Any]:
    reported = json.loads(row.reported) if row.reported else None
    return {
        "node": row.node,
        "village": row.village,
        "status": row.status,
        "online": bool(row.online),
        "created_ms": row.created_ms,
        "revoked_ms": row.revoked_ms,
        "last_seen_ms": row.last_seen_ms,
        "up_watermark": row.up_watermark,
        "up_above": json.loads(row.up_above),
        "changes_applied": row.changes_applied,
        "down_seq": row.down_seq,
        "down_watermark": row.down_watermark,
        "reported": reported,
        "outbox_lag": reported["outbox"] if reported else None,
        "clock_offset_ms": row.clock_offset_ms,
        "rejected": row.rejected,
        "last_reject": json.loads(row.last_reject) if row.last_reject else None,
        "telemetry": json.loads(row.telemetry) if row.telemetry else None,
        "telemetry_ms": row.telemetry_ms,
        "digest_state": row.digest_state,
        "digest_ms": row.digest_ms,
        "divergences": row.divergences,
        "repaired": row.repaired,
    }


@routes.get("/api/v1/devices")
async def list_devices(request: web.Request) -> web.Response:
    query = sa.select(db.devices).order_by(db.devices.c.village, db.devices.c.node)
    async with request.app[STORE].engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    token = request[TOKEN]
    return web.json_response(
        {"devices": [_device_json(row) for row in rows if token.sees(row.village)]}
    )


@routes.get("/api/v1/devices/{node}")
async def get_device(request: web.Request) -> web.Response:
    row = await request.app[STORE].device(request.match_info["node"])
    if row is None or not request[TOKEN].sees(row.village):
        return _error(404, "not_found", "no such device")
    return web.json_response(_device_json(row))


def create_app(
    config: HubConfig, store: HubStore, *, password: str | None, with_ingest: bool = True
) -> web.Application:
    """The hub application: the JSON API and the review UI; with ``with_ingest`` it also
    runs the MQTT ingest worker."""
    from hub import ui
    from hub.ui.base import session_guard
    from puskesos.tls import https_redirect
    from puskesos.webpages import security_headers

    https = [https_redirect(config.tls_port)] if config.tls else []
    app = web.Application(middlewares=[security_headers, *https, _auth, session_guard])
    progress = ProgressCache(round_months=config.round_months, timezone=config.timezone)
    hub_metrics = HubMetrics(stale_after_s=config.box_stale_after_s, progress=progress)
    app[STORE] = store
    app[PROGRESS] = progress
    app[METRICS] = hub_metrics
    app.add_routes(routes)
    ui.setup(app, config)
    if with_ingest:
        app[INGEST] = Ingest(config, store, hub_metrics, password=password)

        async def ingest_lifecycle(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(app[INGEST].run())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(ingest_lifecycle)
    return app
