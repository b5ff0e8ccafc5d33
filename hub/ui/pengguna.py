"""Pengguna: the accounts of the review UI; the admin adds and deactivates them."""

from __future__ import annotations

from aiohttp import web

from hub import auth
from hub.roles import ROLE_LABELS, Role
from hub.ui.base import CONFIG, STORE, USER, RouteTable, actor, form_data, render

__all__ = ["routes"]

routes = RouteTable()

FLASH = {
    "dibuat": "Pengguna ditambahkan.",
    "nonaktif": "Pengguna dinonaktifkan; sesinya berakhir.",
    "aktif": "Pengguna diaktifkan kembali.",
}
#: Which form input an account error belongs next to.
_FIELD_OF = {
    "bad_username": "username",
    "username_taken": "username",
    "bad_full_name": "full_name",
    "bad_role": "role",
    "weak_password": "password",
}


async def _page(
    request: web.Request, status: int = 200, *, errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> web.Response:  # fmt: skip
    users = await auth.list_users(request.app[STORE])
    return render(
        request, "pengguna.html", status, users=users, roles=ROLE_LABELS, errors=errors or {},
        form=form or {}, flash=FLASH.get(request.query.get("pesan", "")),
    )  # fmt: skip


@routes.get("/pengguna", roles={Role.ADMIN})
async def pengguna(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/pengguna", roles={Role.ADMIN})
async def add(request: web.Request) -> web.StreamResponse:
    form = await form_data(request)
    try:
        await auth.create_user(
            request.app[STORE], username=form.get("username", ""),
            full_name=form.get("full_name", ""), role=form.get("role", ""),
            password=form.get("password", ""), actor=actor(request),
            district=request.app[CONFIG].district,
        )  # fmt: skip
    except auth.AccountError as exc:
        shown = {k: v for k, v in form.items() if k != "password"}
        return await _page(request, 422, errors={_FIELD_OF[exc.code]: exc.message}, form=shown)
    raise web.HTTPSeeOther("/pengguna?pesan=dibuat")


@routes.post("/pengguna/{user_id:[0-9]{1,9}}/status", roles={Role.ADMIN})
async def set_active(request: web.Request) -> web.StreamResponse:
    user_id = int(request.match_info["user_id"])
    active = (await form_data(request)).get("aktif") == "1"
    if user_id == request[USER].id and not active:
        return await _page(
            request, 422, errors={"status": "Anda tidak dapat menonaktifkan akun sendiri."}
        )
    if not await auth.set_user_active(request.app[STORE], user_id, active, actor=actor(request)):
        raise web.HTTPNotFound(text="Pengguna tidak ditemukan.")
    raise web.HTTPSeeOther(f"/pengguna?pesan={'aktif' if active else 'nonaktif'}")
