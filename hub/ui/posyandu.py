"""Posyandu: per village of the district, the vulnerable-group registers and a month's
services of its post (``docs/posyandu.md`` section 5), read-only. The registers and the
current month come from the background count the round's progress shares, a past month
(``?bulan=YYYY-MM``) is counted in the background when first viewed, its page saying
"sedang dihitung" and reloading itself until the count is there (:mod:`hub.posyandu`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from hub import progress
from hub.posyandu import PAST_MONTHS, VillagePosyandu
from hub.ui.base import CONFIG, READERS, STORE, RouteTable, export_list, render
from protocol.entities import SERVICE_TYPES, SPM_FIELDS
from protocol.posyandu import Flag, MonthlyReport, previous_month
from protocol.regions import village_label
from protocol.vulnerable import REGISTERS
from puskesos.export import Table

__all__ = ["routes"]

routes = RouteTable()

#: The registers a service type serves, as the columns of "served / expected".
_GROUPS = tuple(dict.fromkeys(t.group for t in SERVICE_TYPES.values() if t.group))
#: How many months, the current one included, the page offers to choose from.
MONTHS_OFFERED = 12
_MONTH_RE = re.compile(r"[0-9]{4}-[0-9]{2}", re.ASCII)
#: Seconds between the reloads of the "sedang dihitung" page of a past month.
COUNTING_REFRESH_S = 5


@dataclass(frozen=True, slots=True)
class _Figures:
    """What the page and its download show: each village's current registers with the
    report of ``month``, and when the registers were counted."""

    month: str
    villages: dict[str, VillagePosyandu]
    counted_ms: int
    #: The hub's current month, the newest one offered.
    current: str


async def _figures(request: web.Request, *, wait: bool) -> _Figures | None:
    """The figures of the month asked for (``bulan``, ``YYYY-MM``; the current month by
    default); a malformed or future month is refused (400) before anything is counted. A
    past month not counted yet is ``None`` (its count started) unless ``wait``."""
    store = request.app[STORE]
    today = datetime.fromtimestamp(store.wall() / 1000, ZoneInfo(request.app[CONFIG].timezone))
    current = today.strftime("%Y-%m")
    month = _asked_month(request.query.get("bulan", ""), current)
    counted = await request.app[progress.PROGRESS].latest(store)
    if month in ("", counted.month):
        return _Figures(counted.month, counted.posyandu, counted.at_ms, current)
    past = request.app[PAST_MONTHS]
    reports = past.latest(store, month, today=today.date())
    if reports is None:
        if not wait:
            return None
        reports = await past.count(store, month, today=today.date())
    villages = {
        village: VillagePosyandu(
            counted.posyandu.get(village, VillagePosyandu()).registers,
            reports[village].report if village in reports else MonthlyReport(month),
        )
        for village in sorted(counted.posyandu.keys() | reports.keys())
    }
    return _Figures(month, villages, counted.at_ms, current)


def _asked_month(asked: str, current: str) -> str:
    """``asked`` when it is a month up to ``current``; ``""`` when nothing was asked."""
    if not asked:
        return ""
    if not _is_month(asked):
        raise web.HTTPBadRequest(
            text=f"Bulan tidak dikenal. Tulis bulan sebagai TTTT-BB, misalnya {current}."
        )
    if asked > current:
        raise web.HTTPBadRequest(
            text=f"Bulan {asked} belum tiba. Pilih bulan ini ({current}) atau bulan sebelumnya."
        )
    return asked


def _is_month(text: str) -> bool:
    if _MONTH_RE.fullmatch(text) is None:
        return False
    try:
        date.fromisoformat(f"{text}-01")  # month 13, year 0000
    except ValueError:
        return False
    return True


def _months_offered(current: str) -> list[str]:
    months = [current]
    while len(months) < MONTHS_OFFERED:
        months.append(previous_month(months[-1]))
    return months


@routes.get("/posyandu", roles=READERS)
async def posyandu(request: web.Request) -> web.Response:
    shown = await _figures(request, wait=False)
    if shown is None:
        return render(
            request, "posyandu_dihitung.html", month=request.query["bulan"],
            refresh_s=COUNTING_REFRESH_S,
        )  # fmt: skip
    return render(
        request, "posyandu.html", villages=shown.villages,
        total=_total(shown.villages, shown.month), month=shown.month,
        months=_months_offered(shown.current), counted_ms=shown.counted_ms,
        registers=REGISTERS, groups=_GROUPS, spm=SPM_FIELDS, flags=list(Flag),
    )  # fmt: skip


@routes.downloads("/posyandu", roles=READERS)
async def posyandu_export(request: web.Request) -> web.StreamResponse:
    """The page's figures, one row per village and the district's total, as a
    spreadsheet: counts only, no person (a past month not counted yet is counted first)."""
    shown = await _figures(request, wait=True)
    assert shown is not None
    headers = [
        "Kode desa", "Desa",
        *(f"{r.title} ({r.unit})" for r in REGISTERS.values()),
        "Layanan", *SPM_FIELDS.values(),
        *(f"{REGISTERS[code].title} dilayani" for code in _GROUPS),
        *(f"{REGISTERS[code].title} sasaran" for code in _GROUPS),
        *(f"Tanda {f.value}" for f in Flag), "Rujukan",
    ]  # fmt: skip
    rows = [_row(code, village_label(code), village) for code, village in shown.villages.items()]
    rows.append(_row("", "Kabupaten/kota", _total(shown.villages, shown.month)))
    config = request.app[CONFIG]
    return await export_list(
        request, Table(f"Posyandu {shown.month}", headers, rows), list_name="posyandu",
        scope="-".join(filter(None, (config.district, shown.month))),
        filters={"bulan": shown.month}, full=None,
    )  # fmt: skip


def _row(code: str, name: str, village: VillagePosyandu) -> list[object]:
    report = village.report
    return [
        code, name,
        *(village.registers[register] for register in REGISTERS),
        report.services, *(report.by_spm[spm] for spm in SPM_FIELDS),
        *(report.groups.get(group, (0, 0))[0] for group in _GROUPS),
        *(report.groups.get(group, (0, 0))[1] for group in _GROUPS),
        *(report.flags[flag] for flag in Flag), report.referrals,
    ]  # fmt: skip


def _total(villages: dict[str, VillagePosyandu], month: str) -> VillagePosyandu:
    """The district's sum of the villages' figures (served / expected per group too)."""
    total = VillagePosyandu(report=MonthlyReport(month))
    for village in villages.values():
        total.registers.update(village.registers)
        total.report.by_spm.update(village.report.by_spm)
        total.report.flags.update(village.report.flags)
        total.report.services += village.report.services
        total.report.referrals += village.report.referrals
        for group, (served, expected) in village.report.groups.items():
            before = total.report.groups.get(group, (0, 0))
            total.report.groups[group] = (before[0] + served, before[1] + expected)
    return total
