"""Jejak audit: who did what to which subject, newest first, paged."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hub import db
from hub.roles import Role
from hub.ui.base import STORE, RouteTable, page_number, render

__all__ = ["ACTION_LABELS", "routes", "trail_entries"]

routes = RouteTable()

PAGE_SIZE = 50

#: Audit actions as the trail shows them; an unknown one shows as its code.
ACTION_LABELS = {
    "login.ok": "Masuk",
    "login.failed": "Gagal masuk",
    "login.locked": "Akun terkunci",
    "password.change": "Mengganti kata sandi sendiri",
    "password.change_failed": "Gagal mengganti kata sandi (kata sandi lama salah)",
    "user.create": "Membuat pengguna",
    "user.activate": "Mengaktifkan pengguna",
    "user.deactivate": "Menonaktifkan pengguna",
    "household.view": "Melihat data keluarga",
    "review.decide": "Memutuskan verifikasi",
    "duplicates.keep": "Memilih data yang dipertahankan (duplikat)",
    "conflict.resolve": "Menyelesaikan konflik",
    "cycle.freeze": "Membekukan periode",
    "cycle.submit": "Mengajukan ke pimpinan",
    "cycle.return": "Mengembalikan desa",
    "cycle.sign": "Menandatangani periode",
    "cycle.forward": "Meneruskan ke pusat",
    "cycle.publish": "Mengimpor hasil pusat",
    "person.report": "Membuat laporan data pribadi",
    "api.records": "Membaca data desa lewat API",
    "api.record": "Membaca satu data lewat API",
    "api.conflicts": "Membaca daftar konflik lewat API",
}


def trail_entries(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Audit rows as a page shows them: the action in words, the detail parsed."""
    return [
        {
            "at_ms": row.at_ms,
            "actor": row.actor,
            "action": ACTION_LABELS.get(row.action, row.action),
            "subject": row.subject,
            "detail": json.loads(row.detail or "{}"),
        }
        for row in rows
    ]


@routes.get("/audit", roles={Role.ADMIN, Role.LEADER})
async def jejak(request: web.Request) -> web.Response:
    page = page_number(request)
    a = db.audit
    query = (
        sa.select(a)
        .order_by(a.c.at_ms.desc(), a.c.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    )
    async with db.reading(request.app[STORE].engine) as conn:
        rows = (await conn.execute(query)).all()
    return render(
        request, "audit.html", entries=trail_entries(rows[:PAGE_SIZE]), page=page,
        has_next=len(rows) > PAGE_SIZE,
        base="/audit?",
    )  # fmt: skip
