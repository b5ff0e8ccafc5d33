"""Posyandu: per village of the district, the vulnerable-group registers and the month's
services of its post (``docs/posyandu.md`` section 5), read-only, from the background
count the round's progress shares (:mod:`hub.posyandu`)."""

from __future__ import annotations

from aiohttp import web

from hub import progress
from hub.posyandu import VillagePosyandu
from hub.ui.base import CONFIG, READERS, STORE, RouteTable, export_list, render
from protocol.entities import SERVICE_TYPES, SPM_FIELDS
from protocol.posyandu import Flag, MonthlyReport
from protocol.regions import village_label
from protocol.vulnerable import REGISTERS
from puskesos.export import Table

__all__ = ["routes"]

routes = RouteTable()

#: The registers a service type serves, as the columns of "served / expected".
_GROUPS = tuple(dict.fromkeys(t.group for t in SERVICE_TYPES.values() if t.group))


@routes.get("/posyandu", roles=READERS)
async def posyandu(request: web.Request) -> web.Response:
    counted = await request.app[progress.PROGRESS].latest(request.app[STORE])
    villages = counted.posyandu
    return render(
        request, "posyandu.html", villages=villages, total=_total(villages, counted.month),
        month=counted.month, counted_ms=counted.at_ms, registers=REGISTERS, groups=_GROUPS,
        spm=SPM_FIELDS, flags=list(Flag),
    )  # fmt: skip


@routes.downloads("/posyandu", roles=READERS)
async def posyandu_export(request: web.Request) -> web.StreamResponse:
    """The page's figures, one row per village and the district's total, as a
    spreadsheet: counts only, no person."""
    counted = await request.app[progress.PROGRESS].latest(request.app[STORE])
    headers = [
        "Kode desa", "Desa",
        *(f"{r.title} ({r.unit})" for r in REGISTERS.values()),
        "Layanan", *SPM_FIELDS.values(),
        *(f"{REGISTERS[code].title} dilayani" for code in _GROUPS),
        *(f"{REGISTERS[code].title} sasaran" for code in _GROUPS),
        *(f"Tanda {f.value}" for f in Flag), "Rujukan",
    ]  # fmt: skip
    rows = [_row(code, village_label(code), figures) for code, figures in counted.posyandu.items()]
    rows.append(_row("", "Kabupaten/kota", _total(counted.posyandu, counted.month)))
    config = request.app[CONFIG]
    return await export_list(
        request, Table(f"Posyandu {counted.month}", headers, rows), list_name="posyandu",
        scope="-".join(filter(None, (config.district, counted.month))),
        filters={"bulan": counted.month}, full=None,
    )  # fmt: skip


def _row(code: str, name: str, figures: VillagePosyandu) -> list[object]:
    report = figures.report
    return [
        code, name,
        *(figures.registers[register] for register in REGISTERS),
        report.services, *(report.by_spm[spm] for spm in SPM_FIELDS),
        *(report.groups.get(group, (0, 0))[0] for group in _GROUPS),
        *(report.groups.get(group, (0, 0))[1] for group in _GROUPS),
        *(report.flags[flag] for flag in Flag), report.referrals,
    ]  # fmt: skip


def _total(villages: dict[str, VillagePosyandu], month: str) -> VillagePosyandu:
    """The district's sum of the villages' figures (served / expected per group too)."""
    total = VillagePosyandu(report=MonthlyReport(month))
    for figures in villages.values():
        total.registers.update(figures.registers)
        total.report.by_spm.update(figures.report.by_spm)
        total.report.flags.update(figures.report.flags)
        total.report.services += figures.report.services
        total.report.referrals += figures.report.referrals
        for group, (served, expected) in figures.report.groups.items():
            before = total.report.groups.get(group, (0, 0))
            total.report.groups[group] = (before[0] + served, before[1] + expected)
    return total
