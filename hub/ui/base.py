"""What every page of the review UI shares: its route table with roles, the session guard,
security headers, CSRF, and rendering.

The UI and the JSON API live in one aiohttp app but never share a credential: the
``guard`` middleware here ignores ``Authorization`` headers (a bearer token opens no page),
and ``hub.web``'s API middleware ignores cookies (a session opens no ``/api/`` route).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from yarl import URL

from hub import audit, auth
from hub.config import HubConfig
from hub.roles import ROLE_LABELS, Role
from hub.web import INGEST, STORE
from puskesos import webauth
from puskesos.export import FORMATS, Table, audit_detail, download, file_name
from puskesos.search import SearchTokens
from puskesos.webpages import environment, set_private_cookie

__all__ = [
    "ALL_ROLES",
    "CONFIG",
    "CSRF",
    "PUBLIC",
    "READERS",
    "SEARCHES",
    "SESSION_COOKIE",
    "STORE",
    "USER",
    "Route",
    "RouteTable",
    "actor",
    "export_list",
    "form_data",
    "page_number",
    "push_down",
    "render",
    "render_before_login",
    "session_guard",
    "set_session_cookie",
    "setup",
    "valid_village",
]

CONFIG = web.AppKey("ui_config", HubConfig)
SECRET = web.AppKey("ui_secret", bytes)
TEMPLATES = web.AppKey("ui_templates", jinja2.Environment)
ROUTES = web.AppKey("ui_routes", dict)
USER = web.RequestKey("ui_user", auth.User | None)
CSRF = web.RequestKey("ui_csrf", str)
#: Searches by NIK or KK number, held under a token: a number never goes in a URL.
SEARCHES = web.AppKey("ui_searches", SearchTokens)

SESSION_COOKIE = "psk_hub_session"
PRE_CSRF_COOKIE = "psk_hub_csrf"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STATIC = Path(__file__).parents[2] / "edge" / "static"
TEMPLATE_DIR = Path(__file__).parents[1] / "templates"

#: Every signed-in role.
ALL_ROLES: frozenset[Role] = frozenset(Role)
#: No sign-in needed (the login page).
PUBLIC: frozenset[Role] = frozenset()
#: Who may read the review pages: everyone but IT (docs/cycle.md, "Roles").
READERS: frozenset[Role] = frozenset({Role.VERIFIER, Role.LEADER, Role.ADMIN})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One page route and the roles that may call it (empty: public). An ``upload`` route
    reads its multipart form as a stream and checks the CSRF token, its first field,
    itself (a large file is never held in memory)."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[Role]
    upload: bool = False


class RouteTable:
    """Collects a page module's routes: ``@routes.get("/antrian", roles=READERS)``."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def get(self, path: str, *, roles: Iterable[Role]) -> Callable[[Handler], Handler]:
        """A GET route."""
        return self._add("GET", path, roles)

    def post(
        self, path: str, *, roles: Iterable[Role], upload: bool = False
    ) -> Callable[[Handler], Handler]:
        """A POST route (CSRF-checked)."""
        return self._add("POST", path, roles, upload)

    def downloads(self, path: str, *, roles: Iterable[Role]) -> Callable[[Handler], Handler]:
        """GET routes for ``path.xlsx`` and ``path.csv``, one handler (see
        :func:`export_list`)."""

        def decorate(handler: Handler) -> Handler:
            for fmt in FORMATS:
                self._add("GET", f"{path}.{fmt}", roles)(handler)
            return handler

        return decorate

    def _add(
        self, method: str, path: str, roles: Iterable[Role], upload: bool = False
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, frozenset(roles), upload))
            return handler

        return decorate


def _is_page(request: web.Request) -> bool:
    return not request.path.startswith(("/api/", "/static/")) and request.path not in (
        "/healthz",
        "/metrics",
    )


def _route_for(request: web.Request) -> Route | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    route: Route | None = request.app[ROUTES].get((method, resource.canonical))
    return route


@web.middleware
async def session_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages only: who is signed in (session cookie only), the route's roles, CSRF."""
    if not _is_page(request):
        return await handler(request)
    request[USER] = None
    request[CSRF] = ""
    token = request.cookies.get(SESSION_COOKIE, "")
    user = await auth.user_for_session(request.app[STORE], token) if token else None
    request[USER] = user
    if user is not None:
        request[webauth.SIGNED_IN] = user.username
        request[CSRF] = webauth.csrf_token(request.app[SECRET], token)
    if request.match_info.http_exception is not None:  # a wrong link: its page has the menu
        return _error_page(request, request.match_info.http_exception)
    route = _route_for(request)
    if route is None:  # deny by default: only pages of the table answer
        return _forbidden(request)
    if route.roles:
        if user is None:
            if request.method != "GET":
                raise web.HTTPUnauthorized(text="Sesi berakhir. Silakan masuk lagi.")
            raise web.HTTPSeeOther(URL("/masuk").with_query(next=str(request.rel_url)))
        if user.role not in route.roles:
            return _forbidden(request)
    try:
        if request.method in UNSAFE:
            if not route.upload:
                await _check_csrf(request, session=bool(route.roles))
            elif request.content_type != "multipart/form-data" or user is None:
                raise web.HTTPForbidden(text="Formulir tidak sah.")
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.status == 401:
            raise
        return _error_page(request, exc)


def _forbidden(request: web.Request) -> web.Response:
    return render(request, "terlarang.html", 403)


#: The default message of a page's error by status, where aiohttp's own (English) text
#: would show; a handler's own Indonesian text is kept.
_ERROR_MESSAGES = {
    400: "Isian atau alamat halaman tidak dapat diproses.",
    403: "Anda tidak berhak membuka halaman ini atau melakukan tindakan ini.",
    404: "Halaman atau data yang dicari tidak ada.",
    405: "Halaman ini tidak dapat dibuka dengan cara itu.",
    413: "Berkas yang dikirim terlalu besar.",
}


def _error_page(request: web.Request, exc: web.HTTPException) -> web.Response:
    """A page's 4xx in the layout, in Indonesian, with the menu and a way back."""
    text = exc.text or ""
    own = text and not text.startswith(f"{exc.status}:")
    message = text if own else _ERROR_MESSAGES.get(exc.status, "Permintaan tidak dapat diproses.")
    return render(request, "galat.html", exc.status, message=message)


async def _check_csrf(request: web.Request, *, session: bool) -> None:
    """Every form carries the session's CSRF token; the sign-in form (a public route, also
    posted by someone still signed in) a double-submit cookie's."""
    sent = (await request.post()).get(CSRF_FIELD)
    expected = request[CSRF] if session else request.cookies.get(PRE_CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise web.HTTPForbidden(text="Token formulir tidak sah. Muat ulang halaman lalu coba lagi.")


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """An HTML page, with the signed-in user, the CSRF token and the menu in context."""
    page = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            user=request.get(USER),
            csrf=request.get(CSRF) or "",
            path=request.path,
            district=request.app[CONFIG].district,
            static_url=lambda name: str(request.app.router["static"].url_for(filename=name)),
            **context,
        )
    )
    return web.Response(text=page, content_type="text/html", status=status)


def render_before_login(
    request: web.Request, template: str, status: int = 200, **context: Any
) -> web.Response:
    """A page with a form shown before sign-in: its CSRF token is a double-submit cookie."""
    token = request.cookies.get(PRE_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, template, status, form_csrf=token, **context)
    secure = request.secure or request.app[CONFIG].cookie_secure
    set_private_cookie(response, PRE_CSRF_COOKIE, token, secure=secure)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """Give the browser its session cookie."""
    secure = request.secure or request.app[CONFIG].cookie_secure
    set_private_cookie(response, SESSION_COOKIE, token, secure=secure, max_age=auth.SESSION_MAX_S)


def actor(request: web.Request) -> str:
    """Who is acting, for services and the audit trail: the user name."""
    user: auth.User = request[USER]
    return user.username


async def form_data(request: web.Request) -> dict[str, str]:
    """A posted form's text fields, trimmed."""
    form = await request.post()
    return {key: str(value).strip() for key, value in form.items() if isinstance(value, str)}


def page_number(request: web.Request) -> int:
    """The 1-based ``?page=`` of a list (1 when missing or not a positive number)."""
    text = request.query.get("page", "1")
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return 1
    return max(int(text), 1)


def valid_village(code: str) -> bool:
    """A village code as the hub stores it: ten ASCII digits."""
    return len(code) == 10 and code.isascii() and code.isdigit()


async def push_down(request: web.Request, village: str) -> None:
    """Send what the hub just wrote for ``village`` down to its box now, not at the next
    sweep (when this process runs the ingest worker)."""
    ingest = request.app.get(INGEST)
    if ingest is not None:
        await ingest.push_village(village)


def _environment(timezone: str) -> jinja2.Environment:
    env = environment(jinja2.FileSystemLoader(TEMPLATE_DIR), timezone)
    env.globals["ROLE_LABELS"] = ROLE_LABELS
    env.globals["Role"] = Role
    return env


def setup(app: web.Application, config: HubConfig, modules: Iterable[Any]) -> None:
    """Add the pages of ``modules`` (each with a ``routes`` :class:`RouteTable`), the
    static files and what the middlewares need."""
    app[CONFIG] = config
    app[SECRET] = webauth.load_secret(config.path(config.session_secret_file))
    app[TEMPLATES] = _environment(config.timezone)
    app[SEARCHES] = SearchTokens()
    table: dict[tuple[str, str], Route] = {}
    for route in (route for module in modules for route in module.routes.routes):
        added = app.router.add_route(route.method, route.path, route.handler)
        assert added.resource is not None
        table[(route.method, added.resource.canonical)] = route
    app[ROUTES] = table
    app.router.add_static("/static/", STATIC, append_version=True, name="static")


async def export_list(
    request: web.Request,
    table: Table,
    *,
    list_name: str,
    scope: str,
    filters: dict[str, str],
    full: bool | None,
) -> web.StreamResponse:
    """Answer with ``table`` as the XLSX or CSV the URL ends in, named after the list,
    ``scope`` and today; its audit row (``list.export``) is committed first, so no list
    leaves the hub unrecorded."""
    fmt = request.path.rsplit(".", 1)[1]
    store = request.app[STORE]
    now = store.wall()
    detail = audit_detail(list_name, filters, len(table.rows), full=full, fmt=fmt)
    async with store.engine.begin() as conn:
        await audit.record(
            conn, at_ms=now, actor=actor(request), action="list.export", subject=list_name,
            detail=detail,
        )  # fmt: skip
    day = datetime.fromtimestamp(now / 1000, ZoneInfo(request.app[CONFIG].timezone)).date()
    return await download(request, table, fmt, file_name(list_name, scope, day, fmt))
