"""HTML pages of the edge box, in Bahasa Indonesia (server-rendered, no JavaScript needed)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from edge import auth, db
from edge.web.app import (
    CONFIG,
    SESSION_COOKIE,
    STORE,
    local_today,
    login_allowed,
    render,
    render_before_login,
    set_session_cookie,
)
from edge.web.routing import ALL_ROLES, PUBLIC, RouteTable

__all__ = ["routes"]

routes = RouteTable()

#: Households not updated for this long are listed as needing a visit (ministry: 3 months).
STALE_HOUSEHOLD_DAYS = 90


def _safe_next(target: str | None) -> str:
    """Only local paths: never redirect a login to another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@routes.get("/masuk", roles=PUBLIC, summary="Login page")
async def login_page(request: web.Request) -> web.Response:
    target = _safe_next(request.query.get("next"))
    return render_before_login(request, "masuk.html", next=target, error=None, username="")


@routes.post("/masuk", roles=PUBLIC, summary="Log in")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    if not login_allowed(request):
        error = "Terlalu banyak percobaan masuk dari alamat ini. Tunggu satu menit."
        result = auth.LoginResult(None)
    else:
        result = await auth.authenticate(
            request.app[STORE], username, password, request.remote or ""
        )
        error = (
            "Akun dikunci sementara karena terlalu banyak percobaan yang salah. Coba lagi nanti."
            if result.locked
            else "Nama pengguna atau kata sandi salah."
        )
    if result.user is None:
        return render_before_login(
            request, "masuk.html", 401, next=target, error=error, username=username
        )
    session = await auth.create_session(request.app[STORE], result.user, request.remote or "")
    response = web.HTTPSeeOther(target)
    set_session_cookie(request, response, session)
    raise response


@routes.post("/keluar", roles=ALL_ROLES, summary="Log out")
async def logout(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await auth.end_session(request.app[STORE], token)
    response = web.HTTPSeeOther("/masuk")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@routes.get("/", roles=ALL_ROLES, summary="Beranda: counts, what needs attention, sync status")
async def beranda(request: web.Request) -> web.Response:
    store = request.app[STORE]
    today = local_today(request)
    counts = await store.counts()
    pending, oldest = await store.outbox_pending()
    r = db.records
    due = sa.func.json_extract(r.c.data, "$.due_date")
    overdue, overdue_total = await store.list(
        "complaint",
        where=[r.c.status.in_(("baru", "diproses", "dirujuk")), due < today.isoformat()],
        limit=10,
    )
    stale_before = store.now_ms() - STALE_HOUSEHOLD_DAYS * 86_400_000
    stale, stale_total = await store.list(
        "household", where=[r.c.updated_ms < stale_before, r.c.deleted.is_(False)], limit=10
    )
    async with store.reader.connect() as conn:
        drafts = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(r)
                .where(r.c.entity == "proposal", r.c.status == "draf")
            )
        ).scalar_one()
    last_contact = await store.get_meta("last_hub_contact_ms")
    ahead = store.clock.ahead_ms(store.now_ms())
    return render(
        request,
        "beranda.html",
        counts=counts,
        pending=pending,
        oldest=oldest,
        overdue=overdue,
        overdue_total=overdue_total,
        stale=stale,
        stale_total=stale_total,
        stale_days=STALE_HOUSEHOLD_DAYS,
        drafts=drafts,
        last_contact=int(last_contact) if last_contact else None,
        clock_wrong=ahead > request.app[CONFIG].max_clock_drift_ms,
        today=today,
    )
