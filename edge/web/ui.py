"""HTML pages of the edge box, in Bahasa Indonesia (server-rendered, no JavaScript needed)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from edge import auth, db
from edge.records import Record, head_of
from edge.store import Store
from edge.web.app import (
    LOCKED_NOTICE,
    LOCKED_SIGN_IN,
    SESSION_COOKIE,
    STORE,
    is_locked,
    local_today,
    needs_securing,
    render,
    render_before_login,
    set_session_cookie,
    sign_in_securing,
    unlock,
)
from edge.web.routing import ALL_ROLES, PUBLIC, RouteTable
from edge.web.sync_view import sync_view
from edge.web.ui_registry import current_round, round_progress
from puskesos import webauth

__all__ = [
    "flash",
    "record_or_404",
    "routes",
]

routes = RouteTable()

#: Households not updated for this long are listed as needing a visit (ministry: 3 months).
STALE_HOUSEHOLD_DAYS = 90
#: The district's decisions that ask the village to act: shown on Beranda until the
#: district decides on the household again.
DISTRICT_ASKS = ("ditolak", "periksa_lapangan")


#: Short confirmations shown after a redirect (``?pesan=...``): code → text.
FLASH = {
    "tersimpan": "Data tersimpan.",
    "tersimpan_peringatan": "Data tersimpan dengan peringatan yang sudah dikonfirmasi.",
    "disepakati": "Usulan yang dipilih sudah ditandai disepakati.",
    "status": "Status diperbarui.",
    "kunjungan": "Kunjungan dicatat.",
    "layanan": "Layanan dicatat.",
}


def flash(request: web.Request) -> str | None:
    """The confirmation named by ``?pesan=`` (only known codes: no text from the URL)."""
    return FLASH.get(request.query.get("pesan", ""))


async def record_or_404(store: Store, entity: str, record_id: str) -> Record:
    """The record of ``entity`` with that id, or the page answers 404."""
    record = await store.get(record_id, entity)
    if record is None:
        raise web.HTTPNotFound(text="Data tidak ditemukan.")
    return record


#: On the sign-in page of a plain box that its next staff sign-in encrypts (docs/storage.md
#: §5): that sign-in takes longer (the rate measured there), and must not be cut short.
SECURING_NOTICE = (
    "Saat petugas masuk pertama kali, data di perangkat ini dienkripsi. Prosesnya perlu waktu "
    "sebentar (sekitar 2 detik untuk setiap 2.000 rumah tangga): tunggu sampai halaman "
    "terbuka, jangan muat ulang halaman dan jangan matikan perangkat."
)


def _sign_in_notice(app: web.Application) -> str | None:
    """What the sign-in page says about the box itself: locked, or about to be secured."""
    if is_locked(app):
        return LOCKED_NOTICE
    return SECURING_NOTICE if needs_securing(app) else None


@routes.get("/masuk", roles=PUBLIC, summary="Login page")
async def login_page(request: web.Request) -> web.Response:
    target = webauth.safe_next(request.query.get("next"))
    return render_before_login(
        request, "masuk.html", next=target, error=None, username="",
        notice=_sign_in_notice(request.app),
    )  # fmt: skip


@routes.post("/masuk", roles=PUBLIC, summary="Log in")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    target = webauth.safe_next(str(form.get("next", "")))
    address = request.remote or ""
    if needs_securing(request.app):
        result = await sign_in_securing(request.app, username, password, address)
    else:
        if is_locked(request.app):
            # The password must open the account's key slot before the database is read.
            key, refused_ms = await request.app[LOCKED_SIGN_IN].data_key(
                username, password, address
            )
            if key is None:
                return render_before_login(
                    request, "masuk.html", 401, next=target, username=username,
                    error=webauth.login_error(refused_ms), notice=LOCKED_NOTICE,
                )  # fmt: skip
            await unlock(request.app, key, username, address)
        result = await auth.authenticate(request.app[STORE], username, password, address)
    if result.user is None:
        error = webauth.login_error(result.refused_ms)
        return render_before_login(
            request, "masuk.html", 401, next=target, error=error, username=username,
            notice=_sign_in_notice(request.app),
        )  # fmt: skip
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
    count_drafts = (
        sa.select(sa.func.count())
        .select_from(r)
        .where(r.c.entity == "proposal", r.c.status == "draf")
    )
    drafts = await store.read(lambda conn: conn.execute(count_drafts).scalar_one())
    verification = await round_progress(store, current_round(request))
    review = sa.func.json_extract(r.c.data, "$.review_status")
    decided, decided_total = await store.list(
        "household",
        where=[review.in_(DISTRICT_ASKS), r.c.deleted.is_(False)],
        limit=10,
    )
    duplicates, duplicates_total = await store.list(
        "member",
        where=[r.c.status == "ganda", r.c.deleted.is_(False), r.c.household_id.is_not(None)],
        limit=10,
    )
    members = await store.related_to_each(
        "member",
        [h.id for h in (*decided, *stale)] + [m.household_id for m in duplicates if m.household_id],
    )
    return render(
        request,
        "beranda.html",
        counts=counts,
        sync=await sync_view(request.app),
        disk=await store.disk_report(),
        overdue=overdue,
        overdue_total=overdue_total,
        stale=stale,
        stale_total=stale_total,
        stale_days=STALE_HOUSEHOLD_DAYS,
        drafts=drafts,
        verification=verification,
        decided=decided,
        decided_total=decided_total,
        duplicates=duplicates,
        duplicates_total=duplicates_total,
        heads={household: head_of(people) for household, people in members.items()},
        today=today,
        box_time=store.box_time(),
    )
