"""The monthly cycle's steps: freeze, submit, return villages, sign, forward, publish.

Each step is one transaction that locks the period's row (``SELECT ... FOR UPDATE``; on
SQLite the engine's ``BEGIN IMMEDIATE``), checks the state with :mod:`hub.cycle_rules`,
moves it and writes the audit entry: a second click or a second worker finds the state
moved and gets a :class:`CycleError`. Roles are checked by the callers (the UI, with
:func:`hub.cycle_rules.allowed`); the services take the acting person's name. The hub's
sweep runs the automatic steps (:func:`sweep`). Delivery to the national level and the
import of its published results are in :mod:`hub.cycle_delivery`. The plan is
``docs/cycle.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import audit, db
from hub.config import HubConfig
from hub.cycle_rules import (
    Action,
    CycleError,
    State,
    cutoff_ms,
    following,
    next_state,
    period_of,
    previous,
)
from hub.review import take_approval_seq
from hub.store import HubStore

__all__ = [
    "SIGN_GRACE_MS",
    "SYSTEM",
    "Period",
    "PeriodVillage",
    "dataset_folder",
    "ensure_current",
    "freeze",
    "freeze_totals",
    "get",
    "periods",
    "return_villages",
    "sign",
    "started_ms",
    "submit",
    "sweep",
]

log = logging.getLogger("puskesos.hub.cycle")

#: The actor of the sweep's automatic steps.
SYSTEM = "sistem"
_MOVED = ("pindah", "meninggal")


@dataclass(frozen=True, slots=True)
class PeriodVillage:
    """A village of a frozen period: its own freeze (after a re-submission), its return
    and its totals (households, members, added, changed, moved_or_deceased, rejected)."""

    village: str
    frozen_seq: int | None
    returned_ms: int | None
    returned_by: str | None
    return_note: str | None
    totals: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Period:
    """A row of ``periods`` and its villages."""

    period: str
    state: State
    cutoff_ms: int
    frozen_seq: int | None
    frozen_ms: int | None
    frozen_by: str | None
    submitted_ms: int | None
    submitted_by: str | None
    signed_ms: int | None
    signed_by: str | None
    dataset: str | None
    manifest_sha256: str | None
    forward_attempts: int
    forward_error: str | None
    next_forward_ms: int | None
    forwarded_ms: int | None
    receipt: Mapping[str, Any] | None
    published_ms: int | None
    published_by: str | None
    published_count: int | None
    villages: tuple[PeriodVillage, ...]

    @property
    def returned(self) -> tuple[str, ...]:
        """The villages returned to the verifier and not yet re-submitted."""
        return tuple(v.village for v in self.villages if v.returned_ms is not None)


def _period(row: Any, villages: Sequence[Any]) -> Period:
    values = dict(row._mapping)
    values["state"] = State(values["state"])
    values["receipt"] = json.loads(row.receipt) if row.receipt else None
    return Period(
        **values,
        villages=tuple(
            PeriodVillage(
                v.village,
                v.frozen_seq,
                v.returned_ms,
                v.returned_by,
                v.return_note,
                json.loads(v.totals) if v.totals else {},
            )
            for v in villages
        ),
    )


async def read_period(conn: AsyncConnection, period: str) -> Period | None:
    """The period's row and its villages (``None`` if unknown)."""
    row = (await conn.execute(sa.select(db.periods).where(db.periods.c.period == period))).first()
    if row is None:
        return None
    pv = db.period_villages
    villages = (
        await conn.execute(sa.select(pv).where(pv.c.period == period).order_by(pv.c.village))
    ).all()
    return _period(row, villages)


async def get(engine: AsyncEngine, period: str) -> Period | None:
    """One period, ``None`` if it has no row yet."""
    async with engine.connect() as conn:
        return await read_period(conn, period)


async def periods(engine: AsyncEngine) -> list[Period]:
    """Every period, the newest first."""
    p, pv = db.periods, db.period_villages
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(p).order_by(p.c.period.desc()))).all()
        villages = (await conn.execute(sa.select(pv).order_by(pv.c.village))).all()
    by_period: dict[str, list[Any]] = {}
    for village in villages:
        by_period.setdefault(village.period, []).append(village)
    return [_period(row, by_period.get(row.period, [])) for row in rows]


def _cutoff(config: HubConfig, period: str) -> int:
    return cutoff_ms(period, config.cutoff_day, config.cutoff_time, config.timezone)


async def _create(store: HubStore, conn: AsyncConnection, config: HubConfig, period: str) -> None:
    await conn.execute(
        store._insert(db.periods)
        .values(period=period, state=State.OPEN.value, cutoff_ms=_cutoff(config, period))
        .on_conflict_do_nothing()
    )


async def ensure_current(store: HubStore, config: HubConfig, now_ms: int) -> Period:
    """The open period that decisions made now count for (creating its row): the one
    whose cut-off is next, or a later one if that was frozen early."""
    period = period_of(now_ms, config.cutoff_day, config.cutoff_time, config.timezone)
    async with store.engine.begin() as conn:
        while True:
            await _create(store, conn, config, period)
            found = await read_period(conn, period)
            assert found is not None
            if found.state is State.OPEN:
                return found
            period = following(period)


async def started_ms(store: HubStore, config: HubConfig, period: str) -> int:
    """When ``period`` began to collect changes: the previous period's freeze (early or at
    its cut-off), or its cut-off while the sweep has not frozen it yet."""
    before = previous(period)
    found = await get(store.engine, before)
    if found is not None and found.frozen_ms is not None:
        return found.frozen_ms
    return _cutoff(config, before)


async def lock_period(conn: AsyncConnection, period: str) -> Period:
    """The period's row, locked until the transaction ends."""
    query = sa.select(db.periods.c.period).where(db.periods.c.period == period).with_for_update()
    if (await conn.execute(query)).first() is None:
        raise CycleError("unknown_period", f"Periode {period} tidak ditemukan.")
    found = await read_period(conn, period)
    assert found is not None
    return found


async def move(
    conn: AsyncConnection,
    period: str,
    state: State,
    *,
    actor: str,
    action: Action,
    now: int,
    values: Mapping[str, Any],
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Move ``period`` to ``state`` with ``values`` and audit the step (in ``conn``'s
    transaction, after :func:`lock_period`)."""
    await conn.execute(
        db.periods.update().where(db.periods.c.period == period).values(state=state.value, **values)
    )
    await audit.record(
        conn, at_ms=now, actor=actor, action=f"cycle.{action.value}", subject=period, detail=detail
    )


# --- totals ------------------------------------------------------------------------------


async def _totals(
    conn: AsyncConnection, period: str, seq: int, villages: Sequence[str] | None
) -> dict[str, dict[str, int]]:
    """Village → its totals in the dataset as of approval ``seq``: households and active
    members, and what this period brought since the previous period's freeze (households
    added, households changed, members moved or deceased, households rejected)."""
    r, d, pv, p = db.records, db.decisions, db.period_villages, db.periods
    before = previous(period)
    prev_seq = (
        await conn.execute(sa.select(p.c.frozen_seq).where(p.c.period == before))
    ).scalar_one_or_none() or 0
    prev = sa.func.coalesce(pv.c.frozen_seq, prev_seq)
    kept = ~r.c.approved.contains('"deleted":true')
    household = r.c.entity == "household"

    def count(condition: Any) -> Any:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    query = (
        sa.select(
            r.c.village,
            count(sa.and_(household, kept)).label("households"),
            count(sa.and_(r.c.entity == "member", kept, r.c.approved_status == "aktif")).label(
                "members"
            ),
            count(sa.and_(household, r.c.first_approved_seq > prev)).label("added"),
            count(
                sa.and_(
                    r.c.entity == "member",
                    r.c.approved_seq > prev,
                    r.c.approved_status.in_(_MOVED),
                )
            ).label("moved_or_deceased"),
        )
        .select_from(r.outerjoin(pv, sa.and_(pv.c.period == before, pv.c.village == r.c.village)))
        .where(r.c.entity.in_(("household", "member")), r.c.approved_seq <= seq)
        .group_by(r.c.village)
    )
    decided = (
        sa.select(
            d.c.village,
            d.c.decision,
            sa.func.count(sa.distinct(d.c.household_id)).label("n"),
        )
        .select_from(
            d.join(r, r.c.id == d.c.household_id).outerjoin(
                pv, sa.and_(pv.c.period == before, pv.c.village == d.c.village)
            )
        )
        .where(
            d.c.approval_seq > prev,
            d.c.approval_seq <= seq,
            sa.or_(
                d.c.decision == "ditolak",
                sa.and_(d.c.decision == "disetujui", r.c.first_approved_seq <= prev),
            ),
        )
        .group_by(d.c.village, d.c.decision)
    )
    v = db.villages
    names = sa.select(v.c.code)
    if villages is not None:
        query = query.where(r.c.village.in_(villages))
        decided = decided.where(d.c.village.in_(villages))
        names = names.where(v.c.code.in_(villages))
    keys = ("households", "members", "added", "changed", "moved_or_deceased", "rejected")
    totals = {code: dict.fromkeys(keys, 0) for code in (await conn.execute(names)).scalars()}
    for row in await conn.execute(query):
        totals.setdefault(row.village, dict.fromkeys(keys, 0)).update(
            {key: int(getattr(row, key) or 0) for key in keys[:3] + keys[4:5]}
        )
    for row in await conn.execute(decided):
        key = "rejected" if row.decision == "ditolak" else "changed"
        totals.setdefault(row.village, dict.fromkeys(keys, 0))[key] = int(row.n)
    return totals


async def freeze_totals(store: HubStore, period: str) -> dict[str, dict[str, int]]:
    """Village → the totals a freeze of ``period`` would count now (for its confirmation
    page; nothing is written)."""
    c = db.counters
    async with db.reading(store.engine) as conn:
        seq = (
            await conn.execute(sa.select(c.c.value).where(c.c.name == "approval_seq"))
        ).scalar_one_or_none()
        return await _totals(conn, period, int(seq or 0), None)


# --- transitions -------------------------------------------------------------------------


async def freeze(store: HubStore, config: HubConfig, period: str, actor: str) -> Period:
    """Freeze ``period`` (O(1): its ``frozen_seq`` is the current approval counter) and
    count each village's totals. By a verifier before the cut-off, or by the sweep
    (:data:`SYSTEM`) once it has passed."""
    now = store.wall()
    async with store.engine.begin() as conn:
        await _create(store, conn, config, period)
        found = await lock_period(conn, period)
        state = next_state(found.state, Action.FREEZE)
        seq = await take_approval_seq(store, conn, peek=True)
        totals = await _totals(conn, period, seq, None)
        if totals:
            await conn.execute(
                db.period_villages.insert(),
                [
                    {"period": period, "village": village, "totals": json.dumps(counts)}
                    for village, counts in totals.items()
                ],
            )
        await _create(store, conn, config, following(period))
        # Last: its audit row takes the audit chain's lock until the commit (hub/audit.py).
        await move(
            conn,
            period,
            state,
            actor=actor,
            action=Action.FREEZE,
            now=now,
            values={"frozen_seq": seq, "frozen_ms": now, "frozen_by": actor},
            detail={"frozen_seq": seq},
        )
        frozen = await read_period(conn, period)
    assert frozen is not None
    return frozen


async def submit(store: HubStore, period: str, actor: str) -> Period:
    """Submit a frozen period to the regent's office. Villages that were returned are
    re-submitted: their own ``frozen_seq`` becomes the current counter, their copy-on-write
    rows are dropped and their totals counted again (their data is as of now)."""
    now = store.wall()
    pv = db.period_villages
    async with store.engine.begin() as conn:
        found = await lock_period(conn, period)
        state = next_state(found.state, Action.SUBMIT)
        returned = list(found.returned)
        if returned:
            seq = await take_approval_seq(store, conn, peek=True)
            await conn.execute(
                db.snapshot_rows.delete().where(
                    db.snapshot_rows.c.period == period, db.snapshot_rows.c.village.in_(returned)
                )
            )
            totals = await _totals(conn, period, seq, returned)
            for village in returned:
                await conn.execute(
                    pv.update()
                    .where(pv.c.period == period, pv.c.village == village)
                    .values(
                        frozen_seq=seq,
                        returned_ms=None,
                        totals=json.dumps(totals.get(village, {})),
                    )
                )
        await move(
            conn,
            period,
            state,
            actor=actor,
            action=Action.SUBMIT,
            now=now,
            values={"submitted_ms": now, "submitted_by": actor},
            detail={"resubmitted": returned},
        )
        submitted = await read_period(conn, period)
    assert submitted is not None
    return submitted


async def return_villages(
    store: HubStore, period: str, villages: Sequence[str], note: str, actor: str
) -> Period:
    """Return villages to the verifier with a note: the period goes back to frozen, and
    those villages' households can be decided again until the period is re-submitted."""
    note = note.strip()
    if not note:
        raise CycleError("note_required", "Catatan pengembalian wajib diisi.")
    if not villages:
        raise CycleError("no_villages", "Pilih desa yang dikembalikan.")
    now = store.wall()
    pv = db.period_villages
    async with store.engine.begin() as conn:
        found = await lock_period(conn, period)
        state = next_state(found.state, Action.RETURN_VILLAGES)
        known = {v.village for v in found.villages}
        unknown = sorted(set(villages) - known)
        if unknown:
            raise CycleError(
                "unknown_village", f"Desa {', '.join(unknown)} tidak ada dalam periode ini."
            )
        await conn.execute(
            pv.update()
            .where(pv.c.period == period, pv.c.village.in_(list(villages)))
            .values(returned_ms=now, returned_by=actor, return_note=note)
        )
        await move(
            conn,
            period,
            state,
            actor=actor,
            action=Action.RETURN_VILLAGES,
            now=now,
            values={},
            detail={"villages": sorted(villages), "note": note},
        )
        moved = await read_period(conn, period)
    assert moved is not None
    return moved


def dataset_folder(config: HubConfig, period: str) -> Path:
    """Where the signed dataset of ``period`` is written."""
    return config.data_dir / "datasets" / f"{config.district}-{period}"


async def sign(store: HubStore, config: HubConfig, period: str, actor: str) -> Period:
    """The leader signs: who and when are recorded, then the frozen dataset is exported
    and its manifest signed with the district's key; only then the period is
    ``ditandatangani``. If the export is cut short, :func:`sweep` finishes it."""
    key = signing_key(config)
    if not config.district:
        raise CycleError(
            "no_district",
            "Kode kabupaten belum diatur di hub. Minta TI kabupaten mengaturnya, "
            "lalu tandatangani lagi.",
        )
    now = store.wall()
    async with store.engine.begin() as conn:
        found = await lock_period(conn, period)
        next_state(found.state, Action.SIGN)
        if found.returned:
            raise CycleError("villages_returned", "Masih ada desa yang dikembalikan.")
        if found.signed_ms is not None:
            raise CycleError("signing", "Periode ini sedang ditandatangani.")
        await conn.execute(
            db.periods.update()
            .where(db.periods.c.period == period)
            .values(signed_ms=now, signed_by=actor)
        )
        await audit.record(conn, at_ms=now, actor=actor, action="cycle.sign", subject=period)
    return await _finish_sign(store, config, period, key)


def signing_key(config: HubConfig) -> Any:
    """The district's private key (``hub.signing_key_file``), or a :class:`CycleError`
    saying who must make one."""
    from hub.keys import KeyFileError, load_private_key

    try:
        return load_private_key(config.path(config.signing_key_file))
    except (OSError, KeyFileError):
        raise CycleError(
            "no_key",
            "Kunci tanda tangan kabupaten tidak ada atau rusak. Minta TI kabupaten "
            "membuatnya, lalu tandatangani lagi.",
        ) from None


async def _finish_sign(store: HubStore, config: HubConfig, period: str, key: Any) -> Period:
    """Export the frozen dataset (unless a whole one is already in place) and mark the
    period signed."""
    from hub.export import CYCLE_ENTITIES, ExportError, export_dataset, period_records
    from protocol.dataset import MANIFEST_FILE, manifest_sha256, parse_manifest

    folder = dataset_folder(config, period)
    if folder.exists():  # renamed into place whole: an earlier try got this far
        manifest = parse_manifest((folder / MANIFEST_FILE).read_bytes())
    else:
        try:
            manifest = await export_dataset(
                period_records(store.engine, period),
                folder,
                district=config.district,
                period=period,
                key=key,
                now_ms=store.wall(),
                entities=CYCLE_ENTITIES,
            )
        except ExportError:
            if not folder.exists():
                raise
            manifest = parse_manifest((folder / MANIFEST_FILE).read_bytes())
    now = store.wall()
    async with store.engine.begin() as conn:
        found = await lock_period(conn, period)
        if found.state is State.LEADER_REVIEW and found.signed_ms is not None:
            await move(
                conn,
                period,
                next_state(found.state, Action.SIGN),
                actor=found.signed_by or SYSTEM,
                action=Action.SIGN,
                now=now,
                values={"dataset": str(folder), "manifest_sha256": manifest_sha256(manifest)},
                detail={"dataset": str(folder), "counts": dict(manifest.counts)},
            )
        signed = await read_period(conn, period)
    assert signed is not None
    if signed.state is not State.SIGNED or signed.dataset != str(folder):
        next_state(signed.state, Action.SIGN)  # another worker moved it: say so
    return signed


# --- the sweep ---------------------------------------------------------------------------

#: How long a started signature may run before the sweep finishes it instead.
SIGN_GRACE_MS = 10 * 60 * 1000


async def sweep(store: HubStore, config: HubConfig) -> None:
    """The automatic steps, run by every hub worker's sweep: the open period's row, the
    freeze once a cut-off passed, a signature whose export was cut short, deliveries."""
    now = store.wall()
    await ensure_current(store, config, now)
    p = db.periods
    async with store.engine.connect() as conn:
        overdue = (
            await conn.execute(
                sa.select(p.c.period).where(p.c.state == State.OPEN.value, p.c.cutoff_ms <= now)
            )
        ).scalars()
        unfinished = list(
            (
                await conn.execute(
                    sa.select(p.c.period).where(
                        p.c.state == State.LEADER_REVIEW.value,
                        p.c.signed_ms <= now - SIGN_GRACE_MS,
                        p.c.dataset.is_(None),
                    )
                )
            ).scalars()
        )
        overdue = list(overdue)
    for period in overdue:
        try:
            await freeze(store, config, period, SYSTEM)
            log.info("period frozen at its cut-off", extra={"period": period})
        except CycleError:
            continue  # another worker froze it first
    for period in unfinished:
        await _finish_sign(store, config, period, signing_key(config))
    from hub.cycle_delivery import forward_due  # it builds on this module

    await forward_due(store, config, now)
