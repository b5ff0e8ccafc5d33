"""Ringkasan: per village, its households, changes this period, what waits for review,
open conflicts, when its boxes were last heard of, whether its data is too old, and its
progress in the verification round."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from hub import progress, summary
from hub.ui.base import ALL_ROLES, CONFIG, STORE, RouteTable, current_period, render

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/", roles=ALL_ROLES)
async def ringkasan(request: web.Request) -> web.Response:
    store = request.app[STORE]
    now = store.wall()
    period, period_start_ms = current_period(request, now)
    villages = await summary.village_summary(
        store.engine, now_ms=now, period_start_ms=period_start_ms
    )
    config = request.app[CONFIG]
    today = datetime.fromtimestamp(now / 1000, ZoneInfo(config.timezone)).date()
    period_round, rounds = await progress.round_progress(
        store, today=today, round_months=config.round_months
    )
    totals = {
        "households": sum(v.households for v in villages),
        "changes": sum(v.changes for v in villages),
        "pending": sum(v.pending_households for v in villages),
        "conflicts": sum(v.open_conflicts for v in villages),
    }
    return render(
        request, "ringkasan.html", villages=villages, totals=totals, period=period,
        stale_days=summary.STALE_AFTER_DAYS, round=period_round, rounds=rounds,
        empty=progress.VillageProgress(), visit_days=progress.STALE_VISIT_DAYS,
    )  # fmt: skip
