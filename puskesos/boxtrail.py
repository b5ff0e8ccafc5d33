"""A box's audit trail as people read it: on the box (Jejak audit, a record's history, a
person's data report) and at the hub, which keeps each box's trail as the box sent it
(``box_audit``, ``protocol/auditchain.py``). Both tables have the box's columns
(``action``, ``entity``, ``record_id``, ``detail``, ``address``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from protocol.entities import ENTITIES

__all__ = ["ACTION_LABELS", "about_person", "audit_rows"]

#: A box's audit actions as the trail shows them.
ACTION_LABELS = {
    "create": "Membuat",
    "update": "Mengubah",
    "view": "Melihat data pribadi",
    "search": "Mencari NIK/KK",
    "pdp_report": "Membuat laporan data pribadi",
    "confirm_warnings": "Menyimpan dengan peringatan",
    "login": "Masuk",
    "login_failed": "Gagal masuk",
    "sync": "Diterima dari kabupaten",
    "login_locked": "Akun terkunci",
    "user_create": "Membuat pengguna",
    "user_activate": "Mengaktifkan pengguna",
    "user_deactivate": "Menonaktifkan pengguna",
    "password_set": "Mengganti kata sandi",
    "keys.recover": "Memulihkan akses dengan kunci kabupaten",
    "keys.secure": "Mengenkripsi data perangkat",
    "keys.lock": "Mengunci perangkat",
    "token_create": "Membuat token API",
    "token_revoke": "Mencabut token API",
    "clock_confirm": "Mengonfirmasi tanggal hari ini",
    "export": "Mengunduh daftar",
}


def about_person(table: sa.Table, member_id: str, household_id: str) -> sa.ColumnElement[bool]:
    """The rows of a box's trail ``table`` about one person: of the member's record and of
    its household's (a household page shows every member), and the NIK/KK searches whose
    answer showed that household (a search row lists the ids it showed, ``shown``)."""
    return sa.or_(
        table.c.record_id.in_((member_id, household_id)),
        sa.and_(
            table.c.action == "search",
            table.c.detail.contains(json.dumps(household_id), autoescape=True),
        ),
    )


def audit_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Audit rows for a page: the action in words and the changed fields by their labels."""
    shown = []
    for row in rows:
        detail = json.loads(row.detail or "{}")
        schema = ENTITIES.get(row.entity or "")
        fields = detail.pop("fields", []) if isinstance(detail, dict) else []
        labels = [schema.fields[f].label if schema and f in schema.fields else f for f in fields]
        shown.append(
            {
                "at_ms": row.at_ms,
                "actor": row.actor,
                "action": ACTION_LABELS.get(row.action, row.action),
                "entity": schema.label if schema else (row.entity or ""),
                "entity_name": row.entity or "",
                "record_id": row.record_id,
                "fields": labels,
                "detail": detail if isinstance(detail, dict) else {},
                "address": row.address or "",
            }
        )
    return shown
