"""Matching the district's members with the civil registry (``docs/registry.md`` §6).

``puskesos hub registry match-civil FILE`` loads a civil-registry extract (NIK, name, birth
date, sex) into ``civil_rows``, streamed, then walks every village's active members joined
with it by NIK and writes each member's ``civil_flags`` (:mod:`protocol.civil`) as a
version of the hub node where they changed: the verifier sees them and they reach the
boxes with the normal downlink. The data itself is never changed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub import db
from hub.registry_files import open_rows
from hub.store import HubStore
from protocol.civil import CivilEntry, civil_flags, civil_sex
from protocol.entities import MEMBER
from protocol.registry import DEFAULT_LAYOUT, Layout, parse_date

__all__ = ["CivilSummary", "match_civil"]

#: Rows per transaction when loading the extract, members per transaction when matching.
CHUNK = 5000


@dataclass
class CivilSummary:
    """What a matching did."""

    civil_rows: int = 0
    skipped_rows: int = 0
    members: int = 0
    changed: int = 0
    flags: Counter[str] = field(default_factory=Counter)


async def match_civil(
    store: HubStore,
    path: Path,
    *,
    layout: Layout = DEFAULT_LAYOUT,
    progress: Callable[[int, float], None] | None = None,
) -> CivilSummary:
    """Load the extract at ``path`` and flag every active member (see the module docstring)."""
    summary = CivilSummary()
    await _load(store, path, layout, summary, progress)
    v = db.villages
    async with store.engine.connect() as conn:
        villages = [row.code for row in await conn.execute(sa.select(v.c.code).order_by(v.c.code))]
    for village in villages:
        await _match_village(store, village, summary)
    return summary


async def _load(
    store: HubStore,
    path: Path,
    layout: Layout,
    summary: CivilSummary,
    progress: Callable[[int, float], None] | None,
) -> None:
    columns = {name: layout.column_of(MEMBER.name, name) for name in ("nik", "name")}
    birth = layout.column_of(MEMBER.name, "birth_date")
    sex = layout.column_of(MEMBER.name, "sex")
    async with store.engine.begin() as conn:
        await conn.execute(db.civil_rows.delete())
    reader = open_rows(path)
    chunk: dict[str, dict[str, str]] = {}
    for _, row in reader:
        nik = str(row.get(columns["nik"]) or "").strip().lstrip("'")
        name = str(row.get(columns["name"]) or "").strip()
        if len(nik) != 16 or not nik.isdigit() or not name:
            summary.skipped_rows += 1
            continue
        chunk[nik] = {
            "nik": nik,
            "name": name,
            "birth_date": parse_date(row.get(birth), layout) or "",
            "sex": civil_sex(str(row.get(sex) or "")),
        }
        summary.civil_rows += 1
        if len(chunk) >= CHUNK:
            await _insert(store, chunk)
            chunk = {}
            if progress is not None:
                progress(summary.civil_rows, reader.fraction)
    await _insert(store, chunk)


async def _insert(store: HubStore, rows: dict[str, dict[str, str]]) -> None:
    """Insert a chunk; a NIK listed twice in the extract keeps its last row."""
    if not rows:
        return
    c = db.civil_rows
    async with store.engine.begin() as conn:
        await conn.execute(c.delete().where(store.among(c.c.nik, sorted(rows))))
        await conn.execute(c.insert(), list(rows.values()))


async def _match_village(store: HubStore, village: str, summary: CivilSummary) -> None:
    r, c = db.records, db.civil_rows
    after = ""
    while True:
        query = (
            sa.select(
                r.c.id, r.c.data, c.c.nik.label("civil_nik"), c.c.name, c.c.birth_date, c.c.sex
            )
            .select_from(r.outerjoin(c, c.c.nik == r.c.nik))
            .where(r.c.village == village, r.c.entity == MEMBER.name, r.c.nik.is_not(None))
            .where(r.c.id > after)
            .order_by(r.c.id)
            .limit(CHUNK)
        )
        async with db.reading(store.engine) as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return
        after = rows[-1].id
        changed: dict[str, dict[str, Any]] = {}
        for row in rows:
            values = json.loads(row.data)
            entry = (
                CivilEntry(row.civil_nik, row.name, row.birth_date, row.sex)
                if row.civil_nik is not None
                else None
            )
            flags = civil_flags(values, entry)
            summary.members += 1
            summary.flags.update(flags)
            if flags != (values.get("civil_flags") or []):
                changed[row.id] = {"civil_flags": flags}
        if changed:
            async with store.engine.begin() as conn:
                log_seq = await store.lock_village(conn, village)
                await store.write_hub_values(conn, changed, log_seq, store.wall())
            summary.changed += len(changed)
