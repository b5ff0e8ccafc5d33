"""Importing the district's registry extract into the hub (``docs/registry.md``, section 1).

Rows are read one at a time (:mod:`hub.registry_files`), turned into households and
members and checked (:mod:`protocol.registry`; in worker processes for a large extract,
:mod:`hub.registry_checks`), and written in chunks as versions of the writer
:data:`REGISTRY_NODE`: a chunk's households, then its members, in one transaction
whatever villages they are of (their locks taken in code order), planned whole first so
that a row any part of which is refused is written in no part. Records the
hub does not hold yet are inserted in bulk with the rows merging them would give
(:meth:`hub.store.HubStore.insert_new`); known ones are merged. ``registry_rows``
links each extract id to its record and keeps the values last imported, so that a
re-import writes only what changed and a field a box changed since is a conflict, not an
overwrite. Imported records reach the boxes through the ordinary downlink.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import audit, db
from hub.record_rows import NewRecord, insert_rows
from hub.registry_checks import CheckedRow, CheckedRows, default_workers, fewer_collections
from hub.store import HubStore
from protocol.changes import REGISTRY_NODE, Change, FieldVersion
from protocol.entities import HOUSEHOLD, MEMBER
from protocol.ids import uuid7
from protocol.jsonform import load_state
from protocol.merge import Frontier, values
from protocol.registry import ImportIssues, Layout, RowIssue, RowPart

__all__ = ["REGISTRY_NODE", "ImportSummary", "Report", "import_files"]

#: Parts (a household or a member) per chunk; a chunk is written in one transaction,
#: whatever villages it is of.
CHUNK = 5000
#: Records the hub does not hold yet are inserted in bulk (``HubStore.insert_new``)
#: instead of merged one by one: the same rows (tests compare the two ways).
BULK_NEW = True


@dataclass
class ImportSummary:
    """What an import did; ``rows == written + unchanged + refused``."""

    rows: int = 0
    written: int = 0
    unchanged: int = 0
    refused: int = 0
    created: int = 0
    updated: int = 0
    conflicts: int = 0
    warnings: int = 0
    missing: int = 0
    villages: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "written": self.written, "unchanged": self.unchanged,
            "refused": self.refused, "created": self.created, "updated": self.updated,
            "conflicts": self.conflicts, "warnings": self.warnings, "missing": self.missing,
            "villages": dict(self.villages),
        }  # fmt: skip


class Report:
    """The error report: CSV with ``berkas, baris, kolom, kode, tingkat, pesan``."""

    HEADER = ("berkas", "baris", "kolom", "kode", "tingkat", "pesan")

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)
        self._writer.writerow(self.HEADER)
        self.errors = 0
        self.warnings = 0

    def add(self, where: tuple[str, int], issue: RowIssue) -> None:
        level = "kesalahan" if issue.level == "error" else "peringatan"
        self._writer.writerow((*where, issue.column, issue.code, level, issue.message))
        if issue.level == "error":
            self.errors += 1
        else:
            self.warnings += 1


@dataclass(slots=True)
class _Pending:
    part: RowPart
    where: tuple[str, int]
    warnings: list[RowIssue]
    #: A member's village: its household's, once linked (:func:`_link_members`).
    village: str = ""


@dataclass(slots=True)
class _Plan:
    """What to do with one part: its record (``exists``: already stored, by an earlier
    import or under the id the file gives), the values imported now and those that
    changed since the last import."""

    item: _Pending
    record_id: str
    imported: dict[str, object]
    changed: dict[str, object]
    exists: bool


@dataclass
class _Import:
    store: HubStore
    layout: Layout
    report: Report
    today: date
    import_id: int
    summary: ImportSummary = field(default_factory=ImportSummary)
    #: Row outcomes of the chunk being written: (file, row) → "refused"/"written"/...
    outcome: dict[tuple[str, int], str] = field(default_factory=dict)
    #: The (village, entity) pairs this import listed: only their records can be missing.
    seen: set[tuple[str, str]] = field(default_factory=set)
    #: Records created when the tables' statistics are refreshed next (PostgreSQL).
    analyzed_at: int = CHUNK

    def note(self, where: tuple[str, int], what: str) -> None:
        """Note a row's outcome: the worst of what its parts had, ``refused`` over
        ``written`` over ``unchanged``."""
        before = self.outcome.get(where, "unchanged")
        if before != "refused" and what != "unchanged":
            self.outcome[where] = what
        elif where not in self.outcome:
            self.outcome[where] = before

    def refuse(self, where: tuple[str, int], issue: RowIssue) -> None:
        self.report.add(where, issue)
        self.note(where, "refused")

    def take(self, row: CheckedRow) -> list[_Pending]:
        """Count ``row`` and report its errors; its parts to write (none when it has an
        error: a row with an error is written in no part)."""
        self.summary.rows += 1
        where = row.where
        self.note(where, "unchanged")
        if not row.issues and not any(found for _, found in row.parts):
            return [_Pending(part, where, []) for part, _ in row.parts]
        errors = row.issues + [i for _, found in row.parts for i in found if i.level == "error"]
        for issue in errors:
            self.refuse(where, issue)
        if errors:
            return []
        return [
            _Pending(part, where, [i for i in found if i.level != "error"])
            for part, found in row.parts
        ]

    def settle_rows(self) -> None:
        counts = Counter(self.outcome.values())
        self.summary.written += counts["written"]
        self.summary.unchanged += counts["unchanged"]
        self.summary.refused += counts["refused"]
        self.outcome.clear()


async def import_files(
    store: HubStore,
    paths: Sequence[Path],
    layout: Layout,
    report: Report,
    *,
    today: date,
    progress: Callable[[int, float], None] | None = None,
    workers: int | None = None,
) -> ImportSummary:
    """Import ``paths`` (households and members, in one file or several) and return the
    summary; bad rows go to ``report`` and nothing of them is written. ``workers``:
    processes that check the rows (0: this one; default: one per processor for a large
    extract, see :mod:`hub.registry_checks`)."""
    async with store.engine.begin() as conn:
        result = await conn.execute(
            db.registry_imports.insert().values(
                started_ms=store.wall(), files=json.dumps([p.name for p in paths])
            )
        )
        import_id = int(result.inserted_primary_key[0])
    run = _Import(store, layout, report, today, import_id)
    pending: list[_Pending] = []
    if workers is None:
        workers = default_workers(paths)
    rows = CheckedRows(paths, layout, today=today, workers=workers)
    with fewer_collections():
        async with aclosing(rows.chunks()) as chunks:
            async for chunk in chunks:
                for row in chunk:
                    pending += run.take(row)
                    if len(pending) >= CHUNK:
                        await _flush(run, pending)
                        pending = []
                        await _analyze_as_it_grows(run)
                    if progress is not None and run.summary.rows % 1000 == 0:
                        progress(run.summary.rows, rows.fraction)
        await _flush(run, pending)
    run.summary.missing = await _flag_missing(store, import_id, run.seen)
    run.summary.warnings = report.warnings
    async with store.engine.begin() as conn:
        await conn.execute(
            db.registry_imports.update()
            .where(db.registry_imports.c.id == import_id)
            .values(finished_ms=store.wall(), summary=json.dumps(run.summary.as_dict()))
        )
    if progress is not None:
        progress(run.summary.rows, 1.0)
    return run.summary


async def _analyze_as_it_grows(run: _Import) -> None:
    """On PostgreSQL, refresh the planner's statistics of the tables an import fills each
    time the records it created double: a first import starts from empty tables, and the
    plans cached for them then (sequential scans) would otherwise stay for the whole run,
    making every chunk's lookup slower than the last. Only the columns the import looks
    rows up by (and the tables' sizes, which every ``ANALYZE`` refreshes): sampling and
    sorting the records' JSON as well took about a quarter of PostgreSQL's work on an
    import of 100,000 records (autovacuum refreshes the rest)."""
    if run.store.engine.dialect.name != "postgresql" or run.summary.created < run.analyzed_at:
        return
    run.analyzed_at = 2 * max(run.summary.created, CHUNK)
    async with run.store.engine.connect() as conn:
        await conn.execute(sa.text(_ANALYZE))
        await conn.commit()


_ANALYZE = (
    "ANALYZE registry_rows (entity, registry_id, village, import_id),"
    " records (id, entity, village, household_id)"
)


async def _flush(run: _Import, pending: list[_Pending]) -> None:
    """Write a chunk in one transaction for all its villages: its households first, then
    its members (linked to them). Every part is planned before anything is written, so
    that a row any part of which is refused is written in no part; leaving a row out can
    leave another row's member without its household, so the chunk is planned again
    until no more rows are refused."""
    store = run.store
    households = [p for p in pending if p.part.entity == HOUSEHOLD.name]
    members = [p for p in pending if p.part.entity == MEMBER.name]
    async with store.engine.begin() as conn:
        wanted = sorted({m.part.household_registry_id for m in members})
        known = await _links(store, conn, HOUSEHOLD.name, wanted)
        villages = {_household_village(p) for p in households}
        await store.lock_villages(conn, [*villages, *(link.village for link in known.values())])
        links = {
            HOUSEHOLD.name: await _links(
                store, conn, HOUSEHOLD.name, [p.part.registry_id for p in households]
            ),
            MEMBER.name: await _links(
                store, conn, MEMBER.name, [p.part.registry_id for p in members]
            ),
        }
        stored = await _stored(store, conn, [p.part.record_id for p in pending if p.part.record_id])
        refused: dict[tuple[str, int], list[RowIssue]] = {}
        while True:
            issues: dict[tuple[str, int], list[RowIssue]] = {}
            kept = [p for p in households if p.where not in refused]
            groups = _by_village(kept, _household_village)
            household_plans = _plans(run, HOUSEHOLD.name, groups, links, stored, issues)
            planned = {
                plan.item.part.registry_id: (plan.record_id, village)
                for village, plans in household_plans.items()
                for plan in plans
            }
            kept = [p for p in members if p.where not in refused]
            linked = _link_members(run, kept, known, planned, issues)
            groups = _by_village(linked, _member_village)
            taken = {**stored, **{rid: (HOUSEHOLD.name, v) for rid, v in planned.values()}}
            member_plans = _plans(run, MEMBER.name, groups, links, taken, issues)
            if not issues:
                break
            refused.update(issues)
        for where, found in refused.items():
            for issue in found:
                run.refuse(where, issue)
        warned: list[_Plan] = []
        for entity, plans in ((HOUSEHOLD.name, household_plans), (MEMBER.name, member_plans)):
            if plans:
                warned += await _write(run, conn, entity, plans, links[entity])
        for plan in warned:  # audit rows last: the transaction's other writes come first
            await audit.record(
                conn, at_ms=store.wall(), actor=REGISTRY_NODE, action="registry.warning",
                subject=plan.record_id, detail={"codes": [w.code for w in plan.item.warnings]},
            )  # fmt: skip
    run.settle_rows()


def _household_village(item: _Pending) -> str:
    return str(item.part.values["village_code"])


def _member_village(item: _Pending) -> str:
    return item.village


def _by_village(
    items: Iterable[_Pending], village_of: Callable[[_Pending], str]
) -> list[tuple[str, list[_Pending]]]:
    groups: dict[str, list[_Pending]] = {}
    for item in items:
        groups.setdefault(village_of(item), []).append(item)
    return sorted(groups.items())


def _link_members(
    run: _Import,
    members: list[_Pending],
    known: dict[str, Any],
    planned: dict[str, tuple[str, str]],
    issues: dict[tuple[str, int], list[RowIssue]],
) -> list[_Pending]:
    """Members whose household is stored (``known``: its ``registry_rows``) or planned in
    this chunk, with ``household_id`` set; the others are refused (an unknown household,
    or one of another village) into ``issues``."""
    linked = []
    for member in members:
        part = member.part
        if member.where in issues:
            continue  # its row's household part was refused: nothing of the row is written
        household = planned.get(part.household_registry_id)
        if household is None and part.household_registry_id in known:
            link = known[part.household_registry_id]
            household = (link.record_id, link.village)
        if household is None:
            issue = ImportIssues.household_missing(
                run.layout.member_household, part.household_registry_id
            )
            issues.setdefault(member.where, []).append(issue)
            continue
        record_id, village = household
        if part.village and part.village != village:
            column = _village_column(run.layout, part)
            issue = ImportIssues.other_village(column, part.village, village)
            issues.setdefault(member.where, []).append(issue)
            continue
        part.values["household_id"] = record_id
        member.village = village
        linked.append(member)
    return linked


def _plans(
    run: _Import,
    entity: str,
    groups: list[tuple[str, list[_Pending]]],
    links: dict[str, dict[str, Any]],
    stored: dict[str, tuple[str, str]],
    issues: dict[tuple[str, int], list[RowIssue]],
) -> dict[str, list[_Plan]]:
    return {
        village: _plan(run, entity, village, group, links[entity], stored, issues)
        for village, group in groups
    }


async def _write(
    run: _Import,
    conn: AsyncConnection,
    entity: str,
    plans: dict[str, list[_Plan]],
    links: dict[str, Any],
) -> list[_Plan]:
    """The planned records of a chunk, by village, in the chunk's transaction (which holds
    the villages' locks). Records the hub does not hold yet are inserted in bulk
    (:meth:`HubStore.insert_new`); the others are merged. Returns the plans with
    warnings (to audit)."""
    store = run.store
    heads = await store.lock_villages(conn, list(plans))
    known = [plan.record_id for ps in plans.values() for plan in ps if plan.changed and plan.exists]
    states = await _states(store, conn, known)
    frontiers = [v for state in states.values() for f in state.values() for v in f]
    stamp = await store.stamp(conn, tuple(frontiers), node=REGISTRY_NODE)
    new: dict[str, list[NewRecord]] = {}
    changes: dict[str, list[Change]] = {}
    written: set[str] = set()
    for village, village_plans in plans.items():
        run.seen.add((village, entity))
        new[village], changes[village], made = _changes(
            run, entity, village, village_plans, states, stamp
        )
        written |= made
    now = store.wall()
    fresh = [record.record_id for group in new.values() for record in group]
    if BULK_NEW and len(set(fresh)) == len(fresh):
        heads = await store.insert_new(conn, heads, new, stamp=stamp, node=REGISTRY_NODE, now=now)
    else:  # the same records, merged one by one (an id the file gives twice: merged)
        changes = {v: _created(new[v], v, stamp) + group for v, group in changes.items()}
    for village, group in changes.items():
        if not group:
            continue
        log_seq, conflicts = await store.merge_changes(
            conn, village, group, heads[village][0], now, by=REGISTRY_NODE, review=False
        )
        run.summary.conflicts += conflicts
        await conn.execute(
            db.villages.update().where(db.villages.c.code == village).values(log_seq=log_seq)
        )
    await _save_links(conn, run, entity, plans, links)
    warned: list[_Plan] = []
    for village, ps in plans.items():
        for plan in ps:
            item, record_id = plan.item, plan.record_id
            if record_id in written:
                run.note(item.where, "written")
                run.summary.villages[village] += 1
            for warning in item.warnings:
                run.report.add(item.where, warning)
            if item.warnings:
                warned.append(plan)
    return warned


def _plan(
    run: _Import,
    entity: str,
    village: str,
    group: list[_Pending],
    links: dict[str, Any],
    stored: dict[str, tuple[str, str]],
    issues: dict[tuple[str, int], list[RowIssue]],
) -> list[_Plan]:
    """What to do with each of a village's parts: refused (into ``issues``), met before
    in this import, or a plan; the records the hub does not hold yet first (so that they
    get the first ``log_seq`` numbers, whichever way they are written)."""
    plans: list[_Plan] = []
    taken: dict[str, tuple[RowPart, dict[str, object]]] = {}
    for item in group:
        part = item.part
        if part.registry_id in taken:  # twice in this chunk
            first, first_values = taken[part.registry_id]
            if part is not first:  # not a household read once for all its members' rows
                _twice(run, item, first_values, _imported(part), issues)
            continue
        imported = _imported(part)
        link = links.get(part.registry_id)
        if link is not None and link.village != village:
            column = _village_column(run.layout, part)
            issue = ImportIssues.moved(column, part.registry_id, link.village)
            issues.setdefault(item.where, []).append(issue)
            continue
        before = json.loads(link.imported) if link is not None else {}
        if link is not None and link.import_id == run.import_id:
            _twice(run, item, before, imported, issues)
            continue
        if link is not None:
            record_id = link.record_id
        elif part.record_id in stored and stored[part.record_id] != (entity, village):
            issue = ImportIssues.record_taken(run.layout.record_id, part.record_id)
            issues.setdefault(item.where, []).append(issue)
            continue
        else:
            record_id = part.record_id or uuid7(run.store.wall())
        taken[part.registry_id] = (part, imported)
        # All of it for a new record (the parser gives no None values to leave out).
        changed = {k: v for k, v in imported.items() if before.get(k) != v} if before else imported
        exists = link is not None or record_id in stored
        plans.append(_Plan(item, record_id, imported, changed, exists))
    if any(plan.exists for plan in plans):
        return sorted(plans, key=lambda plan: plan.exists)
    return plans


def _imported(part: RowPart) -> dict[str, object]:
    """The values of ``part`` that an import writes (and keeps in ``registry_rows``): all
    of them (a member's with its ``household_id``, once linked). Not to be changed."""
    return part.values


def _village_column(layout: Layout, part: RowPart) -> str:
    return part.sources.get("village_code") or layout.column_of(HOUSEHOLD.name, "village_code")


def _twice(
    run: _Import,
    item: _Pending,
    before: dict[str, object],
    imported: dict[str, object],
    issues: dict[tuple[str, int], list[RowIssue]],
) -> None:
    """An id met again in this import: the same values (a household repeated on each of
    its members' rows) are fine, other values are refused."""
    if before != imported:
        column = run.layout.household_id
        if item.part.entity == MEMBER.name:
            column = run.layout.member_id
        issues.setdefault(item.where, []).append(ImportIssues.twice(column, item.part.registry_id))


def _changes(
    run: _Import,
    entity: str,
    village: str,
    plans: list[_Plan],
    states: dict[str, dict[str, Frontier]],
    stamp: int,
) -> tuple[list[NewRecord], list[Change], set[str]]:
    """What to write: the records to create, with every field; of a known one, the
    versions of each field whose extract value changed since the last import and differs
    from what the record shows, ``seen`` being the import's own last version of that
    field (so a box's later edit stays concurrent: a conflict when the values differ).
    Returns those new records, the changes of known ones and the ids of both."""
    new: list[NewRecord] = []
    changes: list[Change] = []
    written: set[str] = set()
    for plan in plans:
        record_id = plan.record_id
        changed = {**plan.changed, "registry_id": plan.item.part.registry_id}
        if not plan.exists:
            new.append(NewRecord(entity, record_id, changed))  # type: ignore[arg-type]
            run.summary.created += 1
            written.add(record_id)
            continue
        state = states.get(record_id)
        if state is None:
            continue
        shown = values(state)
        versions = {
            name: FieldVersion(value, stamp, REGISTRY_NODE, _seen(state.get(name, ())))  # type: ignore[arg-type]
            for name, value in changed.items()
            if shown.get(name) != value
        }
        if not versions:
            continue
        run.summary.updated += 1
        changes.append(Change(entity, record_id, village, REGISTRY_NODE, versions))
        written.add(record_id)
    return new, changes, written


def _created(new: list[NewRecord], village: str, stamp: int) -> list[Change]:
    """New records as the changes that create them (every field a first version)."""
    made = []
    for entity, record_id, fields in new:
        versions = {name: FieldVersion(v, stamp, REGISTRY_NODE) for name, v in fields.items()}
        made.append(Change(entity, record_id, village, REGISTRY_NODE, versions))
    return made


def _seen(frontier: Frontier) -> tuple[tuple[str, int], ...]:
    """What a new import version of a field has seen: the import's previous version."""
    times = [v.time for v in frontier if v.node == REGISTRY_NODE]
    times += [t for v in frontier for n, t in v.seen if n == REGISTRY_NODE]
    return ((REGISTRY_NODE, max(times)),) if times else ()


#: Ids per ``IN`` list (SQLite binds each as a parameter).
_IDS_PER_QUERY = 2000


async def _select_among(
    conn: AsyncConnection, query: Callable[[Sequence[str]], sa.Select[Any]], ids: Sequence[str]
) -> list[Any]:
    """The rows of ``query(some ids)`` for all ``ids``, a bounded list at a time."""
    rows: list[Any] = []
    for start in range(0, len(ids), _IDS_PER_QUERY):
        rows += (await conn.execute(query(ids[start : start + _IDS_PER_QUERY]))).all()
    return rows


async def _links(
    store: HubStore, conn: AsyncConnection, entity: str, ids: list[str]
) -> dict[str, Any]:
    """The ``registry_rows`` of ``ids`` (extract ids of ``entity``) that exist."""
    rr = db.registry_rows

    def query(some: Sequence[str]) -> sa.Select[Any]:
        return sa.select(rr).where(rr.c.entity == entity, store.among(rr.c.registry_id, some))

    return {row.registry_id: row for row in await _select_among(conn, query, ids)}


async def _stored(
    store: HubStore, conn: AsyncConnection, ids: list[str]
) -> dict[str, tuple[str, str]]:
    """The records already stored under ids the file gives: id → (entity, village)."""
    r = db.records

    def query(some: Sequence[str]) -> sa.Select[Any]:
        return sa.select(r.c.id, r.c.entity, r.c.village).where(store.among(r.c.id, some))

    rows = await _select_among(conn, query, ids)
    return {row.id: (row.entity, row.village) for row in rows}


async def _states(
    store: HubStore, conn: AsyncConnection, ids: list[str]
) -> dict[str, dict[str, Frontier]]:
    r = db.records

    def query(some: Sequence[str]) -> sa.Select[Any]:
        return sa.select(r.c.id, r.c.state).where(store.among(r.c.id, some))

    return {row.id: load_state(row.state) for row in await _select_among(conn, query, ids)}


async def _save_links(
    conn: AsyncConnection,
    run: _Import,
    entity: str,
    plans: dict[str, list[_Plan]],
    links: dict[str, Any],
) -> None:
    rr = db.registry_rows
    inserts: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    for village, village_plans in plans.items():
        for plan in village_plans:
            document = _IMPORTED(plan.imported).decode()
            registry_id = plan.item.part.registry_id
            if registry_id in links:
                updates.append({"b_id": registry_id, "imported": document})
            else:
                row = (entity, registry_id, plan.record_id, village, document, run.import_id, False)
                inserts.append(row)
    if updates:
        await conn.execute(
            rr.update()
            .where(rr.c.entity == entity, rr.c.registry_id == sa.bindparam("b_id"))
            .values(imported=sa.bindparam("imported"), import_id=run.import_id, missing=False),
            updates,
        )
    await insert_rows(conn, rr, _LINK_COLUMNS, inserts)


#: ``registry_rows.imported``: the values last imported, read back with ``json.loads``.
_IMPORTED = msgspec.json.Encoder(order="sorted").encode

_LINK_COLUMNS = (
    "entity",
    "registry_id",
    "record_id",
    "village",
    "imported",
    "import_id",
    "missing",
)


async def _flag_missing(store: HubStore, import_id: int, seen: set[tuple[str, str]]) -> int:
    """Flag the records of the villages and entities this import listed that it no longer
    lists (never deleted): a members-only file flags no household. Returns how many."""
    rr = db.registry_rows
    flagged = 0
    async with store.engine.begin() as conn:
        for village, entity in sorted(seen):
            where = sa.and_(
                rr.c.village == village, rr.c.entity == entity, rr.c.import_id != import_id
            )
            result = await conn.execute(rr.update().where(where).values(missing=True))
            flagged += result.rowcount or 0
    return flagged
