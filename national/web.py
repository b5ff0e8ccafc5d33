"""The receiver's HTTP API (contract: ``docs/national-api.yaml``; design: ``docs/national.md``).

A district opens (or resumes) the delivery of a period with its signed manifest, sends each
file in chunks at the offsets the receiver reports, and finalizes; the receiver checks every
byte against the manifest and answers with a signed receipt. Every refusal is a JSON body
``{"error": <reason code>, "message": ...}`` with a code of
:class:`protocol.dataset.DatasetReason`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.keys import public_pem
from national.config import NationalConfig
from national.store import DeliveryStore, Registry, check_signature
from protocol.dataset import DatasetError, DatasetReason, manifest_sha256, parse_manifest

__all__ = ["CONFIG", "create_app"]

log = logging.getLogger("puskesos.national")

CONFIG = web.AppKey("config", NationalConfig)
REGISTRY = web.AppKey("registry", Registry)
STORE = web.AppKey("store", DeliveryStore)
KEY = web.AppKey("key", Ed25519PrivateKey)
LOCKS = web.AppKey("locks", defaultdict)

_STATUS = {
    DatasetReason.MALFORMED: 400,
    DatasetReason.UNAUTHORIZED: 401,
    DatasetReason.UNKNOWN_DISTRICT: 404,
    DatasetReason.NO_UPLOAD: 404,
    DatasetReason.UNKNOWN_FILE: 404,
    DatasetReason.ALREADY_DELIVERED: 409,
    DatasetReason.OFFSET_MISMATCH: 409,
    DatasetReason.INCOMPLETE: 409,
    DatasetReason.TOO_LARGE: 413,
}
_BASE = "/api/v1/districts/{district}/periods/{period}"
_DISTRICT = re.compile(r"[0-9]{4}")
_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
#: An upload is named by its manifest's SHA-256.
_UPLOAD = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r"[a-z_]+\.(jsonl|csv)")

routes = web.RouteTableDef()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _refusal(exc: DatasetError, **extra: Any) -> web.Response:
    status = _STATUS.get(exc.reason, 422)
    body = {"error": exc.reason.value, "message": exc.detail, **extra}
    return web.json_response(body, status=status)


@web.middleware
async def _refusals(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except DatasetError as exc:
        if exc.reason is not DatasetReason.OFFSET_MISMATCH:
            log.info(
                "refused",
                extra={"path": request.path, "reason": exc.reason.value, "detail": exc.detail},
            )
        return _refusal(exc)


def _path_part(request: web.Request, name: str, pattern: re.Pattern[str]) -> str:
    """A path parameter that is what it must be, before it names any file: the router has
    decoded it, so ``..%2F3202`` arrives as ``../3202``."""
    value = request.match_info[name]
    if not pattern.fullmatch(value):
        raise DatasetError(DatasetReason.MALFORMED, f"{name} is not a valid {name}")
    return value


async def _authorized(request: web.Request) -> tuple[str, str, bytes]:
    """(district, period, the district's public key) of a request its token may make."""
    district = _path_part(request, "district", _DISTRICT)
    period = _path_part(request, "period", _PERIOD)
    if "upload" in request.match_info:
        _path_part(request, "upload", _UPLOAD)
    if "name" in request.match_info:
        _path_part(request, "name", _FILE)
    registry = request.app[REGISTRY]
    public_key = await asyncio.to_thread(registry.public_key, district)
    if public_key is None:
        raise DatasetError(DatasetReason.UNKNOWN_DISTRICT, f"district {district} is not registered")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DatasetError(DatasetReason.UNAUTHORIZED, "a bearer token is required")
    if await asyncio.to_thread(registry.district_of, token.strip()) != district:
        raise DatasetError(DatasetReason.UNAUTHORIZED, f"not a token of district {district}")
    return district, period, public_key


def _lock(request: web.Request, district: str, period: str) -> asyncio.Lock:
    lock: asyncio.Lock = request.app[LOCKS][(district, period)]
    return lock


def _delivered(receipt: dict[str, Any]) -> web.Response:
    return web.json_response(
        {
            "state": "delivered",
            "manifest_sha256": receipt["receipt"]["manifest_sha256"],
            "receipt": receipt,
        }
    )


async def _open_state(
    store: DeliveryStore, district: str, period: str, upload: str, status: int = 200
) -> web.Response:
    files = await asyncio.to_thread(store.files, district, period, upload)
    return web.json_response(
        {
            "state": "open",
            "manifest_sha256": upload,
            "files": [{"name": f.name, "bytes": f.bytes, "received": f.received} for f in files],
        },
        status=status,
    )


def _same_or_refuse(receipt: dict[str, Any], upload: str) -> None:
    delivered = receipt["receipt"]["manifest_sha256"]
    if delivered != upload:
        raise DatasetError(
            DatasetReason.ALREADY_DELIVERED,
            f"this period was delivered with manifest {delivered}; a delivered period is final",
        )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers and its data folder is writable."""
    writable = os.access(request.app[CONFIG].data_dir, os.W_OK)
    return web.json_response(
        {"status": "ok" if writable else "error"}, status=200 if writable else 503
    )


@routes.get("/api/v1/receiver-key")
async def receiver_key(request: web.Request) -> web.Response:
    """The receiver's public key, to check receipts and published results."""
    return web.Response(body=public_pem(request.app[KEY]), content_type="application/x-pem-file")


@routes.put(_BASE + "/delivery")
async def open_delivery(request: web.Request) -> web.Response:
    """Open or resume the period's delivery with a signed manifest."""
    district, period, public_key = await _authorized(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DatasetError(DatasetReason.MALFORMED, "the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("manifest"), dict):
        raise DatasetError(DatasetReason.MALFORMED, "the body is {manifest, signature}")
    manifest = parse_manifest(body["manifest"], district=district, period=period)
    signature = body.get("signature")
    check_signature(public_key, manifest, signature if isinstance(signature, str) else None)
    limit = request.app[CONFIG].max_delivery_bytes
    if manifest.total_bytes > limit:
        raise DatasetError(DatasetReason.TOO_LARGE, f"a delivery is at most {limit} bytes")
    store = request.app[STORE]
    async with _lock(request, district, period):
        receipt = await asyncio.to_thread(store.delivered, district, period)
        if receipt is not None:
            _same_or_refuse(receipt, manifest_sha256(manifest))
            return _delivered(receipt)
        assert isinstance(signature, str)
        upload, created = await asyncio.to_thread(
            store.open_upload, district, period, manifest, signature
        )
        if created:
            log.info("upload opened", extra={"district": district, "period": period})
        return await _open_state(store, district, period, upload, 201 if created else 200)


@routes.get(_BASE + "/delivery")
async def delivery_state(request: web.Request) -> web.Response:
    """The period's delivery: delivered with its receipt, or open with bytes received."""
    district, period, _ = await _authorized(request)
    store = request.app[STORE]
    async with _lock(request, district, period):
        receipt = await asyncio.to_thread(store.delivered, district, period)
        if receipt is not None:
            return _delivered(receipt)
        upload = await asyncio.to_thread(store.current_upload, district, period)
        if upload is None:
            raise DatasetError(DatasetReason.NO_UPLOAD, f"nothing open for {district} {period}")
        return await _open_state(store, district, period, upload)


def _offset(request: web.Request) -> int:
    try:
        offset = int(request.query["offset"])
    except (KeyError, ValueError):
        raise DatasetError(DatasetReason.MALFORMED, "offset must be a number of bytes") from None
    if offset < 0:
        raise DatasetError(DatasetReason.MALFORMED, "offset must not be negative")
    return offset


@routes.put(_BASE + "/uploads/{upload}/files/{name}")
async def put_chunk(request: web.Request) -> web.Response:
    """Append one chunk to a file at ``offset`` (which must be the bytes received)."""
    district, period, _ = await _authorized(request)
    upload, name = request.match_info["upload"], request.match_info["name"]
    offset = _offset(request)
    length = request.content_length
    if length is None:
        raise DatasetError(DatasetReason.MALFORMED, "a chunk needs a Content-Length")
    limit = request.app[CONFIG].max_chunk_bytes
    if length > limit:
        raise DatasetError(DatasetReason.TOO_LARGE, f"a chunk is at most {limit} bytes")
    store = request.app[STORE]
    async with _lock(request, district, period):
        manifest = await asyncio.to_thread(store.manifest, district, period, upload)
        declared = next((f for f in manifest.files if f.name == name), None)
        if declared is None:
            raise DatasetError(DatasetReason.UNKNOWN_FILE, f"{name} is not in the manifest")
        path = store.upload_dir(district, period, upload) / name
        received = path.stat().st_size
        if offset != received:
            exc = DatasetError(
                DatasetReason.OFFSET_MISMATCH, f"{name}: {received} bytes received, not {offset}"
            )
            return _refusal(exc, received=received)
        if offset + length > declared.bytes:
            raise DatasetError(
                DatasetReason.TOO_LARGE, f"{name} has {declared.bytes} bytes in the manifest"
            )
        with open(path, "ab") as out:
            try:
                async for block in request.content.iter_chunked(1 << 16):
                    out.write(block)
            finally:
                out.flush()
                await asyncio.to_thread(os.fsync, out.fileno())
                received = path.stat().st_size
                # A body cut short still leaves a correct prefix: it counts as stored.
                log.info(
                    "chunk stored",
                    extra={
                        "district": district,
                        "period": period,
                        "file": name,
                        "offset": offset,
                        "bytes": received - offset,
                    },
                )
    return web.json_response({"name": name, "bytes": declared.bytes, "received": received})


@routes.post(_BASE + "/uploads/{upload}/finalize")
async def finalize(request: web.Request) -> web.Response:
    """Check every file against the manifest, store the delivery, answer its receipt."""
    district, period, _ = await _authorized(request)
    upload = request.match_info["upload"]
    store = request.app[STORE]
    async with _lock(request, district, period):
        receipt = await asyncio.to_thread(store.delivered, district, period)
        if receipt is None:
            receipt = await asyncio.to_thread(
                store.finalize, district, period, upload, request.app[KEY], _now_ms()
            )
            log.info(
                "delivery stored",
                extra={
                    "district": district,
                    "period": period,
                    "receipt_id": receipt["receipt"]["receipt_id"],
                },
            )
        else:
            _same_or_refuse(receipt, upload)
    return _delivered(receipt)


def create_app(config: NationalConfig, key: Ed25519PrivateKey) -> web.Application:
    """The receiver's application over ``config.data_dir``, signing with ``key``."""
    app = web.Application(middlewares=[_refusals], client_max_size=1 << 20)
    app[CONFIG] = config
    app[REGISTRY] = Registry(config.data_dir / "registry.sqlite")
    app[STORE] = DeliveryStore(config.data_dir)
    app[KEY] = key
    app[LOCKS] = defaultdict(asyncio.Lock)
    app.add_routes(routes)
    return app
