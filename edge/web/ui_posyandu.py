"""The Posyandu's day on the box (``docs/posyandu.md``): the "hari buka Posyandu" screen
(each group's expected members with what they received this month and their flags) and
the form that records a service in a few taps, then returns to the member's row.

Groups are the vulnerable-group registers (:mod:`protocol.vulnerable`) that a service type
serves; each page walks the village afresh (:func:`walk_village`), counts every group and
keeps only the members it shows, with their services of the chosen month and the two
before it (what the 2T flag needs).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from yarl import URL

from edge import db, services
from edge.store import Store
from edge.web.app import CONFIG, STORE, USER, actor, local_today, render
from edge.web.forms import editable, messages_by_input, parse, raw_from_post, raw_from_values
from edge.web.lists import Paged, page_number, pager_base
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui import flash, record_or_404
from edge.web.ui_registry import Fields, HouseholdRow, places, walk_village
from protocol.entities import LAYANAN, RECORD_ID_KEY, SERVICE_TYPES, SPM_FIELDS
from protocol.posyandu import (
    WEIGHING,
    Flag,
    MonthlyReport,
    age_in_months,
    flags_in,
    month_of,
    monthly_report,
    previous_month,
)
from protocol.validate import as_date
from protocol.vulnerable import REGISTERS, Person, Status, family_of

__all__ = [
    "GROUPS",
    "MBG_GROUPS",
    "Attendee",
    "MbgList",
    "MonthView",
    "ServiceFields",
    "age_text",
    "mbg_list",
    "month_view",
    "posyandu_day",
    "routes",
    "services_between",
]

routes = RouteTable()

#: The registers the post serves, in the order of the service types that serve them.
GROUPS = tuple(dict.fromkeys(t.group for t in SERVICE_TYPES.values() if t.group))
#: The service a group's "Catat" button offers first.
FIRST_TYPE = {
    code: next(t.code for t in SERVICE_TYPES.values() if t.group == code) for code in GROUPS
}
_FORM_FIELDS = editable(
    LAYANAN, "service_type", "weight_kg", "height_cm", "muac_cm", "service_date", "officer",
    "officer_role", "referred", "notes",
)  # fmt: skip


@dataclass
class Attendee:
    """A member expected at the post: their household, their services from the first
    month read on, and the month the screen shows."""

    household: HouseholdRow
    person: Person
    services: list[ServiceFields]
    period: str

    @property
    def id(self) -> str:
        return str(self.person.values[RECORD_ID_KEY])

    @property
    def month(self) -> list[ServiceFields]:
        """The month's services, the latest first."""
        found = [s for s in self.services if month_of(s.get("service_date")) == self.period]
        return sorted(found, key=lambda s: str(s.get("service_date")), reverse=True)

    @property
    def flags(self) -> tuple[Flag, ...]:
        return flags_in(self.services, self.period)


@dataclass
class PosyanduDay:
    """The registers the post serves on one day (in an RT/RW): each group's counts (people
    served this month, people expected), and the expected members of the groups asked for
    (a page of them, or all)."""

    day: date
    period: str
    attendees: dict[str, Paged[Attendee]]
    counts: dict[str, tuple[int, int]]
    rt: str
    rw: str
    rts: list[str]
    rws: list[str]


def last_weighings(conn: sa.Connection, first_day: str) -> dict[str, tuple[str, float]]:
    """Member id → (date, kg) of their latest weighing dated ``first_day`` or later. Only
    these three values are read, so a year of services stays small in memory."""
    r = db.records
    value = functools.partial(sa.func.json_extract, r.c.data)
    day = value("$.service_date")
    rows = conn.execute(
        sa.select(value("$.member_id"), day, value("$.weight_kg")).where(
            r.c.entity == LAYANAN.name,
            r.c.deleted.is_(False),
            value("$.service_type") == WEIGHING,
            day >= first_day,
            value("$.weight_kg").is_not(None),
        )
    )
    found: dict[str, tuple[str, float]] = {}
    for member, when, kg in rows:
        if member not in found or when >= found[member][0]:
            found[member] = (when, kg)
    return found


class ServiceFields(Fields):
    """What the Posyandu pages, flags and monthly report read of a service."""

    __slots__ = (
        "member_id",
        "muac_cm",
        "referred",
        "service_date",
        "service_type",
        "spm_field",
        "weight_kg",
    )  # fmt: skip


def services_between(
    conn: sa.Connection, first: str, last: str, households: Collection[str] | None = None
) -> Iterator[ServiceFields]:
    """The services of months ``first`` to ``last`` (``YYYY-MM``), of ``households`` when
    given, else the village's, as they are read; withdrawn ones left out."""
    r = db.records
    day = sa.func.json_extract(r.c.data, "$.service_date")
    query = sa.select(
        sa.func.json_extract(r.c.data, *(f"$.{name}" for name in ServiceFields.__slots__))
    ).where(
        r.c.entity == LAYANAN.name,
        r.c.deleted.is_(False),
        day.between(f"{first}-01", f"{last}-31"),
    )
    if households is None:
        queries = [query]
    else:
        ids = list(households)
        queries = [
            query.where(r.c.household_id.in_(ids[start : start + _HOUSEHOLDS_PER_QUERY]))
            for start in range(0, len(ids), _HOUSEHOLDS_PER_QUERY)
        ]
    for each in queries:
        for (values,) in conn.execute(each):
            yield ServiceFields(json.loads(values))


#: Households whose services one query reads (SQLite binds each id as a parameter).
_HOUSEHOLDS_PER_QUERY = 500


def _served(conn: sa.Connection, period: str) -> dict[str, set[str]]:
    """Group → the members who had a service of a type for that group in month ``period``
    (two values read per service)."""
    r = db.records
    value = functools.partial(sa.func.json_extract, r.c.data)
    rows = conn.execute(
        sa.select(value("$.member_id"), value("$.service_type")).where(
            r.c.entity == LAYANAN.name,
            r.c.deleted.is_(False),
            value("$.service_date").between(f"{period}-01", f"{period}-31"),
        )
    )
    served: dict[str, set[str]] = {}
    for member, code in rows:
        kind = SERVICE_TYPES.get(str(code))
        if kind is not None and kind.group:
            served.setdefault(kind.group, set()).add(str(member))
    return served


def _expected(
    households: Iterable[HouseholdRow], day: date
) -> Iterator[tuple[str, HouseholdRow, Person]]:
    """Each group's expected members on ``day`` (its register's members), as (group,
    household, person), household by household."""
    for household in households:
        family = family_of(household.values, household.active, day)
        for code in GROUPS:
            for entry in REGISTERS[code].entries(family):
                if entry.verdict.status is Status.IN and entry.person is not None:
                    yield code, household, entry.person


def _months_back(period: str, months: int) -> str:
    """The first of ``months`` months ending with ``period`` (``YYYY-MM``)."""
    for _ in range(months - 1):
        period = previous_month(period)
    return period


def _day(
    conn: sa.Connection, day: date, rt: str, rw: str, shown: Mapping[str, tuple[int, int]]
) -> PosyanduDay:
    """:func:`posyandu_day` in one read transaction."""
    period = day.strftime("%Y-%m")
    served = _served(conn, period)
    counts = {code: (0, 0) for code in GROUPS}
    kept: dict[str, list[tuple[HouseholdRow, Person]]] = {code: [] for code in shown}
    trimmed: HouseholdRow | None = None
    for code, household, person in _expected(walk_village(conn, rt=rt, rw=rw), day):
        done, expected = counts[code]
        if code in shown:
            page, size = shown[code]
            if (page - 1) * size <= expected < page * size:
                # Of the household, only what a row shows (its place and address): the
                # MBG list keeps every target, not their households' members and visits.
                if trimmed is None or trimmed.id != household.id:
                    trimmed = HouseholdRow(household.id, household.values)
                kept[code].append((trimmed, person))
        done += str(person.values[RECORD_ID_KEY]) in served.get(code, ())
        counts[code] = (done, expected + 1)
    households = {household.id for listed in kept.values() for household, _ in listed}
    by_member: dict[str, list[ServiceFields]] = {}
    # The month and the two before it: what the 2T flag needs.
    for service in services_between(conn, _months_back(period, 3), period, households):
        by_member.setdefault(str(service.get("member_id")), []).append(service)
    attendees = {
        code: Paged(
            [
                Attendee(h, p, by_member.get(str(p.values[RECORD_ID_KEY]), []), period)
                for h, p in kept[code]
            ],
            counts[code][1],
            *shown[code],
        )
        for code in shown
    }
    rts, rws = places(conn)
    return PosyanduDay(day, period, attendees, counts, rt, rw, rts, rws)


async def posyandu_day(
    store: Store, day: date, shown: Mapping[str, tuple[int, int]], *, rt: str = "", rw: str = ""
) -> PosyanduDay:
    """Every group's counts on ``day`` (its register's members in the RT/RW asked for, and
    those of them served in ``day``'s month), and the expected members of the groups
    ``shown`` (group → (page, size)) with their services of ``day``'s month and the two
    before it (2T needs three months)."""
    return await store.read(lambda conn: _day(conn, day, rt, rw, shown))


def _chosen_day(request: web.Request, query: Any) -> date:
    """The day asked for (``tanggal``), else the box's today."""
    return as_date(str(query.get("tanggal", ""))) or local_today(request)


def _back(day: date, group: str, place: dict[str, str], member: str = "") -> str:
    """The screen of that day and group (and RT/RW, and page), at the member's row."""
    query = {"tanggal": day.isoformat(), "kelompok": group} | {k: v for k, v in place.items() if v}
    url = URL("/posyandu").with_query(query)
    return str(url.with_fragment(f"anggota-{member}") if member else url)


def _place(query: Any) -> dict[str, str]:
    return {"rt": str(query.get("rt", "")).strip()[:3], "rw": str(query.get("rw", "")).strip()[:3]}


def _where(query: Any) -> dict[str, str]:
    """The RT/RW and the page of the screen a form was opened from (to return to it)."""
    page = str(query.get("page", ""))
    return _place(query) | {"page": page if page.isascii() and page.isdigit() else ""}


@routes.get(
    "/posyandu", roles=ALL_ROLES, summary="Hari buka Posyandu: each group's expected members"
)
async def day_page(request: web.Request) -> web.Response:
    group = request.query.get("kelompok", GROUPS[0])
    if group not in GROUPS:
        group = GROUPS[0]
    place = _place(request.query)
    view = await posyandu_day(
        request.app[STORE], _chosen_day(request, request.query),
        {group: (page_number(request), request.app[CONFIG].page_size)}, **place,
    )  # fmt: skip
    return render(
        request, "posyandu.html", view=view, group=group, registers=REGISTERS, groups=GROUPS,
        types=SERVICE_TYPES, notice=flash(request), back=_back, base=pager_base(request),
    )  # fmt: skip


def _form(
    request: web.Request, member: Any, raw: dict[str, Any], context: dict[str, Any],
    issues: Sequence[Any] = (), status: int = 200,
) -> web.Response:  # fmt: skip
    kind = SERVICE_TYPES.get(str(raw.get("service_type")))
    shown = [
        spec for spec in _FORM_FIELDS
        if spec.name not in ("weight_kg", "height_cm", "muac_cm")
        or (kind is not None and spec.name in kind.measures)
        or raw.get(spec.name)
    ]  # fmt: skip
    focus = next((s.name for s in shown if s.name in ("weight_kg", "muac_cm")), "service_type")
    return render(
        request, "layanan_form.html", status, member=member, fields=shown, form=raw,
        errors=messages_by_input(issues), issues=list(issues), focus=focus,
        can_confirm=bool(issues) and all(i.level == "warning" for i in issues), **context,
    )  # fmt: skip


def _context(request: web.Request, query: Any, member_id: str) -> dict[str, Any]:
    group = str(query.get("kelompok", ""))
    group = group if group in GROUPS else GROUPS[0]
    day, place = _chosen_day(request, query), _where(query)
    return {"day": day, "group": group, "place": place, "back": _back(day, group, place, member_id)}


@routes.get("/posyandu/layanan/{member}", roles=ALL_ROLES, summary="Form: record a service")
async def service_new(request: web.Request) -> web.Response:
    member = await record_or_404(request.app[STORE], "member", request.match_info["member"])
    context = _context(request, request.query, member.id)
    kind = request.query.get("jenis", FIRST_TYPE[context["group"]])
    user = request[USER]
    raw = raw_from_values(
        _FORM_FIELDS,
        {
            "service_type": kind if kind in SERVICE_TYPES else None,
            "service_date": context["day"].isoformat(),
            "officer": user.full_name or user.username,
            "officer_role": "kader",
        },
    )
    return _form(request, member, raw, context)


@routes.post("/posyandu/layanan/{member}", roles=ALL_ROLES, summary="Record a Posyandu service")
async def service_create(request: web.Request) -> web.Response:
    store = request.app[STORE]
    member = await record_or_404(store, "member", request.match_info["member"])
    post = await request.post()
    context = _context(request, post, member.id)
    raw = raw_from_post(post, _FORM_FIELDS)
    values = {k: v for k, v in parse(_FORM_FIELDS, raw).items() if v is not None and v is not False}
    values |= {"member_id": member.id, "household_id": str(member.get("household_id"))}
    outcome = await services.create_record(
        store, actor(request), LAYANAN.name, values, today=local_today(request),
        confirm_warnings=post.get("confirm_warnings") == "1",
    )  # fmt: skip
    if outcome.saved:
        target = URL(context["back"])
        raise web.HTTPSeeOther(str(target.update_query(pesan="layanan")))
    return _form(
        request, member, raw, context, outcome.issues, 200 if outcome.needs_confirmation else 422
    )


#: The MBG "3B" targets (ibu hamil, ibu menyusui, balita): register code → how lists name it.
MBG_GROUPS = {"ibu-hamil": "Ibu hamil", "ibu-menyusui": "Ibu menyusui", "balita": "Balita"}
#: How far back the MBG list looks for a child's last weighing.
MBG_MONTHS = 12


@dataclass
class MbgList:
    """The MBG 3B targets as the query selects them (RT, RW, which target group), with
    each member's latest weighing (date, kg) of the last :data:`MBG_MONTHS` months."""

    day: PosyanduDay
    rows: list[tuple[str, Attendee]]
    filters: dict[str, str]
    weighings: dict[str, tuple[str, float]]


def age_text(attendee: Attendee, day: date) -> str:
    """A target's age as the meal provider reads it: months for a balita, else years."""
    born = as_date(attendee.person.values.get("birth_date"))
    if born is None:
        return ""
    if attendee.person.age is not None and attendee.person.age < 5:
        return f"{age_in_months(born, day)} bulan"
    return f"{attendee.person.age} tahun"


async def mbg_list(request: web.Request) -> MbgList:
    """The MBG 3B targets of the village on the box's today, filtered by the query."""
    place = _place(request.query)
    chosen = request.query.get("sasaran", "")
    chosen = chosen if chosen in MBG_GROUPS else ""
    store = request.app[STORE]
    today = local_today(request)
    shown = {code: (1, sys.maxsize) for code in MBG_GROUPS if not chosen or code == chosen}
    day = await posyandu_day(store, today, shown, **place)
    since = _months_back(today.strftime("%Y-%m"), MBG_MONTHS) + "-01"
    weighings = await store.read(lambda conn: last_weighings(conn, since))
    rows = [(code, attendee) for code in shown for attendee in day.attendees[code].items]
    return MbgList(day, rows, place | {"sasaran": chosen}, weighings)


@routes.get(
    "/posyandu/mbg", roles=ALL_ROLES, summary="MBG 3B targets by RT/RW for the meal provider"
)
async def mbg_page(request: web.Request) -> web.Response:
    found = await mbg_list(request)
    return render(
        request, "posyandu_mbg.html", mbg=found, groups=MBG_GROUPS, age_text=age_text,
    )  # fmt: skip


@dataclass
class MonthView:
    """The post's monthly report as its page and spreadsheet show it."""

    report: MonthlyReport
    #: The day the registers are read on: the month's last day, or today in this month.
    day: date


async def month_view(request: web.Request) -> MonthView:
    """The report of the month asked for (``bulan``, ``YYYY-MM``; this month by default)."""
    today = local_today(request)
    asked = str(request.query.get("bulan", ""))
    first = as_date(f"{asked}-01") if asked else None
    first = first or today.replace(day=1)
    following = (first + timedelta(days=31)).replace(day=1)
    day = min(today, following - timedelta(days=1))
    period = first.strftime("%Y-%m")
    day = max(day, first)  # a month ahead of the box's today is read on its first day
    return MonthView(await request.app[STORE].read(lambda conn: _report(conn, day, period)), day)


def _report(conn: sa.Connection, day: date, period: str) -> MonthlyReport:
    """Month ``period``'s report, its registers read on ``day``: the month's services and
    the two months before it (the 2T flag), and each group's expected member ids."""
    expected: dict[str, list[str]] = {code: [] for code in GROUPS}
    for code, _, person in _expected(walk_village(conn), day):
        expected[code].append(str(person.values[RECORD_ID_KEY]))
    services = services_between(conn, _months_back(period, 3), period)
    return monthly_report(services, period, expected)


@routes.get("/posyandu/laporan", roles=ALL_ROLES, summary="The post's monthly report, printable")
async def report_page(request: web.Request) -> web.Response:
    return render(
        request, "posyandu_laporan.html", month=await month_view(request), spm=SPM_FIELDS,
        types=SERVICE_TYPES, registers=REGISTERS, groups=GROUPS, flags=list(Flag),
    )  # fmt: skip
