"""The rows of a registry extract, read and checked, in file order (``docs/registry.md``).

Turning cells into values and checking them (:class:`protocol.registry.RowParser`) is most
of an import's work, and each row's is independent of the others': for a large extract it
runs in worker processes, chunk by chunk, while the importer's process writes what came
back. A bounded number of chunks is in flight, so memory stays flat whatever the size of
the files, and the chunks come back in the order they were read.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from hub.registry_files import FileError, RowReader, open_rows
from protocol.registry import Layout, RowIssue, RowParser, RowPart

__all__ = ["CheckedRow", "CheckedRows", "default_workers", "fewer_collections"]

#: Rows given to a worker at a time.
ROWS_PER_TASK = 1000
#: Chunks in flight per worker: one being checked, one waiting, the rest come back.
TASKS_PER_WORKER = 2
#: Extracts smaller than this are checked in the importer's process: starting the
#: workers would cost more than they save (about 10,000 rows).
WORKERS_FROM_BYTES = 2_000_000
#: Allocations between two runs of the cyclic garbage collector while importing (Python's
#: default is 700), see :func:`fewer_collections`.
GC_THRESHOLD = 20_000


@dataclass(frozen=True, slots=True)
class CheckedRow:
    """One row's parts, each with the issues of its checks, and the row's own issues."""

    where: tuple[str, int]
    parts: list[tuple[RowPart, list[RowIssue]]]
    issues: list[RowIssue]


#: Rows to check, with their numbers: a list, or a CSV file's lines (``CsvLines``).
_Chunk = Iterable[tuple[int, dict[str, Any]]]
_Checked = list[tuple[int, list[tuple[RowPart, list[RowIssue]]], list[RowIssue]]]


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often meanwhile. An import allocates millions
    of short-lived objects (a chunk's rows, parts and plans), freed by their reference
    counts as each chunk is done; at Python's default threshold the collector ran every
    few rows, each time over the chunk's live objects and now and then over all of the
    process's, for about a sixth of the importer's CPU. Cycles are still collected, a
    little later."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def default_workers(paths: Sequence[Path]) -> int:
    """Worker processes for ``paths``: one per processor for a large extract, none (check
    in this process) for a small one."""
    size = sum(path.stat().st_size for path in paths if path.is_file())
    if size < WORKERS_FROM_BYTES:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cpus or 1)


class CheckedRows:
    """The checked rows of ``paths``, in order, a chunk at a time (:meth:`chunks`, once).
    ``workers``: processes to check in (0: this one). ``fraction`` tells how much of the
    files has been read."""

    def __init__(self, paths: Sequence[Path], layout: Layout, *, today: date, workers: int):
        self.paths = paths
        self.layout = layout
        self.today = today
        self.workers = workers
        self._reader: RowReader | None = None
        self._index = 0

    @property
    def fraction(self) -> float:
        done = self._index + (self._reader.fraction if self._reader is not None else 0.0)
        return done / max(1, len(self.paths))

    def _chunks(self, *, lines: bool = False) -> Iterator[tuple[str, _Chunk]]:
        """The files' rows in chunks; ``lines``: a CSV file's as its lines (a worker
        splits them, :meth:`RowReader.csv_chunks`)."""
        for index, path in enumerate(self.paths):
            self._index, self._reader = index, open_rows(path)
            if lines and self._reader.is_csv:
                yield from ((path.name, part) for part in self._reader.csv_chunks(ROWS_PER_TASK))
                continue
            chunk: list[tuple[int, dict[str, Any]]] = []
            try:
                for row in self._reader:
                    chunk.append(row)
                    if len(chunk) == ROWS_PER_TASK:
                        yield path.name, chunk
                        chunk = []
            except FileError:
                if chunk:  # the rows before the error are imported, as they were read
                    yield path.name, chunk
                raise
            if chunk:
                yield path.name, chunk
        self._index, self._reader = len(self.paths), None

    async def chunks(self) -> AsyncIterator[list[CheckedRow]]:
        """Lists of checked rows; close it (``contextlib.aclosing``) if not read to the
        end, so that the workers stop."""
        if self.workers <= 0:
            parser = RowParser(self.layout, today=self.today)
            for name, chunk in self._chunks():
                yield _rows(name, _check(parser, chunk))
            return
        with ProcessPoolExecutor(
            self.workers,
            # Not fork: the importer's process has threads (the SQLite driver's) by now.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.layout, self.today),
        ) as pool:
            in_flight: deque[tuple[str, Future[_Checked]]] = deque()
            chunks = self._chunks(lines=True)
            failed: FileError | None = None
            try:
                while True:
                    while failed is None and len(in_flight) < self.workers * TASKS_PER_WORKER:
                        try:
                            name, chunk = next(chunks)
                        except StopIteration:
                            break
                        except FileError as exc:  # after the rows read before it, as inline
                            failed = exc
                            break
                        in_flight.append((name, pool.submit(_check_in_worker, chunk)))
                    if not in_flight:
                        break
                    name, future = in_flight.popleft()
                    yield _rows(name, await asyncio.wrap_future(future))
            finally:
                for _, future in in_flight:
                    future.cancel()
            if failed is not None:
                raise failed


def _rows(name: str, checked: _Checked) -> list[CheckedRow]:
    return [CheckedRow((name, number), parts, issues) for number, parts, issues in checked]


def _check(parser: RowParser, chunk: _Chunk) -> _Checked:
    return [(number, *parser.read(row)) for number, row in chunk]


#: The worker process's parser, made once by :func:`_start_worker`.
_parser: RowParser | None = None


def _start_worker(layout: Layout, today: date) -> None:
    global _parser
    _parser = RowParser(layout, today=today)
    gc.set_threshold(max(gc.get_threshold()[0], GC_THRESHOLD))  # see fewer_collections


def _check_in_worker(chunk: _Chunk) -> _Checked:
    assert _parser is not None, "started by _start_worker"
    return _check(_parser, chunk)
