"""Rows of a district's registry extract, as field values: the column layout, the values'
coercion from spreadsheet text, and the checks of one row (``docs/registry.md``).

Pure: the hub's importer (``hub/registry.py``) reads the files and writes the records; this
module turns one row (a mapping of column name to cell) into a household part and/or a
member part with their field values and issues. Values a cell cannot be turned into are
passed on as text, so that :func:`protocol.validate.validate_fields` names the problem
with the same code and Indonesian message a box would show.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from protocol.entities import HOUSEHOLD, MEMBER, RECORD_ID_KEY
from protocol.issues import Issue, Level
from protocol.messages import render
from protocol.schema import EntitySchema, FieldKind, wire_value_problem
from protocol.validate import validate_fields

__all__ = [
    "DEFAULT_LAYOUT",
    "RANKING_FIELDS",
    "ImportIssues",
    "Layout",
    "LayoutError",
    "RowIssue",
    "RowPart",
    "check_part",
    "layout_from_toml",
    "missing_fields",
    "parse_date",
    "parse_row",
]

#: Columns of the default layout that are not named after a field.
_HOUSEHOLD_COLUMNS: Final = {
    "kode_desa": "village_code",
    "alamat": "address",
    "no_kk": "kk_number",
    "desil": "decile",
    "periode_desil": "decile_period",
    "program": "programmes",
}
_MEMBER_COLUMNS: Final = {
    "nama": "name",
    "tanggal_lahir": "birth_date",
    "tempat_lahir": "birth_place",
    "jenis_kelamin": "sex",
    "hubungan": "relation_to_head",
    "status_perkawinan": "marital_status",
    "pendidikan": "education",
    "pekerjaan": "occupation",
}
#: Fields the extract never sets: they are the hub's or a box's bookkeeping.
_NOT_IMPORTED: Final = frozenset({"household_id", "deleted", "registry_id"})
_DATE_FORMATS: Final = ("%d-%m-%Y", "%d/%m/%Y")
_SPLIT_RE: Final = re.compile(r"[;,|]")
_TRUE: Final = frozenset({"ya", "y", "true", "benar", "1"})
_FALSE: Final = frozenset({"tidak", "t", "n", "false", "salah", "0"})


class LayoutError(ValueError):
    """A mapping file that cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each field is in a file: column names (lowercase) per entity, the id columns,
    code translations per field and the accepted date formats."""

    household: Mapping[str, str]
    member: Mapping[str, str]
    household_id: str = "id_keluarga"
    member_id: str = "id_art"
    #: The column of a member row naming its household's extract id.
    member_household: str = "id_keluarga"
    #: A column holding our own record ids (UUIDv7): a re-import of our own dataset keeps
    #: them (``""``: none; records get new ids once).
    record_id: str = ""
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    date_formats: tuple[str, ...] = _DATE_FORMATS

    def column_of(self, entity: str, name: str) -> str:
        """The first column a field may be read from (for the error report)."""
        columns = self.household if entity == HOUSEHOLD.name else self.member
        return next((column for column, f in columns.items() if f == name), name)


def _default_columns(schema: EntitySchema, named: Mapping[str, str]) -> dict[str, str]:
    """The documented column names first (the report names them), then each field's own
    name as a column too."""
    columns = dict(named)
    columns.update({f: f for f in schema.fields if f not in _NOT_IMPORTED and f not in columns})
    return columns


#: The layout documented in ``docs/registry.md``.
DEFAULT_LAYOUT: Final = Layout(
    household=_default_columns(HOUSEHOLD, _HOUSEHOLD_COLUMNS),
    member=_default_columns(MEMBER, _MEMBER_COLUMNS),
)


def layout_from_toml(document: Mapping[str, Any]) -> Layout:
    """A layout from a parsed mapping file (``docs/registry.md``, "Mapping file")."""
    known = {"household", "member", "ids", "values", "date_formats"}
    unknown = set(document) - known
    if unknown:
        raise LayoutError(f"unknown tables or keys {sorted(unknown)}; allowed: {sorted(known)}")
    columns: dict[str, dict[str, str]] = {}
    for schema in (HOUSEHOLD, MEMBER):
        table = document.get(schema.name, {})
        if not isinstance(table, Mapping):
            raise LayoutError(f'[{schema.name}] must be a table of field = "column"')
        for name, column in table.items():
            if name not in schema.fields or name in _NOT_IMPORTED:
                raise LayoutError(f"[{schema.name}] {name}: not a field that can be imported")
            if not isinstance(column, str) or not column.strip():
                raise LayoutError(f"[{schema.name}] {name}: the column must be a name")
        columns[schema.name] = {str(c).strip().lower(): f for f, c in table.items()}
    ids = document.get("ids", {})
    values = document.get("values", {})
    for name, table in values.items():
        if not isinstance(table, Mapping) or not all(isinstance(v, str) for v in table.values()):
            raise LayoutError(f"[values.{name}] must map the file's codes to ours")
    formats = document.get("date_formats", list(_DATE_FORMATS))
    return Layout(
        household=columns[HOUSEHOLD.name],
        member=columns[MEMBER.name],
        household_id=str(ids.get("household", "id_keluarga")).lower(),
        member_id=str(ids.get("member", "id_art")).lower(),
        member_household=str(
            ids.get("member_household", ids.get("household", "id_keluarga"))
        ).lower(),
        record_id=str(ids.get("record", "")).lower(),
        values={name: {str(k): v for k, v in table.items()} for name, table in values.items()},
        date_formats=tuple(formats),
    )


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A finding about one cell (or the row, with ``column`` empty)."""

    column: str
    code: str
    level: Level
    message: str


@dataclass(frozen=True, slots=True)
class RowPart:
    """The household or member a row describes: its extract id, our record id when the
    file carries it, the member's household (extract id), and the field values."""

    entity: str
    registry_id: str
    values: dict[str, object]
    record_id: str = ""
    household_registry_id: str = ""
    #: The village a member row names (its household's must be the same), if any.
    village: str = ""
    #: The column each value was read from (for the error report).
    sources: dict[str, str] = field(default_factory=dict)


def _cell(row: Mapping[str, object], column: str) -> object:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's number: 3201022001.0
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _choice(spec: Any, text: str, translate: Mapping[str, str]) -> str:
    if text in translate:
        return translate[text]
    folded = text.casefold()
    for code, label in zip(spec.choices, spec.choice_labels, strict=False):
        if folded in (code.casefold(), label.casefold()):
            return str(code)
    return text


def _coerce(spec: Any, value: object, layout: Layout) -> object:
    """A cell as the field's value, or as text when it is not one (the checks name why)."""
    kind = spec.kind
    translate = layout.values.get(spec.name, {})
    if kind is FieldKind.ENUM_SET:
        if isinstance(value, list):
            parts = [_text(v) for v in value]
        else:
            parts = [p.strip() for p in _SPLIT_RE.split(_text(value)) if p.strip()]
        return [_choice(spec, p, translate) for p in parts]
    text = _text(value)
    if kind is FieldKind.ENUM:
        return _choice(spec, text, translate)
    if kind is FieldKind.BOOL:
        if isinstance(value, bool):
            return value
        folded = text.casefold()
        return True if folded in _TRUE else False if folded in _FALSE else text
    if kind in (FieldKind.INT, FieldKind.DECIMAL):
        try:
            number = float(text.replace(",", "."))  # a decimal comma, as Indonesians write
        except ValueError:
            return text
        if number.is_integer():
            return int(number)
        return number if kind is FieldKind.DECIMAL else text
    if kind is FieldKind.DATE:
        return _date(text, layout.date_formats)
    if kind in (FieldKind.NIK, FieldKind.KK, FieldKind.REGION):
        return text.lstrip("'").replace(" ", "").replace(".", "")
    return text


def parse_date(value: object, layout: Layout) -> str | None:
    """A cell as a ``YYYY-MM-DD`` date in the layout's formats; ``None`` when it is none."""
    cell = _cell({"v": value}, "v")
    if cell is None:
        return None
    text = _date(_text(cell), layout.date_formats)
    try:
        return date.fromisoformat(text).isoformat() if len(text) == 10 else None
    except ValueError:
        return None


def _date(text: str, formats: tuple[str, ...]) -> str:
    candidate = text[:10]
    try:
        return date.fromisoformat(candidate).isoformat()
    except ValueError:
        pass
    for form in formats:
        try:
            return datetime.strptime(text, form).date().isoformat()
        except ValueError:
            continue
    return text


def _read(
    row: Mapping[str, object], layout: Layout, schema: EntitySchema
) -> tuple[dict[str, object], dict[str, str]]:
    """The values of ``schema``'s fields in ``row`` (a field's first filled column wins)
    and the column each came from."""
    columns = layout.household if schema is HOUSEHOLD else layout.member
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for column, name in columns.items():
        cell = _cell(row, column)
        if cell is not None and name not in values:
            values[name] = _coerce(schema.fields[name], cell, layout)
            sources[name] = column
    return values, sources


def _uuid7(text: str) -> str | None:
    """A record id in its canonical form (lowercase), ``None`` when it is no UUIDv7."""
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    return str(parsed) if parsed.version == 7 and parsed.variant == uuid.RFC_4122 else None


def _id(row: Mapping[str, object], column: str) -> str:
    """An extract id from its column; one that is a UUIDv7 (our own dataset's) in its
    canonical form, so that it names the same record however it was written."""
    text = _text(_cell(row, column) or "")
    return _uuid7(text) or text


def _part(
    row: Mapping[str, object], layout: Layout, schema: EntitySchema, registry_id: str
) -> RowPart:
    values, sources = _read(row, layout, schema)
    written = _text(_cell(row, layout.record_id) or "") if layout.record_id else ""
    record_id = _uuid7(written) or written  # refused by check_part unless a UUIDv7
    if record_id:
        sources[RECORD_ID_KEY] = layout.record_id
    if schema is HOUSEHOLD:
        return RowPart(HOUSEHOLD.name, registry_id, values, record_id, sources=sources)
    values.setdefault("status", "aktif")  # the extract lists the living
    household = _id(row, layout.member_household)
    village = _read(row, layout, HOUSEHOLD)[0].get("village_code", "")
    return RowPart(MEMBER.name, registry_id, values, record_id, household, str(village), sources)


def parse_row(row: Mapping[str, object], layout: Layout) -> tuple[list[RowPart], list[RowIssue]]:
    """The parts one row describes (keys of ``row`` are lowercase column names): a member
    when its id and a member's columns are filled, and a household when its id and a
    household's columns are (a member row may repeat them); an issue when it names
    neither."""
    ids = {layout.household_id, layout.member_id, layout.member_household, layout.record_id}
    household_only = [c for c in layout.household if c not in layout.member and c not in ids]
    member_only = [c for c in layout.member if c not in layout.household and c not in ids]
    member_id = _id(row, layout.member_id)
    household_id = _id(row, layout.household_id)
    is_member = bool(member_id) and any(_cell(row, c) is not None for c in member_only)
    # A member row's village alone says where the member is listed, not a household.
    filled = any(
        _cell(row, c) is not None
        for c in household_only
        if not (is_member and layout.household[c] == "village_code")
    )
    parts: list[RowPart] = []
    if household_id and (filled or not is_member):
        parts.append(_part(row, layout, HOUSEHOLD, household_id))
    if is_member:
        parts.append(_part(row, layout, MEMBER, member_id))
    if parts:
        return parts, []
    column = layout.member_id if any(_cell(row, c) for c in member_only) else layout.household_id
    return [], [RowIssue(column, "registry_id_missing", "error", render("registry_id_missing"))]


def check_part(part: RowPart, layout: Layout, *, today: date) -> list[RowIssue]:
    """The protocol's checks of a part as a new record, as a box makes them; hub-only
    fields (the decile, the programmes the district records) get the shape check only."""
    schema = HOUSEHOLD if part.entity == HOUSEHOLD.name else MEMBER
    typed = {n: v for n, v in part.values.items() if not schema.fields[n].readonly}
    if schema is MEMBER:
        typed["household_id"] = "00000000-0000-7000-8000-000000000000"  # linked by the hub
    issues = validate_fields(schema, typed, is_new=True, today=today)
    if part.record_id and _uuid7(part.record_id) != part.record_id:
        issues.append(Issue.error(RECORD_ID_KEY, "invalid_ref", {"label": "ID data"}))
    for name, value in part.values.items():
        spec = schema.fields[name]
        if spec.readonly:
            problem = wire_value_problem(spec, value)
            if problem is not None:
                params = {"label": spec.label, "field": name, **dict(problem.params)}
                issues.append(Issue.error(name, problem.code, params))
    return [
        RowIssue(
            part.sources.get(i.field) or layout.column_of(part.entity, i.field),
            i.code,
            i.level,
            i.message(),
        )
        for i in issues
    ]


class ImportIssues:
    """The issues of the import itself (beyond one row's checks), in one place with their
    codes, for the hub's importer."""

    @staticmethod
    def household_missing(column: str, registry_id: str) -> RowIssue:
        message = render("registry_household_missing", id=registry_id)
        return RowIssue(column, "registry_household_missing", "error", message)

    @staticmethod
    def other_village(column: str, village: str, household_village: str) -> RowIssue:
        message = render(
            "registry_other_village", village=village, household_village=household_village
        )
        return RowIssue(column, "registry_other_village", "error", message)

    @staticmethod
    def moved(column: str, registry_id: str, village: str) -> RowIssue:
        message = render("registry_moved", id=registry_id, village=village)
        return RowIssue(column, "registry_moved", "error", message)

    @staticmethod
    def record_taken(column: str, record_id: str) -> RowIssue:
        message = render("registry_record_taken", id=record_id)
        return RowIssue(column, "registry_record_taken", "error", message)

    @staticmethod
    def twice(column: str, registry_id: str) -> RowIssue:
        message = render("registry_id_twice", id=registry_id)
        return RowIssue(column, "registry_id_twice", "error", message)


#: The variables BPS needs to rank a household (its proxy-means test), per entity: what
#: field verification completes. A field counts as answered once it has a value (an empty
#: list is an answer: "none of these").
RANKING_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    HOUSEHOLD.name: (
        "floor_area_m2", "floor_material", "wall_material", "roof_material",
        "drinking_water_source", "lighting_source", "cooking_fuel", "toilet_facility",
        "ownership_status", "assets",
    ),
    MEMBER.name: (
        "nik", "birth_date", "sex", "relation_to_head", "marital_status", "education",
        "occupation", "disability",
    ),
}  # fmt: skip


def missing_fields(entity: str, values: Mapping[str, object]) -> list[str]:
    """The ranking variables a record still lacks, in :data:`RANKING_FIELDS` order."""
    return [
        name
        for name in RANKING_FIELDS.get(entity, ())
        if values.get(name) is None or values.get(name) == ""
    ]
