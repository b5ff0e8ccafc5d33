"""The edge box's aiohttp application: UI pages, JSON API, health and metrics.

Every request goes through four middlewares, outermost first:
1. ``security_headers``: CSP without inline script, no framing, no caching of pages (on
   every answer, the error answers made by ``errors`` too);
2. ``errors``: API errors become ``{"error": code, "fields": {...}}`` JSON, never a 500 for
   bad input; a write refused because the disk is full is answered 507 (``disk_full``, or
   a page saying so in the UI); unexpected failures are logged and answered 500 without
   details;
3. ``timing``: the request-duration histogram by route template;
4. ``guard``: finds who is calling (session cookie or bearer token), refuses routes that
   are not in the route table (deny by default), checks the route's roles, and checks the
   CSRF token of every state-changing request made with a cookie. While an encrypted box
   is locked (``docs/storage.md`` §3) only sign-in, health and static files answer. While
   the store is being opened, secured or closed, requests wait; closing it waits for the
   requests inside it (:data:`CLOSE_WAIT_S` at most: one still inside after that is
   answered as the locked box answers, 503, never 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from yarl import URL

from edge import auth, boxsecrets, db, keys, securing
from edge.config import EdgeConfig
from edge.disk import is_disk_full
from edge.metrics import EdgeMetrics
from edge.records import AuditEntry
from edge.services import Actor
from edge.store import Store, StoreClosed
from edge.sync import SyncClient
from edge.unlock import LockedSignIn
from edge.web.inflight import StoreUsers
from edge.web.routing import Route
from edge.web.templating import create_environment
from protocol.regions import village_label
from puskesos import webauth
from puskesos.keyslots import KeySlotError
from puskesos.search import SearchTokens
from puskesos.tls import https_redirect
from puskesos.webpages import security_headers, set_private_cookie

__all__ = [
    "CONFIG",
    "CSRF",
    "LOCKED_NOTICE",
    "LOCKED_SIGN_IN",
    "METRICS",
    "SEARCHES",
    "STORE",
    "SYNC",
    "USER",
    "actor",
    "create_app",
    "encoded",
    "is_locked",
    "json_error",
    "local_today",
    "lock",
    "needs_securing",
    "page_pieces",
    "render",
    "sign_in_securing",
    "unlock",
]

log = logging.getLogger("puskesos.edge.web")

CONFIG = web.AppKey("config", EdgeConfig)
STORE = web.AppKey("store", Store)
#: The session key of a plain box (its file); an encrypted box derives it from its data key.
SECRET = web.AppKey("secret", bytes)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
METRICS = web.AppKey("metrics", EdgeMetrics)
ROUTES = web.AppKey("routes", dict)
#: The sync client, ``None`` when ``[sync] enabled`` is off.
SYNC = web.AppKey("sync", SyncClient | None)
#: Searches by NIK or KK number, held under the token their answer's URL carries.
SEARCHES = web.AppKey("searches", SearchTokens)
#: The sign-in of the box while it is locked.
LOCKED_SIGN_IN = web.AppKey("locked_sign_in", LockedSignIn)
#: The requests inside the open store: closing it waits for them.
STORE_USERS = web.AppKey("store_users", StoreUsers)
#: Who is calling (``None`` before login) and, for a cookie session, its CSRF token.
USER = web.RequestKey("user", auth.User | None)
CSRF = web.RequestKey("csrf", str | None)

SESSION_COOKIE = "psk_session"
PRE_CSRF_COOKIE = "psk_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: What answers while the box is locked (besides ``/static/``).
WHILE_LOCKED = frozenset({"/masuk", "/healthz"})
LOCKED_NOTICE = "Perangkat terkunci setelah dinyalakan ulang. Masuk untuk membukanya."
#: Seconds the store's closing (Kunci perangkat, securing) waits for the requests inside it.
CLOSE_WAIT_S = 15.0
STATIC = Path(__file__).parent.parent / "static"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The ``error`` code of API answers made from an HTTP status alone.
HTTP_ERROR_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    507: "disk_full",
}


def json_error(
    status: int, code: str, fields: dict[str, Any] | None = None, **extra: Any
) -> web.Response:
    """An API error: ``{"error": code, "fields": {...}}`` with a 4xx (or 507) status."""
    return web.json_response({"error": code, "fields": fields or {}, **extra}, status=status)


def is_api(request: web.Request) -> bool:
    """Whether the request is for the JSON API (errors as JSON, 401 instead of a redirect)."""
    return request.path.startswith("/api/")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if not is_api(request):
            return _error_page(request, exc)
        response = json_error(exc.status, HTTP_ERROR_CODES.get(exc.status, "bad_request"))
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except StoreClosed:
        return _closed_meanwhile(request)
    except Exception as exc:
        if is_disk_full(exc):
            return _disk_full(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        if is_api(request):
            return json_error(500, "internal_error")
        return web.Response(status=500, text="Terjadi kesalahan pada server.")


#: The title and the default message of a page's error, by status (a handler's own text, in
#: Indonesian, replaces the message).
ERROR_PAGES = {
    400: ("Permintaan tidak dapat diproses", "Isian atau alamat halaman tidak dapat diproses."),
    403: ("Tidak berhak", "Anda tidak berhak membuka halaman ini."),
    404: ("Tidak ditemukan", "Halaman atau data yang dicari tidak ada di perangkat ini."),
    405: ("Tidak dapat dibuka", "Halaman ini tidak dapat dibuka dengan cara itu."),
    413: ("Kiriman terlalu besar", "Data yang dikirim terlalu besar."),
}


def _error_page(request: web.Request, exc: web.HTTPException) -> web.Response:
    """A page's 4xx inside the layout, with the menu and a way back, in Indonesian: aiohttp's
    own texts ("404: Not Found") are replaced, a handler's own message is kept."""
    title, message = ERROR_PAGES.get(exc.status, ("Tidak dapat diproses", ""))
    text = exc.text or ""
    if text and not text.startswith(f"{exc.status}:"):
        message = text
    response = render(request, "galat.html", exc.status, title=title, message=message)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _closed_meanwhile(request: web.Request) -> web.Response:
    """503: the box was locked while this request was still inside the store (it waited
    :data:`CLOSE_WAIT_S` for it). A save may or may not have landed: the page says so."""
    log.warning("the store closed during %s %s", request.method, request.path)
    if is_api(request):
        return json_error(503, "locked")
    message = (
        "Perangkat dikunci sebelum permintaan ini selesai. Masuk lagi, lalu periksa apakah "
        "data terakhir sudah tersimpan."
    )
    return render(request, "galat.html", 503, title="Perangkat terkunci", message=message)


def _disk_full(request: web.Request, exc: Exception) -> web.Response:
    """507: nothing was saved because the disk is full. Said plainly, since a 500 would
    send people to retry, and the box stays up for reads until space is freed."""
    log.error("disk full, nothing saved on %s %s: %s", request.method, request.path, exc)
    if is_api(request):
        return json_error(507, HTTP_ERROR_CODES[507])
    return render(request, "disk_penuh.html", 507)


@web.middleware
async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].request_duration.labels(request.method, template).observe(
            time.perf_counter() - started
        )


def _route_for(request: web.Request) -> Route | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    route: Route | None = request.app[ROUTES].get((method, resource.canonical))
    return route


async def _caller(request: web.Request) -> tuple[auth.User | None, str | None]:
    """The user and, for a cookie session, its token (``None`` for a bearer token)."""
    store = request.app[STORE]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return await auth.user_for_api_token(store, header[7:].strip()), None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        user = await auth.user_for_session(store, token)
        if user is not None:
            return user, token
    return None, None


def is_locked(app: web.Application) -> bool:
    """Whether the box waits for a staff member's sign-in to open its database."""
    return not app[STORE].opened


@contextlib.asynccontextmanager
async def _changing(app: web.Application) -> AsyncIterator[None]:
    """Hold the unlock lock: the store is opened, secured and closed only inside it. The
    request calling this is not one of the store's users meanwhile (closing waits for the
    others, not for itself)."""
    app[STORE_USERS].step_out()
    async with app[LOCKED_SIGN_IN].lock:
        yield


async def unlock(app: web.Application, key: bytes, username: str, address: str) -> None:
    """Open the store with the data ``key`` (migrations first) and start the sync, for the
    sign-in of ``username`` from ``address``; the district slot is sealed again if the
    district's recovery key changed (:func:`edge.keys.reseal_district`)."""
    store = app[STORE]
    async with _changing(app):
        if store.opened:
            return
        await asyncio.to_thread(db.upgrade, store.config.database_path, key)
        await _open(app, key)
        await _reseal_district(app, key, username, address)
    log.info("box unlocked")


async def _reseal_district(app: web.Application, key: bytes, username: str, address: str) -> None:
    """Seal the district slot to ``[edge] recovery_key`` when it is sealed to another key,
    audited ``keys.reseal`` with the two key ids in the name of the sign-in that unlocked
    the box. A key file that cannot be read is logged: the box opens all the same, its
    slot as it was."""
    try:
        sealed = await asyncio.to_thread(keys.reseal_district, app[CONFIG], key)
    except KeySlotError as exc:
        log.error("the district slot was not sealed to [edge] recovery_key: %s", exc)
        return
    if sealed is not None:
        old, new = sealed
        detail = {"from": old, "to": new}
        await app[STORE].audit(AuditEntry(username, "keys.reseal", detail=detail, address=address))
        log.info("the district slot is sealed to the recovery key %s now (was %s)", new, old)


async def _open(app: web.Application, key: bytes | None) -> None:
    store = app[STORE]
    store.key = key
    if key is not None:
        try:  # before the sync starts: it reads the broker password sealed here
            await asyncio.to_thread(boxsecrets.settle, store.config, key)
        except (OSError, ValueError):
            log.exception("moving the box's plain secret files failed; next unlock again")
    await store.open()
    client = app[SYNC]
    if client is not None:
        await client.start()


async def _requests_done(app: web.Application) -> None:
    """Let the requests inside the store finish, :data:`CLOSE_WAIT_S` at most (inside the
    unlock lock: no new one comes in), before the store closes."""
    if not await app[STORE_USERS].gone(CLOSE_WAIT_S):
        log.warning("closing the store with requests still inside after %.0f s", CLOSE_WAIT_S)


async def _close(app: web.Application) -> None:
    """Stop the sync and close the store: nothing writes the database any more."""
    client = app[SYNC]
    if client is not None:
        await client.stop()
    await app[STORE].close()


def needs_securing(app: web.Application) -> bool:
    """Whether the box is plain and its next staff sign-in encrypts it (``edge.securing``)."""
    return app[STORE].key is None and securing.needs_securing(app[CONFIG])


async def sign_in_securing(
    app: web.Application, username: str, password: str, address: str
) -> auth.LoginResult:
    """A sign-in on a plain box that needs securing (``docs/storage.md`` §5): checked
    against the plain database as always; a staff member's success encrypts the box
    before the session is made. A failure to secure is logged, and the box, still plain,
    tries again at the next sign-in."""
    async with _changing(app):
        store, config = app[STORE], app[CONFIG]
        result = await auth.authenticate(store, username, password, address)
        if result.user is None or not needs_securing(app):
            return result
        await _requests_done(app)
        await _close(app)
        try:
            key: bytes | None = await asyncio.to_thread(
                securing.secure, config, result.user.username, password
            )
        except Exception:
            log.exception("securing the box failed; it stays plain until the next sign-in")
            # Undone or finished by the rule at start; finished, the new slot opens it.
            await asyncio.to_thread(securing.finish_interrupted, config)
            key = await asyncio.to_thread(
                keys.open_with_password, config, result.user.username, password
            )
        await _open(app, key)
        if key is not None:
            await store.audit(AuditEntry(result.user.username, "keys.secure", address=address))
            log.info("box secured: its database is encrypted")
        return result


async def lock(app: web.Application, actor: Actor) -> None:
    """Kunci perangkat: once the requests inside the store are done, audited, every
    session ended, then the sync stopped and the store closed; the box is as after a
    restart (a sign-in opens it)."""
    store = app[STORE]
    async with _changing(app):
        if not store.opened or store.key is None:
            return
        await _requests_done(app)
        await store.audit(AuditEntry(actor.username, "keys.lock", address=actor.address))
        await auth.end_all_sessions(store)
        await _close(app)
        store.key = None
    log.info("box locked by %s", actor.username)


async def _while_locked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A locked box: the sign-in page and ``/healthz`` answer, pages go to sign-in, the
    API answers 503 ``locked``."""
    request[USER] = None
    request[CSRF] = None
    if request.match_info.http_exception is None and request.path in WHILE_LOCKED:
        if request.method in UNSAFE:
            await _check_csrf(request, None)
        return await handler(request)
    if is_api(request):
        return json_error(503, "locked")
    target = request.rel_url if request.method == "GET" else URL("/")
    raise web.HTTPSeeOther(URL("/masuk").with_query(next=str(target)))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/static/") and request.match_info.http_exception is None:
        return await handler(request)
    if request.app[LOCKED_SIGN_IN].lock.locked():
        async with request.app[LOCKED_SIGN_IN].lock:
            pass  # the box is being opened, secured or locked: answer once it is done
    if is_locked(request.app):
        return await _while_locked(request, handler)
    with request.app[STORE_USERS].inside():
        return await _while_open(request, handler)


async def _while_open(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An open box: who is calling, the route's roles and the CSRF token are checked."""
    user, session_token = await _caller(request)
    request[USER] = user
    if user is not None:
        request[webauth.SIGNED_IN] = user.username
    request[CSRF] = (
        auth.csrf_token(_session_secret(request.app), session_token) if session_token else None
    )
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception  # a wrong link: its page shows the menu
    route = _route_for(request)
    if route is None:  # deny by default: only routes of the table answer
        raise web.HTTPForbidden()
    if not route.public:
        if user is None:
            if is_api(request) or request.method != "GET":
                raise web.HTTPUnauthorized()
            raise web.HTTPSeeOther(URL("/masuk").with_query(next=str(request.rel_url)))
        if user.role not in route.roles:
            raise web.HTTPForbidden(text="Anda tidak berhak membuka halaman ini.")
    if request.method in UNSAFE:
        await _check_csrf(request, session_token)
    return await handler(request)


def _session_secret(app: web.Application) -> bytes:
    key = app[STORE].key
    return app[SECRET] if key is None else boxsecrets.session_secret(key, app[CONFIG].node)


async def _check_csrf(request: web.Request, session_token: str | None) -> None:
    """Cookie-authenticated requests and forms posted before login need a CSRF token."""
    if request[USER] is not None and session_token is None:
        return  # bearer token: not sent by browsers on their own, no CSRF possible
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = (await request.post()).get(CSRF_FIELD)
    # A form before login has no session: its token is a double-submit cookie.
    expected = request[CSRF] if session_token is not None else request.cookies.get(PRE_CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        if is_api(request):
            raise web.HTTPForbidden(reason="CSRF token missing or wrong")
        raise web.HTTPForbidden(text="Token formulir tidak sah. Muat ulang halaman lalu coba lagi.")


def render_before_login(
    request: web.Request, template: str, status: int = 200, **context: Any
) -> web.Response:
    """A page with a form shown before login: its CSRF token is a double-submit cookie."""
    token = request.cookies.get(PRE_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, template, status, form_csrf=token, **context)
    secure = request.secure or request.app[CONFIG].cookie_secure
    set_private_cookie(response, PRE_CSRF_COOKIE, token, secure=secure)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """Give the browser its session cookie."""
    config = request.app[CONFIG]
    set_private_cookie(
        response, SESSION_COOKIE, token, secure=request.secure or config.cookie_secure,
        max_age=config.session_max_age_s,
    )  # fmt: skip


#: Rendered pieces joined and encoded at a time. Jinja's ``render`` holds every small string
#: of a page until it joins them: for the worklist of a whole village (2.5 MB of HTML) about
#: 12 MB, whose arenas stayed resident after the request.
_RENDER_BATCH = 2_000


def encoded(pieces: Iterator[str]) -> Iterator[bytes]:
    """A page's rendered pieces, joined and encoded :data:`_RENDER_BATCH` at a time."""
    for batch in iter(lambda: list(islice(pieces, _RENDER_BATCH)), []):
        yield "".join(batch).encode()


def page_pieces(request: web.Request, template: str, **context: Any) -> Iterator[str]:
    """A template's pieces as Jinja renders them, with the user, CSRF token and box facts
    in context (:func:`render` joins them; a streamed list sends them as they come)."""
    config = request.app[CONFIG]
    return (
        request.app[TEMPLATES]
        .get_template(template)
        .generate(
            user=request.get(USER),
            csrf=request.get(CSRF) or "",
            village=config.village,
            village_name=village_label(config.village),
            node=config.node,
            path=request.path,
            static_url=lambda name: str(request.app.router["static"].url_for(filename=name)),
            **context,
        )
    )


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """An HTML page from a template, with the user, CSRF token and box facts in context."""
    body = bytearray()
    for chunk in encoded(page_pieces(request, template, **context)):
        body += chunk
    return web.Response(body=body, content_type="text/html", charset="utf-8", status=status)


def actor(request: web.Request) -> Actor:
    """Who is acting, for services and the audit trail."""
    user: auth.User = request[USER]
    return Actor(user.username, user.role.value, request.remote or "")


def local_today(request: web.Request) -> date:
    """Today in the village's time zone, by the best time the box knows: not its wall clock
    alone, which may say 1970 (see :mod:`edge.boxtime`)."""
    return request.app[STORE].box_time().today


def create_app(config: EdgeConfig, *, store: Store | None = None) -> web.Application:
    """The edge web application. The store is opened and closed with the app, and so is
    the sync client when ``[sync] enabled`` (stopped before the store closes)."""
    from edge.web import (
        api,
        ops,
        ui,
        ui_admin,
        ui_cases,
        ui_export,
        ui_help,
        ui_households,
        ui_posyandu,
        ui_proposals,
        ui_registry,
        ui_verification,
        ui_vulnerable,
    )

    https = [https_redirect(config.tls_port)] if config.tls else []
    app = web.Application(
        middlewares=[security_headers, *https, errors, timing, guard], client_max_size=1024**2
    )
    app[CONFIG] = config
    app[STORE] = store or Store(config)
    # An encrypted box keeps no session key file (edge.boxsecrets).
    secret_file = config.data_dir / config.session_secret_file
    app[SECRET] = b"" if keys.encrypted(config) else auth.load_secret(secret_file)
    app[LOCKED_SIGN_IN] = LockedSignIn(config)
    app[STORE_USERS] = StoreUsers()
    app[TEMPLATES] = create_environment(config.timezone)
    app[METRICS] = EdgeMetrics()
    app[SEARCHES] = SearchTokens()
    app[SYNC] = SyncClient(app[STORE], app[METRICS]) if config.sync.enabled else None
    table: dict[tuple[str, str], Route] = {}
    # ui_export before ui_vulnerable: "/kelompok-rentan/lansia.xlsx" also fits the pattern of
    # "/kelompok-rentan/{register}", and the router takes the first route that fits.
    modules = (
        ops, ui, ui_households, ui_registry, ui_verification, ui_proposals, ui_cases, ui_export,
        ui_vulnerable, ui_posyandu, ui_admin, ui_help, api,
    )  # fmt: skip
    for route in (route for module in modules for route in module.routes.routes):
        app.router.add_route(route.method, route.path, route.handler)
        table[(route.method, route.path)] = route
    app[ROUTES] = table
    app.router.add_static("/static/", STATIC, append_version=True, name="static")

    async def store_lifecycle(app: web.Application) -> AsyncIterator[None]:
        # An encrypted box given no key starts locked: a sign-in opens it (unlock).
        store = app[STORE]
        if store.key is not None or not keys.encrypted(config):
            await store.open()
        if store.key is None and not keys.encrypted(config):
            log.warning(
                "the box's database is NOT encrypted: %s",
                "its first staff sign-in encrypts it" if config.recovery_key
                else "set [edge] recovery_key to the district's recovery public key",
            )  # fmt: skip
        yield
        if store.opened:
            await store.close()

    async def sync_lifecycle(app: web.Application) -> AsyncIterator[None]:
        client = app[SYNC]
        if client is not None and app[STORE].opened:
            await client.start()
        yield
        if client is not None and app[STORE].opened:
            await client.stop()

    app.cleanup_ctx.append(store_lifecycle)
    app.cleanup_ctx.append(sync_lifecycle)
    return app
