"""The village's view of the registry (``docs/registry.md``, sections 3 and 4): which
households still lack variables the ranking needs (kelengkapan), and who receives which
programme (penerima bantuan), by RT/RW, printable. Both read the whole village once
(a few thousand households): what the district imported and what the village typed alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from edge import db
from edge.store import Store
from edge.web.app import CONFIG, STORE, local_today, render
from edge.web.routing import ALL_ROLES, RouteTable
from protocol.entities import HOUSEHOLD, MEMBER, RECORD_ID_KEY, VISIT
from protocol.registry import missing_fields
from protocol.rounds import Round, round_of
from protocol.vulnerable import is_active
from puskesos.sqljson import incomplete_household, json_fields

__all__ = [
    "HouseholdRow",
    "Progress",
    "RoundProgress",
    "current_round",
    "missing_labels",
    "round_progress",
    "routes",
    "village_households",
]

routes = RouteTable()

_PROGRAMMES = dict(zip(HOUSEHOLD.fields["programmes"].choices,
                       HOUSEHOLD.fields["programmes"].choice_labels, strict=True))  # fmt: skip


@dataclass
class HouseholdRow:
    """A household as the registry pages list it: who heads it, where, what it receives,
    and which ranking variables it and its active members still lack (field labels)."""

    id: str
    values: dict[str, Any]
    head: str = ""
    head_nik: str = ""
    members: int = 0
    missing: list[str] = field(default_factory=list)
    #: The active members' values with their ids under ``RECORD_ID_KEY`` (the
    #: vulnerable-group registers and the Posyandu pages read them).
    active: list[dict[str, Any]] = field(default_factory=list)
    #: Field visits, the latest first.
    visits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rt_rw(self) -> str:
        return f"{self.values.get('rt') or '-'}/{self.values.get('rw') or '-'}"

    @property
    def last_visit(self) -> dict[str, Any] | None:
        return self.visits[0] if self.visits else None

    def visited_in(self, period: Round) -> bool:
        """Whether a visit is dated inside ``period`` (a verification round)."""
        return any(date.fromisoformat(v["visit_date"]) in period for v in self.visits)

    @property
    def field_check(self) -> bool:
        """The district marked it "periksa lapangan" and nobody visited it since."""
        if self.values.get("review_status") != "periksa_lapangan":
            return False
        marked = str(self.values.get("review_date") or "")
        return not any(str(v["visit_date"]) >= marked for v in self.visits)


def missing_labels(household: Mapping[str, Any], members: Iterable[Mapping[str, Any]]) -> list[str]:
    """What a household and its active members still lack for the ranking, as labels."""
    labels = [HOUSEHOLD.fields[n].label for n in missing_fields(HOUSEHOLD.name, household)]
    for member in members:
        if is_active(member):
            name = member.get("name") or "anggota"
            labels += [
                f"{MEMBER.fields[n].label} ({name})" for n in missing_fields(MEMBER.name, member)
            ]
    return labels


def _scan(conn: sa.Connection) -> list[HouseholdRow]:
    r = db.records
    rows = conn.execute(
        sa.select(r.c.id, r.c.entity, r.c.household_id, r.c.data).where(
            r.c.entity.in_((HOUSEHOLD.name, MEMBER.name, VISIT.name)), r.c.deleted.is_(False)
        )
    ).all()
    households: dict[str, HouseholdRow] = {}
    members: dict[str, list[dict[str, Any]]] = {}
    visits: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        values = json.loads(row.data)
        if row.entity == HOUSEHOLD.name:
            households[row.id] = HouseholdRow(row.id, values)
        elif row.entity == VISIT.name and row.household_id:
            visits.setdefault(row.household_id, []).append(values)
        elif row.household_id:
            values[RECORD_ID_KEY] = row.id  # the Posyandu pages record services for it
            members.setdefault(row.household_id, []).append(values)
    for household in households.values():
        household.visits = sorted(
            visits.get(household.id, []), key=lambda v: str(v["visit_date"]), reverse=True
        )
        own = members.get(household.id, [])
        active = [m for m in own if is_active(m)]
        household.active = active
        household.members = len(active)
        head = next((m for m in active if m.get("relation_to_head") == "kepala_keluarga"), {})
        household.head = str(head.get("name") or "")
        household.head_nik = str(head.get("nik") or "")
        household.missing = missing_labels(household.values, active)
    return sorted(households.values(), key=lambda h: (h.rt_rw, h.head, h.id))


async def village_households(store: Store) -> list[HouseholdRow]:
    """Every household of the box with its head, active members and what it still lacks."""
    return await store.read(_scan)


@dataclass
class Progress:
    """How far a set of households is in the round."""

    total: int = 0
    visited: int = 0
    incomplete: int = 0
    not_found: int = 0


@dataclass
class RoundProgress:
    """The village's progress in ``period``, and the same per RT/RW."""

    period: Round
    village: Progress = field(default_factory=Progress)
    by_rt_rw: dict[str, Progress] = field(default_factory=dict)


def current_round(request: web.Request) -> Round:
    """The round today (the box's best idea of today) falls in."""
    return round_of(local_today(request), request.app[CONFIG].round_months)


def _count_round(conn: sa.Connection, period: Round) -> RoundProgress:
    r = db.records
    visit = r.alias("visit")
    visit_date = json_fields(visit.c.data, "sqlite")("visit_date")
    visited = (
        sa.select(sa.literal(1))
        .where(
            visit.c.household_id == r.c.id,
            visit.c.entity == VISIT.name,
            visit.c.deleted.is_(False),
            visit_date.between(period.start.isoformat(), period.end.isoformat()),
        )
        .exists()
    )
    # One parse of each household's JSON for both: ["001", "002"].
    place = sa.func.json_extract(r.c.data, "$.rt", "$.rw")
    rows = conn.execute(
        sa.select(
            place,
            sa.func.count(),
            sa.func.sum(sa.case((visited, 1), else_=0)),
            sa.func.sum(sa.case((incomplete_household(r), 1), else_=0)),
            sa.func.sum(sa.case((r.c.status == "tidak_ditemukan", 1), else_=0)),
        )
        .where(r.c.entity == HOUSEHOLD.name, r.c.deleted.is_(False))
        .group_by(place)
    ).all()
    result = RoundProgress(period)
    village = result.village
    for where, *counts in rows:
        rt_code, rw_code = json.loads(where)
        key = f"{rt_code or '-'}/{rw_code or '-'}"
        here = result.by_rt_rw.setdefault(key, Progress())  # "" and null are one place
        for name, value in zip(("total", "visited", "incomplete", "not_found"), counts,
                               strict=True):  # fmt: skip
            setattr(here, name, getattr(here, name) + int(value or 0))
            setattr(village, name, getattr(village, name) + int(value or 0))
    result.by_rt_rw = dict(sorted(result.by_rt_rw.items()))
    return result


async def round_progress(store: Store, period: Round) -> RoundProgress:
    """Visited in ``period``, incomplete and not found, for the village and per RT/RW,
    counted in SQL from the ``lacking`` and ``status`` columns (Beranda shows it: a scan of
    the village's records took 424 ms for 5,000 households and doubled the process's
    memory)."""
    return await store.read(lambda conn: _count_round(conn, period))


@routes.get("/kelengkapan", roles=ALL_ROLES, summary="Households still lacking ranking data")
async def completeness(request: web.Request) -> web.Response:
    households = await village_households(request.app[STORE])
    rt = request.query.get("rt", "").strip()[:3]
    incomplete = [h for h in households if h.missing and (not rt or h.values.get("rt") == rt)]
    return render(
        request,
        "kelengkapan.html",
        households=incomplete,
        total=len(households),
        incomplete=sum(1 for h in households if h.missing),
        rt=rt,
        rts=sorted({str(h.values.get("rt")) for h in households if h.values.get("rt")}),
    )


@routes.get("/penerima-bantuan", roles=ALL_ROLES, summary="Households receiving a programme")
async def beneficiaries(request: web.Request) -> web.Response:
    households = await village_households(request.app[STORE])
    programme = request.query.get("program", "")
    if programme not in _PROGRAMMES:
        programme = ""
    receiving = [
        h
        for h in households
        if h.values.get("programmes")
        and (not programme or programme in (h.values.get("programmes") or []))
    ]
    counts = {
        code: sum(1 for h in households if code in (h.values.get("programmes") or []))
        for code in _PROGRAMMES
    }
    return render(
        request,
        "penerima_bantuan.html",
        households=receiving,
        programme=programme,
        programmes=_PROGRAMMES,
        counts=counts,
    )
