"""The village's view of the registry (``docs/registry.md``, sections 3 and 4): which
households still lack variables the ranking needs (kelengkapan), and who receives which
programme (penerima bantuan), by RT/RW, printable. Both read the whole village once
(a few thousand households): what the district imported and what the village typed alike.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

import sqlalchemy as sa
from aiohttp import web

from edge import db
from edge.store import Store
from edge.web.app import CONFIG, STORE, local_today, render
from edge.web.routing import ALL_ROLES, RouteTable
from protocol.entities import HOUSEHOLD, MEMBER, RECORD_ID_KEY, VISIT
from protocol.registry import missing_fields
from protocol.rounds import Round, round_of
from protocol.schema import EntitySchema, FieldKind
from protocol.vulnerable import REGISTERS, is_active
from puskesos.sqljson import incomplete_household, json_fields

__all__ = [
    "Fields",
    "HouseholdFields",
    "HouseholdRow",
    "MemberFields",
    "Progress",
    "RoundProgress",
    "Visit",
    "current_round",
    "missing_labels",
    "round_progress",
    "routes",
    "village_households",
]

routes = RouteTable()

_PROGRAMMES = dict(zip(HOUSEHOLD.fields["programmes"].choices,
                       HOUSEHOLD.fields["programmes"].choice_labels, strict=True))  # fmt: skip


#: Fields whose values are a few codes (and RT/RW numbers), repeated on every row.
_CODES = frozenset(
    {"rt", "rw"}
    | {n for e in (HOUSEHOLD, MEMBER) for n, s in e.fields.items() if s.kind is FieldKind.ENUM}
)


class Fields(Mapping[str, Any]):
    """Some values of a record, read-only, as a small mapping (``get``, ``[]``): what the
    village pages need of it and nothing more. A subclass names the fields in
    ``__slots__``; a field the record lacks reads as ``None`` and is not listed."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, values: Iterable[Any]) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            # Codes repeat on every row ("kepala_keluarga", "aktif"): keep one copy of each.
            setattr(self, name, sys.intern(value) if name in _CODES and type(value) is str
                    else value)  # fmt: skip

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None) if key in self.__slots__ else None
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name in self.__slots__ if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _register_fields(entity: EntitySchema) -> tuple[str, ...]:
    """The ``entity`` fields the vulnerable-group registers derive from or show."""
    return tuple(dict.fromkeys(
        spec.name
        for register in REGISTERS.values()
        for spec in (*register.fields, *register.shows)
        if entity.fields.get(spec.name) is spec
    ))  # fmt: skip


class HouseholdFields(Fields):
    """What the village pages read of a household: place, number, programmes, decile, the
    district's review mark, and every field a register derives from."""

    __slots__ = tuple(dict.fromkeys((
        "rt", "rw", "address", "kk_number", "programmes", "decile", "decile_period",
        "review_status", "review_date", *_register_fields(HOUSEHOLD),
    )))  # fmt: skip


class MemberFields(Fields):
    """What the village pages read of a member: its id (``RECORD_ID_KEY``), name, NIK,
    status, relation to the head, and every field a register derives from or shows."""

    __slots__ = tuple(dict.fromkeys((
        RECORD_ID_KEY, "name", "nik", "status", "relation_to_head",
        *_register_fields(MEMBER),
    )))  # fmt: skip


class Visit(NamedTuple):
    """A field visit as the worklist reads it."""

    visit_date: str
    outcome: str | None


@dataclass(slots=True)
class HouseholdRow:
    """A household as the registry pages list it: who heads it, where, what it receives,
    and which ranking variables it and its active members still lack (field labels)."""

    id: str
    values: HouseholdFields
    head: str = ""
    head_nik: str = ""
    members: int = 0
    missing: list[str] = field(default_factory=list)
    #: The active members (the vulnerable-group registers and the Posyandu pages read them).
    active: list[MemberFields] = field(default_factory=list)
    #: Field visits, the latest first.
    visits: list[Visit] = field(default_factory=list)

    @property
    def rt_rw(self) -> str:
        return f"{self.values.get('rt') or '-'}/{self.values.get('rw') or '-'}"

    @property
    def last_visit(self) -> Visit | None:
        return self.visits[0] if self.visits else None

    def visited_in(self, period: Round) -> bool:
        """Whether a visit is dated inside ``period`` (a verification round)."""
        return any(date.fromisoformat(v.visit_date) in period for v in self.visits)

    @property
    def field_check(self) -> bool:
        """The district marked it "periksa lapangan" and nobody visited it since."""
        if self.values.get("review_status") != "periksa_lapangan":
            return False
        marked = str(self.values.get("review_date") or "")
        return not any(str(v.visit_date) >= marked for v in self.visits)


def _labels(entity: str, values: Mapping[str, Any]) -> list[str]:
    """The ranking variables one household or member still lacks, as labels."""
    if entity == HOUSEHOLD.name:
        return [HOUSEHOLD.fields[n].label for n in missing_fields(entity, values)]
    name = values.get("name") or "anggota"
    return [f"{MEMBER.fields[n].label} ({name})" for n in missing_fields(MEMBER.name, values)]


def missing_labels(household: Mapping[str, Any], members: Iterable[Mapping[str, Any]]) -> list[str]:
    """What a household and its active members still lack for the ranking, as labels."""
    labels = _labels(HOUSEHOLD.name, household)
    for member in members:
        if is_active(member):
            labels += _labels(MEMBER.name, member)
    return labels


def _paths(names: Iterable[str]) -> list[str]:
    return [f"$.{name}" for name in names]


def _scan(conn: sa.Connection) -> list[HouseholdRow]:
    """The village, streamed row by row: of each record only the fields the pages use
    (one ``json_extract`` of several paths, a small JSON array), and the whole record only
    where its ``lacking`` column says a ranking variable is missing (for the labels)."""
    r = db.records
    household_paths = _paths(HouseholdFields.__slots__)
    member_paths = _paths(n for n in MemberFields.__slots__ if n != RECORD_ID_KEY)
    picked = sa.case(
        (r.c.entity == HOUSEHOLD.name, sa.func.json_extract(r.c.data, *household_paths)),
        (r.c.entity == MEMBER.name, sa.func.json_extract(r.c.data, *member_paths)),
        else_=sa.func.json_extract(r.c.data, *_paths(Visit._fields)),
    )
    whole = sa.case((r.c.lacking > 0, r.c.data))  # migration 0007 counted the old records
    rows = conn.execute(
        sa.select(r.c.id, r.c.entity, r.c.household_id, picked, whole).where(
            r.c.entity.in_((HOUSEHOLD.name, MEMBER.name, VISIT.name)), r.c.deleted.is_(False)
        )
    )
    households: dict[str, HouseholdRow] = {}
    members: dict[str, list[MemberFields]] = {}
    visits: dict[str, list[Visit]] = {}
    lacking: dict[str, list[str]] = {}
    for record_id, entity, household_id, values, whole in rows:
        if whole is not None:
            lacking[record_id] = _labels(entity, json.loads(whole))
        if entity == HOUSEHOLD.name:
            households[record_id] = HouseholdRow(record_id, HouseholdFields(json.loads(values)))
        elif entity == VISIT.name and household_id:
            visits.setdefault(household_id, []).append(Visit(*json.loads(values)))
        elif household_id:
            member = MemberFields((record_id, *json.loads(values)))
            if is_active(member):
                members.setdefault(household_id, []).append(member)
    for household in households.values():
        household.visits = sorted(
            visits.get(household.id, []), key=lambda v: str(v.visit_date), reverse=True
        )
        active = household.active = members.get(household.id, [])
        household.members = len(active)
        head = next((m for m in active if m.get("relation_to_head") == "kepala_keluarga"), None)
        household.head = str(head.get("name") or "") if head else ""
        household.head_nik = str(head.get("nik") or "") if head else ""
        household.missing = [
            label
            for record_id in (household.id, *(m[RECORD_ID_KEY] for m in active))
            for label in lacking.get(record_id, ())
        ]
    return sorted(households.values(), key=lambda h: (h.rt_rw, h.head, h.id))


async def village_households(store: Store) -> list[HouseholdRow]:
    """Every household of the box with its head, active members and what it still lacks,
    read afresh on each call (nothing is kept between requests)."""
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
