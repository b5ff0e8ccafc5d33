"""The edge store: records of every entity, their merge state, the outbox and the audit trail.

There is one write path, :meth:`Store.write`: it stamps a person's edits with the box's
hybrid logical clock, merges them, and writes the records, one outbox row per change, the
clock state and the audit rows in ONE ``BEGIN IMMEDIATE`` transaction on a database with
``synchronous=FULL``. When it returns, what the person saved is on disk with its outbox
entry; when it raises, nothing of it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from edge import auditchain, db
from edge.boxtime import CONFIRMATION_KEY, BoxTime, Confirmation, best_time
from edge.config import EdgeConfig
from edge.digest import fold_digests
from edge.disk import FULL_BELOW_BYTES, DiskReport, DiskWatch
from edge.records import AuditEntry, Edit, Record, audit_row, build_record, from_row, to_row
from protocol.changes import Change
from protocol.clock import HybridClock
from protocol.jsonform import dump_change
from protocol.merge import local_change, merge
from puskesos.boxtrail import about_person
from puskesos.search import Query

__all__ = ["Store", "StoreClosed", "pending_changes", "save_records", "wall_ms"]

T = TypeVar("T")


# Built once: these run on every save or page.
#: Most audit rows a person's data report shows (a year of daily views is far below it).
_TRAIL_LIMIT = 1000
_GET_BY_ID = sa.select(db.records).where(db.records.c.id == sa.bindparam("id"))
_GET_BY_ID_AND_ENTITY = _GET_BY_ID.where(db.records.c.entity == sa.bindparam("entity"))
_ACTIVE_NIKS = sa.select(db.records.c.nik, db.records.c.id, db.records.c.household_id).where(
    db.records.c.nik.in_(sa.bindparam("niks", expanding=True)),
    db.records.c.deleted.is_(False),
    sa.or_(db.records.c.status.is_(None), db.records.c.status == "aktif"),
)


def save_records(
    conn: sa.Connection, records: Iterable[Record], *, existing: Mapping[str, Record]
) -> None:
    """Insert the records whose id is not in ``existing`` (the stored records) and update
    the others (their ``created_ms`` is kept), and fold their new digests into the box's
    root, inside the caller's transaction."""
    rows = list(records)
    fold_digests(conn, [(existing.get(r.id), r) for r in rows])
    inserts = [to_row(r) for r in rows if r.id not in existing]
    updates = [to_row(r) | {"b_id": r.id} for r in rows if r.id in existing]
    if inserts:
        conn.execute(db.records.insert(), inserts)
    if updates:
        columns = [k for k in updates[0] if k not in ("b_id", "id", "created_ms")]
        conn.execute(
            db.records.update()
            .where(db.records.c.id == sa.bindparam("b_id"))
            .values({k: sa.bindparam(k) for k in columns}),
            updates,
        )


def pending_changes(conn: sa.Connection) -> tuple[int, int | None]:
    """How many changes wait for the hub and when the oldest was made (ms): the outbox rows
    plus the changes in sealed batches the hub has not acked yet (``edge.outbox``)."""
    o, b = db.outbox, db.up_batches
    count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(o.c.created_ms))).one()
    in_batches, oldest_sealed = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(b.c.changes), 0), sa.func.min(b.c.oldest_ms))
    ).one()
    known = [ms for ms in (oldest, oldest_sealed) if ms is not None]
    return count + in_batches, min(known) if known else None


def _changes(conn: sa.Connection) -> int:
    """Rows changed on this SQLite connection since it was opened."""
    changes: int = conn.connection.driver_connection.total_changes  # type: ignore[union-attr]
    return changes


class StoreClosed(RuntimeError):
    """The store is not open (not yet, or closed meanwhile: the box was locked)."""


def wall_ms() -> int:
    """The wall clock in Unix milliseconds (the box may have none worth trusting)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True, eq=False)
class _Job:
    """One caller's save, waiting for (or taken into) a group commit."""

    edits: list[Edit]
    actor: str
    address: str
    also_audit: tuple[AuditEntry, ...]
    saved: list[Record] = field(default_factory=list)
    error: Exception | None = None
    done: bool = False

    def fail(self, error: Exception) -> None:
        self.error = error
        self.done = True


class Store:
    """The box's database. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        clock: Callable[[], int] = wall_ms,
        key: bytes | None = None,
    ) -> None:
        self.config = config
        #: The data key the database is encrypted with (``None``: a plain database, or an
        #: encrypted one still locked).
        self.key = key
        #: Between :meth:`open` and :meth:`close`.
        self.opened = False
        self.village = config.village
        self.node = config.node
        self._wall = clock
        self._thread_engine: sa.Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._read_engine: sa.Engine | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._pending: list[_Job] = []
        self._inflight: asyncio.Future[None] | None = None
        self.clock = HybridClock(config.node, max_drift_ms=config.max_clock_drift_ms)
        #: An admin's confirmation of today's date (``edge.boxtime.confirm_today``).
        self.clock_confirmation: Confirmation | None = None
        self._save_listeners: list[Callable[[], None]] = []
        #: Told how every write went: ``/healthz`` and Beranda say when the disk is full.
        self.disk = DiskWatch(config.data_dir)

    async def open(self) -> None:
        """Connect, and load the clock state and an admin's confirmation of today's date
        (the schema must be at head: ``db.upgrade``)."""
        path = self.config.database_path
        self._thread_engine = db.create_thread_engine(path, writer=True, key=self.key)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-writer")
        self._read_engine = db.create_thread_engine(path, writer=False, key=self.key)
        self._readers = ThreadPoolExecutor(
            max_workers=db.READER_THREADS, thread_name_prefix="edge-reader"
        )
        state = await self.get_meta("clock")
        self.clock = HybridClock(
            self.node, state=int(state or 0), max_drift_ms=self.config.max_clock_drift_ms
        )
        self.clock_confirmation = Confirmation.from_json(await self.get_meta(CONFIRMATION_KEY))
        self.opened = True

    async def close(self) -> None:
        """Release the connections; what was handed to them finishes first, what comes
        after raises :class:`StoreClosed`."""
        self.opened = False
        pools, self._thread, self._readers = (self._thread, self._readers), None, None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True)
        for thread_engine in (self._thread_engine, self._read_engine):
            if thread_engine is not None:
                thread_engine.dispose()

    def now_ms(self) -> int:
        """The wall clock this store stamps with."""
        return self._wall()

    def box_time(self, *, confirmed: bool = True) -> BoxTime:
        """The best time this box knows and whether its wall clock agrees (see
        :mod:`edge.boxtime`): what dates people type are checked against. ``confirmed=False``
        leaves out the admin's confirmation of today's date (to judge a new one)."""
        return best_time(
            self._wall(),
            self.clock.state,
            self.clock_confirmation if confirmed else None,
            max_drift_ms=self.config.max_clock_drift_ms,
            timezone=self.config.timezone,
        )

    def set_clock_state(self, state: int) -> None:
        """Replace the clock's state, without the drift check of ``HybridClock.observe``.

        Only on the writer thread (inside :meth:`run_write`), and the caller persists the
        state in the same transaction: moving past stamps received from the hub (the time
        reference), or back to the wall clock after re-stamping (``edge.restamp``).
        """
        self.clock = HybridClock(
            self.node, state=state, max_drift_ms=self.config.max_clock_drift_ms
        )

    def on_save(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the event loop) after each commit of people's saves: the
        sync client's cue that the outbox has something new."""
        self._save_listeners.append(callback)

    async def read(self, query: Callable[[sa.Connection], T]) -> T:
        """Run ``query(conn)`` on a reader thread with a synchronous connection.

        One thread hop per query: through aiosqlite every statement (execute, fetch, close)
        is its own hop, about 0.8 ms of CPU per small query against 0.2 ms this way.
        """
        if self._read_engine is None or self._readers is None:
            raise StoreClosed("the store is not open")
        engine = self._read_engine

        def run() -> T:
            with engine.connect() as conn:
                return query(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def run_write(
        self, statements: Callable[[sa.Connection], T], *, durable: bool = True
    ) -> T:
        """Run ``statements(conn)`` in one write transaction on the writer thread (the same
        thread as the group commits, so writes never wait on each other's locks).

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for
        that transaction): for bookkeeping that a power cut may take back at the cost of a
        resend (the hub's acks), so that it does not hold the writer, and the saves behind
        it, for an fsync. The WAL keeps commits in order: such a transaction is on disk as
        soon as any later durable one is, and a power cut loses only a tail of them.
        """
        if self._thread_engine is None or self._thread is None:
            raise StoreClosed("the store is not open")
        engine = self._thread_engine

        def run() -> tuple[T, bool]:
            with engine.connect() as conn:
                driver = conn.connection.driver_connection
                if not durable:
                    driver.execute("PRAGMA synchronous=NORMAL")  # type: ignore[union-attr]
                try:
                    with conn.begin():
                        before = _changes(conn)
                        result = statements(conn)
                        changed = _changes(conn) != before
                finally:
                    if not durable:
                        driver.execute("PRAGMA synchronous=FULL")  # type: ignore[union-attr]
            return result, changed

        try:
            result, changed = await asyncio.get_running_loop().run_in_executor(self._thread, run)
        except Exception as exc:
            self.disk.failed(exc, self._wall())
            raise
        if changed:  # a transaction that changed nothing proves nothing about free space
            self.disk.wrote()
        return result

    async def disk_report(self) -> DiskReport:
        """The disk of the data folder (``edge.disk``). After a write was refused for lack
        of space, a small write tries again once the file system shows room, so space freed
        by an operator is noticed without waiting for someone's save."""
        report = self.disk.report()
        if report.write_failed_ms is not None and report.free_bytes >= FULL_BELOW_BYTES:
            # Still no room (run_write remembers it), or unknown: keep what we know.
            with contextlib.suppress(sa.exc.DBAPIError, OSError):
                await self.set_meta("disk_checked_ms", str(self._wall()))
            report = self.disk.report()
        return report

    # --- meta ------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table."""
        query = sa.select(db.meta.c.value).where(db.meta.c.key == key)
        return await self.read(lambda conn: conn.execute(query).scalar_one_or_none())

    async def set_meta(self, key: str, value: str, *, durable: bool = True) -> None:
        """Set a value of the ``meta`` table (its own transaction; see :meth:`run_write`)."""
        await self.run_write(lambda conn: db.put_meta(conn, key, value), durable=durable)

    # --- writes ----------------------------------------------------------------------------

    async def write(
        self,
        edits: Sequence[Edit],
        *,
        actor: str,
        address: str = "",
        also_audit: Iterable[AuditEntry] = (),
    ) -> list[Record]:
        """Apply a person's edits atomically (see the module docstring).

        Each edit's record gets the village of this box; each changed record gets an audit
        row (``create``/``update`` with the names of the changed fields) by ``actor`` from
        ``address``, and ``also_audit`` rows are added in the same transaction. Returns the
        records as saved (unchanged ones too, so the caller can show them).

        Group commit: saves that arrive while another is being written wait for it, then
        are written together in the next transaction (one fsync for all of them). Each
        save still succeeds or fails on its own, and returns only once it is on disk.
        """
        job = _Job(list(edits), actor, address, tuple(also_audit))
        self._pending.append(job)
        try:
            async with self._lock:
                # A leader cancelled mid-commit leaves its commit running (shielded): finish
                # it before deciding whether this save is still waiting.
                if self._inflight is not None and not self._inflight.done():
                    await asyncio.shield(self._inflight)
                if not job.done:
                    jobs, self._pending = self._pending, []
                    self._inflight = asyncio.ensure_future(self._commit(jobs))
                    await asyncio.shield(self._inflight)
        except asyncio.CancelledError:
            # Cancelled while still waiting: nobody may write this save later in its name.
            if job in self._pending:
                self._pending.remove(job)
            raise
        if job.error is not None:
            raise job.error
        return job.saved

    async def _commit(self, jobs: list[_Job]) -> None:
        try:
            await self._write_together(jobs)
        except Exception as exc:
            self.disk.failed(exc, self._wall())
            if len(jobs) == 1:
                jobs[0].fail(exc)
                return
            # One save broke the shared transaction: write each alone so the others land.
            for job in jobs:
                job.error = None
                await self._commit([job])

    async def _write_together(self, jobs: list[_Job]) -> None:
        if self._thread is None:
            raise StoreClosed("the store is not open")
        wall = self._wall()
        wrote = await asyncio.get_running_loop().run_in_executor(
            self._thread, self._write_in_thread, jobs, wall
        )
        if wrote:
            self.disk.wrote()
        for callback in self._save_listeners:
            callback()

    def _write_in_thread(self, jobs: list[_Job], wall: int) -> bool:
        """One group commit, start to end, in the writer thread (the async lock in
        :meth:`write` guarantees one at a time). Returns whether it wrote anything."""
        assert self._thread_engine is not None
        with self._thread_engine.begin() as conn:
            ids = sorted({edit.record_id for job in jobs for edit in job.edits})
            rows = (conn.execute(sa.select(db.records).where(db.records.c.id.in_(ids)))).all()
            stored: dict[str, Record] = {row.id: from_row(row) for row in rows}
            pending: dict[str, Record] = {}
            outbox_rows: list[dict[str, Any]] = []
            audit_rows: list[dict[str, Any]] = []
            for job in jobs:
                try:
                    records, changes = self._plan(job, {**stored, **pending}, wall)
                except ValueError as exc:
                    job.fail(exc)
                    continue
                job.saved = list(records.values())
                for change in changes:
                    pending[change.record_id] = records[change.record_id]
                    outbox_rows.append(
                        {
                            "record_id": change.record_id,
                            "entity": change.entity,
                            "change": dump_change(change),
                            "created_ms": wall,
                        }
                    )
                    first = change.record_id not in stored and not any(
                        row["record_id"] == change.record_id for row in audit_rows
                    )
                    audit_rows.append(
                        {
                            "at_ms": wall,
                            "actor": job.actor,
                            "action": "create" if first else "update",
                            "entity": change.entity,
                            "record_id": change.record_id,
                            "detail": json.dumps({"fields": sorted(change.fields)}),
                            "address": job.address,
                        }
                    )
                audit_rows += [audit_row(entry, wall) for entry in job.also_audit]
            save_records(conn, pending.values(), existing=stored)
            if outbox_rows:
                conn.execute(db.outbox.insert(), outbox_rows)
            auditchain.append(conn, audit_rows)
            if pending:
                db.put_meta(conn, "clock", str(self.clock.state))
        for job in jobs:
            job.done = True
        return bool(outbox_rows or audit_rows)

    def _plan(
        self, job: _Job, current: Mapping[str, Record], wall: int
    ) -> tuple[dict[str, Record], list[Change]]:
        """One save, in memory: the records as they will be and the changes to send.

        Raises ``ValueError`` (before anything is written) for an edit that names a record
        of another entity.
        """
        records: dict[str, Record] = {}
        changes: list[Change] = []
        for edit in job.edits:
            before = records.get(edit.record_id) or current.get(edit.record_id)
            if before is not None and before.entity != edit.entity:
                raise ValueError(f"record {edit.record_id} is a {before.entity}")
            # A stamp per edit: two edits of one record in one save must not share a stamp
            # (the second would look like a duplicate of the first and be dropped).
            stamp = self.clock.now(wall)
            change = local_change(
                before.state if before else None,
                entity=edit.entity,
                record_id=edit.record_id,
                village=self.village,
                stamp=stamp,
                new_values=edit.new_values,
            )
            if change is None:
                if before is not None:
                    records[edit.record_id] = before
                continue
            state = merge(before.state if before else None, change).state
            records[edit.record_id] = build_record(
                edit.entity,
                edit.record_id,
                self.village,
                state,
                created_ms=before.created_ms if before else wall,
                updated_ms=wall,
            )
            changes.append(change)
        return records, changes

    async def audit(self, entry: AuditEntry) -> None:
        """Append one row to the audit trail (e.g. a view of personal data)."""
        row = audit_row(entry, self._wall())
        await self.run_write(lambda conn: auditchain.append(conn, [row]))

    # --- reads -----------------------------------------------------------------------------

    async def get(self, record_id: str, entity: str | None = None) -> Record | None:
        """One record by id (of ``entity``, when given)."""
        query, params = _GET_BY_ID, {"id": record_id}
        if entity is not None:
            query, params = _GET_BY_ID_AND_ENTITY, {"id": record_id, "entity": entity}
        row = await self.read(lambda conn: conn.execute(query, params).first())
        return from_row(row) if row is not None else None

    async def get_each(self, entity: str, record_ids: Iterable[str]) -> dict[str, Record]:
        """The records of ``entity`` with these ids that exist, in one query."""
        wanted = sorted(set(record_ids))
        if not wanted:
            return {}
        query = sa.select(db.records).where(
            db.records.c.id.in_(wanted), db.records.c.entity == entity
        )
        rows = await self.read(lambda conn: conn.execute(query).all())
        return {row.id: from_row(row) for row in rows}

    async def related(self, entity: str, household_id: str) -> list[Record]:
        """The records of ``entity`` (members, proposals, ...) of a household, oldest first."""
        return (await self.related_to_each(entity, [household_id]))[household_id]

    async def related_to_each(
        self, entity: str, household_ids: Sequence[str]
    ) -> dict[str, list[Record]]:
        """:meth:`related` for a page of households, in one query."""
        query = (
            sa.select(db.records)
            .where(db.records.c.entity == entity, db.records.c.household_id.in_(household_ids))
            .order_by(db.records.c.created_ms, db.records.c.id)
        )
        rows = await self.read(lambda conn: conn.execute(query).all())
        found: dict[str, list[Record]] = {household_id: [] for household_id in household_ids}
        for row in rows:
            found[row.household_id].append(from_row(row))
        return found

    async def list(
        self,
        entity: str,
        *,
        where: Sequence[sa.ColumnElement[bool]] = (),
        offset: int = 0,
        limit: int = 25,
    ) -> tuple[list[Record], int]:
        """A page of records of ``entity``, newest change first, and the total count."""
        conditions = [db.records.c.entity == entity, *where]
        page = (
            sa.select(db.records)
            .where(*conditions)
            .order_by(db.records.c.updated_ms.desc(), db.records.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        count = sa.select(sa.func.count()).select_from(db.records).where(*conditions)
        rows, total = await self.read(
            lambda conn: (conn.execute(page).all(), conn.execute(count).scalar_one())
        )
        return [from_row(row) for row in rows], total

    @staticmethod
    def field_equals(name: str, value: str) -> sa.ColumnElement[bool]:
        """A condition on a field's shown value (for list filters)."""
        if name in ("status", "presence_status"):
            return db.records.c.status == value
        return sa.func.json_extract(db.records.c.data, f"$.{name}") == value

    async def search_households(
        self, query: Query, *, offset: int = 0, limit: int = 25
    ) -> tuple[list[Record], int]:
        """Households that answer ``query`` (:mod:`puskesos.search`): by the family-card number
        or a member's NIK, else those with a member whose name holds the text (in name
        order) and then those whose address does (in address order), in the RT/RW asked.

        Two steps on purpose: a page of matching household ids is found through the NIK, KK
        or search-key index first, then those households are fetched by primary key. In one
        query SQLite (which has no statistics on a box) walks every household in date order
        instead.
        """
        if not query:
            return await self.list("household", offset=offset, limit=limit)
        return await self.read(lambda conn: _search_households(conn, query, offset, limit))

    async def active_niks(self, niks: Iterable[str]) -> dict[str, tuple[str, str]]:
        """For each given NIK held by an active member of this box: (member id, household id).

        Only members have a ``nik`` column value, so the query names no entity: with one,
        SQLite may pick the entity index and read every member (70 ms at 20,000 households
        instead of 0.1 ms).
        """
        wanted = sorted(set(niks))
        if not wanted:
            return {}
        rows = await self.read(lambda conn: conn.execute(_ACTIVE_NIKS, {"niks": wanted}).all())
        return {row.nik: (row.id, row.household_id) for row in rows}

    async def counts(self) -> dict[str, int]:
        """How many records of each entity (tombstones excluded)."""
        query = (
            sa.select(db.records.c.entity, sa.func.count())
            .where(db.records.c.deleted.is_(False))
            .group_by(db.records.c.entity)
        )
        rows = await self.read(lambda conn: conn.execute(query).all())
        return {entity: n for entity, n in rows}

    async def outbox_pending(self) -> tuple[int, int | None]:
        """How many changes wait for the hub, and when the oldest was made (ms)."""
        return await self.read(pending_changes)

    async def login_failures(self) -> int:
        """Failed logins ever recorded on this box (the audit trail keeps them)."""
        query = (
            sa.select(sa.func.count())
            .select_from(db.audit)
            .where(db.audit.c.action == "login_failed")
        )
        return await self.read(lambda conn: conn.execute(query).scalar_one())

    async def person_trail(self, member_id: str, household_id: str) -> list[Any]:
        """The audit rows about one person, newest first
        (:func:`puskesos.boxtrail.about_person`)."""
        a = db.audit
        query = (
            sa.select(a)
            .where(about_person(a, member_id, household_id))
            .order_by(a.c.id.desc())
            .limit(_TRAIL_LIMIT)
        )
        return list(await self.read(lambda conn: conn.execute(query).all()))

    async def audit_log(
        self,
        *,
        record_id: str | None = None,
        actions: Sequence[str] = (),
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Any], int]:
        """Audit rows, newest first, optionally of one record and some actions; and the
        total count."""
        conditions = [db.audit.c.record_id == record_id] if record_id else []
        if actions:
            conditions.append(db.audit.c.action.in_(actions))
        page = (
            sa.select(db.audit)
            .where(*conditions)
            .order_by(db.audit.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        count = sa.select(sa.func.count()).select_from(db.audit).where(*conditions)
        rows, total = await self.read(
            lambda conn: (conn.execute(page).all(), conn.execute(count).scalar_one())
        )
        return list(rows), total


def _search_households(
    conn: sa.Connection, query: Query, offset: int, limit: int
) -> tuple[list[Record], int]:
    r = db.records
    if query.number:
        # Only members have a `nik` and only households a `kk` (see edge.records.to_row).
        matches = sa.union(
            sa.select(r.c.household_id.label("id")).where(r.c.nik == query.number),
            sa.select(r.c.id).where(r.c.kk == query.number),
        )
        ids = [row[0] for row in conn.execute(matches) if row[0] is not None]
        total = len(ids)
        ids = ids[offset : offset + limit]
    else:
        # Members by name, then households by address and RT/RW (puskesos.search), each in
        # key order straight from the covering (entity, search_key, household_id) index,
        # read once: a page and the total come from the same list of ids.
        def ids_of(entity: str, *needles: str) -> list[str]:
            # Through the driver: SQLAlchemy's handling of thousands of rows (an address the
            # whole village shares) costs more than SQLite's scan.
            held = "".join(" AND instr(search_key, ?) > 0" for _ in needles)
            sql = (
                "SELECT household_id FROM records WHERE entity = ? AND household_id IS NOT NULL"
                f"{held} ORDER BY search_key"
            )
            driver = conn.connection.driver_connection
            return [row[0] for row in driver.execute(sql, (entity, *needles))]  # type: ignore[union-attr]

        placed = ids_of("household", *(n for n in (query.text, query.area) if n))
        named = ids_of("member", query.text) if query.text else []
        if query.area:
            in_area = set(ids_of("household", query.area))
            named = [i for i in named if i in in_area]
        ids = list(dict.fromkeys(named + placed))
        total = len(ids)
        ids = ids[offset : offset + limit]
    if not ids:
        return [], total
    fetch = sa.select(db.records).where(r.c.id.in_(ids), r.c.entity == "household")
    rows = {row.id: from_row(row) for row in conn.execute(fetch)}
    return [rows[i] for i in ids if i in rows], total
