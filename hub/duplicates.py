"""Duplicates (Duplikat): one NIK on two or more active members, and who keeps the person.

``records.nik`` holds each active member's NIK (the store writes it with the record), so
a duplicate is a NIK with more than one row. The verifier picks the member record that
keeps the person; every other one gets ``status = ganda`` as a version of the hub node,
which travels down to its box. Nothing is deleted. See ``docs/cycle.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import audit, db
from hub.review import ReviewError, head_names
from hub.store import HubStore

__all__ = ["DuplicateGroup", "DuplicateMember", "duplicates", "holders", "keep"]


@dataclass(frozen=True, slots=True)
class DuplicateMember:
    """One of the member records that share a NIK."""

    record_id: str
    household_id: str | None
    village: str
    name: str
    birth_date: str
    head_name: str


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """A NIK and the active members that hold it."""

    nik: str
    members: tuple[DuplicateMember, ...]


async def duplicates(engine: AsyncEngine, *, limit: int = 100) -> list[DuplicateGroup]:
    """The NIKs held by two or more active members, in NIK order."""
    r = db.records
    shared = (
        sa.select(r.c.nik)
        .where(r.c.nik.is_not(None))
        .group_by(r.c.nik)
        .having(sa.func.count() > 1)
        .order_by(r.c.nik)
        .limit(limit)
    )
    async with db.reading(engine) as conn:
        niks = list((await conn.execute(shared)).scalars())
        groups = await _holders(conn, niks) if niks else {}
    return [DuplicateGroup(nik, tuple(members)) for nik, members in groups.items()]


async def holders(conn: AsyncConnection, nik: str) -> tuple[DuplicateMember, ...]:
    """The active members that hold ``nik`` (more than one: a duplicate)."""
    return tuple((await _holders(conn, [nik])).get(nik, ()))


async def _holders(conn: AsyncConnection, niks: Sequence[str]) -> dict[str, list[DuplicateMember]]:
    r = db.records
    rows = (
        await conn.execute(
            sa.select(r.c.id, r.c.nik, r.c.household_id, r.c.village, r.c.data)
            .where(r.c.nik.in_(niks))
            .order_by(r.c.nik, r.c.created_ms, r.c.id)
        )
    ).all()
    households = sorted({row.household_id for row in rows if row.household_id})
    heads = await _heads(conn, households)
    groups: dict[str, list[DuplicateMember]] = {}
    for row in rows:
        data = json.loads(row.data)
        groups.setdefault(row.nik, []).append(
            DuplicateMember(
                record_id=row.id,
                household_id=row.household_id,
                village=row.village,
                name=str(data.get("name") or ""),
                birth_date=str(data.get("birth_date") or ""),
                head_name=heads.get(row.household_id or "", ""),
            )
        )
    return groups


async def _heads(conn: AsyncConnection, households: Sequence[str]) -> dict[str, str]:
    r = db.records
    rows = (
        await conn.execute(
            sa.select(r.c.household_id, r.c.data, r.c.deleted).where(
                r.c.entity == "member", r.c.household_id.in_(households)
            )
        )
    ).all()
    return head_names(rows)


async def keep(store: HubStore, nik: str, keep_record_id: str, actor: str) -> int:
    """Keep the person in ``keep_record_id``; every other active member with ``nik`` gets
    ``status = ganda`` (a hub version, one transaction per village). Returns how many
    were marked; :class:`ReviewError` ``not_in_group`` if the record does not hold it."""
    r = db.records
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(r.c.id, r.c.village).where(r.c.nik == nik))).all()
    if keep_record_id not in {row.id for row in rows}:
        raise ReviewError("not_in_group")
    by_village: dict[str, list[str]] = {}
    for row in rows:
        if row.id != keep_record_id:
            by_village.setdefault(row.village, []).append(row.id)
    marked = 0
    for village, ids in sorted(by_village.items()):
        async with store.engine.begin() as conn:
            log_seq = await store.lock_village(conn, village)
            # Still active with this NIK now that the village is locked?
            current = (
                (await conn.execute(sa.select(r.c.id).where(r.c.id.in_(ids), r.c.nik == nik)))
                .scalars()
                .all()
            )
            if not current:
                continue
            now = store.wall()
            await store.write_hub_values(
                conn, {record_id: {"status": "ganda"} for record_id in current}, log_seq, now
            )
            await audit.record(
                conn,
                at_ms=now,
                actor=actor,
                action="duplicates.keep",
                subject=keep_record_id,
                detail={"nik": nik, "marked": sorted(current)},
            )
            marked += len(current)
    return marked
