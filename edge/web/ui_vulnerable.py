"""The vulnerable-group registers (kelompok rentan) on the box (``docs/posyandu.md``):
every register with its counts, and each register's people by RT/RW, a page at a time
and printable whole; the spreadsheet download is in :mod:`edge.web.ui_export`.

The rules are :mod:`protocol.vulnerable`'s; each page walks the village afresh
(:func:`edge.web.ui_registry.walk_village`), so the lists are always current.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from yarl import URL

from edge.web.app import CONFIG, STORE, local_today, render
from edge.web.lists import Paged, page_number, paged, pager_base, stream_page
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui_registry import HouseholdRow, over_village, places, walk_village
from protocol.entities import HOUSEHOLD, MEMBER
from protocol.schema import FieldSpec
from protocol.vulnerable import REGISTERS, Entry, Family, Register, Status, family_of, tally

__all__ = ["RegisterRow", "RegisterView", "register_view", "routes", "shown_value"]

routes = RouteTable()

#: The register page's "Keterangan" choices: code → label.
SHOWING = {
    "": "Semua",
    Status.IN.value: "Termasuk",
    Status.INCOMPLETE.value: "Belum lengkap",
}


@dataclass(frozen=True, slots=True)
class RegisterRow:
    """One row of a register: the household it lives in and why it is listed."""

    household: HouseholdRow
    entry: Entry


@dataclass
class RegisterView:
    """A register as the query selects it: its counts, the filter used, and its rows (one
    page of them on screen, all of them, as they are read, when printed)."""

    register: Register
    inside: int
    incomplete: int
    filters: dict[str, str]
    #: The RT/RW part of the filter as a query string (links back to the overview).
    place_query: str
    rts: list[str]
    rws: list[str]
    rows: Iterable[RegisterRow] = ()
    #: How many rows the filter lists, and the page shown (``None``: every row).
    listed: int = 0
    page: Paged[RegisterRow] | None = None

    @property
    def filter_query(self) -> str:
        """The whole filter as a query string (links between the page and its print)."""
        return URL.build(query={k: v for k, v in self.filters.items() if v}).query_string


def shown_value(spec: FieldSpec, row: RegisterRow) -> tuple[str, Any]:
    """A register's ``shows`` field for a row: the entity it belongs to (a household's or
    a member's field) and its value."""
    if HOUSEHOLD.fields.get(spec.name) is spec:
        return HOUSEHOLD.name, row.household.values.get(spec.name)
    person = row.entry.person
    return MEMBER.name, person.values.get(spec.name) if person is not None else None


def _place(request: web.Request) -> dict[str, str]:
    """The RT and RW the query asks for."""
    return {k: request.query.get(k, "").strip()[:3] for k in ("rt", "rw")}


def _families(
    households: Iterable[HouseholdRow], today: date
) -> Iterator[tuple[HouseholdRow, Family]]:
    for household in households:
        yield household, family_of(household.values, household.active, today)


def _rows(
    families: Iterable[tuple[HouseholdRow, Family]], register: Register, showing: str,
    counts: dict[str, int],
) -> Iterator[RegisterRow]:  # fmt: skip
    """The register's rows the "keterangan" filter ``showing`` keeps; ``counts`` counts
    every entry in (``inside``) or incomplete."""
    for household, family in families:
        for entry in register.entries(family):
            counts["inside" if entry.verdict.status is Status.IN else "incomplete"] += 1
            if not showing or entry.verdict.status.value == showing:
                yield RegisterRow(household, entry)


def _register(request: web.Request) -> tuple[Register, dict[str, str]]:
    """The register named in the path and the query's filter (RT, RW, "keterangan")."""
    register = REGISTERS.get(request.match_info["register"])
    if register is None:
        raise web.HTTPNotFound(text="Daftar kelompok rentan itu tidak ada.")
    showing = request.query.get("keterangan", "")
    return register, _place(request) | {"keterangan": showing if showing in SHOWING else ""}


async def register_view(request: web.Request, *, whole: bool = False) -> RegisterView:
    """The register named in the path, with the query's RT, RW and "keterangan" filter:
    the query's page of its rows, or every row when ``whole`` (a spreadsheet)."""
    register, filters = _register(request)
    store = request.app[STORE]
    today = local_today(request)
    counts = {"inside": 0, "incomplete": 0}
    page, size = (
        (1, sys.maxsize) if whole else (page_number(request), request.app[CONFIG].page_size)
    )
    found = await over_village(
        store,
        lambda households: paged(
            _rows(_families(households, today), register, filters["keterangan"], counts),
            page,
            size,
        ),
        rt=filters["rt"],
        rw=filters["rw"],
    )
    rts, rws = await store.read(places)
    return RegisterView(
        register, counts["inside"], counts["incomplete"], filters, _place_query(filters), rts,
        rws, found.items, found.total, None if whole else found,
    )  # fmt: skip


def _place_query(filters: dict[str, str]) -> str:
    return URL.build(query={k: filters[k] for k in ("rt", "rw") if filters[k]}).query_string


@routes.get("/kelompok-rentan", roles=ALL_ROLES, summary="Vulnerable-group registers: counts")
async def overview(request: web.Request) -> web.Response:
    place = _place(request)
    today = local_today(request)
    store = request.app[STORE]

    def count(households: Iterator[HouseholdRow]) -> tuple[int, dict[str, tuple[int, int]]]:
        counts = dict.fromkeys(REGISTERS, (0, 0))
        seen = 0
        for _, family in _families(households, today):
            seen += 1
            for code, register in REGISTERS.items():
                inside, incomplete = tally(register, (family,))
                counts[code] = (counts[code][0] + inside, counts[code][1] + incomplete)
        return seen, counts

    households, counts = await over_village(store, count, **place)
    rts, rws = await store.read(places)
    return render(
        request, "kelompok_rentan.html", registers=REGISTERS, counts=counts,
        households=households, place_query=_place_query(place), rts=rts, rws=rws, **place,
    )  # fmt: skip


@routes.get(
    "/kelompok-rentan/{register}",
    roles=ALL_ROLES,
    summary="One vulnerable-group register by RT/RW, a page at a time (masked NIK)",
)
async def register_page(request: web.Request) -> web.Response:
    view = await register_view(request)
    return render(
        request, "kelompok_rentan_daftar.html", view=view, showing=SHOWING,
        today=local_today(request), shown_value=shown_value, base=pager_base(request),
    )  # fmt: skip


@routes.get(
    "/kelompok-rentan/{register}/cetak",
    roles=ALL_ROLES,
    summary="One vulnerable-group register by RT/RW, every row, printable (masked NIK)",
)
async def register_print(request: web.Request) -> web.StreamResponse:
    register, filters = _register(request)
    today = local_today(request)
    rts, rws = await request.app[STORE].read(places)

    def whole_register(conn: sa.Connection) -> dict[str, Any]:
        def rows(counts: dict[str, int]) -> Iterator[RegisterRow]:
            village = walk_village(conn, rt=filters["rt"], rw=filters["rw"])
            return _rows(_families(village, today), register, filters["keterangan"], counts)

        # Counted first (the heading says how many), listed while the page is sent.
        counts = {"inside": 0, "incomplete": 0}
        listed = sum(1 for _ in rows(counts))
        view = RegisterView(
            register, counts["inside"], counts["incomplete"], filters, _place_query(filters),
            rts, rws, rows({"inside": 0, "incomplete": 0}), listed,
        )  # fmt: skip
        return {"view": view, "showing": SHOWING, "today": today, "shown_value": shown_value}

    return await stream_page(request, "kelompok_rentan_daftar.html", whole_register)
