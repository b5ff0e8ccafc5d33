"""OpenAPI pieces shared by the box's and the hub's documents: references, and the JSON
schema of an entity field's value as declared in :mod:`protocol.entities`.

Each side builds its own document from its own route table (``edge.web.openapi``,
``hub.openapi``); what a field looks like on the wire is defined once, here.
"""

from __future__ import annotations

from typing import Any

from protocol.regions import LEVEL_DIGITS
from protocol.schema import MAX_TEXT_LENGTH, EntitySchema, FieldKind, FieldSpec

__all__ = ["OPENAPI_VERSION", "UUID_PATTERN", "component", "field_schema", "values_schema"]

OPENAPI_VERSION = "3.1.0"
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

_JSON_TYPES = {
    FieldKind.INT: "integer",
    FieldKind.DECIMAL: "number",
    FieldKind.BOOL: "boolean",
    FieldKind.ENUM_SET: "array",
}


def component(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def field_schema(
    spec: FieldSpec, *, output: bool = False, nullable: bool | None = None
) -> dict[str, Any]:
    """The JSON schema of one field's value. Input schemas carry every shape rule of
    :func:`protocol.schema.wire_value_problem`; ``output`` schemas only the type. A value
    may be ``null`` (cleared) unless the field is required or ``nullable`` says not."""
    kind = spec.kind
    base_type = _JSON_TYPES.get(kind, "string")
    if nullable is None:
        nullable = output or not spec.required
    schema: dict[str, Any] = {
        "type": [base_type, "null"] if nullable else base_type,
        "title": spec.label,
    }
    if output:
        if kind is FieldKind.ENUM_SET:
            schema["items"] = {"type": "string"}
        if spec.readonly:
            schema["readOnly"] = True
            schema["description"] = "Set by the district hub; refused when sent."
        return schema
    if kind is FieldKind.TEXT:
        schema["maxLength"] = min(spec.max_length or MAX_TEXT_LENGTH, MAX_TEXT_LENGTH)
    elif kind in (FieldKind.INT, FieldKind.DECIMAL):
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if spec.maximum is not None:
            schema["maximum"] = spec.maximum
    elif kind is FieldKind.ENUM:
        schema["enum"] = [*spec.choices, *([None] if nullable else [])]
    elif kind is FieldKind.ENUM_SET:
        schema["items"] = {"type": "string", "enum": list(spec.choices)}
        schema["uniqueItems"] = True
    elif kind is FieldKind.DATE:
        schema["format"] = "date"
        schema["pattern"] = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
    elif kind is FieldKind.PERIOD:
        schema["pattern"] = "^[0-9]{4}-(0[1-9]|1[0-2])$"
    elif kind is FieldKind.REF:
        schema["format"] = "uuid"
        schema["pattern"] = UUID_PATTERN
    elif kind in (FieldKind.NIK, FieldKind.KK):
        schema["pattern"] = "^[0-9]{16}$"
    elif kind is FieldKind.REGION:
        digits = LEVEL_DIGITS[spec.region_level] if spec.region_level else 10
        schema["pattern"] = f"^[0-9]{{{digits}}}$"
    if spec.choice_labels:
        pairs = ", ".join(
            f"{c} = {t}" for c, t in zip(spec.choices, spec.choice_labels, strict=True)
        )
        schema["description"] = pairs
    return schema


def values_schema(entity: EntitySchema) -> dict[str, Any]:
    """A record's values as an answer shows them: every field of ``entity``, types only
    (lists may mask numbers, and a newer peer may add codes)."""
    values = {spec.name: field_schema(spec, output=True) for spec in entity.fields.values()}
    return {"type": "object", "properties": values}
