"""Ringkasan: per village, its households, changes this period, what waits for review,
open conflicts, when its boxes were last heard of, whether its data is too old, and its
progress in the verification round; and a line on the month's Posyandu services."""

from __future__ import annotations

from aiohttp import web

from hub import cycle, progress, summary
from hub.ui.base import ALL_ROLES, CONFIG, STORE, RouteTable, render
from protocol.posyandu import Flag

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/", roles=ALL_ROLES)
async def ringkasan(request: web.Request) -> web.Response:
    store = request.app[STORE]
    now = store.wall()
    # The period Siklus bulanan shows open: after an early freeze, already the next one.
    period = (await cycle.ensure_current(store, request.app[CONFIG], now)).period
    period_start_ms = await cycle.started_ms(store, request.app[CONFIG], period)
    villages = await summary.village_summary(
        store.engine, now_ms=now, period_start_ms=period_start_ms
    )
    counted = await request.app[progress.PROGRESS].latest(store)
    posyandu = counted.posyandu.values()
    totals = {
        "households": sum(v.households for v in villages),
        "changes": sum(v.changes for v in villages),
        "pending": sum(v.pending_households for v in villages),
        "conflicts": sum(v.open_conflicts for v in villages),
    }
    return render(
        request, "ringkasan.html", villages=villages, totals=totals, period=period,
        stale_days=summary.STALE_AFTER_DAYS, round=counted.period, rounds=counted.villages,
        counted_ms=counted.at_ms, empty=progress.VillageProgress(),
        visit_days=progress.STALE_VISIT_DAYS, posyandu_month=counted.month,
        posyandu_services=sum(v.report.services for v in posyandu),
        posyandu_villages=sum(1 for v in posyandu if v.report.services),
        posyandu_flags=[
            {"value": flag.value, "count": sum(v.report.flags[flag] for v in posyandu)}
            for flag in Flag
        ],
    )  # fmt: skip
