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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from protocol.entities import HOUSEHOLD, MEMBER, RECORD_ID_KEY
from protocol.issues import Issue, Level
from protocol.messages import render
from protocol.schema import EntitySchema, FieldKind, FieldSpec, wire_value_problem
from protocol.validate import NewRecordChecks

__all__ = [
    "DEFAULT_LAYOUT",
    "RANKING_FIELDS",
    "ImportIssues",
    "Layout",
    "LayoutError",
    "RowIssue",
    "RowParser",
    "RowPart",
    "check_part",
    "lacking",
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

    def __reduce__(self) -> tuple[type[RowIssue], tuple[str, str, Level, str]]:
        # Check workers send issues and parts back by the hundred thousand: pickled as
        # the arguments, not through dataclasses' slower generic ``__setstate__``.
        return RowIssue, (self.column, self.code, self.level, self.message)


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

    def __reduce__(self) -> tuple[type[RowPart], tuple[object, ...]]:
        # As RowIssue's.
        return RowPart, (
            self.entity, self.registry_id, self.values, self.record_id,
            self.household_registry_id, self.village, self.sources,
        )  # fmt: skip


def _cell(row: Mapping[str, object], column: str) -> object:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's number: 3201022001.0
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


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
    if len(text) < 32:
        return text  # too short for a UUID's 32 hex digits: spare the parse
    return _uuid7(text) or text


#: A layout's columns of one entity that a row holds: (column, field, the field's
#: :meth:`RowParser._coerce` of a cell) in layout order.
_Columns = tuple[tuple[str, FieldSpec, Callable[[object], object]], ...]
#: Cells remembered per field by :meth:`RowParser._coercer` at most (then forgotten).
_REMEMBERED_CELLS = 20_000
#: Field kinds whose cells repeat from row to row and whose values are immutable: their
#: coercion is remembered per cell text.
_REMEMBERED_KINDS = frozenset(
    {
        FieldKind.ENUM,
        FieldKind.BOOL,
        FieldKind.INT,
        FieldKind.DECIMAL,
        FieldKind.DATE,
        FieldKind.PERIOD,
        FieldKind.REGION,
    }
)


class RowParser:
    """Turns rows into parts and checks them, for one layout and day (``today``).

    What does not change from row to row is worked out once: the columns of each kind,
    which of them a file's rows hold (per set of column names), the code lookup of each
    enum field. A household repeated on each of its members' rows (same cells) is parsed
    and checked once, then the same part and issues are given again.
    """

    def __init__(self, layout: Layout, *, today: date) -> None:
        self.layout = layout
        self.today = today
        ids = {layout.household_id, layout.member_id, layout.member_household, layout.record_id}
        self._household_only = [
            c for c in layout.household if c not in layout.member and c not in ids
        ]
        self._member_only = [c for c in layout.member if c not in layout.household and c not in ids]
        self._village_columns = [c for c, f in layout.household.items() if f == "village_code"]
        #: Per entity and field: the file's codes and labels, casefolded, to our codes.
        self._codes: dict[tuple[str, str], dict[str, str]] = {}
        for schema in (HOUSEHOLD, MEMBER):
            for spec in schema.fields.values():
                if spec.kind in (FieldKind.ENUM, FieldKind.ENUM_SET):
                    codes: dict[str, str] = {}
                    # The first choice whose code or label matches wins, as listed.
                    for code, label in zip(spec.choices, spec.choice_labels, strict=False):
                        codes.setdefault(code.casefold(), code)
                        codes.setdefault(label.casefold(), code)
                    self._codes[(schema.name, spec.name)] = codes
        self._readonly = {
            schema.name: frozenset(n for n, spec in schema.fields.items() if spec.readonly)
            for schema in (HOUSEHOLD, MEMBER)
        }
        #: The household-only columns that say a member row also describes its household
        #: (not its village, which says where the member is listed).
        self._household_filled = [
            c for c in self._household_only if layout.household[c] != "village_code"
        ]
        #: Per entity and field: its coercion of a cell (:meth:`_coercer`).
        self._coercers: dict[tuple[str, str], Callable[[object], object]] = {}
        #: Per tuple of a row's column names: the household's, member's, village columns.
        self._present: dict[tuple[str, ...], tuple[_Columns, _Columns, _Columns]] = {}
        self._last_household: tuple[tuple[object, ...], RowPart, list[RowIssue]] | None = None
        self._checks = NewRecordChecks(today=today)
        #: The parts' ``sources`` (column of each value), one dict per distinct content:
        #: parts read from the same columns share it (a check worker sends it once).
        self._sources: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def read(
        self, row: Mapping[str, object]
    ) -> tuple[list[tuple[RowPart, list[RowIssue]]], list[RowIssue]]:
        """The parts ``row`` describes, each with the issues of its checks, and the issues
        of the row itself (see :func:`parse_row` and :func:`check_part`)."""
        return self._parts(row, check=True)

    def parse(self, row: Mapping[str, object]) -> tuple[list[RowPart], list[RowIssue]]:
        """The parts ``row`` describes, unchecked, and the issues of the row itself."""
        parts, issues = self._parts(row, check=False)
        return [part for part, _ in parts], issues

    def check(self, part: RowPart) -> list[RowIssue]:
        """The protocol's checks of a part as a new record, as a box makes them; hub-only
        fields (the decile, the programmes the district records) get the shape check
        only."""
        schema = HOUSEHOLD if part.entity == HOUSEHOLD.name else MEMBER
        readonly = self._readonly[schema.name]
        values = part.values
        given = [n for n in values if n in readonly]
        typed = {n: v for n, v in values.items() if n not in readonly} if given else dict(values)
        if schema is MEMBER:
            typed["household_id"] = "00000000-0000-7000-8000-000000000000"  # linked by the hub
        issues = self._checks(schema, typed)
        if part.record_id and _uuid7(part.record_id) != part.record_id:
            issues.append(Issue.error(RECORD_ID_KEY, "invalid_ref", {"label": "ID data"}))
        for name in given:
            spec = schema.fields[name]
            problem = wire_value_problem(spec, values[name])
            if problem is not None:
                params = {"label": spec.label, "field": name, **dict(problem.params)}
                issues.append(Issue.error(name, problem.code, params))
        if not issues:
            return []
        return [
            RowIssue(
                part.sources.get(i.field) or self.layout.column_of(part.entity, i.field),
                i.code,
                i.level,
                i.message(),
            )
            for i in issues
        ]

    def _parts(
        self, row: Mapping[str, object], *, check: bool
    ) -> tuple[list[tuple[RowPart, list[RowIssue]]], list[RowIssue]]:
        household, member, village = self._columns(row)
        layout = self.layout
        member_id = _id(row, layout.member_id)
        household_id = _id(row, layout.household_id)
        is_member = bool(member_id) and _any_filled(row, self._member_only)
        # A member row's village alone says where the member is listed, not a household.
        filled = _any_filled(row, self._household_filled if is_member else self._household_only)
        parts: list[tuple[RowPart, list[RowIssue]]] = []
        if household_id and (filled or not is_member):
            if check:
                parts.append(self._household(row, household_id, household))
            else:
                parts.append((self._part(row, HOUSEHOLD, household_id, household, ()), []))
        if is_member:
            part = self._part(row, MEMBER, member_id, member, village)
            parts.append((part, self.check(part) if check else []))
        if parts:
            return parts, []
        is_member_row = any(_cell(row, c) for c in self._member_only)
        column = layout.member_id if is_member_row else layout.household_id
        return [], [RowIssue(column, "registry_id_missing", "error", render("registry_id_missing"))]

    def _columns(self, row: Mapping[str, object]) -> tuple[_Columns, _Columns, _Columns]:
        names = tuple(row)
        found = self._present.get(names)
        if found is None:
            if len(self._present) > 64:  # rows of JSON Lines may each name other columns
                self._present.clear()
            held = set(names)
            layout = self.layout
            village_code = HOUSEHOLD.fields["village_code"]
            found = (
                tuple(
                    (c, HOUSEHOLD.fields[f], self._coercer(HOUSEHOLD.name, HOUSEHOLD.fields[f]))
                    for c, f in layout.household.items()
                    if c in held
                ),
                tuple(
                    (c, MEMBER.fields[f], self._coercer(MEMBER.name, MEMBER.fields[f]))
                    for c, f in layout.member.items()
                    if c in held
                ),
                tuple(
                    (c, village_code, self._coercer(HOUSEHOLD.name, village_code))
                    for c in self._village_columns
                    if c in held
                ),
            )
            self._present[names] = found
        return found

    def _household(
        self, row: Mapping[str, object], registry_id: str, columns: _Columns
    ) -> tuple[RowPart, list[RowIssue]]:
        record = self.layout.record_id
        key = (registry_id, row.get(record) if record else None, *[row.get(c[0]) for c in columns])
        last = self._last_household
        if last is not None and last[0] == key:
            return last[1], last[2]
        part = self._part(row, HOUSEHOLD, registry_id, columns, ())
        issues = self.check(part)
        self._last_household = (key, part, issues)
        return part, issues

    def _part(
        self,
        row: Mapping[str, object],
        schema: EntitySchema,
        registry_id: str,
        columns: _Columns,
        village_columns: _Columns,
    ) -> RowPart:
        layout = self.layout
        values, sources = self._values(row, columns)
        written = _text(_cell(row, layout.record_id) or "") if layout.record_id else ""
        record_id = (_uuid7(written) or written) if written else ""  # refused unless a UUIDv7
        if record_id:
            sources[RECORD_ID_KEY] = layout.record_id
        sources = self._shared_sources(sources)
        if schema is HOUSEHOLD:
            return RowPart(HOUSEHOLD.name, registry_id, values, record_id, sources=sources)
        values.setdefault("status", "aktif")  # the extract lists the living
        household = _id(row, layout.member_household)
        village = self._values(row, village_columns)[0].get("village_code", "")
        return RowPart(
            MEMBER.name, registry_id, values, record_id, household, str(village), sources
        )

    def _shared_sources(self, sources: dict[str, str]) -> dict[str, str]:
        """``sources``, or the equal dict an earlier part got (never changed after)."""
        key = tuple(sources.items())
        shared = self._sources.get(key)
        if shared is None:
            if len(self._sources) > 256:  # rows of JSON Lines may each fill other columns
                self._sources.clear()
            shared = self._sources[key] = sources
        return shared

    @staticmethod
    def _values(
        row: Mapping[str, object], columns: _Columns
    ) -> tuple[dict[str, object], dict[str, str]]:
        """The values of the fields of ``columns`` in ``row`` (a field's first filled
        column wins) and the column each came from."""
        values: dict[str, object] = {}
        sources: dict[str, str] = {}
        for column, spec, coerce in columns:
            name = spec.name
            if name in values:
                continue
            cell = row.get(column)
            if cell is None:
                continue
            if isinstance(cell, str):
                if not cell.strip():
                    continue
            elif isinstance(cell, float) and math.isnan(cell):
                continue
            values[name] = coerce(cell)
            sources[name] = column
        return values, sources

    def _coercer(self, entity: str, spec: FieldSpec) -> Callable[[object], object]:
        """:meth:`_coerce` of a filled cell for one field; for fields whose cells repeat
        (codes, dates, numbers), remembered per cell text."""
        known = self._coercers.get((entity, spec.name))
        if known is not None:
            return known
        if spec.kind is FieldKind.TEXT:
            coerce: Callable[[object], object] = _text
        elif spec.kind in _REMEMBERED_KINDS:
            remembered: dict[str, object] = {}

            def coerce(cell: object) -> object:
                if cell.__class__ is not str:
                    return self._coerce(entity, spec, cell)
                value = remembered.get(cell, remembered)
                if value is remembered:
                    value = self._coerce(entity, spec, cell)
                    if len(remembered) >= _REMEMBERED_CELLS:
                        remembered.clear()
                    remembered[cell] = value
                return value

        else:

            def coerce(cell: object) -> object:
                return self._coerce(entity, spec, cell)

        self._coercers[(entity, spec.name)] = coerce
        return coerce

    def _choice(self, entity: str, name: str, text: str) -> str:
        translate = self.layout.values.get(name)
        if translate and text in translate:
            return translate[text]
        return self._codes[(entity, name)].get(text.casefold(), text)

    def _coerce(self, entity: str, spec: FieldSpec, value: object) -> object:
        """A cell as the field's value, or as text when it is not one (the checks name
        why)."""
        kind = spec.kind
        if kind is FieldKind.ENUM_SET:
            if isinstance(value, list):
                parts = [_text(v) for v in value]
            else:
                parts = [p.strip() for p in _SPLIT_RE.split(_text(value)) if p.strip()]
            return [self._choice(entity, spec.name, p) for p in parts]
        text = _text(value)
        if kind is FieldKind.ENUM:
            return self._choice(entity, spec.name, text)
        if kind is FieldKind.TEXT:
            return text
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
            return _date(text, self.layout.date_formats)
        if kind in (FieldKind.NIK, FieldKind.KK, FieldKind.REGION):
            return text.lstrip("'").replace(" ", "").replace(".", "")
        return text


def _any_filled(row: Mapping[str, object], columns: list[str]) -> bool:
    """Whether any of ``columns`` is filled in ``row`` (see :func:`_cell`)."""
    for column in columns:
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, str):
            if value.strip():
                return True
        elif not (isinstance(value, float) and math.isnan(value)):
            return True
    return False


def parse_row(row: Mapping[str, object], layout: Layout) -> tuple[list[RowPart], list[RowIssue]]:
    """The parts one row describes (keys of ``row`` are lowercase column names): a member
    when its id and a member's columns are filled, and a household when its id and a
    household's columns are (a member row may repeat them); an issue when it names
    neither. For many rows, :class:`RowParser` does the same faster."""
    return RowParser(layout, today=date.min).parse(row)  # parsing alone needs no day


def check_part(part: RowPart, layout: Layout, *, today: date) -> list[RowIssue]:
    """The protocol's checks of a part as a new record, as a box makes them; hub-only
    fields (the decile, the programmes the district records) get the shape check only."""
    return RowParser(layout, today=today).check(part)


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


def lacking(entity: str, values: Mapping[str, object]) -> int | None:
    """How many ranking variables a record lacks; ``None`` for an entity without them (the
    ``lacking`` column of the box's and the hub's records)."""
    names = RANKING_FIELDS.get(entity)
    if names is None:
        return None
    lacks = 0
    for name in names:  # as missing_fields, without the list (a bulk import's hot path)
        value = values.get(name)
        if value is None or value == "":
            lacks += 1
    return lacks


def missing_fields(entity: str, values: Mapping[str, object]) -> list[str]:
    """The ranking variables a record still lacks, in :data:`RANKING_FIELDS` order."""
    return [
        name
        for name in RANKING_FIELDS.get(entity, ())
        if values.get(name) is None or values.get(name) == ""
    ]
