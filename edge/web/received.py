"""What the district's hub sent the box recently, per household, as the Sinkronisasi page
lists it: read from the ``sync`` rows of the audit trail (``edge/downlink.py`` writes one
per record a down batch changed, naming the fields and the writer of each), with the
values the records hold now."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from edge import db
from edge.downlink import SYNC_ACTION
from edge.records import Record, head_of
from edge.store import Store
from protocol.changes import REGISTRY_NODE
from protocol.entities import ENTITIES, household_of
from protocol.schema import FieldKind
from puskesos.webpages import angka, field_text

__all__ = ["RECENT_DAYS", "RECENT_ROWS", "Arrival", "FieldChange", "HouseholdArrivals", "received"]

#: The page looks this many days back ...
RECENT_DAYS = 30
#: ... at most at this many changed records (a resync of a whole village is far more).
RECENT_ROWS = 200
#: Household fields the hub writes from the national publication (``hub/cycle_delivery``).
PUBLISHED = frozenset({"decile", "decile_period", "eligible_programmes"})
_NUMBERS = (FieldKind.INT, FieldKind.DECIMAL)


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field as it came down: its label, its value as a person reads it (``None`` when
    it changed again since, here or in a later arrival) and who wrote it."""

    label: str
    text: str | None
    writer: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """One record changed by one down batch: when it arrived, what it is, its fields."""

    at_ms: int
    what: str
    fields: tuple[FieldChange, ...]


@dataclass(slots=True)
class HouseholdArrivals:
    """The arrivals about one household (``household`` is ``None`` for records of none,
    e.g. a complaint without a household), newest first."""

    household: Record | None
    head: Record | None
    arrivals: list[Arrival] = field(default_factory=list)


def _writer(node: str, hub: str, box: str, name: str) -> str:
    """Who wrote a field version, in the words of the village office: ``hub`` is the hub
    worker that sent it, ``box`` this box."""
    if node == REGISTRY_NODE:
        return "impor data registri (DTSEN) kabupaten"
    if node == box:
        return "perangkat ini (dikirim ulang oleh kabupaten)"
    if node == hub:
        return "desil terbitan nasional" if name in PUBLISHED else "keputusan kabupaten"
    return f"perangkat lain di desa ini ({node})"


async def received(store: Store, *, now_ms: int) -> list[HouseholdArrivals]:
    """The records the hub changed in the last :data:`RECENT_DAYS` days (at most
    :data:`RECENT_ROWS`), grouped by household, the most recent household first."""
    a = db.audit
    query = (
        sa.select(a.c.at_ms, a.c.actor, a.c.entity, a.c.record_id, a.c.detail)
        .where(a.c.action == SYNC_ACTION, a.c.at_ms >= now_ms - RECENT_DAYS * 86_400_000)
        .order_by(a.c.id.desc())
        .limit(RECENT_ROWS)
    )
    rows = await store.read(lambda conn: conn.execute(query).all())
    records: dict[str, Record] = {}
    for entity in {row.entity for row in rows if row.entity in ENTITIES}:
        ids = {row.record_id for row in rows if row.entity == entity}
        records |= await store.get_each(entity, ids)
    parents = {r.id: household_of(r.entity, r.id, r.values) for r in records.values()}
    households = await store.get_each("household", {p for p in parents.values() if p})
    members = await store.related_to_each("member", list(households))
    heads = {hid: head_of(people) for hid, people in members.items()}
    names = {hid: str(head.get("name")) for hid, head in heads.items() if head is not None}
    groups: dict[str | None, HouseholdArrivals] = {}
    later: set[tuple[str, str]] = set()  # (record, field) already listed by a newer row
    for row in rows:
        record = records.get(row.record_id or "")
        if record is None:
            continue
        parent = parents[record.id]
        group = groups.get(parent)
        if group is None:
            household = households.get(parent) if parent else None
            group = groups[parent] = HouseholdArrivals(household, heads.get(parent or ""))
        detail = json.loads(row.detail)
        fields = _fields(record, detail, row.actor, store.node, names, later)
        group.arrivals.append(Arrival(row.at_ms, _what(record), fields))
    return list(groups.values())


def _fields(
    record: Record,
    detail: dict[str, object],
    hub: str,
    box: str,
    names: dict[str, str],
    later: set[tuple[str, str]],
) -> tuple[FieldChange, ...]:
    schema = ENTITIES[record.entity]
    by = detail.get("by")
    writers = by if isinstance(by, dict) else {}  # rows written before ``by`` existed: none
    listed = detail.get("fields")
    changes = []
    for spec in schema.field_list if isinstance(listed, list) else ():  # the form's order
        name = spec.name
        if name not in listed:
            continue
        writer = str(writers.get(name, hub))
        frontier = record.state.get(name, ())
        current = (record.id, name) not in later and bool(frontier) and frontier[0].node == writer
        later.add((record.id, name))
        value = record.get(name)
        if not current:
            text = None
        elif spec.kind in _NUMBERS and value is not None:
            text = angka(value)
        else:
            text = field_text(spec, value, names)
        changes.append(FieldChange(spec.label, text, _writer(writer, hub, box, name)))
    return tuple(changes)


def _what(record: Record) -> str:
    """The record in a few words: the entity, and a member's name."""
    label = ENTITIES[record.entity].label
    name = record.get("name") if record.entity == "member" else None
    return f"{label} {name}" if name else label
