"""The village's view of the registry (``docs/registry.md``, sections 3 and 4): which
households still lack variables the ranking needs (kelengkapan), and who receives which
programme (penerima bantuan), by RT/RW, printable. Both read the whole village once
(a few thousand households): what the district imported and what the village typed alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from edge import db
from edge.store import Store
from edge.web.app import STORE, render
from edge.web.routing import ALL_ROLES, RouteTable
from protocol.entities import HOUSEHOLD, MEMBER
from protocol.registry import missing_fields

__all__ = ["HouseholdRow", "missing_labels", "routes", "village_households"]

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
    members: int = 0
    missing: list[str] = field(default_factory=list)

    @property
    def rt_rw(self) -> str:
        return f"{self.values.get('rt') or '-'}/{self.values.get('rw') or '-'}"


def missing_labels(household: Mapping[str, Any], members: Iterable[Mapping[str, Any]]) -> list[str]:
    """What a household and its active members still lack for the ranking, as labels."""
    labels = [HOUSEHOLD.fields[n].label for n in missing_fields(HOUSEHOLD.name, household)]
    for member in members:
        if member.get("status") in (None, "aktif"):
            name = member.get("name") or "anggota"
            labels += [
                f"{MEMBER.fields[n].label} ({name})" for n in missing_fields(MEMBER.name, member)
            ]
    return labels


def _scan(conn: sa.Connection) -> list[HouseholdRow]:
    r = db.records
    rows = conn.execute(
        sa.select(r.c.id, r.c.entity, r.c.household_id, r.c.data).where(
            r.c.entity.in_((HOUSEHOLD.name, MEMBER.name)), r.c.deleted.is_(False)
        )
    ).all()
    households: dict[str, HouseholdRow] = {}
    members: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        values = json.loads(row.data)
        if row.entity == HOUSEHOLD.name:
            households[row.id] = HouseholdRow(row.id, values)
        elif row.household_id:
            members.setdefault(row.household_id, []).append(values)
    for household in households.values():
        own = members.get(household.id, [])
        active = [m for m in own if m.get("status") in (None, "aktif")]
        household.members = len(active)
        household.head = next(
            (
                str(m.get("name") or "")
                for m in active
                if m.get("relation_to_head") == "kepala_keluarga"
            ),
            "",
        )
        household.missing = missing_labels(household.values, active)
    return sorted(households.values(), key=lambda h: (h.rt_rw, h.head, h.id))


async def village_households(store: Store) -> list[HouseholdRow]:
    """Every household of the box with its head, members and what it still lacks."""
    return await store.read(_scan)


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
