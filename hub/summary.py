"""The summary page's figures (Ringkasan): per village, its households, what changed this
period, what waits for the verifier, open conflicts, when its boxes were last heard of, and
whether its data is older than the ministry's three months."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import db
from hub.review import REVIEWED_ENTITIES

__all__ = ["STALE_AFTER_DAYS", "VillageSummary", "village_summary"]

#: A village whose data is older than this is flagged (updates at least every 3 months).
STALE_AFTER_DAYS = 90
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class VillageSummary:
    """A village on the summary page (Ringkasan)."""

    village: str
    households: int
    changes: int
    pending_households: int
    open_conflicts: int
    last_contact_ms: int | None
    data_age_days: int | None
    stale: bool


async def village_summary(
    engine: AsyncEngine, *, now_ms: int, period_start_ms: int
) -> list[VillageSummary]:
    """Every village: households, changes this period, waiting households, open
    conflicts, when its boxes were last heard of and how old its data is."""
    r, c, d, v = db.records, db.conflicts, db.devices, db.villages

    async def grouped(conn: AsyncConnection, query: Any) -> dict[str, Any]:
        return {row[0]: row[1] for row in await conn.execute(query)}

    async with db.reading(engine) as conn:
        villages = (await conn.execute(sa.select(v.c.code, v.c.last_change_ms))).all()
        households = await grouped(
            conn,
            sa.select(r.c.village, sa.func.count())
            .where(r.c.entity == "household", r.c.deleted.is_(False))
            .group_by(r.c.village),
        )
        changes = await grouped(
            conn,
            sa.select(r.c.village, sa.func.count())
            .where(r.c.updated_ms >= period_start_ms)
            .group_by(r.c.village),
        )
        pending = await grouped(
            conn,
            sa.select(r.c.village, sa.func.count(sa.distinct(r.c.household_id)))
            .where(
                r.c.pending.is_(True),
                r.c.household_id.is_not(None),
                r.c.entity.in_(REVIEWED_ENTITIES),
            )
            .group_by(r.c.village),
        )
        conflicts = await grouped(
            conn,
            sa.select(c.c.village, sa.func.count())
            .where(c.c.resolved_ms.is_(None))
            .group_by(c.c.village),
        )
        contact = await grouped(
            conn, sa.select(d.c.village, sa.func.max(d.c.last_seen_ms)).group_by(d.c.village)
        )
    summaries = []
    for row in sorted(villages, key=lambda row: row.code):
        age = (now_ms - row.last_change_ms) // _DAY_MS if row.last_change_ms is not None else None
        summaries.append(
            VillageSummary(
                village=row.code,
                households=int(households.get(row.code, 0)),
                changes=int(changes.get(row.code, 0)),
                pending_households=int(pending.get(row.code, 0)),
                open_conflicts=int(conflicts.get(row.code, 0)),
                last_contact_ms=contact.get(row.code),
                data_age_days=age,
                stale=age is None or age > STALE_AFTER_DAYS,
            )
        )
    return summaries
