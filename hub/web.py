"""The hub's HTTP side: the JSON API for district staff and tools, ``/healthz``, ``/metrics``,
and the review UI's pages (:mod:`hub.ui`, signed in with a session).

Every ``/api/`` route is declared in one table (``api``, :mod:`hub.openapi`), which also
builds the API's OpenAPI document (``/api/v1/openapi.json``, public: shape only). Every
other ``/api/`` route needs an API token (``Authorization: Bearer ...``, made by
``puskesos hub token add``, :mod:`hub.tokens`): a read token only reads, a token of some
villages sees only theirs, and every request that returns personal data leaves one audit
row; refusals are JSON (``{"error": code, "message": text}``). ``/healthz`` and
``/metrics`` carry no personal data and are open to the operators' network. The ingest
worker runs in the same process, started and stopped through ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import audit, db
from hub.config import HubConfig
from hub.ingest import Ingest
from hub.metrics import HubMetrics
from hub.openapi import (
    VILLAGE_PATTERN,
    ApiRoute,
    ApiRoutes,
    ErrorCode,
    build_document,
    path_parameter,
    query_parameter,
)
from hub.posyandu import PAST_MONTHS, PastMonths
from hub.progress import PROGRESS, ProgressCache
from hub.store import HubStore, ResolveError
from hub.tokens import Token, required_scope, token_for
from protocol.entities import ENTITIES
from protocol.ids import NODE_ID_RE
from puskesos.openapi import UUID_PATTERN

__all__ = ["API_ROUTES", "INGEST", "STORE", "api", "create_app"]

STORE = web.AppKey("store", HubStore)
METRICS = web.AppKey("metrics", HubMetrics)
INGEST = web.AppKey("ingest", Ingest)
#: The API's routes by (method, path): what the router serves and the document shows.
API_ROUTES = web.AppKey("api_routes", dict[tuple[str, str], ApiRoute])
ACTOR = web.RequestKey("actor", str)
TOKEN = web.RequestKey("token", Token)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_RECORD_ID = re.compile(UUID_PATTERN)
_VILLAGE_CODE = re.compile(VILLAGE_PATTERN)
#: Conflict ids are a 32-bit column on PostgreSQL: a larger number names no conflict.
_MAX_CONFLICT_ID = 2**31 - 1


def _error(status: int, code: ErrorCode, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class _Refusal(Exception):
    """A request refused with a JSON error, raised from a helper deep in a handler."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _api_route(request: web.Request) -> ApiRoute | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return request.app[API_ROUTES].get((request.method, resource.canonical))


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``/api/`` needs a bearer token (but for the public document); a session cookie is
    not one. Pages have their own guard (:mod:`hub.ui.base`), which in turn ignores bearer
    tokens."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    route = _api_route(request)
    if route is None or not route.public:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return _error(401, "unauthorized", "an API token is required")
        token = await token_for(request.app[STORE], secret)
        if token is None:
            return _error(401, "unauthorized", "unknown, revoked or expired API token")
        if required_scope(request.method) == "write" and not token.may_write:
            return _error(403, "forbidden", "this token may only read")
        request[TOKEN] = token
        request[ACTOR] = f"token:{token.name}"
    try:
        return await handler(request)
    except _Refusal as refusal:
        return _error(refusal.status, refusal.code, refusal.message)


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
#: Every ``/api/`` route: served and documented from this one table.
api = ApiRoutes()


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


_DEFAULT_LIMIT, _MOST = 100, 1000
_LIMIT = query_parameter(
    "limit",
    {"type": "integer", "default": _DEFAULT_LIMIT, "minimum": 1, "maximum": _MOST},
    f"How many at most; a number outside 1..{_MOST} is taken as the nearest end",
)


def _limit(request: web.Request) -> int:
    try:
        value = int(request.query.get("limit", _DEFAULT_LIMIT))
    except ValueError:
        raise _Refusal(400, "bad_limit", "limit must be a whole number") from None
    return max(1, min(value, _MOST))


def _village(request: web.Request) -> str | None:
    """The ``village`` query parameter, a 10-digit code (``None`` when left out)."""
    village = request.query.get("village") or None
    if village is not None and not _VILLAGE_CODE.fullmatch(village):
        raise _Refusal(400, "bad_village", "village must be a 10-digit code")
    return village


def _village_parameter(description: str, *, required: bool) -> dict[str, Any]:
    schema = {"type": "string", "pattern": VILLAGE_PATTERN}
    return query_parameter("village", schema, description, required=required)


@api.get(
    "/api/v1/records",
    summary="A village's records with their merged values, in id order (keyset paged)",
    response="RecordPage",
    parameters=[
        _village_parameter("The village (a token of some villages: one of them)", required=True),
        query_parameter("entity", {"type": "string", "enum": list(ENTITIES)}, "Only these"),
        query_parameter(
            "after",
            {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
            "Records after this id: the `next` of the page before",
        ),
        _LIMIT,
    ],
    errors=(400, 403),
    audited=True,
)
async def list_records(request: web.Request) -> web.Response:
    if (village := _village(request)) is None:
        return _error(400, "bad_village", "village must be a 10-digit code")
    if (refused := _unseen(request, village)) is not None:
        return refused
    entity, after = request.query.get("entity") or None, request.query.get("after", "")
    if entity is not None and entity not in ENTITIES:
        return _error(400, "bad_request", f"entity must be one of {', '.join(ENTITIES)}")
    if after and not _RECORD_ID.fullmatch(after):
        return _error(400, "bad_request", "after must be a record id (the page's next)")
    rows = await request.app[STORE].records(
        village, entity=entity, after=after, limit=_limit(request)
    )
    await _audit_read(
        request, "api.records", village, {"entity": entity, "after": after, "count": len(rows)}
    )
    return web.json_response({"records": rows, "next": rows[-1]["id"] if rows else None})


@api.get(
    "/api/v1/records/{record_id}",
    summary="One record's fields, each with its current versions and their stamps",
    response="RecordVersions",
    parameters=[
        path_parameter(
            "record_id", {"type": "string", "format": "uuid"}, "The record's id (a UUID)"
        )
    ],
    errors=(404,),
    audited=True,
)
async def get_record(request: web.Request) -> web.Response:
    store = request.app[STORE]
    record_id = request.match_info["record_id"]
    if not _RECORD_ID.fullmatch(record_id):
        return _error(404, "not_found", "no such record")  # no record has such an id
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


@api.get(
    "/api/v1/conflicts",
    summary="Concurrent edits waiting for a person, newest first (with the resolved ones)",
    response="ConflictList",
    parameters=[
        _village_parameter(
            "Only this village's (required for a token of some villages)", required=False
        ),
        query_parameter(
            "resolved", {"type": "boolean", "default": False}, "Also the resolved ones"
        ),
        _LIMIT,
    ],
    errors=(400, 403),
    audited=True,
)
async def list_conflicts(request: web.Request) -> web.Response:
    village = _village(request)
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


@api.post(
    "/api/v1/conflicts/{conflict_id}/resolve",
    summary="Resolve a conflict with one of its versions or a new value (sent to the boxes)",
    response="Conflict",
    parameters=[path_parameter("conflict_id", {"type": "integer"}, "The conflict's id")],
    body="Resolution",
    errors=(400, 404, 409, 413),
)
async def resolve_conflict(request: web.Request) -> web.Response:
    try:
        conflict_id = int(request.match_info["conflict_id"])
        body = await request.json()
    except (ValueError, RecursionError):  # JSON and UTF-8 errors are ValueErrors
        return _error(400, "bad_request", "expected a conflict id and a JSON body")
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large", "the request body is over 1 MiB")
    if not isinstance(body, dict) or ("value" in body) == ("choose" in body):
        return _error(400, "bad_request", 'send either {"value": ...} or {"choose": index}')
    choose = body.get("choose")
    if "choose" in body and (isinstance(choose, bool) or not isinstance(choose, int)):
        return _error(400, "bad_request", "choose must be the index of a version")
    if not 1 <= conflict_id <= _MAX_CONFLICT_ID:
        return _error(404, "not_resolved", f"no conflict {conflict_id}")
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
        "audit_chain": row.audit_state,
        "audit_seq": row.audit_seq,
        "audit_breaks": row.audit_breaks,
        "audit_problem": row.audit_problem,
        "audit_problem_seq": row.audit_problem_seq,
        "audit_problem_ms": row.audit_problem_ms,
    }


@api.get(
    "/api/v1/devices",
    summary="The boxes the token's villages have, with their replication and health state",
    response="DeviceList",
)
async def list_devices(request: web.Request) -> web.Response:
    query = sa.select(db.devices).order_by(db.devices.c.village, db.devices.c.node)
    async with request.app[STORE].engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    token = request[TOKEN]
    return web.json_response(
        {"devices": [_device_json(row) for row in rows if token.sees(row.village)]}
    )


@api.get(
    "/api/v1/devices/{node}",
    summary="One box with its replication and health state",
    response="Device",
    parameters=[
        path_parameter(
            "node", {"type": "string", "pattern": f"^{NODE_ID_RE.pattern}$"}, "The box's node id"
        )
    ],
    errors=(404,),
)
async def get_device(request: web.Request) -> web.Response:
    node = request.match_info["node"]
    row = await request.app[STORE].device(node) if NODE_ID_RE.fullmatch(node) else None
    if row is None or not request[TOKEN].sees(row.village):
        return _error(404, "not_found", "no such device")
    return web.json_response(_device_json(row))


@api.get(
    "/api/v1/openapi.json",
    summary="This API's OpenAPI 3.1 document (public: it holds no data, only the shape)",
    response="OpenApiDocument",
    public=True,
)
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app[API_ROUTES].values()))


def create_app(
    config: HubConfig, store: HubStore, *, password: str | None, with_ingest: bool = True
) -> web.Application:
    """The hub application: the JSON API and the review UI, checking the hub's audit chain
    every ``audit_verify_s``; with ``with_ingest`` it also runs the MQTT ingest worker."""
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
    app[PAST_MONTHS] = PastMonths()
    app.on_cleanup.append(app[PAST_MONTHS].stop)
    app[METRICS] = hub_metrics
    app.add_routes(routes)
    app[API_ROUTES] = api.register(app)
    ui.setup(app, config)
    if config.audit_verify_s > 0:

        async def audit_watch(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(
                audit.watch(store.engine, hub_metrics.audit_chain, interval_s=config.audit_verify_s)
            )
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(audit_watch)
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
