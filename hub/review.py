"""The district's review: a changed household's changes, and the decisions on it (the
queue of changed households is :mod:`hub.review_queue`).

A box's change makes its household and member records ``pending`` (the store's apply
path). The verifier sees, per household, each changed field as approved value → current
value with the box and time that wrote it, and decides: ``disetujui`` (approve: the
current values become the approved ones that go into the monthly dataset), ``ditolak``
(reject: the village corrects and sends again) or ``periksa_lapangan`` (send someone to
look; it stays in the queue, flagged). The plan is ``docs/cycle.md`` ("Review").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import audit, db
from hub.store import HubStore
from protocol.clock import COUNTER_BITS
from protocol.entities import ENTITIES, shown_status
from protocol.jsonform import load_state
from puskesos.webpages import field_text

__all__ = [
    "DECISIONS",
    "REVIEWED_ENTITIES",
    "Decision",
    "FieldChange",
    "HouseholdChanges",
    "RecordChanges",
    "ReviewError",
    "decide",
    "head_names",
    "household_changes",
    "household_decisions",
    "member_rows",
    "period_decisions",
    "record_names",
    "take_approval_seq",
]

#: Decision code → its name on the page.
DECISIONS: Mapping[str, str] = {
    "disetujui": "Disetujui",
    "ditolak": "Ditolak",
    "periksa_lapangan": "Perlu periksa lapangan",
}
#: Decisions that need a written reason (the village reads it on its box).
_NEEDS_REASON = frozenset({"ditolak", "periksa_lapangan"})
#: The entities whose changes wait for the verifier.
REVIEWED_ENTITIES = ("household", "member")
#: What a decision on a household does to its proposals (usulan) that the village agreed
#: and sent: they follow it (``protocol.entities.PROPOSAL_TRANSITIONS``), so the village
#: sees on its box that the district approved or refused them, not "agreed" forever.
_PROPOSAL_AFTER: Mapping[str, str] = {
    "disetujui": "diverifikasi",
    "ditolak": "ditolak",
    "periksa_lapangan": "dikirim",
}
_PROPOSALS_FOLLOWING = ("disepakati_musdes", "disepakati_sptjm", "dikirim")

_MESSAGES: Mapping[str, str] = {
    "unknown_decision": "Keputusan tidak dikenal.",
    "reason_required": "Alasan wajib diisi untuk keputusan ditolak atau periksa lapangan.",
    "unknown_household": "Keluarga tidak ditemukan.",
    "not_pending": "Keluarga ini tidak punya perubahan yang menunggu keputusan.",
    "period_locked": "Periode {period} sudah dibekukan; muat ulang halaman lalu putuskan lagi.",
    "not_in_group": "Anggota yang dipilih tidak memegang NIK ini (lagi).",
}


class ReviewError(Exception):
    """A decision or choice that cannot be made; ``code`` for machines, ``message`` in
    Bahasa Indonesia, shown next to the form."""

    def __init__(self, code: str, **values: object) -> None:
        self.code = code
        self.message = _MESSAGES[code].format(**values)
        super().__init__(f"{code}: {self.message}")


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of a record: approved value → current value (as stored, and as a person
    reads it: labels, Indonesian dates, names), and who wrote it when."""

    field: str
    label: str
    old: Any
    new: Any
    origin: str
    at_ms: int | None
    old_text: str
    new_text: str


@dataclass(frozen=True, slots=True)
class RecordChanges:
    """A record of the household (itself or a member) and its changed fields."""

    entity: str
    record_id: str
    name: str
    pending: bool
    changes: tuple[FieldChange, ...]
    #: What matching with the civil registry found (member ``civil_flags``, as labels).
    civil: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """A row of ``decisions``; ``changes`` per record id ``{field: [old, new]}``."""

    id: int
    household_id: str
    village: str
    decision: str
    reason: str
    actor: str
    decided_ms: int
    approval_seq: int
    period: str
    changes: Mapping[str, Mapping[str, list[Any]]]


@dataclass(frozen=True, slots=True)
class HouseholdChanges:
    """A household for the review page: its records (the household first) and history."""

    household_id: str
    village: str
    head_name: str
    kk_number: str
    records: tuple[RecordChanges, ...]
    decisions: tuple[Decision, ...]


# --- reading -----------------------------------------------------------------------------


def _diff(entity: str, approved: Mapping[str, Any] | None, data: Mapping[str, Any]) -> list[str]:
    """The fields whose current value differs from the approved one (all set fields of a
    never-approved record). Hub-written fields (decile, review result) are not a village's
    change and are left out."""
    fields = ENTITIES[entity].fields
    names = set(data) | set(approved or {})
    changed = [
        name
        for name in names
        if not (name in fields and fields[name].readonly)
        and (approved is None or approved.get(name) != data.get(name))
        and not (approved is None and data.get(name) is None)
    ]
    order = {name: i for i, name in enumerate(fields)}
    return sorted(changed, key=lambda name: (order.get(name, len(order)), name))


def _label(entity: str, name: str) -> str:
    spec = ENTITIES[entity].fields.get(name)
    return spec.label if spec is not None else name


def head_names(rows: Iterable[Any]) -> dict[str, str]:
    """Household id → the name of its head (an active one first), from member rows
    (``household_id``, ``data``, ``deleted``)."""
    heads: dict[str, tuple[bool, str]] = {}
    for row in rows:
        data = json.loads(row.data)
        if data.get("relation_to_head") != "kepala_keluarga" or row.deleted:
            continue
        active = data.get("status") == "aktif"
        if row.household_id not in heads or (active and not heads[row.household_id][0]):
            heads[row.household_id] = (active, str(data.get("name") or ""))
    return {household: name for household, (_, name) in heads.items()}


async def member_rows(
    conn: AsyncConnection, household_ids: Sequence[str] | sa.Select[Any]
) -> list[Any]:
    """The member rows (``household_id``, ``data``, ``deleted``) of ``household_ids`` (a
    list, or a query selecting them)."""
    r = db.records
    query = sa.select(r.c.household_id, r.c.data, r.c.deleted).where(
        r.c.entity == "member", r.c.household_id.in_(household_ids)
    )
    return list((await conn.execute(query)).all())


async def period_decisions(engine: AsyncEngine, period: str) -> dict[str, dict[str, int]]:
    """Village → decision code → how many households got it as their last decision
    labelled with ``period``."""
    d = db.decisions
    latest = (
        sa.select(sa.func.max(d.c.id).label("id"))
        .where(d.c.period == period)
        .group_by(d.c.household_id)
        .subquery()
    )
    query = (
        sa.select(d.c.village, d.c.decision, sa.func.count().label("n"))
        .join(latest, latest.c.id == d.c.id)
        .group_by(d.c.village, d.c.decision)
    )
    counts: dict[str, dict[str, int]] = {}
    async with db.reading(engine) as conn:
        for row in await conn.execute(query):
            counts.setdefault(row.village, {})[row.decision] = int(row.n)
    return counts


def _decision(row: Any) -> Decision:
    return Decision(
        id=row.id,
        household_id=row.household_id,
        village=row.village,
        decision=row.decision,
        reason=row.reason,
        actor=row.actor,
        decided_ms=row.decided_ms,
        approval_seq=row.approval_seq,
        period=row.period,
        changes=json.loads(row.changes),
    )


def _text(entity: str, name: str, value: Any, names: Mapping[str, str]) -> str:
    spec = ENTITIES[entity].fields.get(name)
    if spec is None:
        return "—" if value is None else str(value)
    return field_text(spec, value, names)


def _record_changes(row: Any, names: Mapping[str, str]) -> RecordChanges:
    """``names``: record id → its name, for references to the household and its members."""
    data = json.loads(row.data)
    approved = json.loads(row.approved) if row.approved is not None else None
    state = load_state(row.state)
    changes = []
    for name in _diff(row.entity, approved, data):
        frontier = state.get(name, ())
        latest = max(frontier, key=lambda v: v.time) if frontier else None
        old, new = (approved or {}).get(name), data.get(name)
        changes.append(
            FieldChange(
                field=name,
                label=_label(row.entity, name),
                old=old,
                new=new,
                origin=latest.node if latest is not None else "",
                at_ms=latest.time >> COUNTER_BITS if latest is not None else None,
                old_text=_text(row.entity, name, old, names),
                new_text=_text(row.entity, name, new, names),
            )
        )
    name = data.get("name") if row.entity == "member" else data.get("address")
    flags = ENTITIES[row.entity].fields.get("civil_flags")
    civil = tuple(flags.label_of(f) for f in data.get("civil_flags") or ()) if flags else ()
    return RecordChanges(
        row.entity, row.id, str(name or ""), bool(row.pending), tuple(changes), civil
    )


def _household_name(head_name: str) -> str:
    return f"Keluarga {head_name or '(tanpa nama)'}"


async def record_names(engine: AsyncEngine, ids: Iterable[str]) -> dict[str, str]:
    """Record id → how a page names it: a member by name, a household as "Keluarga"
    and its head's name (ids of other or unknown records are left out)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    r = db.records
    async with db.reading(engine) as conn:
        rows = (
            await conn.execute(
                sa.select(r.c.id, r.c.entity, r.c.data).where(
                    r.c.id.in_(wanted), r.c.entity.in_(REVIEWED_ENTITIES)
                )
            )
        ).all()
        households = [row.id for row in rows if row.entity == "household"]
        heads = head_names(await member_rows(conn, households)) if households else {}
    return {
        row.id: _household_name(heads.get(row.id, ""))
        if row.entity == "household"
        else str(json.loads(row.data).get("name") or "")
        for row in rows
    }


async def household_changes(engine: AsyncEngine, household_id: str) -> HouseholdChanges | None:
    """A household and its members with what changed since the last approval, and its
    decisions, newest first; ``None`` for an unknown household."""
    r = db.records
    async with engine.connect() as conn:
        household = (
            await conn.execute(
                sa.select(r).where(r.c.id == household_id, r.c.entity == "household")
            )
        ).first()
        if household is None:
            return None
        members = (
            await conn.execute(
                sa.select(r)
                .where(r.c.entity == "member", r.c.household_id == household_id)
                .order_by(r.c.created_ms, r.c.id)
            )
        ).all()
        decisions = await household_decisions(conn, household_id)
    # The head first, then the others in the order they were recorded.
    members = sorted(
        members, key=lambda row: json.loads(row.data).get("relation_to_head") != "kepala_keluarga"
    )
    data = json.loads(household.data)
    head_name = head_names(members).get(household_id, "")
    names = {household_id: _household_name(head_name)} | {
        row.id: str(json.loads(row.data).get("name") or "") for row in members
    }
    return HouseholdChanges(
        household_id=household_id,
        village=household.village,
        head_name=head_name,
        kk_number=str(data.get("kk_number") or ""),
        records=tuple(_record_changes(row, names) for row in [household, *members]),
        decisions=decisions,
    )


async def household_decisions(conn: AsyncConnection, household_id: str) -> tuple[Decision, ...]:
    """The decisions on a household, newest first."""
    d = db.decisions
    query = sa.select(d).where(d.c.household_id == household_id).order_by(d.c.id.desc())
    return tuple(_decision(row) for row in await conn.execute(query))


# --- deciding ----------------------------------------------------------------------------


async def take_approval_seq(store: HubStore, conn: AsyncConnection, *, peek: bool = False) -> int:
    """The next ``approval_seq`` (the counter row is locked until the transaction ends, so
    decisions and freezes serialize); with ``peek`` the current value, unchanged."""
    c = db.counters
    await conn.execute(
        store._insert(c).values(name="approval_seq", value=0).on_conflict_do_nothing()
    )
    query = sa.select(c.c.value).where(c.c.name == "approval_seq").with_for_update()
    value = int((await conn.execute(query)).scalar_one())
    if peek:
        return value
    await conn.execute(c.update().where(c.c.name == "approval_seq").values(value=value + 1))
    return value + 1


async def _check_period(conn: AsyncConnection, period: str, village: str) -> None:
    """Refuse a decision labelled with a period that is already frozen (the page was
    opened before the cut-off), unless the village was returned to the verifier."""
    p, pv = db.periods, db.period_villages
    state = (
        await conn.execute(sa.select(p.c.state).where(p.c.period == period))
    ).scalar_one_or_none()
    if state is None or state == "terbuka":
        return
    returned = (
        await conn.execute(
            sa.select(pv.c.returned_ms).where(pv.c.period == period, pv.c.village == village)
        )
    ).scalar_one_or_none()
    if state != "dibekukan" or returned is None:
        raise ReviewError("period_locked", period=period)


async def _copy_on_write(
    store: HubStore, conn: AsyncConnection, village: str, rows: Sequence[Any]
) -> None:
    """Keep the approved values a frozen, not yet exported period holds before a new
    approval replaces them (once per period and record)."""
    p, pv = db.periods, db.period_villages
    frozen = (
        await conn.execute(
            sa.select(p.c.period, sa.func.coalesce(pv.c.frozen_seq, p.c.frozen_seq).label("seq"))
            .select_from(
                p.outerjoin(pv, sa.and_(pv.c.period == p.c.period, pv.c.village == village))
            )
            .where(p.c.frozen_seq.is_not(None), p.c.dataset.is_(None))
        )
    ).all()
    for period in frozen:
        kept = [
            {
                "period": period.period,
                "record_id": row.id,
                "entity": row.entity,
                "village": village,
                "data": row.approved,
                "status": row.approved_status,
            }
            for row in rows
            if row.approved_seq is not None and row.approved_seq <= period.seq
        ]
        if kept:
            await conn.execute(store._insert(db.snapshot_rows).on_conflict_do_nothing(), kept)


async def decide(
    store: HubStore,
    household_id: str,
    decision: str,
    reason: str,
    actor: str,
    *,
    period: str,
    timezone: str = "Asia/Jakarta",
) -> int:
    """Decide on a household's pending changes (docs/cycle.md, "A decision"); returns the
    decision's id. The result (status, note, date) is written to the household as a hub
    version, so it travels down to the village's box. Raises :class:`ReviewError`."""
    if decision not in DECISIONS:
        raise ReviewError("unknown_decision")
    reason = reason.strip()
    if decision in _NEEDS_REASON and not reason:
        raise ReviewError("reason_required")
    r = db.records
    async with store.engine.connect() as conn:
        village = (
            await conn.execute(
                sa.select(r.c.village).where(r.c.id == household_id, r.c.entity == "household")
            )
        ).scalar_one_or_none()
    if village is None:
        raise ReviewError("unknown_household")
    async with store.engine.begin() as conn:
        log_seq = await store.lock_village(conn, village)
        await _check_period(conn, period, village)
        pending = (
            await conn.execute(
                sa.select(r)
                .where(
                    r.c.pending.is_(True),
                    r.c.entity.in_(REVIEWED_ENTITIES),
                    sa.or_(r.c.id == household_id, r.c.household_id == household_id),
                )
                .order_by(r.c.id)
            )
        ).all()
        if not pending:
            raise ReviewError("not_pending")
        seq = await take_approval_seq(store, conn)
        now = store.wall()
        today = datetime.fromtimestamp(now / 1000, ZoneInfo(timezone)).date().isoformat()
        result: dict[str, dict[str, Any]] = {
            household_id: {
                "review_status": decision,
                "review_note": reason or None,
                "review_date": today,
            }
        }
        proposals = await conn.execute(
            sa.select(r.c.id).where(
                r.c.entity == "proposal",
                r.c.household_id == household_id,
                r.c.status.in_(_PROPOSALS_FOLLOWING),
                r.c.deleted.is_(False),
            )
        )
        for (proposal_id,) in proposals:
            result[proposal_id] = {"status": _PROPOSAL_AFTER[decision]}
        await store.write_hub_values(conn, result, log_seq, now)
        changes = {row.id: _covered(row) for row in pending}
        if decision == "disetujui":
            await _copy_on_write(store, conn, village, pending)
            await _approve(conn, [row.id for row in pending], seq)
        elif decision == "ditolak":
            await conn.execute(
                r.update().where(r.c.id.in_([row.id for row in pending])).values(pending=False)
            )
        inserted = await conn.execute(
            db.decisions.insert().values(
                household_id=household_id,
                village=village,
                decision=decision,
                reason=reason,
                actor=actor,
                decided_ms=now,
                approval_seq=seq,
                period=period,
                changes=json.dumps(changes, ensure_ascii=False, sort_keys=True),
            )
        )
        decision_id = int(inserted.inserted_primary_key[0])
        await audit.record(
            conn,
            at_ms=now,
            actor=actor,
            action="review.decide",
            subject=household_id,
            detail={"decision": decision, "reason": reason, "period": period, "id": decision_id},
        )
    return decision_id


def _covered(row: Any) -> dict[str, list[Any]]:
    """What a decision covers of one record: ``{field: [old, new]}``."""
    data = json.loads(row.data)
    approved = json.loads(row.approved) if row.approved is not None else None
    return {
        name: [(approved or {}).get(name), data.get(name)]
        for name in _diff(row.entity, approved, data)
    }


async def _approve(conn: AsyncConnection, record_ids: Sequence[str], seq: int) -> None:
    """Make the current values of ``record_ids`` their approved ones, as of ``seq``."""
    r = db.records
    rows = (
        await conn.execute(sa.select(r.c.id, r.c.entity, r.c.data).where(r.c.id.in_(record_ids)))
    ).all()
    for row in rows:
        data = json.loads(row.data)
        await conn.execute(
            r.update()
            .where(r.c.id == row.id)
            .values(
                approved=row.data,
                approved_seq=seq,
                first_approved_seq=sa.func.coalesce(r.c.first_approved_seq, seq),
                approved_status=shown_status(row.entity, data),
                pending=False,
            )
        )
