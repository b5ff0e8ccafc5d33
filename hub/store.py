"""The hub store: applying up batches, conflicts, resolutions and device stream state.

Every transaction that writes a village's records, or the stream state of one of its
devices, first locks that village's row (``SELECT ... FOR UPDATE``; on SQLite every write
transaction is ``BEGIN IMMEDIATE``). So a batch is applied, and recorded as applied, at
most once even when two hub workers receive it, and each record written gets the next
``log_seq`` of its village in commit order (the downlink cursors rely on that). See
``docs/replication.md``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import audit, db
from hub.record_rows import COLUMNS, NewRecord, insert_rows, new_record_rows, record_row
from protocol.changes import Ack, Batch, Change, Direction, FieldVersion, Value
from protocol.clock import COUNTER_BITS, HybridClock
from protocol.codec import version_for
from protocol.delivery import AppliedSeqs
from protocol.digest import from_signed, to_signed
from protocol.entities import ENTITIES
from protocol.errors import Reason
from protocol.jsonform import dump_json, load_state
from protocol.merge import Frontier, merge, seen_of, values
from protocol.schema import wire_value_error
from protocol.status import Status
from protocol.telemetry import Telemetry, encode_telemetry

__all__ = [
    "Applied",
    "HubStore",
    "Outcome",
    "ResolveError",
    "known_schema",
    "known_wire",
    "wall_ms",
]


def wall_ms() -> int:
    """The hub's wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


class Outcome(enum.Enum):
    """What became of an up batch."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of :meth:`HubStore.apply`; ``ack`` is set unless it was rejected."""

    outcome: Outcome
    village: str | None = None
    changes: int = 0
    conflicts: int = 0
    ack: Ack | None = None
    reason: Reason | None = None
    detail: str = ""


class ResolveError(Exception):
    """A conflict resolution that cannot be applied; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


#: The ``resolution`` of a conflict settled on a box: a later save there, made after seeing
#: every concurrent version, superseded them all (no person on the hub chose). A person's
#: resolution is ``{"value": ...}`` instead. Both shapes are documented in README.md.
SUPERSEDED = json.dumps({"superseded": True})


class _Refused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _versions_json(frontier: Frontier) -> str:
    return json.dumps(
        [[v.value, v.time, v.node] for v in frontier], separators=(",", ":"), ensure_ascii=False
    )


class HubStore:
    """The hub's database, shared by its ingest, downlink and API."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        node: str,
        max_clock_drift_ms: int,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.engine = engine
        self.node = node
        self.max_clock_drift_ms = max_clock_drift_ms
        self.wall = clock
        self._postgres = engine.dialect.name == "postgresql"
        #: On SQLite, this process's writers queue here rather than in SQLite's busy
        #: handler, which polls (sleeping up to 100 ms between tries): with several batches
        #: waiting, the lock sat free while they slept (issue 18). ``None`` on PostgreSQL,
        #: whose row locks wake a waiter at once.
        self._write_lock = None if self._postgres else asyncio.Lock()
        #: One batch at a time is decoded or prepared (``ingest``, :meth:`prepare`), in
        #: steps that give the loop back: with several at once, their steps would queue
        #: ahead of each statement result of the batch being written.
        self.preparing = asyncio.Lock()

    # --- helpers ---------------------------------------------------------------------------

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """``engine.begin()`` for a write transaction; on SQLite behind this process's write
        lock first (one writer at a time anyway; see ``_write_lock``). Not re-entrant."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self._postgres else sqlite.insert)(table)

    async def lock_village(self, conn: AsyncConnection, village: str) -> int:
        """Take the village's write lock (creating its row) and return its ``log_seq``."""
        await conn.execute(
            self._insert(db.villages).values(code=village, log_seq=0).on_conflict_do_nothing()
        )
        query = (
            sa.select(db.villages.c.log_seq).where(db.villages.c.code == village).with_for_update()
        )
        return int((await conn.execute(query)).scalar_one())

    async def lock_villages(
        self, conn: AsyncConnection, villages: Sequence[str]
    ) -> dict[str, tuple[int, int, int]]:
        """Take the write locks of several villages (creating their rows), in code order so
        that two such writers wait for each other instead of deadlocking; returns each
        village's ``log_seq``, digest (unsigned) and record count."""
        codes = sorted(set(villages))
        if not codes:
            return {}
        v = db.villages
        await conn.execute(
            self._insert(v).on_conflict_do_nothing(), [{"code": c, "log_seq": 0} for c in codes]
        )
        heads: dict[str, tuple[int, int, int]] = {}
        for start in range(0, len(codes), 2000):
            query = (
                sa.select(v.c.code, v.c.log_seq, v.c.digest, v.c.records)
                .where(self.among(v.c.code, codes[start : start + 2000]))
                .order_by(v.c.code)
                .with_for_update()
            )
            for row in await conn.execute(query):
                heads[row.code] = (int(row.log_seq), from_signed(row.digest), int(row.records))
        return heads

    async def insert_new(
        self,
        conn: AsyncConnection,
        heads: Mapping[str, tuple[int, int, int]],
        records: Mapping[str, Sequence[NewRecord]],
        *,
        stamp: int,
        node: str,
        now: int,
    ) -> dict[str, tuple[int, int, int]]:
        """Insert records the hub does not hold yet (``records`` by village, distinct ids,
        none stored), every field a version of ``node`` at ``stamp``, in one statement:
        the rows, ``log_seq`` numbering and digest fold that :meth:`merge_changes` gives
        them (``review=False``). The caller holds the villages' locks (``heads`` from
        :meth:`lock_villages`); returns the villages' heads moved on."""
        rows: list[tuple[Any, ...]] = []
        moved = dict(heads)
        for village, group in records.items():
            if not group:
                continue
            log_seq, digest, count = heads[village]
            made, log_seq, delta = new_record_rows(
                group, village, log_seq, stamp=stamp, node=node, now=now
            )
            rows += made
            moved[village] = (log_seq, digest ^ delta, count + len(made))
        await insert_rows(conn, db.records, COLUMNS, rows)
        updates = [
            {"b_code": village, "log_seq": log_seq, "digest": to_signed(digest), "records": count}
            for village, (log_seq, digest, count) in moved.items()
            if moved[village] != heads[village]
        ]
        if updates:
            v = db.villages
            await conn.execute(
                v.update()
                .where(v.c.code == sa.bindparam("b_code"))
                .values(
                    log_seq=sa.bindparam("log_seq"),
                    digest=sa.bindparam("digest"),
                    records=sa.bindparam("records"),
                ),
                updates,
            )
        return moved

    def among(self, column: sa.ColumnElement[str], values: Sequence[str]) -> Any:
        """``column IN values``; on PostgreSQL as ``= ANY(array)``: one parameter instead of
        hundreds to render and bind."""
        if self._postgres:
            return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(sa.Text)))
        return column.in_(values)

    async def _lock_head(self, conn: AsyncConnection, village: str) -> tuple[int, int, int]:
        """:meth:`lock_village`, returning the village's ``log_seq``, digest (unsigned) and
        record count; one statement when the village's row exists (the usual case)."""
        v = db.villages
        query = (
            sa.select(v.c.log_seq, v.c.digest, v.c.records)
            .where(v.c.code == village)
            .with_for_update()
        )
        row = (await conn.execute(query)).first()
        if row is None:
            await conn.execute(
                self._insert(v).values(code=village, log_seq=0).on_conflict_do_nothing()
            )
            row = (await conn.execute(query)).one()
        return int(row.log_seq), from_signed(row.digest), int(row.records)

    async def device(self, node: str, conn: AsyncConnection | None = None) -> Any:
        """The device row of ``node`` (``None`` when not registered)."""
        query = sa.select(db.devices).where(db.devices.c.node == node)
        if conn is not None:
            return (await conn.execute(query)).first()
        # On a snapshot: on SQLite a plain connection would queue for the write lock
        # behind the batches being applied (issue 18).
        async with db.reading(self.engine) as own:
            return (await own.execute(query)).first()

    # --- up batches ------------------------------------------------------------------------

    def precheck(self, batch: Batch, topic_node: str) -> tuple[Reason, str] | None:
        """Checks that need no database: direction, topic, clock drift of every stamp."""
        if batch.direction is not Direction.UP:
            return Reason.MALFORMED, "a down batch on an up topic"
        if batch.node != topic_node:
            return Reason.WRONG_NODE, f"batch of {batch.node} on the topic of {topic_node}"
        now = self.wall()
        for change in batch.changes:
            # A box sends its own writes only: versions in another node's name would be
            # impersonation (and a copied stamp with another value would split replicas).
            if change.origin != batch.node or any(
                version.node != batch.node for version in change.fields.values()
            ):
                return Reason.INVALID_CHANGE, f"record {change.record_id}: not {batch.node}'s"
            for version in change.fields.values():
                ahead = (version.time >> COUNTER_BITS) - now
                if ahead > self.max_clock_drift_ms:
                    return (
                        Reason.CLOCK_AHEAD,
                        f"stamp is {ahead} ms ahead of the hub (limit {self.max_clock_drift_ms})",
                    )
        return None

    async def apply(self, batch: Batch, topic_node: str) -> Applied:
        """Check and apply one up batch in one transaction (see the module docstring)."""
        problem = self.precheck(batch, topic_node)
        # The broker's ACL vouches for the topic's node, not for what the batch claims.
        device = await self.device(topic_node)
        if problem is None and device is None:
            problem = Reason.UNKNOWN_NODE, f"node {topic_node} is not registered"
        if problem is not None:
            return await self._refuse(batch, device, *problem)
        # The rows of the records the batch creates are made before the write lock is
        # taken (the lock then covers little more than the statements), unless the batch
        # is already applied (a resend).
        applied = AppliedSeqs.from_state(device.up_watermark, json.loads(device.up_above))
        prepared = None
        if batch.seq not in applied:
            prepared = await self.prepare(batch.changes, device.village, review=True)
        try:
            async with self.writing() as conn:
                return await self._apply_locked(conn, batch, device.village, prepared)
        except _Refused as refused:
            return await self._refuse(batch, device, refused.reason, refused.detail)

    async def _refuse(self, batch: Batch, device: Any, reason: Reason, detail: str) -> Applied:
        if device is not None:
            await self.note_reject(device.node, batch.seq, reason, detail)
        return Applied(Outcome.REJECTED, reason=reason, detail=detail)

    async def note_reject(self, node: str, seq: int, reason: Reason, detail: str) -> None:
        """Count a refused batch against a registered node (``seq`` 0: unreadable)."""
        note = json.dumps({"reason": reason.value, "detail": detail, "seq": seq})
        async with self.writing() as conn:
            await conn.execute(
                db.devices.update()
                .where(db.devices.c.node == node)
                .values(rejected=db.devices.c.rejected + 1, last_reject=note)
            )

    async def _apply_locked(
        self, conn: AsyncConnection, batch: Batch, village: str, prepared: Prepared | None
    ) -> Applied:
        log_seq, digest, records = await self._lock_head(conn, village)
        device = await self.device(batch.node, conn)
        if device.status != "active":
            raise _Refused(Reason.REVOKED_NODE, f"node {batch.node} is revoked")
        applied = AppliedSeqs.from_state(device.up_watermark, json.loads(device.up_above))
        if batch.seq in applied:
            ack = Ack(batch.node, batch.seq, applied.watermark)
            return Applied(Outcome.DUPLICATE, village=village, ack=ack)
        for change in batch.changes:
            if change.village != village:
                raise _Refused(
                    Reason.WRONG_VILLAGE,
                    f"record {change.record_id} names village {change.village}, "
                    f"node {batch.node} belongs to {village}",
                )
        now = self.wall()
        log_seq, conflicts, delta, added = await self._merge(
            conn, village, batch.changes, log_seq, now, by=batch.node, review=True,
            prepared=prepared,
        )  # fmt: skip
        applied = applied.add(batch.seq)
        watermark, above = applied.to_state()
        await conn.execute(
            db.devices.update()
            .where(db.devices.c.node == batch.node)
            .values(
                up_watermark=watermark,
                up_above=json.dumps(above),
                last_seen_ms=now,
                changes_applied=db.devices.c.changes_applied + len(batch.changes),
            )
        )
        v = db.villages
        await conn.execute(
            v.update()
            .where(v.c.code == village)
            .values(
                log_seq=log_seq,
                last_change_ms=now,
                digest=to_signed(digest ^ delta),
                records=records + added,
            )
        )
        return Applied(
            Outcome.APPLIED,
            village=village,
            changes=len(batch.changes),
            conflicts=conflicts,
            ack=Ack(batch.node, batch.seq, watermark),
        )

    async def merge_changes(
        self,
        conn: AsyncConnection,
        village: str,
        changes: Sequence[Change],
        log_seq: int,
        now: int,
        *,
        by: str,
        review: bool,
    ) -> tuple[int, int]:
        """Merge ``changes`` (records of ``village``) into the stored records, open or settle
        their conflicts and write them, each with the next ``log_seq``; the caller holds the
        village lock, and moves the village's ``log_seq`` on. ``review``: records whose
        shown values change wait for the district's review (a box's changes; not the
        district's own imports). Returns the new ``log_seq`` and the conflicts found.

        Raises ``_Refused`` for a record of another village or entity."""
        log_seq, conflicts, delta, added = await self._merge(
            conn, village, changes, log_seq, now, by=by, review=review
        )
        if delta or added:
            await self._fold_digest(conn, village, delta, added)
        return log_seq, conflicts

    async def prepare(self, changes: Sequence[Change], village: str, *, review: bool) -> Prepared:
        """The rows of the records ``changes`` create, should the hub not hold them yet
        (:func:`_creating`), for :meth:`merge_changes`; made in steps that give the event
        loop back, before any lock is taken."""
        prepared: Prepared = {}
        async with self.preparing:
            for position, (change, first) in enumerate(_creating(changes)):
                if position and not position % _PREPARE_STEP:
                    await asyncio.sleep(0)
                prepared[change.record_id] = _new_row(change, first, village, review)
        return prepared

    async def _merge(
        self,
        conn: AsyncConnection,
        village: str,
        changes: Sequence[Change],
        log_seq: int,
        now: int,
        *,
        by: str,
        review: bool,
        prepared: Prepared | None = None,
    ) -> tuple[int, int, int, int]:
        """:meth:`merge_changes` but the village's digest and record count: returns the new
        ``log_seq``, the conflicts found, the XOR of the old and new digests of the records
        written and how many records are new, for the caller to fold in."""
        ids = sorted({change.record_id for change in changes})
        stored = await self._load(conn, ids)
        # Records created by these changes (most of a box's backlog) skip the merge: their
        # rows come from their values, as a registry import's new records do.
        if prepared is None:
            prepared = {
                change.record_id: _new_row(change, first, village, review)
                for change, first in _creating(changes)
            }
        new_rows: list[tuple[Any, ...]] = []
        delta = 0
        if prepared:
            rest = []
            for change in changes:
                made = prepared.get(change.record_id)
                if made is None or change.record_id in stored:
                    rest.append(change)
                    continue
                new_row, digest = made
                log_seq += 1
                new_rows.append(_numbered(new_row, log_seq, now))
                delta ^= digest
            changes = rest
        working: dict[str, dict[str, Any]] = {}
        found: dict[tuple[str, str], Frontier] = {}
        touched: set[tuple[str, str]] = set()
        for change in changes:
            current = working.get(change.record_id) or stored.get(change.record_id)
            if current is not None:
                if current["village"] != village:
                    raise _Refused(
                        Reason.WRONG_VILLAGE,
                        f"record {change.record_id} belongs to village {current['village']}",
                    )
                if current["entity"] != change.entity:
                    raise _Refused(
                        Reason.INVALID_CHANGE,
                        f"record {change.record_id} is a {current['entity']}, not {change.entity}",
                    )
            before = current["state"] if current else None
            result = merge(before, change)
            row = dict(current) if current else {"created_ms": now, "is_new": True}
            row.update(entity=change.entity, village=village, state=result.state)
            if (
                review
                and change.entity in _REVIEWED
                and values(before or {}) != values(result.state)
            ):
                row["pending"] = True  # a box changed it: the district reviews it
            working[change.record_id] = row
            for name in result.changed:
                touched.add((change.record_id, name))
            for conflict in result.conflicts:
                found[(change.record_id, conflict.field)] = conflict.versions
        log_seq, delta, added = await self._write_rows(
            conn, working, log_seq, now, new_rows=new_rows, delta=delta
        )
        await self._record_conflicts(conn, working, found, touched, now, by)
        return log_seq, len(found), delta, added

    async def _load(self, conn: AsyncConnection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}
        r = db.records
        columns = (
            r.c.id,
            r.c.entity,
            r.c.village,
            r.c.state,
            r.c.conflicts,
            r.c.created_ms,
            r.c.pending,
            r.c.digest,
            r.c.log_seq,
            r.c.field_seqs,
        )
        for start in range(0, len(ids), 2000):
            chunk = ids[start : start + 2000]
            rows = await conn.execute(sa.select(*columns).where(self.among(r.c.id, chunk)))
            for row in rows:
                state = load_state(row.state)
                stored[row.id] = {
                    "entity": row.entity,
                    "village": row.village,
                    "state": state,
                    "had_conflicts": row.conflicts > 0,
                    "created_ms": row.created_ms,
                    "pending": bool(row.pending),
                    "digest": from_signed(row.digest),
                    # What the downlink needs to tell the fields this write changes.
                    "loaded": state,
                    "log_seq": row.log_seq,
                    "field_seqs": json.loads(row.field_seqs) if row.field_seqs else {},
                }
        return stored

    async def _write_records(
        self, conn: AsyncConnection, working: Mapping[str, dict[str, Any]], log_seq: int, now: int
    ) -> int:
        """Insert or update the merged records (of one village), each with the next
        ``log_seq``, and fold them into the village's digest; returns the last ``log_seq``."""
        village = next((row["village"] for row in working.values()), "")
        log_seq, delta, added = await self._write_rows(conn, working, log_seq, now)
        if delta or added:
            await self._fold_digest(conn, village, delta, added)
        return log_seq

    async def _write_rows(
        self,
        conn: AsyncConnection,
        working: Mapping[str, dict[str, Any]],
        log_seq: int,
        now: int,
        *,
        new_rows: Sequence[tuple[Any, ...]] = (),
        delta: int = 0,
    ) -> tuple[int, int, int]:
        """Insert or update the merged records, each with the next ``log_seq``; ``pending``
        as the row says (set by a box's change), ``nik`` for an active member. ``new_rows``
        (rows of :data:`COLUMNS` of records not stored yet, numbered already, their
        digests' XOR ``delta``) are inserted with them. Returns the last ``log_seq``, the
        XOR of the old and new digests of everything written, and how many rows are new."""
        inserts: list[tuple[Any, ...]] = list(new_rows)
        updates: list[dict[str, Any]] = []
        added = len(inserts)
        settled: int | None = None
        if any(not row.get("is_new") for row in working.values()):
            settled = await self._settled_cursor(conn, next(iter(working.values()))["village"])
        for record_id, row in working.items():
            log_seq += 1
            full, digest = record_row(
                row["entity"], record_id, row["village"], row["state"],
                log_seq=log_seq, now=now, pending=bool(row.get("pending")),
            )  # fmt: skip
            delta ^= digest ^ row.get("digest", 0)
            added += bool(row.get("is_new"))
            if row.get("is_new"):
                full.update(id=record_id, created_ms=row["created_ms"])
                inserts.append(tuple(full[name] for name in COLUMNS))
            else:
                kept = _kept_field_seqs(row, settled)
                full["field_seqs"] = dump_json(kept) if kept else None
                updates.append({"b_id": record_id, **full})
        # The driver's own bulk insert (COPY on PostgreSQL): the row values are already
        # what it stores.
        await insert_rows(conn, db.records, COLUMNS, inserts)
        if updates:
            columns = [name for name in updates[0] if name != "b_id"]
            await conn.execute(
                db.records.update()
                .where(db.records.c.id == sa.bindparam("b_id"))
                .values({name: sa.bindparam(name) for name in columns}),
                updates,
            )
        return log_seq, delta, added

    @staticmethod
    async def _settled_cursor(conn: AsyncConnection, village: str) -> int | None:
        """The lowest down cursor of the village's active boxes sent by field (``None``:
        no such box): every field a write leaves at or below it, each of them holds."""
        d = db.devices
        query = sa.select(sa.func.min(d.c.down_cursor)).where(
            d.c.village == village, d.c.status == "active", d.c.down_by_field
        )
        return (await conn.execute(query)).scalar_one()

    @staticmethod
    async def _fold_digest(conn: AsyncConnection, village: str, delta: int, added: int) -> None:
        """Fold the XOR of written records' old and new digests into the village's root
        (the caller holds the village lock)."""
        v = db.villages
        row = (
            await conn.execute(sa.select(v.c.digest, v.c.records).where(v.c.code == village))
        ).one()
        await conn.execute(
            v.update()
            .where(v.c.code == village)
            .values(digest=to_signed(from_signed(row.digest) ^ delta), records=row.records + added)
        )

    async def _record_conflicts(
        self,
        conn: AsyncConnection,
        working: Mapping[str, dict[str, Any]],
        found: Mapping[tuple[str, str], Frontier],
        touched: set[tuple[str, str]],
        now: int,
        by: str,
    ) -> None:
        """Open (or widen) one conflict per (record, field) the merge reported, and close
        open ones whose field a later write superseded (someone saw every version)."""
        c = db.conflicts
        # Only records that had or now have a conflict can have an open one.
        record_ids = sorted(
            {record_id for record_id, _ in found}
            | {record_id for record_id, _ in touched if working[record_id].get("had_conflicts")}
        )
        open_rows: dict[tuple[str, str], int] = {}
        for start in range(0, len(record_ids), 2000):
            query = sa.select(c.c.id, c.c.record_id, c.c.field).where(
                self.among(c.c.record_id, record_ids[start : start + 2000]),
                c.c.resolved_ms.is_(None),
            )
            for row in await conn.execute(query):
                open_rows[(row.record_id, row.field)] = row.id
        inserts = []
        for (record_id, name), versions in found.items():
            row = working[record_id]
            if (record_id, name) in open_rows:
                await conn.execute(
                    c.update()
                    .where(c.c.id == open_rows[(record_id, name)])
                    .values(versions=_versions_json(versions))
                )
            else:
                inserts.append(
                    {
                        "record_id": record_id,
                        "entity": row["entity"],
                        "village": row["village"],
                        "field": name,
                        "versions": _versions_json(versions),
                        "detected_ms": now,
                    }
                )
        if inserts:
            await conn.execute(c.insert(), inserts)
        settled = [
            conflict_id
            for key, conflict_id in open_rows.items()
            if key in touched
            and key not in found
            and not _still_conflicting(working[key[0]]["state"].get(key[1], ()))
        ]
        if settled:
            await conn.execute(
                c.update()
                .where(c.c.id.in_(settled))
                .values(resolved_ms=now, resolved_by=by, resolution=SUPERSEDED)
            )

    # --- conflicts -------------------------------------------------------------------------

    async def conflicts(
        self, *, village: str | None = None, resolved: bool | None = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Conflicts, newest first, as JSON-ready dicts: the open ones (``resolved=False``),
        the resolved ones (``True``) or both (``None``)."""
        c = db.conflicts
        query = sa.select(c).order_by(c.c.id.desc()).limit(limit)
        if resolved is not None:
            query = query.where(
                c.c.resolved_ms.is_not(None) if resolved else c.c.resolved_ms.is_(None)
            )
        if village:
            query = query.where(c.c.village == village)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_conflict_json(row) for row in rows]

    async def resolve(
        self, conflict_id: int, *, actor: str, value: Value = None, choose: int | None = None
    ) -> dict[str, Any]:
        """Resolve a conflict with one of its versions (``choose``, an index) or a new
        ``value``: a new version of the field stamped by this hub node that has seen every
        concurrent version, so it supersedes them all on every replica it reaches. Audited
        in the same transaction."""
        async with self.writing() as conn:
            head = (
                await conn.execute(sa.select(db.conflicts).where(db.conflicts.c.id == conflict_id))
            ).first()
            if head is None:
                raise ResolveError("no such conflict", 404)
            log_seq = await self.lock_village(conn, head.village)
            row = (
                await conn.execute(sa.select(db.conflicts).where(db.conflicts.c.id == conflict_id))
            ).one()
            if row.resolved_ms is not None:
                raise ResolveError("the conflict is already resolved", 409)
            record = (await self._load(conn, [row.record_id]))[row.record_id]
            frontier = record["state"].get(row.field, ())
            if choose is not None:
                if not 0 <= choose < len(frontier):
                    raise ResolveError("choose names no current version")
                value = frontier[choose].value
            spec = ENTITIES[row.entity].fields[row.field]
            problem = wire_value_error(spec, value)
            if problem is not None:
                raise ResolveError(f"{row.field}: {problem}")
            now = self.wall()
            log_seq = await self.write_hub_values(
                conn, {row.record_id: {row.field: value}}, log_seq, now
            )
            resolution = json.dumps({"value": value}, ensure_ascii=False)
            await conn.execute(
                db.conflicts.update()
                .where(db.conflicts.c.id == conflict_id)
                .values(resolved_ms=now, resolved_by=actor, resolution=resolution)
            )
            await audit.record(
                conn, at_ms=now, actor=actor, action="conflict.resolve", subject=row.record_id,
                detail={"conflict": conflict_id, "field": row.field, "value": value},
            )  # fmt: skip
            resolved = (
                await conn.execute(sa.select(db.conflicts).where(db.conflicts.c.id == conflict_id))
            ).one()
        return _conflict_json(resolved)

    async def write_hub_values(
        self,
        conn: AsyncConnection,
        values_by_record: Mapping[str, Mapping[str, Value]],
        log_seq: int,
        now: int,
    ) -> int:
        """Write field values of existing records of one village as versions of this hub
        node that have seen every current version (a resolution, a decision, a published
        decile): they supersede what the boxes hold and travel down to them. The caller
        holds the village lock and passes its ``log_seq``; the village's new ``log_seq``
        is stored and returned. A hub write never makes a record pending."""
        ids = sorted(values_by_record)
        records = await self._load(conn, ids)
        frontiers = tuple(
            version
            for record_id in ids
            for name in values_by_record[record_id]
            for version in records[record_id]["state"].get(name, ())
        )
        stamp = await self.stamp(conn, frontiers)
        village = ""
        for record_id in ids:
            record = records[record_id]
            village = record["village"]
            fields = {
                name: FieldVersion(value, stamp, self.node, seen_of(record["state"].get(name, ())))
                for name, value in values_by_record[record_id].items()
            }
            change = Change(record["entity"], record_id, village, self.node, fields)
            record["state"] = merge(record["state"], change).state
        log_seq = await self._write_records(conn, records, log_seq, now)
        if village:
            await conn.execute(
                db.villages.update().where(db.villages.c.code == village).values(log_seq=log_seq)
            )
        return log_seq

    async def stamp(
        self, conn: AsyncConnection, frontier: Frontier, *, node: str | None = None
    ) -> int:
        """A new stamp of this hub node (or of ``node``, a writer of the hub's own such as
        the registry import), after everything in ``frontier``; the clock state is
        persisted in the caller's transaction."""
        node = node or self.node
        query = sa.select(db.clocks.c.state).where(db.clocks.c.node == node)
        state = (await conn.execute(query)).scalar_one_or_none() or 0
        clock = HybridClock(node, state=max([state, *(v.time for v in frontier)]))
        stamp = clock.now(self.wall()).time
        await conn.execute(
            self._insert(db.clocks)
            .values(node=node, state=stamp)
            .on_conflict_do_update(index_elements=["node"], set_={"state": stamp})
        )
        return stamp

    # --- devices: status and down acks -----------------------------------------------------

    async def note_status(self, node: str, status: Status, *, retained: bool = False) -> Ack | None:
        """Store a box's status; for an online status, return the ack to answer it with
        (the highest seq applied of that box, 0 for none). A new ``epoch`` (the box was
        restored from a backup) restarts its down stream: numbering from 1, the village's
        whole state, its own records included (see ``docs/replication.md``).

        A ``retained`` status is the broker's copy of an old one (a hub worker gets every
        box's on subscribing): it says nothing about when the box was last heard of or how
        its clock is now, so it moves neither.

        The ``schema`` it reports decides which fields it is sent (``known_schema``); a
        higher one than before (the box was upgraded) sends the village again."""
        device = await self.device(node)
        if device is None:
            return None
        now = self.wall()
        async with self.writing() as conn:
            head = await self.lock_village(conn, device.village)
            device = await self.device(node, conn)
            update: dict[str, Any] = {
                "online": status.state == "online",
                "reported": json.dumps(
                    {
                        "outbox": status.outbox,
                        "oldest_ms": status.oldest_ms,
                        "up_seq": status.up_seq,
                        "down_watermark": status.down_watermark,
                        "software": status.software,
                        "wire": status.wire,
                        "schema": status.schema,
                        "digest": status.digest,
                        "records": status.records,
                        "at_ms": now,
                    }
                ),
            }
            if not retained:
                update["last_seen_ms"] = now
                if status.state == "online" and status.wall_ms:
                    update["clock_offset_ms"] = status.wall_ms - now
            applied = AppliedSeqs.from_state(device.up_watermark, json.loads(device.up_above))
            if status.up_floor - 1 > applied.watermark:
                # Seqs below the box's floor will never come: close the gap they leave, or
                # every later seq would be kept in up_above for ever.
                applied = AppliedSeqs.from_state(status.up_floor - 1, applied.above)
                watermark, above = applied.to_state()
                update.update(up_watermark=watermark, up_above=json.dumps(above))
            if status.schema > known_schema(device.reported):
                # Upgraded: what was left out for the old version is sent now, with the
                # village's whole state again (the box merges what it has, idempotently).
                update.update(down_cursor=0, down_by_field=False)
            if status.state == "online" and status.epoch != (device.epoch or ""):
                update["epoch"] = status.epoch
                if status.epoch:  # restored from a backup: a fresh down stream
                    update.update(
                        down_seq=0,
                        down_cursor=0,
                        down_by_field=False,
                        down_watermark=0,
                        down_above="[]",
                        resync_until=head,
                    )
                    await conn.execute(
                        db.down_batches.delete().where(db.down_batches.c.node == node)
                    )
            elif status.epoch == (device.epoch or ""):
                # The box's own word on its down stream (of this epoch: a status from before
                # a restore says nothing about the new stream): acks it sent may be lost.
                applied_down = _down_applied(device, status.down_watermark)
                if applied_down.watermark > device.down_watermark:
                    await self._store_down_applied(conn, device, applied_down)
            await conn.execute(db.devices.update().where(db.devices.c.node == node).values(update))
        if status.state != "online":
            return None
        return Ack(node, max([applied.watermark, *applied.above]), applied.watermark)

    async def note_telemetry(self, node: str, village: str, report: Telemetry) -> bool:
        """Store a box's latest health report (and how far its clock is off); ``False`` for
        a node that is not an active device of ``village`` (its report is dropped)."""
        now = self.wall()
        d = db.devices
        async with self.writing() as conn:
            result = await conn.execute(
                d.update()
                .where(d.c.node == node, d.c.village == village, d.c.status == "active")
                .values(
                    telemetry=encode_telemetry(report).decode(),
                    telemetry_ms=now,
                    last_seen_ms=now,
                    clock_offset_ms=report.wall_ms - now,
                )
            )
        return bool(result.rowcount)

    async def note_down_ack(self, ack: Ack) -> str | None:
        """Record a box's ack of a down batch and drop the stored batches it covers;
        returns the box's village (``None`` for an unknown node)."""
        device = await self.device(ack.node)
        if device is None:
            return None
        async with self.writing() as conn:
            await self.lock_village(conn, device.village)
            device = await self.device(ack.node, conn)
            if ack.seq > device.down_seq:
                return device.village  # an ack of a batch never sent: ignore it
            applied = _down_applied(device, ack.watermark).add(ack.seq)
            await self._store_down_applied(
                conn, device, applied, also=ack.seq, last_seen_ms=self.wall()
            )
        return device.village

    @staticmethod
    async def _store_down_applied(
        conn: AsyncConnection, device: Any, applied: AppliedSeqs, *, also: int = 0, **more: Any
    ) -> None:
        """Store what ``device`` has applied of its down stream (and ``more`` columns) and
        forget the stored batches it covers (and ``also``, a seq just acked)."""
        watermark, above = applied.to_state()
        await conn.execute(
            db.devices.update()
            .where(db.devices.c.node == device.node)
            .values(down_watermark=watermark, down_above=json.dumps(above), **more)
        )
        d = db.down_batches
        done = [seq for seq in (also, *above) if seq]
        await conn.execute(
            d.delete().where(
                d.c.node == device.node, sa.or_(d.c.seq <= watermark, d.c.seq.in_(done))
            )
        )

    # --- reads for the API -----------------------------------------------------------------

    async def records(
        self, village: str, *, entity: str | None = None, after: str = "", limit: int = 100
    ) -> list[dict[str, Any]]:
        """A village's records in id order (``after``: keyset paging), with shown values."""
        r = db.records
        query = sa.select(r).where(r.c.village == village, r.c.id > after).order_by(r.c.id)
        if entity:
            query = query.where(r.c.entity == entity)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [
            {
                "id": row.id,
                "entity": row.entity,
                "village": row.village,
                "household_id": row.household_id,
                "values": json.loads(row.data),
                "deleted": bool(row.deleted),
                "conflicts": row.conflicts,
                "updated_ms": row.updated_ms,
            }
            for row in rows
        ]

    async def record_state(self, record_id: str) -> dict[str, Frontier] | None:
        """One record's full merge state (for tests and support)."""
        query = sa.select(db.records.c.state).where(db.records.c.id == record_id)
        async with self.engine.connect() as conn:
            text = (await conn.execute(query)).scalar_one_or_none()
        return load_state(text) if text is not None else None


#: Entities whose changes from a box wait for the district's review (docs/cycle.md).
_REVIEWED = frozenset({"household", "member"})


#: Record id → the row (in :data:`COLUMNS` order, to be numbered) and digest of the record
#: a change creates, should the hub not hold it (:meth:`HubStore.prepare`).
Prepared = dict[str, tuple[tuple[Any, ...], int]]
#: Records :meth:`HubStore.prepare` makes rows of between two turns of the event loop.
_PREPARE_STEP = 50
_CREATED, _LOG_SEQ, _UPDATED = (
    COLUMNS.index(name) for name in ("created_ms", "log_seq", "updated_ms")
)


def _kept_field_seqs(row: Mapping[str, Any], settled: int | None) -> dict[str, int]:
    """The ``field_seqs`` of a stored record (``row`` as :meth:`HubStore._load` gave it,
    with its merged ``state``) written again: the fields whose versions this write keeps
    and that every box sent by field holds (at or below ``settled``, the lowest of their
    cursors) keep their older seq; the rest belong to the new ``log_seq`` and go down with
    it, so a box whose cursor passes the record's old place before it gets there misses
    none of them (hub/downlink.py)."""
    loaded, old_seq, seqs = row["loaded"], row["log_seq"], row["field_seqs"]
    if settled is None:
        settled = old_seq  # no box walks by field: every field keeps its seq
    kept = {}
    for name, frontier in row["state"].items():
        seq = seqs.get(name, old_seq)
        if seq <= settled and loaded.get(name) == frontier:
            kept[name] = seq
    return kept


def _creating(changes: Sequence[Change]) -> Iterator[tuple[Change, _FirstWrite]]:
    """The changes that create their record if the hub does not hold it yet, with their
    stamp and values: no other of ``changes`` names the record, and every field the change
    writes is a version of one writer at one stamp that has seen nothing. The merge state
    of such a record is one version per field, whose row
    :func:`hub.record_rows.new_record_rows` makes from the values alone."""
    counts = Counter(change.record_id for change in changes)
    for change in changes:
        if counts[change.record_id] == 1:
            first = _first_write(change)
            if first is not None:
                yield change, first


#: A change that writes a record's first versions: their time, writer and values.
_FirstWrite = tuple[int, str, dict[str, Value]]


def _first_write(change: Change) -> _FirstWrite | None:
    """The time and writer every field of ``change`` is written at and the values, when
    the fields share one stamp and none has seen an earlier version; ``None`` otherwise."""
    values: dict[str, Value] = {}
    time, node = -1, ""
    for name, version in change.fields.items():
        if version.seen:
            return None
        if not values:
            time, node = version.time, version.node
        elif version.time != time or version.node != node:
            return None
        values[name] = version.value
    return (time, node, values) if values else None


def _new_row(
    change: Change, first: _FirstWrite, village: str, review: bool
) -> tuple[tuple[Any, ...], int]:
    """The row (``log_seq`` and times to be set by :func:`_numbered`) and digest of the
    record ``change`` creates; a box's new household or member waits for review."""
    time, node, values = first
    (row,), _, digest = new_record_rows(
        [NewRecord(change.entity, change.record_id, values)],
        village, 0, stamp=time, node=node, now=0,
        pending=review and change.entity in _REVIEWED,
    )  # fmt: skip
    return row, digest


def _numbered(row: tuple[Any, ...], log_seq: int, now: int) -> tuple[Any, ...]:
    """A prepared row with its ``log_seq`` and its creation and update times."""
    numbered = list(row)
    numbered[_CREATED] = numbered[_UPDATED] = now
    numbered[_LOG_SEQ] = log_seq
    return tuple(numbered)


def known_schema(reported: str | None) -> int:
    """The entity schema version of a box by its last stored status (``reported``): 1 for
    a box that did not report one, 0 for a box never heard of (it is sent nothing)."""
    if reported is None:
        return 0
    return int(json.loads(reported).get("schema", 1))


def known_wire(reported: str | None) -> int:
    """The wire version to send a box in, by its last stored status (``reported``)."""
    return version_for(json.loads(reported).get("wire", 1) if reported else 1)


def _down_applied(device: Any, box_watermark: int) -> AppliedSeqs:
    """What ``device`` has applied of its down stream: the hub's record of its acks, raised
    to the contiguous watermark the box itself reports (an ack or a status carries it). A
    box's watermark covers every batch up to it, whichever of their acks were lost; it
    never counts past what the hub has numbered."""
    known = AppliedSeqs.from_state(device.down_watermark, json.loads(device.down_above))
    reported = min(box_watermark, device.down_seq)
    return AppliedSeqs.from_state(max(known.watermark, reported), known.above)


def _still_conflicting(frontier: Frontier) -> bool:
    return len(frontier) > 1 and any(v.value != frontier[0].value for v in frontier[1:])


def _conflict_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "record_id": row.record_id,
        "entity": row.entity,
        "village": row.village,
        "field": row.field,
        "versions": [
            {"value": value, "stamp": f"{time_:016x}@{node}", "node": node}
            for value, time_, node in json.loads(row.versions)
        ],
        "detected_ms": row.detected_ms,
        "resolved_ms": row.resolved_ms,
        "resolved_by": row.resolved_by,
        "resolution": json.loads(row.resolution) if row.resolution else None,
    }
