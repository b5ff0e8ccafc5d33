"""Jejak audit: who did what to which subject, newest first, paged. A household or member
shows by name and each detail by its Indonesian label (codes as the schema labels them),
never as a UUID or an internal key."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from hub import db, review
from hub.roles import ROLE_LABELS, Role
from hub.ui.base import STORE, RouteTable, page_number, render
from protocol.entities import ENTITIES
from protocol.identity import mask_number
from protocol.schema import FieldSpec
from puskesos.webpages import field_text

__all__ = ["ACTION_LABELS", "DETAIL_LABELS", "routes", "trail_entries"]

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
    "queue.search": "Mencari NIK/KK di antrian",
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
    "list.export": "Mengunduh daftar",
    "api.records": "Membaca data desa lewat API",
    "api.record": "Membaca satu data lewat API",
    "api.conflicts": "Membaca daftar konflik lewat API",
}


#: Detail keys of audit rows as the trail shows them; an unknown one shows as its key.
DETAIL_LABELS = {
    "address": "Alamat IP",
    "after": "Sesudah data",
    "codes": "Peringatan",
    "conflict": "Nomor konflik",
    "count": "Jumlah",
    "counts": "Jumlah data",
    "dataset": "Folder data",
    "decision": "Keputusan",
    "entity": "Jenis data",
    "failures": "Gagal berturut-turut",
    "field": "Isian",
    "file_sha256": "SHA-256 berkas",
    "filter": "Saringan",
    "format": "Format",
    "frozen_seq": "Nomor persetujuan terakhir",
    "households": "Keluarga",
    "id": "Nomor keputusan",
    "list": "Daftar",
    "manifest_sha256": "SHA-256 manifes",
    "marked": "Ditandai data ganda",
    "name_sha256": "Sidik nama pengguna",
    "nik": "NIK",
    "nik_or_kk": "NIK/KK dicari",
    "note": "Catatan",
    "numbers": "NIK/KK",
    "period": "Periode",
    "reason": "Alasan",
    "resolved": "Yang sudah selesai",
    "resubmitted": "Desa diajukan ulang",
    "role": "Peran",
    "rows": "Baris",
    "shown": "Keluarga yang ditampilkan",
    "value": "Nilai",
    "village": "Desa",
    "villages": "Desa",
}


def _field(name: object) -> FieldSpec | None:
    """The schema's field of that name (the first entity that has it)."""
    if not isinstance(name, str):
        return None
    return next((e.fields[name] for e in ENTITIES.values() if name in e.fields), None)


def _detail_text(key: str, value: Any, detail: Mapping[str, Any], names: Mapping[str, str]) -> str:
    if key == "decision":
        return review.DECISIONS.get(value, str(value))
    if key == "role" and value in {role.value for role in Role}:
        return ROLE_LABELS[Role(value)]
    if key == "nik" and isinstance(value, str):
        return mask_number(value)
    if key == "entity" and value in ENTITIES:
        return ENTITIES[value].label
    if key == "field" and (spec := _field(value)) is not None:
        return spec.label
    if key == "value" and (spec := _field(detail.get("field"))) is not None:
        return field_text(spec, value, names)
    if key == "counts" and isinstance(value, dict):
        return ", ".join(
            f"{ENTITIES[k].label if k in ENTITIES else k}: {n}" for k, n in sorted(value.items())
        )
    if isinstance(value, list):
        return ", ".join(names.get(v, str(v)) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "—"
    if isinstance(value, bool):
        return "Ya" if value else "Tidak"
    return "—" if value is None else names.get(str(value), str(value))


async def trail_entries(engine: AsyncEngine, rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Audit rows as a page shows them: the action in words, households and members by
    name, the detail as (label, text) pairs."""
    listed = list(rows)
    details = [json.loads(row.detail or "{}") for row in listed]
    ids = {row.subject for row in listed if row.subject}
    ids |= {
        v
        for detail in details
        for key in ("marked", "shown")
        for v in detail.get(key, ())
        if isinstance(v, str)
    }
    names = await review.record_names(engine, ids)
    return [
        {
            "at_ms": row.at_ms,
            "actor": row.actor,
            "action": ACTION_LABELS.get(row.action, row.action),
            "subject": names.get(row.subject, row.subject),
            "detail": [
                (DETAIL_LABELS.get(key, key), _detail_text(key, value, detail, names))
                for key, value in sorted(detail.items())
            ],
        }
        for row, detail in zip(listed, details, strict=True)
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
    engine = request.app[STORE].engine
    async with db.reading(engine) as conn:
        rows = (await conn.execute(query)).all()
    return render(
        request, "audit.html", entries=await trail_entries(engine, rows[:PAGE_SIZE]), page=page,
        has_next=len(rows) > PAGE_SIZE,
        base="/audit?",
    )  # fmt: skip
