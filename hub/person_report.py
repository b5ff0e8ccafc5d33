"""A person's data report at the hub (UU 27/2022: a person may ask what is held about them
and how it was processed): what the hub holds about one member and their household, the
decisions on it, the other records holding the same NIK, and who processed it, from the
hub's own audit trail and from the boxes' trails the hub keeps (``box_audit``).

The box makes the same report of what it holds (``edge.services.person_report``); the
rule for which rows of a box's trail are about a person is shared
(:func:`puskesos.boxtrail.about_person`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from hub import db
from hub.duplicates import DuplicateMember, holders
from hub.review import Decision, household_decisions, record_names
from protocol.entities import ENTITIES
from puskesos.boxtrail import about_person
from puskesos.webpages import field_text

__all__ = ["PersonReport", "RelatedRecord", "person_report"]

#: Most rows of each trail a report shows.
TRAIL_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class RelatedRecord:
    """A record of the household or naming the person (a proposal, a complaint, a
    referral, a visit, ...): its entity's label and (label, shown value) of each field."""

    entity: str
    deleted: bool
    facts: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PersonReport:
    """What the hub holds about one person and who processed it."""

    village: str
    name: str
    #: (label, shown value) of every field, the member's and its household's.
    member: tuple[tuple[str, str], ...]
    household: tuple[tuple[str, str], ...]
    related: tuple[RelatedRecord, ...]
    decisions: tuple[Decision, ...]
    #: Other active member records with the person's NIK (Duplikat), when there are any.
    duplicates: tuple[DuplicateMember, ...]
    #: The hub's audit rows about the member or the household (with the queue's NIK/KK
    #: searches that showed the household), and of reads that may have shown them: the
    #: API's bulk reads of the village (or of every village) and the lists with NIK/KK
    #: downloaded for it or for every village; newest first.
    trail: tuple[Any, ...]
    #: The boxes' audit rows about the person and the lists downloaded on the village's
    #: boxes, as the boxes sent them, newest first.
    box_trail: tuple[Any, ...]


def _facts(
    entity: str, data: Mapping[str, Any], names: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    return tuple(
        (spec.label, field_text(spec, data.get(spec.name), names))
        for spec in ENTITIES[entity].field_list
    )


async def person_report(
    engine: AsyncEngine, household_id: str, member_id: str
) -> PersonReport | None:
    """The data report of member ``member_id`` of household ``household_id``; ``None``
    when there is no such member in that household."""
    r, a, b, d = db.records, db.audit, db.box_audit, db.devices
    async with db.reading(engine) as conn:
        rows = {
            row.entity: row
            for row in await conn.execute(
                sa.select(r).where(
                    sa.or_(
                        sa.and_(r.c.id == household_id, r.c.entity == "household"),
                        sa.and_(
                            r.c.id == member_id,
                            r.c.entity == "member",
                            r.c.household_id == household_id,
                        ),
                    )
                )
            )
        }
        if set(rows) != {"household", "member"}:
            return None
        village = rows["household"].village
        member = json.loads(rows["member"].data)
        related = (
            await conn.execute(
                sa.select(r.c.entity, r.c.data, r.c.deleted)
                .where(
                    r.c.village == village,
                    r.c.entity.not_in(("household", "member")),
                    sa.or_(
                        r.c.household_id == household_id,
                        r.c.data.contains(json.dumps(member_id), autoescape=True),
                    ),
                )
                .order_by(r.c.entity, r.c.created_ms, r.c.id)
            )
        ).all()
        nik = member.get("nik")
        same_nik = await holders(conn, nik) if isinstance(nik, str) and nik else ()
        decisions = await household_decisions(conn, household_id)
        listed = sa.or_(
            ~a.c.detail.contains('"filter": {"', autoescape=True),
            a.c.detail.contains(f'"desa": {json.dumps(village)}', autoescape=True),
        )
        trail = await conn.execute(
            sa.select(a)
            .where(
                sa.or_(
                    a.c.subject.in_((household_id, member_id)),
                    sa.and_(
                        a.c.action.in_(("api.records", "api.conflicts")),
                        a.c.subject.in_((village, "")),
                    ),
                    sa.and_(
                        a.c.action == "duplicates.keep",
                        a.c.detail.contains(json.dumps(member_id), autoescape=True),
                    ),
                    sa.and_(
                        a.c.action == "queue.search",
                        a.c.detail.contains(json.dumps(household_id), autoescape=True),
                    ),
                    sa.and_(
                        a.c.action == "list.export",
                        ~a.c.detail.contains('"numbers": "tidak ada"', autoescape=True),
                        listed,
                    ),
                )
            )
            .order_by(a.c.seq.desc())
            .limit(TRAIL_LIMIT)
        )
        trail_rows = tuple(trail.all())
        boxes = sa.select(d.c.node).where(d.c.village == village)
        box_trail = await conn.execute(
            sa.select(b)
            .where(
                sa.or_(
                    about_person(b, member_id, household_id),
                    sa.and_(b.c.action == "export", b.c.node.in_(boxes)),
                )
            )
            .order_by(b.c.at_ms.desc(), b.c.node, b.c.seq.desc())
            .limit(TRAIL_LIMIT)
        )
        box_rows = tuple(box_trail.all())
    names = await record_names(engine, [household_id])
    return PersonReport(
        village=village,
        name=str(member.get("name") or ""),
        member=_facts("member", member, names),
        household=_facts("household", json.loads(rows["household"].data), names),
        related=tuple(
            RelatedRecord(
                ENTITIES[row.entity].label,
                row.deleted,
                _facts(row.entity, json.loads(row.data), names),
            )
            for row in related
            if row.entity in ENTITIES
        ),
        decisions=decisions,
        duplicates=tuple(m for m in same_nik if m.record_id != member_id),
        trail=trail_rows,
        box_trail=box_rows,
    )
