"""Antrian verifikasi, read: the households with changes waiting for a decision, found by
village, by a full NIK or KK number or by part of a name, in the order the verifier
chose, and which household comes next. Deciding is :mod:`hub.review`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import db
from hub.review import REVIEWED_ENTITIES, head_names, member_rows
from puskesos.search import fold
from puskesos.sqljson import json_fields

__all__ = [
    "AGREED",
    "SORTS",
    "QueueFilter",
    "QueueItem",
    "agreed_proposals",
    "next_household",
    "queue",
    "queue_counts",
]

#: The orders of the queue: key → its name on the page (the first is the default).
SORTS: Mapping[str, str] = {
    "lama": "Perubahan terlama dulu",
    "desa": "Desa",
    "nama": "Nama kepala keluarga",
}
#: Proposal (usulan) states that say the village agreed them: in a deliberation (musdes)
#: or, without one, by a statement of responsibility (SPTJM).
AGREED = ("disepakati_musdes", "disepakati_sptjm")


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which waiting households a verifier looks at, and in which order: of ``village``
    (a code), holding the full NIK or KK ``number``, with ``name`` (folded, see
    :func:`puskesos.search.fold`) in the name of a member, ``sort`` a key of
    :data:`SORTS`. Empty values do not filter."""

    village: str = ""
    number: str = ""
    name: str = ""
    sort: str = "lama"


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One household waiting for a decision."""

    household_id: str
    village: str
    head_name: str
    kk_number: str
    pending_records: int
    is_new: bool
    flagged: bool
    changed_ms: int


def _pending() -> sa.ColumnElement[bool]:
    r = db.records
    return sa.and_(
        r.c.pending.is_(True), r.c.household_id.is_not(None), r.c.entity.in_(REVIEWED_ENTITIES)
    )


async def _waiting(conn: AsyncConnection, wanted: QueueFilter) -> tuple[list[Any], dict[str, str]]:
    """The waiting households ``wanted`` asks for, in its order (``household_id``,
    ``village``, ``pending_records``, ``changed_ms``), and their heads' names when the
    filter or the order needed them (else empty)."""
    r = db.records
    changed = sa.func.max(r.c.updated_ms).label("changed_ms")
    query = (
        sa.select(
            r.c.household_id,
            sa.func.min(r.c.village).label("village"),
            sa.func.count().label("pending_records"),
            changed,
        )
        .where(_pending())
        .group_by(r.c.household_id)
    )
    if wanted.village:
        query = query.where(r.c.village == wanted.village)
    if wanted.number:
        field = json_fields(r.c.data, conn.dialect.name)
        holders = sa.select(r.c.household_id).where(
            r.c.entity == "member", r.c.nik == wanted.number
        )
        cards = sa.select(r.c.id).where(
            r.c.entity == "household", field("kk_number") == wanted.number
        )
        query = query.where(sa.or_(r.c.household_id.in_(holders), r.c.household_id.in_(cards)))
    if wanted.sort == "desa":
        query = query.order_by(sa.func.min(r.c.village), changed, r.c.household_id)
    else:
        query = query.order_by(changed, r.c.household_id)
    rows = list((await conn.execute(query)).all())
    if not (wanted.name or wanted.sort == "nama") or not rows:
        return rows, {}
    waiting = sa.select(r.c.household_id).where(_pending())
    if wanted.village:
        waiting = waiting.where(r.c.village == wanted.village)
    members = await member_rows(conn, waiting)
    if wanted.name:
        found = {
            m.household_id
            for m in members
            if not m.deleted and wanted.name in fold(str(json.loads(m.data).get("name") or ""))
        }
        rows = [row for row in rows if row.household_id in found]
    heads = head_names(members)
    if wanted.sort == "nama":
        # Households without a head's name last, not first.
        rows.sort(
            key=lambda row: (not heads.get(row.household_id), fold(heads.get(row.household_id, "")))
        )
    return rows, heads


async def _last_decisions(conn: AsyncConnection, household_ids: Sequence[str]) -> dict[str, str]:
    d = db.decisions
    latest = (
        sa.select(d.c.household_id, sa.func.max(d.c.id).label("id"))
        .where(d.c.household_id.in_(household_ids))
        .group_by(d.c.household_id)
        .subquery()
    )
    query = sa.select(d.c.household_id, d.c.decision).join(latest, latest.c.id == d.c.id)
    return {row.household_id: row.decision for row in await conn.execute(query)}


async def queue(
    engine: AsyncEngine, wanted: QueueFilter | None = None, *, limit: int = 100, offset: int = 0
) -> list[QueueItem]:
    """The households with a pending household or member record that ``wanted`` asks for
    (all of them, the longest waiting first, by default)."""
    r = db.records
    async with db.reading(engine) as conn:
        rows, heads = await _waiting(conn, wanted or QueueFilter())
        rows = rows[offset : offset + limit]
        ids = [row.household_id for row in rows]
        if not ids:
            return []
        households = {
            row.id: row
            for row in await conn.execute(
                sa.select(r.c.id, r.c.data, r.c.approved).where(
                    r.c.id.in_(ids), r.c.entity == "household"
                )
            )
        }
        heads = heads or head_names(await member_rows(conn, ids))
        last = await _last_decisions(conn, ids)
    items = []
    for row in rows:
        household = households.get(row.household_id)
        data = json.loads(household.data) if household is not None else {}
        items.append(
            QueueItem(
                household_id=row.household_id,
                village=row.village,
                head_name=heads.get(row.household_id, ""),
                kk_number=str(data.get("kk_number") or ""),
                pending_records=int(row.pending_records),
                is_new=household is None or household.approved is None,
                flagged=last.get(row.household_id) == "periksa_lapangan",
                changed_ms=int(row.changed_ms),
            )
        )
    return items


async def next_household(engine: AsyncEngine, wanted: QueueFilter, household_id: str) -> str | None:
    """The household after ``household_id`` in the queue ``wanted`` asks for: the one
    behind it, else (it was the last, or is not in that queue) the first other one;
    ``None`` when no other household waits there."""
    async with db.reading(engine) as conn:
        rows, _ = await _waiting(conn, wanted)
    ids = [row.household_id for row in rows]
    if household_id in ids:
        at = ids.index(household_id)
        ids = ids[at + 1 :] + ids[:at]
    return ids[0] if ids else None


async def queue_counts(engine: AsyncEngine) -> dict[str, int]:
    """Village → how many households wait for a decision."""
    r = db.records
    query = (
        sa.select(r.c.village, sa.func.count(sa.distinct(r.c.household_id)).label("n"))
        .where(_pending())
        .group_by(r.c.village)
    )
    async with db.reading(engine) as conn:
        return {row.village: int(row.n) for row in await conn.execute(query)}


async def agreed_proposals(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Village → how many of its proposals (usulan) it agreed and the district has not
    yet decided on, per state of :data:`AGREED` (a village that held no deliberation is
    not in it)."""
    r = db.records
    query = (
        sa.select(r.c.village, r.c.status, sa.func.count().label("n"))
        .where(r.c.entity == "proposal", r.c.status.in_(AGREED), r.c.deleted.is_(False))
        .group_by(r.c.village, r.c.status)
    )
    found: dict[str, dict[str, int]] = {}
    async with db.reading(engine) as conn:
        for row in await conn.execute(query):
            found.setdefault(row.village, {})[row.status] = int(row.n)
    return found
