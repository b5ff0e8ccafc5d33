"""Sign in (``/masuk``) and sign out (``/keluar``)."""

from __future__ import annotations

from aiohttp import web

from hub import auth
from hub.ui.base import (
    ALL_ROLES,
    CONFIG,
    PUBLIC,
    SESSION_COOKIE,
    STORE,
    RouteTable,
    form_data,
    render_before_login,
    set_session_cookie,
)
from puskesos import webauth

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/masuk", roles=PUBLIC)
async def login_page(request: web.Request) -> web.Response:
    target = webauth.safe_next(request.query.get("next"))
    return render_before_login(request, "masuk.html", next=target, error=None, username="")


@routes.post("/masuk", roles=PUBLIC)
async def login(request: web.Request) -> web.StreamResponse:
    form = await form_data(request)
    username = form.get("username", "")
    target = webauth.safe_next(form.get("next"))
    result = await auth.authenticate(
        request.app[STORE], username, form.get("password", ""), request.remote or "",
        lockout_s=request.app[CONFIG].login_lockout_s,
    )  # fmt: skip
    if result.user is None:
        error = webauth.login_error(result.refused_ms)
        return render_before_login(
            request, "masuk.html", 401, next=target, error=error, username=username
        )
    token = await auth.create_session(request.app[STORE], result.user)
    response = web.HTTPSeeOther(target)
    set_session_cookie(request, response, token)
    raise response


@routes.post("/keluar", roles=ALL_ROLES)
async def logout(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await auth.end_session(request.app[STORE], token)
    response = web.HTTPSeeOther("/masuk")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
