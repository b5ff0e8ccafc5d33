"""Posyandu: per village of the district, the vulnerable-group registers and the month's
services of its post (``docs/posyandu.md`` section 5), read-only, from the background
count the round's progress shares (:mod:`hub.posyandu`)."""

from __future__ import annotations

from aiohttp import web

from hub import progress
from hub.posyandu import VillagePosyandu
from hub.ui.base import READERS, STORE, RouteTable, render
from protocol.entities import SERVICE_TYPES, SPM_FIELDS
from protocol.posyandu import Flag, MonthlyReport
from protocol.vulnerable import REGISTERS

__all__ = ["routes"]

routes = RouteTable()

#: The registers a service type serves, as the columns of "served / expected".
_GROUPS = tuple(dict.fromkeys(t.group for t in SERVICE_TYPES.values() if t.group))


@routes.get("/posyandu", roles=READERS)
async def posyandu(request: web.Request) -> web.Response:
    counted = await request.app[progress.PROGRESS].latest(request.app[STORE])
    villages = counted.posyandu
    total = VillagePosyandu(report=MonthlyReport(counted.month))
    for figures in villages.values():
        total.registers.update(figures.registers)
        total.report.by_spm.update(figures.report.by_spm)
        total.report.flags.update(figures.report.flags)
        total.report.services += figures.report.services
        total.report.referrals += figures.report.referrals
    return render(
        request, "posyandu.html", villages=villages, total=total, month=counted.month,
        counted_ms=counted.at_ms, registers=REGISTERS, groups=_GROUPS, spm=SPM_FIELDS,
        flags=list(Flag),
    )  # fmt: skip
