"""The hub API's route table and its OpenAPI 3.1 document, built from that table and from
the entity declarations in :mod:`protocol.entities`, so it cannot drift from either.

Every ``/api/`` route is declared with :class:`ApiRoutes` (``@api.get(...)`` in
:mod:`hub.web`) and registered from it, so a route cannot be served without being in the
document. A route says what the table alone cannot: its summary, its parameters (every
``{name}`` of its path must be declared), its request body and success answer (component
names) and the error statuses it can answer beyond the ones its scope implies: 401 for
every route that needs a token, 403 for one that needs a write token
(:func:`hub.tokens.required_scope`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aiohttp import web

from hub.antientropy import Verdict
from hub.devices import ACTIVE, REVOKED
from hub.tokens import SCOPES, required_scope
from protocol.entities import ENTITIES
from protocol.errors import Reason
from protocol.telemetry import Telemetry
from puskesos.openapi import OPENAPI_VERSION, component, values_schema

__all__ = [
    "VERSION",
    "VILLAGE_PATTERN",
    "ApiRoute",
    "ApiRoutes",
    "ErrorCode",
    "build_document",
    "path_parameter",
    "query_parameter",
]

VERSION = "1.0.0"
#: A village's code (Kemendagri, 10 digits), as a parameter and in answers.
VILLAGE_PATTERN = "^[0-9]{10}$"
_PATH_PARAM = re.compile(r"{([a-z_]+)}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The ``error`` of every refusal the API answers (with a ``message`` in English).
ErrorCode = Literal[
    "unauthorized",
    "forbidden",
    "bad_request",
    "bad_village",
    "bad_limit",
    "not_found",
    "not_resolved",
    "too_large",
]

_ERRORS = {
    400: "`bad_village` (`village` is not a 10-digit code), `bad_limit` (`limit` is not a "
    "whole number), `bad_request` (another parameter or the body is malformed), "
    "`not_resolved` (the value is not valid for the field, or `choose` names no version)",
    401: "`unauthorized`: no bearer token, or an unknown, revoked or expired one",
    403: "`forbidden`: a read token asked to write, or a token of some villages asked about "
    "another village (or about every village)",
    404: "`not_found` or `not_resolved`: no such one, or one of a village the token does not "
    "see (the same answer, so a token cannot learn that it exists)",
    409: "`not_resolved`: the conflict is already resolved",
    413: "`too_large`: the request body is over 1 MiB",
}

DESCRIPTION = """\
The JSON API of a Puskesos district hub, for the district's tools: the villages' records
as the hub holds them (the merge of every box's changes), the conflicts concurrent edits
left for a person to resolve, and the boxes (devices) with their replication state.

Authentication: a bearer token made by `puskesos hub token add`. A `read` token (the
default) reads; a `write` token also resolves conflicts (a read token gets 403 on every
operation that is not a GET: `x-scope`). A token made for some villages sees only theirs:
it must name one of them in `village` where an operation takes one, and a record, conflict
or device of another village answers 404 as if it did not exist. Tokens expire (365 days
by default) and can be revoked. A session cookie of the review UI opens no `/api/` route.
Every request that returns personal data (`x-audited`) leaves a row in the audit trail
with its filter and how many came back. This document itself is public: it describes the
API's shape and holds no data.

Errors are `{"error": code, "message": text}` with a 4xx status; each operation lists the
statuses it can answer and what each code means.

A conflict's `resolution` is `null` while it is open, `{"value": V}` once a person chose
a version or typed V, or `{"superseded": true}` when a later save on a box that had seen
every concurrent version settled it.
"""


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One API route with what its OpenAPI operation says beyond the method and path."""

    method: str
    path: str
    handler: Handler
    summary: str
    response: str
    parameters: tuple[dict[str, Any], ...] = ()
    body: str | None = None
    errors: frozenset[int] = frozenset()
    public: bool = False
    audited: bool = False

    @property
    def scope(self) -> str | None:
        """The token scope it needs (``None``: no token)."""
        return None if self.public else required_scope(self.method)

    def statuses(self) -> list[int]:
        """Every error status it can answer."""
        codes = set(self.errors)
        if not self.public:
            codes.add(401)
        if self.scope == "write":
            codes.add(403)
        return sorted(codes)


class ApiRoutes:
    """Collects the API's routes: ``@api.get("/api/v1/...", summary=..., response=...)``."""

    def __init__(self) -> None:
        self.routes: list[ApiRoute] = []

    def add(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        response: str,
        parameters: Sequence[dict[str, Any]] = (),
        body: str | None = None,
        errors: Iterable[int] = (),
        public: bool = False,
        audited: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated handler as ``method path``."""
        in_path = {p["name"] for p in parameters if p["in"] == "path"}
        if set(_PATH_PARAM.findall(path)) != in_path:
            raise ValueError(f"{method} {path}: declare exactly its path parameters")
        if not set(errors) <= set(_ERRORS):
            raise ValueError(f"{method} {path}: an error status without a description")

        def decorate(handler: Handler) -> Handler:
            route = ApiRoute(
                method, path, handler, summary, response, tuple(parameters), body,
                frozenset(errors), public, audited,
            )  # fmt: skip
            self.routes.append(route)
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A GET route."""
        return self.add("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A POST route."""
        return self.add("POST", path, **kw)

    def register(self, app: web.Application) -> dict[tuple[str, str], ApiRoute]:
        """Add every route to ``app``'s router; the table by (method, path)."""
        for route in self.routes:
            app.router.add_route(route.method, route.path, route.handler)
        return {(route.method, route.path): route for route in self.routes}


def path_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI path parameter."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def query_parameter(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    """An OpenAPI query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), **extra}


_INT = {"type": "integer"}
_COUNT = {"type": "integer", "minimum": 0}
_NULLABLE_INT = {"type": ["integer", "null"]}
_VILLAGE = {"type": "string", "pattern": VILLAGE_PATTERN}


def _records() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name, entity in ENTITIES.items():
        schemas[f"{name.title()}Values"] = values_schema(entity)
    by_entity = [
        {"properties": {"entity": {"const": name}, "values": component(f"{name.title()}Values")}}
        for name in ENTITIES
    ]
    record = {
        "id": {"type": "string", "format": "uuid"},
        "entity": {"type": "string", "enum": list(ENTITIES)},
        "village": _VILLAGE,
        "household_id": {"type": ["string", "null"], "description": "The household it is of"},
        "values": {"type": "object", "description": "The merged values every box will show"},
        "deleted": {"type": "boolean"},
        "conflicts": {**_COUNT, "description": "Fields with concurrent versions still open"},
        "updated_ms": _INT,
    }
    schemas["Record"] = _object(record, oneOf=by_entity)
    page = {
        "records": {"type": "array", "items": component("Record")},
        "next": {
            "type": ["string", "null"],
            "description": "`after` for the next page (null: no records on this page)",
        },
    }
    schemas["RecordPage"] = _object(page)
    version = {
        "value": {"description": "Any JSON value the field may hold"},
        "stamp": {
            "type": "string",
            "pattern": "^[0-9a-f]{16,}@.+$",
            "description": "Hybrid logical clock time (hex) @ the node that wrote it",
        },
        "node": {"type": "string"},
    }
    schemas["Version"] = _object(version)
    versions = {"type": "array", "items": component("Version"), "minItems": 1}
    fields = {
        "type": "object",
        "description": "Field → its current versions (more than one: concurrent edits)",
        "additionalProperties": versions,
    }
    schemas["RecordVersions"] = _object({"id": {"type": "string"}, "fields": fields})
    return schemas


def _conflicts() -> dict[str, Any]:
    resolution = {
        "oneOf": [
            {"type": "null", "description": "Still open"},
            _object({"value": {}}, additionalProperties=False, description="A person's"),
            _object(
                {"superseded": {"const": True}},
                additionalProperties=False,
                description="A later save on a box settled it",
            ),
        ]
    }
    conflict = {
        "id": {"type": "integer", "minimum": 1},
        "record_id": {"type": "string", "format": "uuid"},
        "entity": {"type": "string", "enum": list(ENTITIES)},
        "village": _VILLAGE,
        "field": {"type": "string"},
        "versions": {"type": "array", "items": component("Version")},
        "detected_ms": _INT,
        "resolved_ms": _NULLABLE_INT,
        "resolved_by": {
            "type": ["string", "null"],
            "description": "`token:<name>`, a hub account, or the node of the box that settled it",
        },
        "resolution": resolution,
    }
    choose = {
        "type": "integer",
        "minimum": 0,
        "description": "Index of the version in `versions` to keep",
    }
    value = {"description": "A new value (valid for the field) to replace every version"}
    resolve = {
        "type": "object",
        "properties": {"choose": choose, "value": value},
        "oneOf": [
            {"required": ["choose"], "not": {"required": ["value"]}},
            {"required": ["value"], "not": {"required": ["choose"]}},
        ],
    }
    return {
        "Conflict": _object(conflict),
        "ConflictList": _object({"conflicts": {"type": "array", "items": component("Conflict")}}),
        "Resolution": resolve,
    }


def _devices() -> dict[str, Any]:
    reported = {
        "type": ["object", "null"],
        "description": "The box's last status message (null: never heard of)",
        "properties": {
            "outbox": _COUNT,
            "oldest_ms": _NULLABLE_INT,
            "up_seq": _COUNT,
            "down_watermark": _COUNT,
            "software": {"type": "string"},
            "wire": _INT,
            "schema": _INT,
            "digest": {"type": "string", "description": "Root of its record digest"},
            "records": _COUNT,
            "at_ms": _INT,
        },
    }
    reject = {
        "reason": {"type": "string", "enum": [r.value for r in Reason]},
        "detail": {"type": "string"},
        "seq": {"type": "integer", "description": "The refused batch (0: unreadable)"},
    }
    telemetry_fields = {
        name: {"type": ["number", "null"] if name == "cpu_temp_c" else ["integer", "null"]}
        for name in Telemetry.__dataclass_fields__
    }
    telemetry_fields["software"] = {"type": "string"}
    device = {
        "node": {"type": "string"},
        "village": _VILLAGE,
        "status": {"type": "string", "enum": [ACTIVE, REVOKED]},
        "online": {"type": "boolean"},
        "created_ms": _INT,
        "revoked_ms": _NULLABLE_INT,
        "last_seen_ms": _NULLABLE_INT,
        "up_watermark": {**_COUNT, "description": "Every batch up to it is applied"},
        "up_above": {"type": "array", "items": _INT, "description": "Applied above it"},
        "changes_applied": _COUNT,
        "down_seq": {**_COUNT, "description": "Last batch the hub numbered for the box"},
        "down_watermark": {**_COUNT, "description": "Every down batch up to it is applied"},
        "reported": reported,
        "outbox_lag": {**_NULLABLE_INT, "description": "Changes the box has not yet sent"},
        "clock_offset_ms": _NULLABLE_INT,
        "rejected": {**_COUNT, "description": "Batches of the box the hub refused"},
        "last_reject": {"oneOf": [_object(reject), {"type": "null"}]},
        "telemetry": {
            "type": ["object", "null"],
            "properties": telemetry_fields,
            "description": "The latest health report (null: none yet)",
        },
        "telemetry_ms": _NULLABLE_INT,
        "digest_state": {
            "type": ["string", "null"],
            "enum": [*(v.value for v in Verdict), None],
            "description": "The last digest comparison (anti-entropy; null: none yet)",
        },
        "digest_ms": _NULLABLE_INT,
        "divergences": _COUNT,
        "repaired": _COUNT,
        "audit_chain": {
            "type": ["string", "null"],
            "enum": ["ok", "broken", None],
            "description": "The box's audit hash chain (null: the box sends none)",
        },
        "audit_seq": {**_COUNT, "description": "Entries of the chain checked so far"},
        "audit_breaks": {**_COUNT, "description": "Breaks, gaps and restarts found"},
        "audit_problem": {
            "type": ["string", "null"],
            "enum": ["break", "gap", "fork", None],
            "description": "The last problem found in the chain",
        },
        "audit_problem_seq": _NULLABLE_INT,
        "audit_problem_ms": _NULLABLE_INT,
    }
    return {
        "Device": _object(device),
        "DeviceList": _object({"devices": {"type": "array", "items": component("Device")}}),
    }


def _components() -> dict[str, Any]:
    error = {
        "error": {"type": "string", "enum": list(get_args(ErrorCode))},
        "message": {"type": "string"},
    }
    return {
        **_records(),
        **_conflicts(),
        **_devices(),
        "Error": _object(error),
        "OpenApiDocument": {"type": "object"},
    }


def _operation(route: ApiRoute) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": component(route.response)}},
        }
    }
    for code in route.statuses():
        responses[str(code)] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": component("Error")}},
        }
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.path.split("/")[3]],
    }
    if route.scope is not None:
        operation["x-scope"] = route.scope
        operation["x-audited"] = route.audited
    if route.parameters:
        operation["parameters"] = list(route.parameters)
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": component(route.body)}},
        }
    operation["responses"] = responses
    if route.public:
        operation["security"] = []
    return operation


def build_document(routes: Iterable[ApiRoute]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    scopes = ", ".join(f"`{scope}`" for scope in SCOPES)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Puskesos hub API", "version": VERSION, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": f"`puskesos hub token add`; scopes {scopes}",
                }
            },
        },
        "security": [{"bearerAuth": []}],
    }
