"""The vulnerable-group registers (kelompok rentan) on the box (``docs/posyandu.md``):
every register with its counts, and each register's people by RT/RW, printable; the
spreadsheet download is in :mod:`edge.web.ui_export`.

The rules are :mod:`protocol.vulnerable`'s; the village is read once per page
(:func:`edge.web.ui_registry.village_households`), so the lists are always current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from edge.web.app import STORE, local_today, render
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui_registry import HouseholdRow, village_households
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
    """A register as the query selects it: its rows, counts and the filter used."""

    register: Register
    rows: list[RegisterRow]
    inside: int
    incomplete: int
    filters: dict[str, str]
    #: The RT/RW part of the filter as a query string (links back to the overview).
    place_query: str
    rts: list[str]
    rws: list[str]


def shown_value(spec: FieldSpec, row: RegisterRow) -> tuple[str, Any]:
    """A register's ``shows`` field for a row: the entity it belongs to (a household's or
    a member's field) and its value."""
    if HOUSEHOLD.fields.get(spec.name) is spec:
        return HOUSEHOLD.name, row.household.values.get(spec.name)
    person = row.entry.person
    return MEMBER.name, person.values.get(spec.name) if person is not None else None


async def _families(
    request: web.Request,
) -> tuple[list[tuple[HouseholdRow, Family]], dict[str, Any]]:
    """The households of the RT/RW asked for, each with its family on the box's today,
    and the place filter (``rt``, ``rw``, and every RT and RW of the village)."""
    households = await village_households(request.app[STORE])
    rt = request.query.get("rt", "").strip()[:3]
    rw = request.query.get("rw", "").strip()[:3]
    today = local_today(request)
    chosen = [
        (h, family_of(h.values, h.active, today))
        for h in households
        if (not rt or h.values.get("rt") == rt) and (not rw or h.values.get("rw") == rw)
    ]
    place = {
        "rt": rt,
        "rw": rw,
        "place_query": URL.build(
            query={k: v for k, v in (("rt", rt), ("rw", rw)) if v}
        ).query_string,
        "rts": sorted({str(h.values["rt"]) for h in households if h.values.get("rt")}),
        "rws": sorted({str(h.values["rw"]) for h in households if h.values.get("rw")}),
    }
    return chosen, place


async def register_view(request: web.Request) -> RegisterView:
    """The register named in the path, with the query's RT, RW and "keterangan" filter."""
    register = REGISTERS.get(request.match_info["register"])
    if register is None:
        raise web.HTTPNotFound(text="Daftar kelompok rentan itu tidak ada.")
    families, place = await _families(request)
    showing = request.query.get("keterangan", "")
    if showing not in SHOWING:
        showing = ""
    rows, inside, incomplete = [], 0, 0
    for household, family in families:
        for entry in register.entries(family):
            if entry.verdict.status is Status.IN:
                inside += 1
            else:
                incomplete += 1
            if not showing or entry.verdict.status.value == showing:
                rows.append(RegisterRow(household, entry))
    filters = {"rt": place["rt"], "rw": place["rw"], "keterangan": showing}
    return RegisterView(
        register, rows, inside, incomplete, filters, place["place_query"], place["rts"],
        place["rws"],
    )  # fmt: skip


@routes.get("/kelompok-rentan", roles=ALL_ROLES, summary="Vulnerable-group registers: counts")
async def overview(request: web.Request) -> web.Response:
    families, place = await _families(request)
    people = [family for _, family in families]
    counts = {code: tally(register, people) for code, register in REGISTERS.items()}
    return render(
        request, "kelompok_rentan.html", registers=REGISTERS, counts=counts,
        households=len(people), **place,
    )  # fmt: skip


@routes.get(
    "/kelompok-rentan/{register}",
    roles=ALL_ROLES,
    summary="One vulnerable-group register by RT/RW, printable (masked NIK)",
)
async def register_page(request: web.Request) -> web.Response:
    view = await register_view(request)
    return render(
        request, "kelompok_rentan_daftar.html", view=view, showing=SHOWING,
        today=local_today(request), shown_value=shown_value,
    )  # fmt: skip
