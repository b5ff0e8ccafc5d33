"""Write a signed dataset folder from a stream of records, in flat memory.

The caller (the monthly cycle's freeze, a test, the benchmark) supplies the records as an
async or plain iterable of :class:`ExportRecord`. Each entity gets a JSON Lines file
(``{"id", "village", "values"}`` per line, the authoritative form) and a CSV file for
spreadsheets (columns ``id``, ``village`` and the entity's fields in the order of
:data:`protocol.entities.ENTITIES`). Bytes, records and SHA-256 are counted while writing,
so nothing is read twice and only a few batches of records are in memory at a time.

The encoding runs in a worker process, batch by batch: the event loop stays free, and on a
two-core machine reading the database (this process) and encoding (the worker) overlap:
a district's export takes about a third less time than with a worker thread, where the
two took turns holding the GIL (bench/cycle.py). Records read from the database carry
their values as the stored JSON text, decoded by the worker.

The folder is built under a temporary name beside the target and renamed into place once
every file, ``manifest.json`` and ``manifest.sig`` are on disk: a crash leaves either no
dataset or a whole one (the half-built one is a dot-folder that a new export ignores).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import multiprocessing
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from hub.keys import sign
from protocol.dataset import (
    FORMATS,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    DatasetFile,
    Manifest,
    canonical_bytes,
    file_name,
    is_district,
    is_period,
)
from protocol.entities import ENTITIES
from protocol.schema import FieldKind as K
from puskesos.durable import fsync_dir, write_file
from puskesos.export import FORMULA_START

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CYCLE_ENTITIES",
    "SCHEMA_VERSION",
    "ExportError",
    "ExportRecord",
    "export_dataset",
    "hub_records",
    "period_records",
]

#: Version of the record layout inside the files (entity fields as in protocol/entities.py).
SCHEMA_VERSION = 1
#: The entities of a period's dataset (the monthly cycle's export).
CYCLE_ENTITIES = ("household", "member")
#: Records handed to the worker process at once.
BATCH = 5000
#: Batches sent to the worker process and not yet written, at most.
IN_FLIGHT = 3


class ExportError(ValueError):
    """An export that cannot be made; the message says why."""


class ExportRecord(NamedTuple):
    """One record as it goes into the dataset: its shown values, without stamps, as a
    mapping or as the JSON text of one (as the hub database stores them). A named tuple:
    millions are made and sent to the worker process per export."""

    entity: str
    id: str
    village: str
    values: Mapping[str, Any] | str


#: An :class:`ExportRecord` as a plain tuple: what crosses to the worker process (pickling
#: a plain tuple runs in C; a named tuple's goes through Python per record).
_Row = tuple[str, str, str, Mapping[str, Any] | str]


class _Sink:
    """One output file that counts its bytes and hashes them as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._sha = hashlib.sha256()
        self.bytes = 0
        self.records = 0

    def write(self, data: bytes) -> None:
        """Append ``data`` (a whole batch of lines at once: one call, one hash update)."""
        self._out.write(data)
        self._sha.update(data)
        self.bytes += len(data)

    def close(self) -> str:
        """Flush to disk; returns the hex SHA-256."""
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        return self._sha.hexdigest()


@dataclass(frozen=True, slots=True)
class _Layout:
    """An entity's CSV columns and which of them need converting (positions in a row)."""

    columns: tuple[str, ...]
    flags: tuple[int, ...]
    lists: tuple[int, ...]
    texts: tuple[int, ...]

    @classmethod
    def of(cls, entity: str) -> _Layout:
        specs = list(ENTITIES[entity].fields.values())
        at = {kind: tuple(i + 2 for i, s in enumerate(specs) if s.kind is kind) for kind in K}
        return cls(tuple(s.name for s in specs), at[K.BOOL], at[K.ENUM_SET], at[K.TEXT])


class _Writer:
    """The files of one dataset while it is written (used from one thread at a time).

    A batch is encoded into memory per entity, then written and hashed in one call per
    file: per-line writes and hash updates would cost more than the encoding.
    """

    def __init__(self, folder: Path, entities: Sequence[str]) -> None:
        self._encode = msgspec.json.Encoder().encode
        self._layouts = {entity: _Layout.of(entity) for entity in entities}
        self._jsonl = {e: _Sink(folder / file_name(e, "jsonl")) for e in entities}
        self._csv = {e: _Sink(folder / file_name(e, "csv")) for e in entities}
        self._text = io.StringIO()
        self._rows = csv.writer(self._text)
        for entity, layout in self._layouts.items():
            self._rows.writerow(("id", "village", *layout.columns))
            self._flush_csv(entity)

    def _flush_csv(self, entity: str) -> None:
        self._csv[entity].write(self._text.getvalue().encode())
        self._text.seek(0)
        self._text.truncate()

    def write(self, batch: Sequence[_Row]) -> None:
        """Append a batch of records (in order) to their entities' files."""
        encode, decode, rows = self._encode, msgspec.json.decode, self._rows
        by_entity: dict[str, list[_Row]] = {}
        for record in batch:
            by_entity.setdefault(record[0], []).append(record)
        for entity, records in by_entity.items():
            layout = self._layouts.get(entity)
            if layout is None:
                raise ExportError(
                    f"record {records[0][1]}: unknown entity {entity!r} (or not exported)"
                )
            lines = []
            for _, record_id, village, values in records:
                if isinstance(values, str):
                    values = decode(values)
                lines.append(encode({"id": record_id, "village": village, "values": values}))
                row = [record_id, village, *map(values.get, layout.columns)]
                for i in layout.flags:
                    if row[i] is not None:
                        row[i] = "true" if row[i] else "false"
                for i in layout.lists:
                    if row[i] is not None:
                        row[i] = ";".join(row[i])
                for i in layout.texts:
                    if row[i] and row[i].startswith(FORMULA_START):
                        row[i] = "'" + row[i]
                rows.writerow(row)
            lines.append(b"")
            self._jsonl[entity].write(b"\n".join(lines))
            self._jsonl[entity].records += len(records)
            self._flush_csv(entity)
            self._csv[entity].records += len(records)

    def close(self) -> tuple[DatasetFile, ...]:
        """Close every file; the manifest's entries, JSON Lines then CSV per entity."""
        files = []
        for entity in self._layouts:
            for fmt in FORMATS:
                sink = self._jsonl[entity] if fmt == "jsonl" else self._csv[entity]
                digest = sink.close()
                files.append(
                    DatasetFile(sink.path.name, entity, fmt, sink.records, sink.bytes, digest)
                )
        return tuple(files)


async def _batches(
    records: AsyncIterable[ExportRecord] | Iterable[ExportRecord],
) -> AsyncIterator[list[_Row]]:
    batch: list[_Row] = []
    if isinstance(records, AsyncIterable):
        async for r in records:
            batch.append(tuple(r))  # type: ignore[arg-type]
            if len(batch) >= BATCH:
                yield batch
                batch = []
    else:
        for r in records:
            batch.append(tuple(r))  # type: ignore[arg-type]
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


#: The worker process's writer (one export per worker; see :func:`_writer_process`).
_worker_writer: _Writer | None = None


def _open_in_worker(folder: Path, entities: Sequence[str]) -> None:
    global _worker_writer
    _worker_writer = _Writer(folder, entities)


def _write_in_worker(batch: Sequence[_Row]) -> None:
    assert _worker_writer is not None
    _worker_writer.write(batch)


def _close_in_worker() -> tuple[DatasetFile, ...]:
    assert _worker_writer is not None
    return _worker_writer.close()


def _writer_process(folder: Path, entities: Sequence[str]) -> ProcessPoolExecutor:
    """A one-process pool whose worker holds the dataset's open files: its tasks run one
    at a time in the order submitted, so batches land in order."""
    return ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_open_in_worker,
        initargs=(folder, tuple(entities)),
    )


async def export_dataset(
    records: AsyncIterable[ExportRecord] | Iterable[ExportRecord],
    target: Path,
    *,
    district: str,
    period: str,
    key: Ed25519PrivateKey,
    now_ms: int,
    entities: Sequence[str] = tuple(ENTITIES),
) -> Manifest:
    """Write ``records`` as the signed dataset folder ``target`` for (district, period),
    with the files of ``entities`` (every entity by default; the monthly cycle exports
    households and members).

    Returns the manifest. Raises :class:`ExportError` when ``target`` exists, the district
    or period is not valid, or a record is of an entity not exported (nothing is left
    behind).
    """
    if not is_district(district) or not is_period(period):
        raise ExportError(f"district {district!r} / period {period!r} is not valid")
    unknown = [entity for entity in entities if entity not in ENTITIES]
    if unknown or not entities:
        raise ExportError(f"entities {list(entities)!r}: unknown or none")
    if target.exists():
        raise ExportError(f"{target} exists; a dataset is never overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _writer_process(temp, entities) as worker:
            # The next batches are read and sent while the worker writes this one: at
            # most IN_FLIGHT batches wait for it, so memory stays flat.
            writing: deque[asyncio.Future[None]] = deque()
            async for batch in _batches(records):
                if len(writing) >= IN_FLIGHT:
                    await writing.popleft()
                writing.append(asyncio.wrap_future(worker.submit(_write_in_worker, batch)))
            for written in writing:
                await written
            files = await asyncio.wrap_future(worker.submit(_close_in_worker))
        counts: dict[str, int] = {}
        for f in files:
            counts[f.entity] = f.records
        manifest = Manifest(district, period, now_ms, SCHEMA_VERSION, files, counts)
        signed = canonical_bytes(manifest)
        write_file(temp / MANIFEST_FILE, signed, new=True)
        write_file(temp / SIGNATURE_FILE, (sign(key, signed) + "\n").encode("ascii"), new=True)
        fsync_dir(temp)
        if target.exists():
            raise ExportError(f"{target} appeared while exporting; a dataset is never overwritten")
        temp.rename(target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return manifest


async def hub_records(engine: AsyncEngine, *, batch: int = BATCH) -> AsyncIterator[ExportRecord]:
    """Every record of the hub's ``records`` table with its shown values, streamed.

    The ``data`` column holds exactly :func:`protocol.merge.values` of the ``state`` column
    (the store writes both in one statement), so it is read instead of decoding every
    field's versions again. Tombstones are included: their ``deleted`` is ``true``.
    """
    import sqlalchemy as sa

    from hub import db

    r = db.records
    query = sa.select(r.c.entity, r.c.id, r.c.village, r.c.data).order_by(r.c.id)
    async for record in _stream(engine, query, batch):
        yield record


async def period_records(
    engine: AsyncEngine, period: str, *, batch: int = BATCH
) -> AsyncIterator[ExportRecord]:
    """The frozen dataset of ``period``, streamed (a server-side cursor on PostgreSQL):
    every household and member approved at or before the period's ``frozen_seq`` (its
    village's own, if the village was re-submitted), with its approved values, except
    where ``snapshot_rows`` keeps the values an approval after the freeze replaced
    (docs/cycle.md, "The monthly cycle"). One statement, so one consistent snapshot."""
    import sqlalchemy as sa

    from hub import db

    r, p, pv, s = db.records, db.periods, db.period_villages, db.snapshot_rows
    frozen = sa.func.coalesce(pv.c.frozen_seq, p.c.frozen_seq)
    query = (
        sa.select(r.c.entity, r.c.id, r.c.village, sa.func.coalesce(s.c.data, r.c.approved))
        .select_from(
            r.join(p, p.c.period == period)
            .outerjoin(pv, sa.and_(pv.c.period == period, pv.c.village == r.c.village))
            .outerjoin(s, sa.and_(s.c.period == period, s.c.record_id == r.c.id))
        )
        .where(
            r.c.entity.in_(CYCLE_ENTITIES),
            p.c.frozen_seq.is_not(None),
            sa.or_(r.c.approved_seq <= frozen, s.c.record_id.is_not(None)),
        )
        .order_by(r.c.id)
    )
    async for record in _stream(engine, query, batch):
        yield record


async def _stream(engine: AsyncEngine, query: Any, batch: int) -> AsyncIterator[ExportRecord]:
    """The rows (entity, id, village, values JSON) of ``query`` as records, fetched
    ``batch`` at a time in a read-only transaction (writers carry on meanwhile)."""
    from hub import db

    make = ExportRecord._make
    async with db.reading(engine) as conn:
        result = await conn.stream(query.execution_options(yield_per=batch))
        async for rows in result.partitions():
            for row in rows:
                yield make(row)
