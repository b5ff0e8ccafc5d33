"""Lists as spreadsheets, for the box and the hub alike: XLSX (XlsxWriter's
constant_memory mode, rows streamed into the workbook) and CSV, with Indonesian column
headers, enum codes as the labels the UI shows, dates as real dates, and NIK/KK masked
unless the reader may see them.

CSV is UTF-8 with a byte-order mark (so Excel reads the Indonesian text right) and
:data:`CSV_SEPARATOR` between cells: a semicolon, the list separator of Excel set to
Indonesian, where the comma is the decimal mark. Dates there are ``DD/MM/YYYY``.

A text cell that begins like a formula (``=``, ``+``, ``-``, ``@``) stays text: a typed
complaint must never run as a formula in the spreadsheet of whoever opens it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from protocol.identity import mask_number
from protocol.schema import TOMBSTONE_FIELD, EntitySchema, FieldKind, FieldSpec

__all__ = [
    "CSV_SEPARATOR",
    "FORMATS",
    "FORMULA_START",
    "ROW_LIMIT",
    "Cell",
    "Table",
    "audit_detail",
    "download",
    "field_cell",
    "file_name",
    "local_time",
    "record_fields",
    "yes_no",
]

Cell = str | int | float | date | datetime | None

#: Between two cells of a CSV line (Excel in Indonesian splits on it; see the docstring).
CSV_SEPARATOR = ";"
#: Media type of each format (the ``.xlsx`` / ``.csv`` of an export's URL).
FORMATS = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
#: Most rows in one export (a village holds a few thousand households; a district's queue
#: more, but never this many at once).
ROW_LIMIT = 200_000

_DATE_XLSX = "DD/MM/YYYY"
_TIME_XLSX = "DD/MM/YYYY HH:MM"
#: Text a spreadsheet would run as a formula (a CSV cell then gets a leading apostrophe).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Table:
    """A list as it is exported: the sheet's name, the headers and the rows of cells."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]


def record_fields(schema: EntitySchema, *, exclude: Iterable[str] = ()) -> list[FieldSpec]:
    """The fields of ``schema`` a person reads in a spreadsheet, in display order: not the
    links to other records (ids mean nothing to a reader) nor the tombstone."""
    skip = {TOMBSTONE_FIELD, *exclude}
    return [s for s in schema.field_list if s.kind is not FieldKind.REF and s.name not in skip]


def yes_no(value: object) -> str:
    """A yes/no value in words."""
    return "Ya" if value else "Tidak"


def field_cell(spec: FieldSpec, value: object, *, full: bool) -> Cell:
    """One stored value as a cell: the label of a code, a date as a date, yes/no in words,
    a NIK or KK masked unless ``full``."""
    if value is None:
        return None
    if spec.kind in (FieldKind.NIK, FieldKind.KK):
        return str(value) if full else mask_number(value)
    if spec.kind is FieldKind.ENUM:
        return spec.label_of(value)
    if spec.kind is FieldKind.ENUM_SET and isinstance(value, list):
        return ", ".join(spec.label_of(code) for code in value)
    if spec.kind is FieldKind.BOOL:
        return yes_no(value)
    if spec.kind is FieldKind.DATE and isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, str | int | float):
        return value
    return str(value)


def local_time(ms: int | None, timezone: str) -> datetime | None:
    """Stored milliseconds as the local wall time of ``timezone`` (a spreadsheet's dates
    have no zone)."""
    if not ms:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(timezone))
    return moment.replace(tzinfo=None, second=0, microsecond=0)


def file_name(list_name: str, scope: str, day: date, fmt: str) -> str:
    """``rumah-tangga-3201022001-2026-12-04.xlsx``: the list, whose (a village code, a
    period), and the day it was made."""
    return f"{list_name}-{scope}-{day.isoformat()}.{fmt}"


def audit_detail(
    list_name: str, filters: dict[str, str], rows: int, *, full: bool | None, fmt: str
) -> dict[str, Any]:
    """What one export's audit row says: which list, with which filter (only the ones
    set), how many rows, and whether NIK/KK were shown in full (``None``: the list has
    none)."""
    numbers = {True: "lengkap", False: "disamarkan", None: "tidak ada"}[full]
    return {
        "list": list_name,
        "filter": {k: v for k, v in filters.items() if v},
        "rows": rows,
        "numbers": numbers,
        "format": fmt,
    }


def _text_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def _csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, str):
        return _text_cell(value)
    return str(value).replace(".", ",") if isinstance(value, float) else str(value)


def _write_csv(table: Table, out: IO[bytes]) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text, delimiter=CSV_SEPARATOR, lineterminator="\r\n")
    writer.writerow(table.headers)
    for row in table.rows:
        writer.writerow([_csv_cell(cell) for cell in row])
    text.detach()


#: Characters XLSX cannot hold (most control characters): a pasted vertical tab would make
#: every download of the list fail.
_NOT_IN_XLSX = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _write_xlsx(table: Table, out: IO[bytes]) -> None:
    # XlsxWriter's constant_memory mode writes each row out as it comes (a temporary file,
    # text inline). Imported on the first download, as openpyxl was (which the hub still
    # uses to read registry files): it loaded numpy, 16 MB of a box's memory from then on.
    import xlsxwriter

    book = xlsxwriter.Workbook(
        out,
        {
            "constant_memory": True,
            # Never a formula, a link or a number made of a text, whatever it starts with.
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    formats = {datetime: book.add_format({"num_format": _TIME_XLSX}),
               date: book.add_format({"num_format": _DATE_XLSX})}  # fmt: skip
    sheet = book.add_worksheet(table.title[:31])
    for row, cells in enumerate(itertools.chain([table.headers], table.rows)):
        for column, value in enumerate(cells):
            if isinstance(value, str):
                sheet.write_string(row, column, _NOT_IN_XLSX.sub(" ", value))
            elif isinstance(value, date):
                kind = datetime if isinstance(value, datetime) else date
                sheet.write_datetime(row, column, value, formats[kind])
            elif value is not None:
                sheet.write(row, column, value)  # a number (or a boolean) as itself
    book.close()


_WRITERS = {"xlsx": _write_xlsx, "csv": _write_csv}


async def download(request: web.Request, table: Table, fmt: str, name: str) -> web.StreamResponse:
    """Answer ``request`` with ``table`` as an attachment called ``name``: written in a
    worker thread into a spooled temporary file (memory while small, disk beyond), then
    streamed out in chunks."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        await asyncio.to_thread(_WRITERS[fmt], table, spool)
        size = spool.tell()
        spool.seek(0)
        response = web.StreamResponse(
            headers={
                "Content-Type": FORMATS[fmt],
                "Content-Disposition": f'attachment; filename="{name}"',
                # Set here: headers added after the response is under way are not sent.
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            }
        )
        response.content_length = size
        await response.prepare(request)
        while chunk := spool.read(_CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response
