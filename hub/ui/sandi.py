"""Ganti kata sandi: every signed-in person changes their own password (current one, new
one twice); the change is audited and ends their other sessions."""

from __future__ import annotations

from aiohttp import web

from hub import auth
from hub.ui.base import (
    ALL_ROLES,
    CONFIG,
    SESSION_COOKIE,
    STORE,
    USER,
    RouteTable,
    render,
)
from puskesos.passwords import MIN_LENGTH

__all__ = ["routes"]

routes = RouteTable()

#: Which form input an account error belongs next to.
_FIELD_OF = {"wrong_password": "current", "refused": "current", "weak_password": "new"}


def _page(
    request: web.Request, status: int = 200, *, errors: dict[str, str] | None = None
) -> web.Response:
    done = request.query.get("pesan") == "diganti"
    return render(
        request, "ganti_sandi.html", status, errors=errors or {}, min_length=MIN_LENGTH,
        flash="Kata sandi Anda sudah diganti." if done else None,
    )  # fmt: skip


@routes.get("/ganti-sandi", roles=ALL_ROLES)
async def page(request: web.Request) -> web.Response:
    return _page(request)


@routes.post("/ganti-sandi", roles=ALL_ROLES)
async def change(request: web.Request) -> web.StreamResponse:
    # Not form_data: a password is taken as typed, spaces included.
    form = await request.post()
    current, new, repeat = (str(form.get(name, "")) for name in ("current", "new", "repeat"))
    if new != repeat:
        return _page(request, 422, errors={"repeat": "Kedua kata sandi baru tidak sama."})
    config = request.app[CONFIG]
    try:
        await auth.change_password(
            request.app[STORE], request[USER], current, new, address=request.remote or "",
            session=request.cookies.get(SESSION_COOKIE, ""), lockout_s=config.login_lockout_s,
            district=config.district,
        )  # fmt: skip
    except auth.AccountError as exc:
        return _page(request, 422, errors={_FIELD_OF[exc.code]: exc.message})
    raise web.HTTPSeeOther("/ganti-sandi?pesan=diganti")
