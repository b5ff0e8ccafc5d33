"""The village's view of the registry (``docs/registry.md``, sections 3 and 4): which
households still lack variables the ranking needs (kelengkapan), and who receives which
programme (penerima bantuan), by RT/RW, a page at a time; and the walk of the village
(:func:`walk_village`, a batch of households at a time) that every village page reads:
what the district imported and what the village typed alike.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple, TypeVar

import msgspec
import sqlalchemy as sa
from aiohttp import web

from edge import db
from edge.store import Store
from edge.web.app import CONFIG, STORE, local_today, render
from edge.web.lists import page_number, paged, pager_base
from edge.web.routing import ALL_ROLES, RouteTable
from protocol.entities import HOUSEHOLD, LAYANAN, MEMBER, RECORD_ID_KEY, VISIT
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
    "over_village",
    "places",
    "round_progress",
    "routes",
    "walk_village",
]

T = TypeVar("T")

routes = RouteTable()

_PROGRAMMES = dict(zip(HOUSEHOLD.fields["programmes"].choices,
                       HOUSEHOLD.fields["programmes"].choice_labels, strict=True))  # fmt: skip


#: Fields whose values are a few codes (and RT/RW numbers), repeated on every row.
_CODES = frozenset(
    {"rt", "rw"}
    | {
        n
        for e in (HOUSEHOLD, MEMBER, LAYANAN)
        for n, s in e.fields.items()
        if s.kind is FieldKind.ENUM
    }
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


def _picked(names: Iterable[str]) -> str:
    """One ``json_extract`` of a record's ``names`` (a small JSON array of their values)."""
    return "json_extract(r.data, " + ", ".join(f"'$.{name}'" for name in names) + ")"


#: The village's records that :func:`walk_village` reads, household by household in the
#: order of the ids bound as a JSON array: of each record only the fields the pages use,
#: and the whole record only where its ``lacking`` column says a ranking variable is
#: missing (for the labels; migration 0007 counted the old records). ``CROSS JOIN`` keeps
#: ``json_each`` the outer loop (SQLite's planner does not reorder it), so the rows come a
#: household at a time, in the ids' order, each looked up in ``ix_records_household``.
_WALK = f"""
SELECT r.id, r.entity, r.household_id,
    CASE r.entity
        WHEN '{HOUSEHOLD.name}' THEN {_picked(HouseholdFields.__slots__)}
        WHEN '{MEMBER.name}' THEN {_picked(MemberFields.__slots__[1:])}
        ELSE {_picked(Visit._fields)}
    END,
    CASE WHEN r.lacking > 0 THEN r.data END
FROM json_each(?) AS listed CROSS JOIN records AS r
WHERE r.household_id = listed.value
    AND r.entity IN ('{HOUSEHOLD.name}', '{MEMBER.name}', '{VISIT.name}')
    AND NOT r.deleted
"""

_decode = msgspec.json.Decoder().decode


def _order(conn: sa.Connection, rt: str, rw: str) -> list[str]:
    """The ids of the village's households (of RT ``rt`` and RW ``rw`` when given) in the
    order the pages list them: by RT/RW, then the head's name, then id."""
    r = db.records
    value = functools.partial(sa.func.json_extract, r.c.data)
    households = sa.select(r.c.id, value("$.rt", "$.rw")).where(
        r.c.entity == HOUSEHOLD.name, r.c.deleted.is_(False)
    )
    for name, code in (("rt", rt), ("rw", rw)):
        if code:
            households = households.where(value(f"$.{name}") == code)
    heads: dict[str, str] = {}
    for household_id, name, status in conn.execute(
        sa.select(r.c.household_id, value("$.name"), value("$.status")).where(
            r.c.entity == MEMBER.name,
            r.c.deleted.is_(False),
            value("$.relation_to_head") == "kepala_keluarga",
        )
    ):
        if household_id not in heads and is_active({"status": status}):
            heads[household_id] = str(name or "")
    keys = []
    for household_id, place in conn.execute(households):
        rt_code, rw_code = json.loads(place)
        where = f"{rt_code or '-'}/{rw_code or '-'}"
        keys.append((where, heads.get(household_id, ""), household_id))
    keys.sort()
    return [household_id for *_, household_id in keys]


def _household(
    household: HouseholdRow, members: list[MemberFields], visits: list[Visit],
    lacking: dict[str, list[str]],
) -> HouseholdRow:  # fmt: skip
    """``household`` completed with its active ``members``, its ``visits`` (the latest
    first) and the labels of what it and its members lack (``lacking``: record id →
    labels)."""
    household.visits = sorted(visits, key=lambda v: str(v.visit_date), reverse=True)
    household.active = members
    household.members = len(members)
    head = next((m for m in members if m.get("relation_to_head") == "kepala_keluarga"), None)
    household.head = str(head.get("name") or "") if head else ""
    household.head_nik = str(head.get("nik") or "") if head else ""
    household.missing = [
        label
        for record_id in (household.id, *(m[RECORD_ID_KEY] for m in members))
        for label in lacking.get(record_id, ())
    ]
    return household


def walk_village(conn: sa.Connection, *, rt: str = "", rw: str = "") -> Iterator[HouseholdRow]:
    """The village's households (of RT ``rt`` and RW ``rw`` when given) with their head,
    active members, visits and what they still lack, by RT/RW and head: one statement
    (:data:`_WALK`) on the driver's connection, read a household at a time, so a walk holds
    one household, not the village (a page that kept every household stayed about 20 MB
    larger for 5,000 of them; a statement per batch of 100 left 2–4 MB per page type)."""
    ids = _order(conn, rt, rw)
    driver = conn.connection.driver_connection
    current: HouseholdRow | None = None
    members: list[MemberFields] = []
    visits: list[Visit] = []
    lacking: dict[str, list[str]] = {}
    # Closed even when the page stops reading early, so the transaction can end.
    read = driver.execute(_WALK, (json.dumps(ids),))  # type: ignore[union-attr]
    with contextlib.closing(read) as rows:
        for record_id, entity, household_id, values, whole in rows:
            if current is not None and household_id != current.id:
                yield _household(current, members, visits, lacking)
                current, members, visits, lacking = None, [], [], {}
            if whole is not None:
                lacking[record_id] = _labels(entity, _decode(whole))
            if entity == HOUSEHOLD.name:
                current = HouseholdRow(record_id, HouseholdFields(_decode(values)))
            elif entity == VISIT.name:
                visits.append(Visit(*_decode(values)))
            else:
                member = MemberFields((record_id, *_decode(values)))
                if is_active(member):
                    members.append(member)
    if current is not None:
        yield _household(current, members, visits, lacking)


async def over_village(
    store: Store, consume: Callable[[Iterator[HouseholdRow]], T], *, rt: str = "", rw: str = ""
) -> T:
    """``consume`` the :func:`walk_village` of one read transaction on a reader thread
    (nothing is kept between requests): what a page counts and keeps of the village."""
    return await store.read(lambda conn: consume(walk_village(conn, rt=rt, rw=rw)))


def places(conn: sa.Connection) -> tuple[list[str], list[str]]:
    """Every RT and every RW of the village's households (a page's filter choices),
    gathered here rather than by a ``DISTINCT`` (which builds its index in the reader's
    memory)."""
    r = db.records
    rts: set[str] = set()
    rws: set[str] = set()
    for (place,) in conn.execute(
        sa.select(sa.func.json_extract(r.c.data, "$.rt", "$.rw")).where(
            r.c.entity == HOUSEHOLD.name, r.c.deleted.is_(False)
        )
    ):
        rt_code, rw_code = _decode(place)
        rts.add(str(rt_code) if rt_code else "")
        rws.add(str(rw_code) if rw_code else "")
    return sorted(rts - {""}), sorted(rws - {""})


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
    # One parse of each household's JSON for both: ["001", "002"]. Counted here, not
    # grouped in SQL: a GROUP BY sorts the village in the reader's memory (TEMP_STORE=2
    # with SQLCipher), which stayed about 3 MB larger per reader thread.
    place = sa.func.json_extract(r.c.data, "$.rt", "$.rw")
    rows = conn.execute(
        sa.select(
            place,
            visited,
            incomplete_household(r),
            r.c.status == "tidak_ditemukan",
        ).where(r.c.entity == HOUSEHOLD.name, r.c.deleted.is_(False))
    )
    result = RoundProgress(period)
    village = result.village
    for where, *flags in rows:
        rt_code, rw_code = json.loads(where)
        key = f"{rt_code or '-'}/{rw_code or '-'}"
        here = result.by_rt_rw.setdefault(key, Progress())  # "" and null are one place
        for name, flag in zip(("visited", "incomplete", "not_found"), flags, strict=True):
            setattr(here, name, getattr(here, name) + bool(flag))
            setattr(village, name, getattr(village, name) + bool(flag))
        here.total += 1
        village.total += 1
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
    rt = request.query.get("rt", "").strip()[:3]
    counts = {"total": 0, "incomplete": 0}

    def lacking(households: Iterator[HouseholdRow]) -> Iterator[HouseholdRow]:
        for household in households:
            counts["total"] += 1
            if household.missing:
                counts["incomplete"] += 1
                if not rt or household.values.get("rt") == rt:
                    yield household

    size = request.app[CONFIG].page_size
    store = request.app[STORE]
    listed = await over_village(store, lambda h: paged(lacking(h), page_number(request), size))
    rts, _ = await store.read(places)
    return render(
        request, "kelengkapan.html", listed=listed, rt=rt, rts=rts, base=pager_base(request),
        **counts,
    )  # fmt: skip


@routes.get("/penerima-bantuan", roles=ALL_ROLES, summary="Households receiving a programme")
async def beneficiaries(request: web.Request) -> web.Response:
    programme = request.query.get("program", "")
    if programme not in _PROGRAMMES:
        programme = ""
    counts = dict.fromkeys(_PROGRAMMES, 0)

    def receiving(households: Iterator[HouseholdRow]) -> Iterator[HouseholdRow]:
        for household in households:
            received = household.values.get("programmes") or []
            for code in received:
                if code in counts:
                    counts[code] += 1
            if received and (not programme or programme in received):
                yield household

    size = request.app[CONFIG].page_size
    listed = await over_village(
        request.app[STORE], lambda h: paged(receiving(h), page_number(request), size)
    )
    return render(
        request, "penerima_bantuan.html", listed=listed, programme=programme,
        programmes=_PROGRAMMES, counts=counts, base=pager_base(request),
    )  # fmt: skip
