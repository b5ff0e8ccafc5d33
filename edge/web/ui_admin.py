"""Pages for the box itself: sync status, today's date when the box's clock is wrong, user
accounts and API tokens, the audit trail."""

from __future__ import annotations

import re
from datetime import date

import sqlalchemy as sa
from aiohttp import web

from edge import auth, db
from edge.auth import AUDITORS, MIN_PASSWORD_LENGTH, ROLE_LABELS, Role
from edge.boxtime import SOFTWARE_DATE, confirm_today
from edge.store import Store
from edge.web.app import CONFIG, SESSION_COOKIE, STORE, USER, actor, lock, render
from edge.web.lists import page_number, pager_base
from edge.web.received import RECENT_DAYS, received
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.sync_view import sync_view
from puskesos.boxtrail import audit_rows
from puskesos.webauth import login_error

__all__ = ["routes"]

routes = RouteTable()

ADMIN = frozenset({Role.ADMIN})
#: The sync page lists at most this many records in conflict.
CONFLICTS_SHOWN = 100
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@routes.get("/sinkronisasi", roles=ALL_ROLES, summary="Sync status with the district hub")
async def sync_page(request: web.Request) -> web.Response:
    store = request.app[STORE]
    r = db.records
    in_conflict = (
        sa.select(r.c.id, r.c.entity, r.c.household_id, r.c.conflicts)
        .where(r.c.conflicts > 0)
        .order_by(r.c.updated_ms.desc())
        .limit(CONFLICTS_SHOWN)
    )
    rows = await store.read(lambda conn: conn.execute(in_conflict).all())
    return render(
        request,
        "sinkronisasi.html",
        sync=await sync_view(request.app),
        conflicts=rows,
        received=await received(store, now_ms=store.now_ms()),
        recent_days=RECENT_DAYS,
    )


# --- tanggal perangkat (admin only) --------------------------------------------------------


async def _clock_page(
    request: web.Request,
    *,
    error: str | None = None,
    typed: str = "",
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    store = request.app[STORE]
    return render(
        request, "jam.html", status, box=store.box_time(), wall_ms=store.now_ms(),
        confirmation=store.clock_confirmation, error=error, typed=typed, notice=notice,
    )  # fmt: skip


def _confirmed_day_error(typed: str, store: Store) -> str | None:
    """Why the typed date cannot be today's, in words for the admin; ``None`` if it can.

    A date earlier than the box already knows (without an earlier confirmation, which this
    one replaces) would change nothing, so it is refused rather than silently ignored.
    """
    if not typed:
        return "Tanggal hari ini wajib diisi."
    try:
        # The pattern first: fromisoformat() also takes "20261204" and "2026-W49-5".
        day = date.fromisoformat(typed) if _ISO_DATE.fullmatch(typed) else None
    except ValueError:
        day = None
    if day is None:
        return "Tanggal tidak sah (format TTTT-BB-HH)."
    if day < SOFTWARE_DATE:
        return "Tanggal ini lebih awal dari pembuatan perangkat lunak ini. Periksa kembali."
    known = store.box_time(confirmed=False).today
    if day < known:
        return (
            f"Perangkat ini sudah tahu tanggal yang lebih baru ({known:%d-%m-%Y}), "
            "misalnya dari kabupaten. Periksa kembali."
        )
    return None


@routes.get("/jam", roles=ADMIN, summary="The date the box uses; confirm today's date")
async def clock_page(request: web.Request) -> web.Response:
    return await _clock_page(request)


@routes.post("/jam", roles=ADMIN, summary="Confirm today's date while the box's clock is wrong")
async def clock_confirm(request: web.Request) -> web.Response:
    store = request.app[STORE]
    typed = str((await request.post()).get("tanggal", "")).strip()
    error = _confirmed_day_error(typed, store)
    if error is not None:
        return await _clock_page(request, error=error, typed=typed, status=422)
    user = request[USER]
    await confirm_today(
        store, date.fromisoformat(typed), actor=user.username, address=request.remote or ""
    )
    return await _clock_page(request, notice="Tanggal hari ini dikonfirmasi.")


# --- pengguna (admin only) -----------------------------------------------------------------


async def _users_page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    new_token: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    store = request.app[STORE]
    return render(
        request,
        "pengguna.html",
        status,
        users=await auth.list_users(store),
        tokens=await auth.list_api_tokens(store),
        roles=ROLE_LABELS,
        errors=errors or {},
        form=form or {},
        new_token=new_token,
        notice=notice,
        min_length=MIN_PASSWORD_LENGTH,
        encrypted=store.key is not None,
    )


def password_error(request: web.Request, username: str, password: str, repeat: str) -> str | None:
    """What the form says next to a new password that cannot be set (``None``: it can)."""
    weak = auth.password_weakness(request.app[CONFIG], username, password)
    if weak is not None:
        return weak.message
    if password != repeat:
        return "Kedua kata sandi tidak sama."
    return None


async def _user_or_404(store: Store, user_id: str) -> auth.User:
    for user in await auth.list_users(store):
        if str(user.id) == user_id:
            return user
    raise web.HTTPNotFound(text="Pengguna tidak ditemukan.")


@routes.get("/pengguna", roles=ADMIN, summary="User accounts and API tokens")
async def users(request: web.Request) -> web.Response:
    return await _users_page(request)


@routes.post("/pengguna", roles=ADMIN, summary="Add a user account")
async def user_add(request: web.Request) -> web.Response:
    store = request.app[STORE]
    post = await request.post()
    form = {k: str(post.get(k, "")).strip() for k in ("username", "full_name", "role")}
    password, repeat = str(post.get("password", "")), str(post.get("password2", ""))
    errors: dict[str, str] = {}
    username = form["username"]
    if not auth.valid_username(username):
        errors["username"] = "Nama pengguna hanya huruf, angka, titik dan garis bawah."
    elif any(u.username == username for u in await auth.list_users(store)):
        errors["username"] = "Nama pengguna ini sudah dipakai."
    if not form["full_name"]:
        errors["full_name"] = "Nama lengkap wajib diisi."
    if form["role"] not in {role.value for role in Role}:
        errors["role"] = "Pilih peran."
    weak = password_error(request, username, password, repeat)
    if weak:
        errors["password"] = weak
    if errors:
        return await _users_page(request, errors=errors, form=form, status=422)
    await auth.create_user(
        store, username=username, full_name=form["full_name"], role=Role(form["role"]),
        password=password, actor=request[USER].username,
    )  # fmt: skip
    return await _users_page(request, notice=f"Pengguna {username} ditambahkan.")


@routes.post("/pengguna/{id}/aktif", roles=ADMIN, summary="Deactivate or reactivate a user")
async def user_active(request: web.Request) -> web.Response:
    store = request.app[STORE]
    user = await _user_or_404(store, request.match_info["id"])
    active = (await request.post()).get("active") == "1"
    if user.id == request[USER].id and not active:
        errors = {"account": "Anda tidak bisa menonaktifkan akun Anda sendiri."}
        return await _users_page(request, errors=errors, status=422)
    await auth.set_user_active(store, user.id, active, actor=request[USER].username)
    state = "diaktifkan kembali" if active else "dinonaktifkan"
    return await _users_page(request, notice=f"Pengguna {user.username} {state}.")


@routes.post("/pengguna/{id}/sandi", roles=ADMIN, summary="Set a user's new password")
async def user_password(request: web.Request) -> web.Response:
    store = request.app[STORE]
    user = await _user_or_404(store, request.match_info["id"])
    post = await request.post()
    error = password_error(
        request, user.username, str(post.get("password", "")), str(post.get("password2", ""))
    )
    if error:
        return await _users_page(request, errors={f"password-{user.id}": error}, status=422)
    await auth.set_password(store, user.id, str(post.get("password")), actor=request[USER].username)
    return await _users_page(request, notice=f"Kata sandi {user.username} diganti.")


@routes.post("/pengguna/kunci", roles=ADMIN, summary="Kunci perangkat: lock the encrypted box")
async def lock_box(request: web.Request) -> web.Response:
    if request.app[STORE].key is None:
        errors = {"lock": "Data perangkat ini tidak terenkripsi: perangkat tidak dapat dikunci."}
        return await _users_page(request, errors=errors, status=409)
    await lock(request.app, actor(request))
    response = web.HTTPSeeOther("/masuk")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def _own_password_page(
    request: web.Request, status: int = 200, *, errors: dict[str, str] | None = None
) -> web.Response:
    done = request.query.get("pesan") == "diganti"
    return render(
        request, "ganti_sandi.html", status, errors=errors or {}, min_length=MIN_PASSWORD_LENGTH,
        notice="Kata sandi Anda sudah diganti." if done else None,
    )  # fmt: skip


@routes.get("/ganti-sandi", roles=ALL_ROLES, summary="Form: change one's own password")
async def own_password(request: web.Request) -> web.Response:
    return _own_password_page(request)


@routes.post("/ganti-sandi", roles=ALL_ROLES, summary="Change one's own password")
async def own_password_change(request: web.Request) -> web.Response:
    store, user = request.app[STORE], request[USER]
    post = await request.post()  # a password is taken as typed, spaces included
    current, new, repeat = (str(post.get(name, "")) for name in ("current", "new", "repeat"))
    checked = await auth.check_own_password(store, user, current, request.remote or "")
    if checked:
        message = "Kata sandi sekarang salah." if checked < 0 else login_error(checked)
        return _own_password_page(request, 422, errors={"current": message})
    error = password_error(request, user.username, new, repeat)
    if error:
        return _own_password_page(request, 422, errors={"new": error})
    await auth.set_password(
        store, user.id, new, actor=user.username,
        keep_session=request.cookies.get(SESSION_COOKIE, ""),
    )  # fmt: skip
    raise web.HTTPSeeOther("/ganti-sandi?pesan=diganti")


@routes.post("/pengguna/token", roles=ADMIN, summary="Create an API token (shown once)")
async def token_add(request: web.Request) -> web.Response:
    store = request.app[STORE]
    post = await request.post()
    name = str(post.get("name", "")).strip()[:100]
    owner_id = str(post.get("user_id", ""))
    if not name:
        return await _users_page(
            request, errors={"token": "Nama token wajib diisi."}, form={"token_user": owner_id},
            status=422,
        )  # fmt: skip
    owner = await _user_or_404(store, owner_id)
    token = await auth.create_api_token(store, owner, name, actor=request[USER].username)
    return await _users_page(request, new_token=token)


@routes.post("/pengguna/token/{id}/cabut", roles=ADMIN, summary="Revoke an API token")
async def token_revoke(request: web.Request) -> web.Response:
    token_id = request.match_info["id"]
    if not token_id.isdigit():
        raise web.HTTPNotFound(text="Token tidak ditemukan.")
    await auth.revoke_api_token(request.app[STORE], int(token_id), actor=request[USER].username)
    return await _users_page(request, notice="Token dicabut.")


# --- jejak audit ---------------------------------------------------------------------------


@routes.get("/audit", roles=AUDITORS, summary="The audit trail, newest first")
async def audit_trail(request: web.Request) -> web.Response:
    size = request.app[CONFIG].page_size
    page = page_number(request)
    rows, total = await request.app[STORE].audit_log(offset=(page - 1) * size, limit=size)
    return render(
        request, "audit.html", rows=audit_rows(rows), page=page, total=total, size=size,
        base=pager_base(request),
    )  # fmt: skip
