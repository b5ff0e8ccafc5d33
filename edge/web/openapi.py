"""The OpenAPI 3.1 document of the JSON API, built from the app's route table and from the
entity declarations in :mod:`protocol.entities`, so it cannot drift from either.

Each API route (``api=True`` in :mod:`edge.web.routing`) becomes one operation. Its
decorator's extra keyword arguments say what the table alone cannot:

- ``body``: the component name of the JSON request body;
- ``response``: the component name of the success answer, ``status`` its code (200);
- ``parameters``: query parameters (OpenAPI parameter objects).

Path parameters (``{id}``) are record UUIDs. Error answers are added from what the route
can meet: 401/403 unless public, 404 with a path id, 400 with a body or query, 409/413/422
with a body, 507 where the request writes (a body, or an audited view: a path id or a
search). Component schemas per entity: ``<Entity>New`` (a create: required fields),
``<Entity>Change`` (an update: any subset), ``<Entity>Values`` and ``<Entity>Record``
(answers: types only, since lists mask NIK and KK and the hub may add codes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from edge.web.app import CSRF_HEADER, SESSION_COOKIE
from edge.web.routing import Route
from protocol.entities import ENTITIES
from protocol.schema import EntitySchema
from puskesos.openapi import (
    OPENAPI_VERSION,
    UUID_PATTERN,
    component,
    field_schema,
    values_schema,
)

__all__ = ["SEARCH_PARAMETER", "VERSION", "build_document"]

VERSION = "1.0.0"
_PATH_PARAM = re.compile(r"{([a-z_]+)}")
#: The query parameter of a search by NIK, KK or name (audited: ``edge.services``).
SEARCH_PARAMETER = "q"

#: Fields the box fills in itself: a value sent is replaced (the box's village; the
#: household a member is saved with).
SET_BY_BOX: Mapping[str, tuple[str, ...]] = {
    "household": ("village_code",),
    "member": ("household_id",),
}
#: Of these fields a create needs at least one (a referral is about a complaint or a member:
#: ``protocol.validate``).
ANY_OF_REQUIRED: Mapping[str, tuple[str, ...]] = {"referral": ("complaint_id", "member_id")}
#: Required fields that the services fill in on a create when they are left out
#: (``edge.services.create_record`` / ``save_household``; a test posts bodies with only
#: the documented required fields to keep this honest).
DEFAULTED: Mapping[str, tuple[str, ...]] = {
    "member": ("status",),
    "proposal": ("status", "period"),
    "complaint": ("status", "received_date", "due_date"),
    "referral": ("status",),
    "layanan": ("service_date", "spm_field", "officer"),
}

DESCRIPTION = """\
The JSON API of a Puskesos edge box: households with their members, proposals (usulan),
complaints (pengaduan), referrals (rujukan), field visits (kunjungan verifikasi) and
Posyandu services (layanan). Records are created and changed, never deleted: a member who
moved or died gets a status; a visit or a service is never changed (a mistake is put right
by recording another one).

Authentication: a bearer token (made by an admin on the Pengguna page or with `puskesos edge
token add`) or the session cookie of a logged-in browser; cookie calls that change data also
send the session's CSRF token in `X-CSRF-Token`. Roles per operation are under `x-roles`.
This document itself is public: it describes the API's shape and holds no data.

Errors are `{"error": code, "fields": {field: [{"code", "level", "message"}]}}` with a 4xx
status: 400 malformed JSON or a body of the wrong shape (unknown top-level keys too),
401 not logged in, 403 role or CSRF, 404 unknown id, 409 `needs_confirmation` (only
warnings: send again with `"confirm_warnings": true`), 422 `validation_failed`. Unknown
fields inside a record are refused (422 `unknown_field`), never silently dropped, and so are
fields only the district hub writes (422 `readonly`). Messages are in Bahasa Indonesia.
507 `disk_full`: the box's disk is full and nothing was saved (a change, or the audit row
that a view of personal data needs); reads go on working, and the same request succeeds
once space is freed, without a restart.

Lists mask NIK and family-card numbers (`3201********0003`); a household's detail shows
them in full and that view is written to the audit trail.
"""


def _input_object(entity: EntitySchema, *, new: bool, with_id: bool = False) -> dict[str, Any]:
    """A record as a client sends it: a create (``new``) or an update."""
    box = SET_BY_BOX.get(entity.name, ())
    properties: dict[str, Any] = {}
    if with_id:
        properties["id"] = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
    for spec in entity.fields.values():
        if spec.readonly:
            continue
        schema = field_schema(spec)
        if spec.name in box:
            schema["description"] = "Filled in by the box; a value sent is replaced."
            schema["readOnly"] = True
        properties[spec.name] = schema
    skip = {*box, *DEFAULTED.get(entity.name, ())}
    required = [name for name in entity.required if name not in skip] if new else []
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if with_id:
        required = ["id"]
    if required:
        schema["required"] = required
    if new and entity.name in ANY_OF_REQUIRED:
        schema["anyOf"] = [{"required": [name]} for name in ANY_OF_REQUIRED[entity.name]]
    return schema


def _record(entity: str | None) -> dict[str, Any]:
    values = component(f"{entity.title()}Values") if entity else {"type": "object"}
    nullable_id = {"type": ["string", "null"]}
    properties = {
        "id": {"type": "string", "format": "uuid"},
        "entity": {"type": "string", **({"const": entity} if entity else {})},
        "values": values,
        "household_id": nullable_id,
        "created_ms": {"type": "integer"},
        "updated_ms": {"type": "integer"},
        "conflicts": {"type": "integer", "description": "Open conflicts the hub reported"},
        "deleted": {"type": "boolean"},
    }
    return {"type": "object", "properties": properties, "required": list(properties)}


def _page(item: dict[str, Any]) -> dict[str, Any]:
    properties = {
        "items": {"type": "array", "items": item},
        "total": {"type": "integer", "minimum": 0},
        "page": {"type": "integer", "minimum": 1},
        "per_page": {"type": "integer", "minimum": 1},
    }
    return {"type": "object", "properties": properties, "required": list(properties)}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    confirm = {
        "type": "boolean",
        "default": False,
        "description": "Save even though there are warnings (after showing them).",
    }
    return {
        "type": "object",
        "properties": {**properties, "confirm_warnings": confirm},
        "required": required,
        "additionalProperties": False,
    }


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name, entity in ENTITIES.items():
        title = name.title()
        schemas[f"{title}New"] = _input_object(entity, new=True)
        schemas[f"{title}Change"] = _input_object(entity, new=False)
        schemas[f"{title}Values"] = values_schema(entity)
        schemas[f"{title}Record"] = _record(name)
        if name not in ("household", "member"):  # these two have bodies of their own
            schemas[f"{title}Page"] = _page(component(f"{title}Record"))
            schemas[f"{title}Create"] = _body({name: component(f"{title}New")}, [name])
            if name not in ("visit", "layanan"):  # never changed
                schemas[f"{title}Update"] = _body({name: component(f"{title}Change")}, [name])
    schemas["MemberChangeById"] = _input_object(ENTITIES["member"], new=False, with_id=True)
    new_members = {"type": "array", "items": component("MemberNew")}
    schemas["HouseholdCreate"] = _body(
        {"household": component("HouseholdNew"), "members": new_members}, ["household"]
    )
    any_member = {"oneOf": [component("MemberChangeById"), component("MemberNew")]}
    schemas["HouseholdUpdate"] = _body(
        {
            "household": component("HouseholdChange"),
            "members": {"type": "array", "items": any_member},
        },
        [],
    )
    schemas["MemberUpdate"] = _body({"member": component("MemberChange")}, ["member"])
    item = {
        "household": component("HouseholdRecord"),
        "members": {"type": "array", "items": component("MemberRecord")},
    }
    schemas["HouseholdListItem"] = {"type": "object", "properties": item, "required": list(item)}
    schemas["HouseholdPage"] = _page(component("HouseholdListItem"))
    detail = {
        **item,
        "proposals": {"type": "array", "items": component("ProposalRecord")},
        "complaints": {"type": "array", "items": component("ComplaintRecord")},
        "visits": {"type": "array", "items": component("VisitRecord")},
        "services": {"type": "array", "items": component("LayananRecord")},
    }
    schemas["HouseholdDetail"] = {"type": "object", "properties": detail, "required": list(detail)}
    issue = {
        "code": {"type": "string"},
        "level": {"type": "string", "enum": ["error", "warning"]},
        "message": {"type": "string", "description": "In Bahasa Indonesia"},
    }
    schemas["Issue"] = {"type": "object", "properties": issue, "required": list(issue)}
    schemas["Issues"] = {
        "type": "object",
        "description": "Field path (`nik`, `members[2].nik`) → its issues",
        "additionalProperties": {"type": "array", "items": component("Issue")},
    }
    error = {"error": {"type": "string"}, "fields": component("Issues")}
    schemas["Error"] = {"type": "object", "properties": error, "required": list(error)}
    result = {
        "id": {"type": "string", "format": "uuid"},
        "record": _record(None),
        "records": {"type": "array", "items": _record(None)},
        "warnings": component("Issues"),
    }
    schemas["WriteResult"] = {
        "type": "object",
        "description": "The main record, every record the save wrote (e.g. the month's "
        "proposals), and the warnings it was saved with.",
        "properties": result,
        "required": list(result),
    }
    nullable_int = {"type": ["integer", "null"]}
    reject = {
        "seq": {"type": "integer", "description": "The refused batch (0: unreadable)"},
        "reason": {"type": "string", "description": "Reason code (protocol/SPEC.md 5.4)"},
        "detail": {"type": "string"},
        "at_ms": {"type": "integer"},
        "message": {"type": "string", "description": "What it means, in Bahasa Indonesia"},
    }
    check = {
        "state": {"type": "string", "enum": ["match", "diverged"]},
        "at_ms": {"type": "integer"},
        "divergences": {"type": "integer", "description": "Times the hub found a difference"},
        "records_sent": {"type": "integer", "description": "Records the box sent again"},
    }
    sync = {
        "node": {"type": "string"},
        "village": {"type": "string"},
        "enabled": {"type": "boolean", "description": "`[sync] enabled` in the configuration"},
        "connected": {
            "type": ["boolean", "null"],
            "description": "Connected to the broker now (null when sync is off)",
        },
        "outbox_pending": {
            "type": "integer",
            "description": "Changes not yet acknowledged by the hub (queued or in batches)",
        },
        "outbox_oldest_ms": nullable_int,
        "unacked_batches": {"type": "integer", "description": "Sealed batches awaiting the ack"},
        "up_seq": {"type": "integer", "description": "Last sequence number given to a batch"},
        "down_watermark": {
            "type": "integer",
            "description": "Every batch from the hub up to this one is applied",
        },
        "last_hub_contact_ms": nullable_int,
        "last_ack_ms": nullable_int,
        "last_reject": {
            "oneOf": [
                {"type": "object", "properties": reject, "required": list(reject)},
                {"type": "null"},
            ],
            "description": "The hub's last refusal still unresolved",
        },
        "last_restamp_ms": {
            **nullable_int,
            "description": "When changes stamped by a wrong clock were last re-stamped",
        },
        "clock_ahead_ms": {"type": "integer"},
        "clock_wrong": {
            "type": "boolean",
            "description": "The box's clock is ahead, or the hub refused it as ahead",
        },
        "records": {"type": "integer", "description": "Records the box holds"},
        "digest": {
            "type": "string",
            "description": "Root of the box's record digest (16 hex digits, protocol/digest.py)",
        },
        "digest_check": {
            "oneOf": [
                {"type": "object", "properties": check, "required": list(check)},
                {"type": "null"},
            ],
            "description": "What the hub's last digest comparison said (null before one)",
        },
    }
    schemas["SyncStatus"] = {"type": "object", "properties": sync, "required": list(sync)}
    schemas["OpenApiDocument"] = {"type": "object"}
    return schemas


_ERRORS = {
    400: "Malformed JSON, a body of the wrong shape or a bad query parameter",
    401: "Not logged in (no session cookie or bearer token)",
    403: "The caller's role may not do this, or the CSRF token is missing",
    404: "No such record",
    409: "Only warnings stopped the save: confirm with `confirm_warnings`",
    413: "Request body over the size limit (1 MiB)",
    422: "Validation errors (and warnings), per field",
    507: "`disk_full`: the box's disk is full, nothing was saved",
}


def _operation(route: Route) -> dict[str, Any]:
    extra = route.openapi
    status = int(extra.get("status", 200))
    names = _PATH_PARAM.findall(route.path)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
        for name in names
    ]
    parameters += list(extra.get("parameters", ()))
    codes = set()
    if not route.public:
        codes |= {401, 403}
    if names:
        codes.add(404)
    if extra.get("parameters"):
        codes.add(400)
    searches = any(p.get("name") == SEARCH_PARAMETER for p in extra.get("parameters", ()))
    if "body" in extra or (names and not route.public) or searches:
        codes.add(507)  # it writes: the change, or the audit row of a view or a search
    responses: dict[str, Any] = {
        str(status): {
            "description": "OK" if status == 200 else "Created",
            "content": {"application/json": {"schema": component(extra["response"])}},
        }
    }
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.path.split("/")[3]],
        "x-roles": sorted(role.value for role in route.roles),
    }
    if "body" in extra:
        codes |= {400, 409, 413, 422}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": component(extra["body"])}},
        }
    for code in sorted(codes):
        responses[str(code)] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": component("Error")}},
        }
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = responses
    if route.public:
        operation["security"] = []
    elif route.method != "GET":
        operation["security"] = [{"bearerAuth": []}, {"cookieAuth": [], "csrfToken": []}]
    return operation


def build_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of every API route in ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        if route.api:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Puskesos edge API", "version": VERSION, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "csrfToken": {"type": "apiKey", "in": "header", "name": CSRF_HEADER},
            },
        },
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
    }
