"""Each village's progress in the verification round (``docs/registry.md`` section 5), for
Ringkasan and ``/metrics``: its households, those visited in the current round, those
still lacking a ranking variable (the household or an active member), those not found, and
those nobody visited for :data:`STALE_VISIT_DAYS` days. And the verifier's "periksa
lapangan" list: the households the district sent to a ground check, with what the visits
since found.

Counted in the database, a few grouped queries over the whole district, from the records'
``status`` and ``lacking`` columns (written with each record); only the visits' dates are
read from their JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from hub import db
from hub.posyandu import VillagePosyandu, village_posyandu
from hub.store import HubStore
from protocol.rounds import Round, round_of
from puskesos.sqljson import incomplete_household, json_fields

__all__ = [
    "PROGRESS",
    "STALE_VISIT_DAYS",
    "Counted",
    "FieldCheck",
    "ProgressCache",
    "VillageProgress",
    "field_checks",
    "round_progress",
]

log = logging.getLogger("puskesos.hub")

#: A household nobody visited for longer than this is stale (the ministry: every 3 months).
STALE_VISIT_DAYS = 90


@dataclass(frozen=True, slots=True)
class VillageProgress:
    """One village in the round. ``stale``: households without a visit in the last
    :data:`STALE_VISIT_DAYS` days (never visited included)."""

    total: int = 0
    visited: int = 0
    incomplete: int = 0
    not_found: int = 0
    stale: int = 0


async def round_progress(
    store: HubStore, *, today: date, round_months: int
) -> tuple[Round, dict[str, VillageProgress]]:
    """The round ``today`` falls in, and every village's progress in it."""
    period = round_of(today, round_months)
    r = db.records
    incomplete = incomplete_household(r)
    households = (
        sa.select(
            r.c.village,
            sa.func.count(),
            sa.func.sum(sa.case((r.c.status == "tidak_ditemukan", 1), else_=0)),
            sa.func.sum(sa.case((incomplete, 1), else_=0)),
        )
        .where(r.c.entity == "household", r.c.deleted.is_(False))
        .group_by(r.c.village)
    )
    visit_date = json_fields(r.c.data, store.engine.dialect.name)("visit_date")

    def visited_since(first: date, last: date) -> Any:
        return (
            sa.select(r.c.village, sa.func.count(sa.distinct(r.c.household_id)))
            .where(
                r.c.entity == "visit",
                r.c.deleted.is_(False),
                visit_date >= first.isoformat(),
                visit_date <= last.isoformat(),
            )
            .group_by(r.c.village)
        )

    async with db.reading(store.engine) as conn:
        counted = (await conn.execute(households)).all()
        visited = dict((await conn.execute(visited_since(period.start, period.end))).all())
        recent_from = today - timedelta(days=STALE_VISIT_DAYS)
        recent = dict((await conn.execute(visited_since(recent_from, today))).all())
    return period, {
        village: VillageProgress(
            total=total,
            visited=visited.get(village, 0),
            incomplete=int(incomplete or 0),
            not_found=int(not_found or 0),
            stale=max(total - recent.get(village, 0), 0),
        )
        for village, total, not_found, incomplete in counted
    }


@dataclass(frozen=True, slots=True)
class Counted:
    """A count of the round's progress, with each village's Posyandu figures of the month
    (:mod:`hub.posyandu`), and when it was made."""

    period: Round
    villages: dict[str, VillageProgress]
    at_ms: int
    #: The month of ``posyandu`` (``YYYY-MM``) and each village's figures.
    month: str = ""
    posyandu: dict[str, VillagePosyandu] = field(default_factory=dict)


class ProgressCache:
    """The latest count, shared by Ringkasan and ``/metrics``: counting a district of a
    million households takes longer than a page or a scrape may wait, so it runs in the
    background, at most every ``every_s`` seconds (the first call waits for it)."""

    def __init__(self, *, round_months: int, timezone: str, every_s: float = 300) -> None:
        self.round_months = round_months
        self.zone = ZoneInfo(timezone)
        self.every_s = every_s
        self.counted: Counted | None = None
        self._due = 0.0
        self._task: asyncio.Task[None] | None = None

    async def latest(self, store: HubStore) -> Counted:
        """The latest count; a new one starts in the background when this one is old."""
        if time.monotonic() >= self._due and (self._task is None or self._task.done()):
            self._due = time.monotonic() + self.every_s
            self._task = asyncio.create_task(self._count(store))
        if self.counted is None:
            assert self._task is not None
            await asyncio.shield(self._task)
        if self.counted is None:  # the count failed: try again at the next call
            self._due = 0.0
            raise RuntimeError("the round's progress could not be counted")
        return self.counted

    async def _count(self, store: HubStore) -> None:
        now = store.wall()
        today = datetime.fromtimestamp(now / 1000, self.zone).date()
        try:
            period, villages = await round_progress(
                store, today=today, round_months=self.round_months
            )
            posyandu = await village_posyandu(
                store, today=today, known=self.counted.posyandu if self.counted else None
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("the round's progress was not counted: %s", exc)
            return
        self.counted = Counted(period, villages, now, today.strftime("%Y-%m"), posyandu)


#: Where the hub's app keeps its :class:`ProgressCache`.
PROGRESS = web.AppKey("round_progress", ProgressCache)


@dataclass(frozen=True, slots=True)
class FieldCheck:
    """A household the district marked "periksa lapangan", for the facilitator's list."""

    id: str
    values: dict[str, Any]
    head: dict[str, Any]
    #: Visits dated on or after the mark, the latest first.
    visits: list[dict[str, Any]]


async def field_checks(store: HubStore, village: str) -> list[FieldCheck]:
    """The village's households whose ``review_status`` is ``periksa_lapangan``, by RT/RW
    and address, each with its head and the visits since the district marked it."""
    r = db.records
    value = json_fields(r.c.data, store.engine.dialect.name)
    async with db.reading(store.engine) as conn:
        marked = (
            await conn.execute(
                sa.select(r.c.id, r.c.data).where(
                    r.c.village == village,
                    r.c.entity == "household",
                    r.c.deleted.is_(False),
                    value("review_status") == "periksa_lapangan",
                )
            )
        ).all()
        ids = [row.id for row in marked]
        related = (
            await conn.execute(
                sa.select(r.c.entity, r.c.household_id, r.c.data).where(
                    store.among(r.c.household_id, ids),
                    r.c.entity.in_(("member", "visit")),
                    r.c.deleted.is_(False),
                )
            )
        ).all()
    heads: dict[str, dict[str, Any]] = {}
    visits: dict[str, list[dict[str, Any]]] = {}
    for row in related:
        data = json.loads(row.data)
        if row.entity == "visit":
            visits.setdefault(row.household_id, []).append(data)
        elif data.get("relation_to_head") == "kepala_keluarga" and data.get("status") in (
            None,
            "aktif",
        ):
            heads[row.household_id] = data
    checks = []
    for row in marked:
        data = json.loads(row.data)
        since = str(data.get("review_date") or "")
        found = [v for v in visits.get(row.id, []) if str(v.get("visit_date")) >= since]
        found.sort(key=lambda v: str(v.get("visit_date")), reverse=True)
        checks.append(FieldCheck(row.id, data, heads.get(row.id, {}), found))
    checks.sort(key=lambda c: (str(c.values.get("rw")), str(c.values.get("rt")),
                               str(c.values.get("address"))))  # fmt: skip
    return checks
