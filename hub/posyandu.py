"""The Posyandu per village (``docs/posyandu.md`` section 5): the vulnerable-group
registers counted from the replicated households and members, and the month's services
totalled from the replicated ``layanan`` records, by the same pure rules the boxes use
(:mod:`protocol.vulnerable`, :mod:`protocol.posyandu`). No message carries a report: the
hub has every record it needs.

Counted village by village (one village's households and members in memory at a time),
in the background with the round's progress (:class:`hub.progress.ProgressCache`), in a
thread so that pages and scrapes are not held up, and only for a village whose records
changed since the last count (its newest ``log_seq``) or on a new day (ages move): a
district of a million households changes a few villages an hour, and counting one takes
70 µs per household on a quiet machine, 0.5 ms on a busy one
(``bench/progress.py``): 2 to 13 minutes of CPU for a million households.

A past month (reviewed after it ends) is counted by the same function in the background,
when it is first viewed (a district of a million households takes minutes: the page says
"sedang dihitung" meanwhile), and kept per village with its newest ``log_seq``
(:class:`PastMonths`), for the last few months viewed; each later view shows the last
count and recounts, in the background, the villages that changed since.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hub import db
from hub.store import HubStore
from protocol.entities import HOUSEHOLD, LAYANAN, MEMBER, RECORD_ID_KEY
from protocol.posyandu import MonthlyReport, monthly_report, previous_month
from protocol.vulnerable import REGISTERS, Status, family_of
from puskesos.sqljson import json_fields

__all__ = ["PAST_MONTHS", "PAST_MONTHS_KEPT", "PastMonths", "VillagePosyandu", "village_posyandu"]

log = logging.getLogger("puskesos.hub.posyandu")


@dataclass(frozen=True, slots=True)
class VillagePosyandu:
    """One village: each register's count (people or households in it) and the month's
    report of its post."""

    registers: Counter[str] = field(default_factory=Counter)
    report: MonthlyReport = field(default_factory=lambda: MonthlyReport(""))
    #: The village's newest ``log_seq`` and the day its registers were read on.
    seq: int = 0
    day: date | None = None


async def village_posyandu(
    store: HubStore,
    *,
    today: date,
    month: str = "",
    known: Mapping[str, VillagePosyandu] | None = None,
) -> dict[str, VillagePosyandu]:
    """Every village with households or services: its registers and its post's report of
    ``month`` (``YYYY-MM``, ``today``'s by default), the registers read on ``today`` or, for
    a past month, on its last day (as the box's report does); a village of ``known``
    counted on that day whose records did not change since is taken from there."""
    known = known or {}
    period = month or today.strftime("%Y-%m")
    first = date(int(period[:4]), int(period[5:7]), 1)
    last = (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    day = min(today, last)
    start = previous_month(previous_month(period)) + "-01"
    r = db.records
    service_date = json_fields(r.c.data, store.engine.dialect.name)("service_date")
    found: dict[str, VillagePosyandu] = {}
    async with db.reading(store.engine) as conn:
        newest = (
            await conn.execute(
                # Any record's change counts: the index on (village, log_seq) answers it.
                sa.select(r.c.village, sa.func.max(r.c.log_seq))
                .group_by(r.c.village)
                .order_by(r.c.village)
            )
        ).all()
        for village, seq in newest:
            before = known.get(village)
            if before is not None and before.seq == seq and before.day == day:
                found[village] = before
                continue
            rows = (
                await conn.execute(
                    sa.select(r.c.id, r.c.entity, r.c.household_id, r.c.data).where(
                        r.c.village == village,
                        r.c.deleted.is_(False),
                        sa.or_(
                            r.c.entity.in_((HOUSEHOLD.name, MEMBER.name)),
                            sa.and_(
                                r.c.entity == LAYANAN.name,
                                service_date >= start,
                                service_date <= last.isoformat(),
                            ),
                        ),
                    )
                )
            ).all()
            if rows:
                found[village] = await asyncio.to_thread(_count, rows, day, period, seq)
    return found


#: How many past months' counts :class:`PastMonths` keeps (the ones viewed last).
PAST_MONTHS_KEPT = 3


class PastMonths:
    """Past months' figures, counted by :func:`village_posyandu` and kept per month and
    village with the village's newest ``log_seq``: counting a month again recounts only
    the villages whose records changed since. One count at a time, so that two verifiers
    opening the same month count it once."""

    def __init__(self, kept: int = PAST_MONTHS_KEPT) -> None:
        self.kept = kept
        self._months: OrderedDict[str, dict[str, VillagePosyandu]] = OrderedDict()
        self._lock = asyncio.Lock()
        self._counting: dict[str, asyncio.Task[dict[str, VillagePosyandu]]] = {}

    async def count(
        self, store: HubStore, month: str, *, today: date
    ) -> dict[str, VillagePosyandu]:
        """Every village's figures of ``month`` (up to ``today``'s), counted now."""
        async with self._lock:
            found = await village_posyandu(
                store, today=today, month=month, known=self._months.get(month)
            )
            self._months[month] = found
            self._months.move_to_end(month)
            while len(self._months) > self.kept:
                self._months.popitem(last=False)
            return found

    def latest(
        self, store: HubStore, month: str, *, today: date
    ) -> dict[str, VillagePosyandu] | None:
        """``month``'s figures of its last count (``None``: not counted yet), and a count
        started in the background unless one of that month is under way: the first view
        of a month waits for nothing, and a later one shows what changed before it."""
        running = self._counting.get(month)
        if running is None or running.done():
            task = asyncio.create_task(self.count(store, month, today=today))
            task.add_done_callback(self._counted)
            self._counting[month] = task
        return self._months.get(month)

    def _counted(self, task: asyncio.Task[dict[str, VillagePosyandu]]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("counting a past month failed", exc_info=task.exception())

    async def stop(self, _app: web.Application | None = None) -> None:
        """Cancel the counts under way (the app's ``on_cleanup``)."""
        for task in self._counting.values():
            task.cancel()
        for task in self._counting.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._counting.clear()


#: Where the hub's app keeps its :class:`PastMonths`.
PAST_MONTHS = web.AppKey("posyandu_past_months", PastMonths)


def _count(rows: Any, day: date, period: str, seq: int) -> VillagePosyandu:
    households: dict[str, dict[str, Any]] = {}
    members: dict[str, list[dict[str, Any]]] = {}
    services = []
    for row in rows:
        values = json.loads(row.data)
        if row.entity == HOUSEHOLD.name:
            households[row.id] = values
        elif row.entity == MEMBER.name and row.household_id:
            values[RECORD_ID_KEY] = row.id
            members.setdefault(row.household_id, []).append(values)
        elif row.entity == LAYANAN.name:
            services.append(values)
    registers: Counter[str] = Counter()
    expected: dict[str, list[str]] = {code: [] for code in REGISTERS}
    for household_id, values in households.items():
        family = family_of(values, members.get(household_id, []), day)
        for code, register in REGISTERS.items():
            for entry in register.entries(family):
                if entry.verdict.status is not Status.IN:
                    continue
                registers[code] += 1
                if entry.person is not None and not register.per_household:
                    expected[code].append(str(entry.person.values[RECORD_ID_KEY]))
    return VillagePosyandu(registers, monthly_report(services, period, expected), seq, day)
