"""Reading a district's registry extract: CSV, XLSX and JSON Lines, row by row.

Every reader yields ``(row number, {lowercase column: cell})`` and keeps a ``fraction``
of the file read, for a progress bar. Nothing is read whole: memory stays flat whatever
the file's size (``docs/registry.md``). For check worker processes, a CSV file is also
read as its lines, split into cells by the worker (:meth:`RowReader.chunks`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

__all__ = ["CsvLines", "FileError", "RowReader", "open_rows"]

_SNIFF_BYTES = 1 << 16


class FileError(ValueError):
    """A file that cannot be read as an extract; the message says why."""


class RowReader:
    """The rows of one file; iterate once. ``fraction`` tells how far it has come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fraction = 0.0

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            return self._csv()
        if suffix == ".xlsx":
            return self._xlsx()
        if suffix in (".jsonl", ".ndjson"):
            return self._jsonl()
        raise FileError(f"{self.path.name}: not a .csv, .xlsx or .jsonl file")

    @property
    def is_csv(self) -> bool:
        return self.path.suffix.lower() == ".csv"

    def csv_chunks(self, rows: int) -> Iterator[CsvLines]:
        """A CSV file's rows in chunks of ``rows`` lines or so, for another process to
        finish (:class:`CsvLines`: the lines as read, cheap to read and to send, split
        into cells by that process)."""
        return self._csv_lines(rows)

    def _csv(self) -> Iterator[tuple[int, dict[str, Any]]]:
        size = max(1, self.path.stat().st_size)
        with self.path.open("rb") as raw:
            text, columns, delimiter = self._csv_header(raw)
            for number, cells in enumerate(csv.reader(text, delimiter=delimiter), start=2):
                if number % 1000 == 0:
                    self.fraction = raw.tell() / size
                if any(cell.strip() for cell in cells):
                    yield number, dict(zip(columns, cells, strict=False))
        self.fraction = 1.0

    def _csv_lines(self, rows: int) -> Iterator[CsvLines]:
        """:meth:`_csv`'s rows in chunks, each row as its line when that line is a whole
        row that :mod:`csv` splits at the delimiters alone (no quote, no NUL, not longer
        than a field may be), else as its cells: a quoted field may hold the delimiter or
        span lines, so such a row is read here with :mod:`csv`, as :meth:`_csv` reads it
        (its errors raised here too). Blank rows are left to :meth:`CsvLines.__iter__`."""
        size = max(1, self.path.stat().st_size)
        limit = csv.field_size_limit()
        with self.path.open("rb") as raw:
            text, columns, delimiter = self._csv_header(raw)
            chunk: list[tuple[int, str | list[str]]] = []
            number = 1
            for line in text:
                number += 1
                if number % 1000 == 0:
                    self.fraction = raw.tell() / size
                if '"' in line or "\0" in line or len(line) > limit:
                    # As many lines as the row takes (csv reads no further).
                    reader = csv.reader(chain((line,), text), delimiter=delimiter)
                    chunk.append((number, next(reader)))
                else:
                    chunk.append((number, line))
                if len(chunk) == rows:
                    yield CsvLines(columns, delimiter, chunk)
                    chunk = []
            if chunk:
                yield CsvLines(columns, delimiter, chunk)
        self.fraction = 1.0

    def _csv_header(self, raw: io.BufferedReader) -> tuple[io.TextIOWrapper, list[str], str]:
        """The file's text (its lines after the header), columns and delimiter."""
        text = io.TextIOWrapper(raw, encoding=_encoding(self.path), newline="")
        header_line = text.readline()
        delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
        header = next(csv.reader([header_line], delimiter=delimiter), [])
        columns = [name.strip().lower() for name in header]
        if not any(columns):
            raise FileError(f"{self.path.name}: the first line names no columns")
        return text, columns, delimiter

    def _xlsx(self) -> Iterator[tuple[int, dict[str, Any]]]:
        from openpyxl import load_workbook

        workbook = load_workbook(self.path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            total = max(1, sheet.max_row or 1)
            rows = sheet.iter_rows(values_only=True)
            header = next(rows, None)
            if not header:
                raise FileError(f"{self.path.name}: the first sheet has no header row")
            columns = [str(name or "").strip().lower() for name in header]
            for number, cells in enumerate(rows, start=2):
                if number % 1000 == 0:
                    self.fraction = number / total
                if any(cell not in (None, "") for cell in cells):
                    yield number, dict(zip(columns, cells, strict=False))
        finally:
            workbook.close()
        self.fraction = 1.0

    def _jsonl(self) -> Iterator[tuple[int, dict[str, Any]]]:
        size = max(1, self.path.stat().st_size)
        with self.path.open("rb") as raw:
            for number, line in enumerate(raw, start=1):
                if number % 1000 == 0:
                    self.fraction = raw.tell() / size
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except ValueError as exc:
                    raise FileError(f"{self.path.name} line {number}: not JSON ({exc})") from None
                if not isinstance(document, dict):
                    raise FileError(f"{self.path.name} line {number}: not a JSON object")
                yield number, {str(k).strip().lower(): v for k, v in document.items()}
        self.fraction = 1.0


class CsvLines:
    """Rows of a CSV file as :meth:`RowReader.chunks` read them: each a line that is
    one whole row, or the cells of one :mod:`csv` read already. Iterating gives the rows
    :meth:`RowReader._csv` gives, with their numbers."""

    __slots__ = ("columns", "delimiter", "rows")

    def __init__(
        self, columns: list[str], delimiter: str, rows: list[tuple[int, str | list[str]]]
    ) -> None:
        self.columns = columns
        self.delimiter = delimiter
        self.rows = rows

    def __reduce__(self) -> tuple[type[CsvLines], tuple[Any, ...]]:
        return CsvLines, (self.columns, self.delimiter, self.rows)

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        columns = self.columns
        lines = [row for _, row in self.rows if row.__class__ is str]
        split = csv.reader(lines, delimiter=self.delimiter)  # one row a line (no quotes)
        for number, row in self.rows:
            cells = next(split) if row.__class__ is str else row
            if any(cell.strip() for cell in cells):
                yield number, dict(zip(columns, cells, strict=False))


def _encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as UTF-8, else Windows-1252
    (what Excel writes on Indonesian Windows); checked incrementally, never read whole."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as raw:
        first = raw.read(3)
        bom = first == codecs.BOM_UTF8
        chunk = b"" if bom else first
        try:
            while True:
                decoder.decode(chunk)
                chunk = raw.read(_SNIFF_BYTES)
                if not chunk:
                    decoder.decode(b"", final=True)
                    break
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8-sig" if bom else "utf-8"


def open_rows(path: Path) -> RowReader:
    """A reader of ``path`` by its suffix (raises :class:`FileError` for another)."""
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    return RowReader(path)
