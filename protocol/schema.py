"""The machinery for describing entities: field kinds, field specs, entity schemas.

The entities themselves (household, member, ...) are declared once, in
:mod:`protocol.entities`. Everything that needs to know a field (the edge's forms and
database, the hub's store, the wire codec, validation) reads it from there.

Every value that travels on the wire is one of: ``None`` (the field is cleared), ``str``,
``int``, ``float`` (finite), ``bool`` or a list of ``str`` (for :attr:`FieldKind.ENUM_SET`).
Dates travel as ISO ``YYYY-MM-DD`` strings, periods as ``YYYY-MM``, references as canonical
UUID strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from protocol.regions import LEVEL_DIGITS, RegionLevel

__all__ = [
    "TOMBSTONE_FIELD",
    "EntitySchema",
    "FieldKind",
    "FieldSpec",
    "WireProblem",
    "wire_value_accept",
    "wire_value_error",
    "wire_value_problem",
]

#: Every entity has this boolean field. A record withdrawn by mistake gets
#: ``deleted = True``: a tombstone that replicates like any other field change.
TOMBSTONE_FIELD = "deleted"


class FieldKind(StrEnum):
    """What a field holds; decides its wire type and its basic checks."""

    TEXT = "text"
    INT = "int"
    DECIMAL = "decimal"
    BOOL = "bool"
    DATE = "date"
    PERIOD = "period"
    ENUM = "enum"
    ENUM_SET = "enum_set"
    REF = "ref"
    NIK = "nik"
    KK = "kk"
    REGION = "region"


# [0-9], not \d: \d also matches Arabic-Indic, fullwidth and other Unicode digits.
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PERIOD_RE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIGITS_RE = re.compile(r"[0-9]+")

#: Upper bound for any text value on the wire, whatever the field's own limit.
MAX_TEXT_LENGTH = 4000
_STR = frozenset({str})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an entity.

    ``label`` is the Bahasa Indonesia label shown next to the field in the UI.
    ``readonly`` fields are written only by the hub (e.g. the published decile).
    ``choices`` lists the allowed codes for ENUM and ENUM_SET fields; ``choice_labels``
    gives their Indonesian labels in the same order. ``region_level`` pins a REGION field
    to one level (a household's village is a ``"desa"`` code, 10 digits).
    ``since`` is the entity schema version that added the field, ``codes_since`` the
    version that added each later enum code (see :meth:`known_in`).
    """

    name: str
    kind: FieldKind
    label: str
    required: bool = False
    choices: tuple[str, ...] = ()
    choice_labels: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    readonly: bool = False
    ref: str | None = None
    region_level: RegionLevel | None = None
    since: int = 1
    codes_since: tuple[tuple[str, int], ...] = ()

    def known_in(self, schema: int, value: object) -> bool:
        """Whether a receiver at entity schema version ``schema`` can read this field
        holding ``value``: it knows the field and, for an enum, every code in it."""
        if self.since > schema:
            return False
        if not self.codes_since:
            return True
        codes = value if isinstance(value, list | tuple) else (value,)
        later = dict(self.codes_since)
        return all(later.get(code, 1) <= schema for code in codes if isinstance(code, str))

    def label_of(self, code: object) -> str:
        """The Indonesian label of an enum code (the code itself when it has none)."""
        if not isinstance(code, str):
            return "" if code is None else str(code)
        if code in self.choices and self.choice_labels:
            return self.choice_labels[self.choices.index(code)]
        return code

    def __post_init__(self) -> None:
        if self.kind in (FieldKind.ENUM, FieldKind.ENUM_SET) and not self.choices:
            raise ValueError(f"{self.name}: an enum field needs choices")
        if self.choice_labels and len(self.choice_labels) != len(self.choices):
            raise ValueError(f"{self.name}: one label per choice")
        if self.kind is FieldKind.REF and not self.ref:
            raise ValueError(f"{self.name}: a reference field names its entity")
        if self.region_level is not None and (
            self.kind is not FieldKind.REGION or self.region_level not in LEVEL_DIGITS
        ):
            raise ValueError(f"{self.name}: only a region field has a region level")
        if any(code not in self.choices for code, _ in self.codes_since):
            raise ValueError(f"{self.name}: codes_since names a code that is not a choice")


@dataclass(frozen=True, slots=True)
class EntitySchema:
    """An entity: its wire name, its Indonesian label and its fields in display order.

    The tombstone field :data:`TOMBSTONE_FIELD` is added to every entity.
    """

    name: str
    label: str
    field_list: tuple[FieldSpec, ...]
    fields: Mapping[str, FieldSpec] = field(init=False)
    #: The entity schema version that added the entity.
    since: int = 1

    def __post_init__(self) -> None:
        specs = {spec.name: spec for spec in self.field_list}
        if len(specs) != len(self.field_list):
            raise ValueError(f"{self.name}: duplicate field names")
        if TOMBSTONE_FIELD in specs:
            raise ValueError(f"{self.name}: {TOMBSTONE_FIELD!r} is reserved")
        specs[TOMBSTONE_FIELD] = FieldSpec(TOMBSTONE_FIELD, FieldKind.BOOL, "Dihapus")
        object.__setattr__(self, "fields", MappingProxyType(specs))

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the fields a new record must have."""
        return tuple(spec.name for spec in self.field_list if spec.required)


@dataclass(frozen=True, slots=True)
class WireProblem:
    """Why a value may not travel: a validation ``code`` (a key of
    :data:`protocol.messages.MESSAGES`), a short English ``reason`` and the message's
    ``params``."""

    code: str
    reason: str
    params: tuple[tuple[str, str], ...] = ()


def wire_value_error(spec: FieldSpec, value: object) -> str | None:
    """Check a value's *shape* for its field, as the codec must before accepting it.

    Returns ``None`` when the value may travel, else a short English reason. This is the
    type-level check only (a string for a date field must be a date); the business
    rules (a NIK's birth date, one head per household) live in :mod:`protocol.validate`
    and are applied by the node where a person types the value.
    """
    problem = wire_value_problem(spec, value)
    return None if problem is None else problem.reason


def wire_value_accept(spec: FieldSpec) -> Callable[[object], bool]:
    """A quick test for values of ``spec`` that certainly may travel: ``True`` only for a
    value :func:`wire_value_error` accepts; ``False`` means "ask it" (it gives the reason).
    For the codec's hot loop, which checks every field of every change; build once per
    field (the fields of the common kinds get a test without the dispatch on the kind)."""
    kind = spec.kind
    limit = min(spec.max_length or MAX_TEXT_LENGTH, MAX_TEXT_LENGTH)
    if kind is FieldKind.TEXT:
        return lambda value: value is None or (type(value) is str and len(value) <= limit)
    if kind is FieldKind.ENUM:
        codes = frozenset(code for code in spec.choices if len(code) <= limit)
        return lambda value: value is None or (type(value) is str and value in codes)
    if kind is FieldKind.BOOL:
        return lambda value: value is None or value is True or value is False
    if kind is FieldKind.DATE:
        return lambda value: (
            value is None or (type(value) is str and len(value) <= limit and _is_date(value))
        )
    if kind is FieldKind.ENUM_SET:
        known = frozenset(spec.choices)
        return lambda value: (
            value is None
            or (
                type(value) is list
                and set(map(type, value)) <= _STR
                and known.issuperset(value)
                and len(set(value)) == len(value)
            )
        )
    if kind in (FieldKind.INT, FieldKind.DECIMAL):
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        if kind is FieldKind.INT:
            return lambda value: value is None or (type(value) is int and low <= value <= high)
        return lambda value: (
            value is None
            or (
                (type(value) is int or (type(value) is float and math.isfinite(value)))
                and low <= value <= high
            )
        )
    if kind in (FieldKind.NIK, FieldKind.KK) and limit >= 16:
        return lambda value: (
            value is None
            or (type(value) is str and len(value) == 16 and _DIGITS_RE.fullmatch(value) is not None)
        )
    return lambda value: wire_value_problem(spec, value) is None


def wire_value_problem(spec: FieldSpec, value: object) -> WireProblem | None:
    """Like :func:`wire_value_error`, with a machine-readable code for the user's message."""
    if value is None:
        return None
    kind = spec.kind
    if kind is FieldKind.BOOL:
        return None if isinstance(value, bool) else WireProblem("not_boolean", "expected a boolean")
    if kind is FieldKind.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            return WireProblem("not_integer", "expected an integer")
        return _range_problem(spec, value)
    if kind is FieldKind.DECIMAL:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return WireProblem("not_number", "expected a number")
        # isfinite() on a huge int raises OverflowError; ints are always finite.
        if isinstance(value, float) and not math.isfinite(value):
            return WireProblem("not_number", "expected a finite number")
        return _range_problem(spec, value)
    if kind is FieldKind.ENUM_SET:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return WireProblem("not_list", "expected a list of codes")
        unknown = [v for v in value if v not in spec.choices]
        if unknown:
            return WireProblem(
                "unknown_choice", f"unknown codes {unknown[:3]!r}", (("value", unknown[0][:40]),)
            )
        if len(set(value)) != len(value):
            return WireProblem("repeated_choice", "repeated codes")
        return None
    if not isinstance(value, str):
        return WireProblem("not_text", "expected a string")
    limit = min(spec.max_length or MAX_TEXT_LENGTH, MAX_TEXT_LENGTH)
    if len(value) > limit:
        return WireProblem("too_long", f"longer than {limit} characters", (("limit", str(limit)),))
    if kind is FieldKind.ENUM:
        if value in spec.choices:
            return None
        return WireProblem("unknown_choice", "unknown code", (("value", value[:40]),))
    if kind is FieldKind.DATE:
        return None if _is_date(value) else WireProblem("invalid_date", "expected YYYY-MM-DD")
    if kind is FieldKind.PERIOD:
        if _PERIOD_RE.fullmatch(value):
            return None
        return WireProblem("invalid_period", "expected YYYY-MM")
    if kind is FieldKind.REF:
        if _UUID_RE.fullmatch(value):
            return None
        return WireProblem("invalid_ref", "expected a lowercase UUID")
    if kind in (FieldKind.NIK, FieldKind.KK):
        nik = kind is FieldKind.NIK
        if not _DIGITS_RE.fullmatch(value):
            return WireProblem("nik_digits" if nik else "kk_digits", "expected 16 digits")
        if len(value) != 16:
            length = (("length", str(len(value))),)
            return WireProblem("nik_length" if nik else "kk_length", "expected 16 digits", length)
        return None
    if kind is FieldKind.REGION:
        return _region_problem(spec, value)
    return None


def _is_date(value: str) -> bool:
    # The pattern first: fromisoformat() also takes "20230101" and "2023-W01-1".
    if not _DATE_RE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:  # 2023-02-29, 2023-13-01, 0000-01-01
        return False
    return True


def _region_problem(spec: FieldSpec, value: str) -> WireProblem | None:
    if spec.region_level is not None:
        digits = LEVEL_DIGITS[spec.region_level]
        if _DIGITS_RE.fullmatch(value) and len(value) == digits:
            return None
        return WireProblem(
            "region_shape", f"expected a {digits} digit region code", (("value", value[:40]),)
        )
    if _DIGITS_RE.fullmatch(value) and len(value) in LEVEL_DIGITS.values():
        return None
    return WireProblem(
        "region_shape", "expected a 2, 4, 6 or 10 digit region code", (("value", value[:40]),)
    )


def _range_problem(spec: FieldSpec, value: float) -> WireProblem | None:
    low, high = spec.minimum, spec.maximum
    if (low is None or value >= low) and (high is None or value <= high):
        return None
    params = (("minimum", _number(low)), ("maximum", _number(high)))
    reason = f"below {low}" if low is not None and value < low else f"above {high}"
    if low is not None and high is not None:
        return WireProblem("out_of_range", reason, params)
    return WireProblem("below_minimum" if low is not None else "above_maximum", reason, params)


def _number(bound: float | None) -> str:
    return "" if bound is None else f"{bound:g}"
