"""Form ↔ record: HTML form fields to wire values and back, issues to per-field messages.

A form is held as its *raw* inputs: input name → the text typed (or, for an ENUM_SET, the
list of ticked codes; for a BOOL, ``"1"`` when ticked). Re-rendering a rejected form from
the raw inputs keeps exactly what the person typed. Input names are the field names, with
a prefix for repeated blocks (``members-0-nik``).

Parsing follows the wire rules of :mod:`protocol.schema`: an empty input is ``None``
(cleared), never ``""``; numbers are parsed; an unticked checkbox is ``False``. A number
that does not parse is passed on as the typed text, so validation reports it in its own
words (``Luas lantai harus berupa angka``) next to the field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from multidict import MultiDictProxy

from protocol.changes import Value
from protocol.issues import Issue
from protocol.schema import TOMBSTONE_FIELD, EntitySchema, FieldKind, FieldSpec

__all__ = [
    "FieldIssue",
    "Raw",
    "changed",
    "editable",
    "first_to_fix",
    "in_form_order",
    "input_name",
    "messages_by_input",
    "parse",
    "raw_from_post",
    "raw_from_values",
]

#: The inputs of a form: name → typed text, or ticked codes for an ENUM_SET.
Raw = dict[str, str | list[str]]

_MEMBER_PATH = re.compile(r"members\[(\d+)\]\.(.+)")


def editable(schema: EntitySchema, *names: str, exclude: Iterable[str] = ()) -> list[FieldSpec]:
    """The fields a person may type into: ``names`` in that order, or else every field that
    is not readonly (set by the hub), not the tombstone and not in ``exclude``."""
    if names:
        return [schema.fields[name] for name in names]
    skip = {TOMBSTONE_FIELD, *exclude}
    return [spec for spec in schema.field_list if not spec.readonly and spec.name not in skip]


def input_name(field: str, prefix: str = "") -> str:
    """The form input of ``field`` in the block ``prefix`` (``members-0-`` or ``""``)."""
    return prefix + field


def raw_from_post(post: MultiDictProxy[Any], specs: Sequence[FieldSpec], prefix: str = "") -> Raw:
    """What was typed into the fields ``specs`` of a posted form."""
    raw: Raw = {}
    for spec in specs:
        name = input_name(spec.name, prefix)
        if spec.kind is FieldKind.ENUM_SET:
            raw[name] = [str(v) for v in post.getall(name, [])]
        else:
            value = post.get(name)
            raw[name] = value.strip() if isinstance(value, str) else ""
    return raw


def raw_from_values(
    specs: Sequence[FieldSpec], values: Mapping[str, Value], prefix: str = ""
) -> Raw:
    """A stored record as a form shows it."""
    raw: Raw = {}
    for spec in specs:
        name, value = input_name(spec.name, prefix), values.get(spec.name)
        if spec.kind is FieldKind.ENUM_SET:
            raw[name] = [str(v) for v in value] if isinstance(value, list) else []
        elif spec.kind is FieldKind.BOOL:
            raw[name] = "1" if value is True else ""
        elif spec.kind is FieldKind.DECIMAL and isinstance(value, float):
            # As Indonesians write it (36, 36,5); parse() reads a comma or a point.
            raw[name] = str(int(value)) if value.is_integer() else str(value).replace(".", ",")
        else:
            raw[name] = "" if value is None else str(value)
    return raw


def parse(specs: Sequence[FieldSpec], raw: Raw, prefix: str = "") -> dict[str, Value]:
    """Wire values of the fields ``specs`` from a form's raw inputs."""
    values: dict[str, Value] = {}
    for spec in specs:
        typed = raw.get(input_name(spec.name, prefix), "")
        if spec.kind is FieldKind.ENUM_SET:
            values[spec.name] = list(typed) if isinstance(typed, list) else []
        elif spec.kind is FieldKind.BOOL:
            values[spec.name] = bool(typed)
        elif isinstance(typed, list) or typed == "":
            values[spec.name] = None
        else:
            values[spec.name] = _number(spec.kind, typed)
    return values


def _number(kind: FieldKind, typed: str) -> Value:
    try:
        if kind is FieldKind.INT:
            return int(typed)
        if kind is FieldKind.DECIMAL:
            return float(typed.replace(",", "."))  # Indonesians write 36,5
    except ValueError:
        pass  # validation says "harus berupa angka" next to the field
    return typed


def _empty(value: Value) -> bool:
    return value is None or value is False or value == []


def changed(values: Mapping[str, Value], current: Mapping[str, Value]) -> dict[str, Value]:
    """Only the values that differ from the stored record, so an unchanged form changes
    nothing (an empty input equals a field never filled; an unticked box one never set)."""
    return {
        name: value
        for name, value in values.items()
        if value != current.get(name) and not (_empty(value) and _empty(current.get(name)))
    }


def messages_by_input(
    issues: Iterable[Issue], member_inputs: Sequence[int] = ()
) -> dict[str, list[Issue]]:
    """Issues grouped by the form input they belong next to.

    ``members[i].nik`` goes to ``members-{member_inputs[i]}-nik``: the i-th member sent to
    the service was the form's block ``member_inputs[i]`` (empty blocks are not sent).
    Issues about the whole member list stay under ``members``.
    """
    grouped: dict[str, list[Issue]] = {}
    for issue in issues:
        name = issue.field
        found = _MEMBER_PATH.fullmatch(name)
        if found is not None:
            position = int(found.group(1))
            block = member_inputs[position] if position < len(member_inputs) else position
            name = input_name(found.group(2), f"members-{block}-")
        grouped.setdefault(name, []).append(issue)
    return grouped


@dataclasses.dataclass(frozen=True, slots=True)
class FieldIssue:
    """An issue as the banner above a form lists it: a link to the input it is next to."""

    input: str
    label: str
    issue: Issue


def in_form_order(
    inputs: Iterable[tuple[str, str]], errors: Mapping[str, Sequence[Issue]]
) -> list[FieldIssue]:
    """The issues of ``errors`` (from :func:`messages_by_input`) in the order a person meets
    their inputs on the page. ``inputs`` lists the form's inputs in that order, each with the
    label the banner gives it (``"Anggota 3, NIK"``)."""
    return [
        FieldIssue(name, label, issue) for name, label in inputs for issue in errors.get(name, ())
    ]


def first_to_fix(listed: Sequence[FieldIssue]) -> str:
    """The input the form should open at: the first in error, else the first warned about,
    else none (``""``)."""
    for item in listed:
        if item.issue.level == "error":
            return item.input
    return listed[0].input if listed else ""
