"""Reading JSON API requests and writing their answers (used by :mod:`edge.web.api`).

Only the SHAPE of a request is checked here: JSON, objects where objects belong, no unknown
or hub-only fields, bounded query parameters. Every rule stays in :mod:`edge.services`.
Errors are ``{"error": code, "fields": {field: [{"code", "level", "message"}]}}`` with a
4xx status, never a 500 for bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from edge import services
from edge.records import Record
from edge.web.app import json_error
from edge.web.openapi import SEARCH_PARAMETER
from protocol.entities import ENTITIES
from protocol.identity import mask_number
from protocol.issues import Issue
from protocol.schema import FieldKind, wire_value_problem
from puskesos.openapi import field_schema

__all__ = [
    "PAGE",
    "PER_PAGE",
    "SEARCH",
    "ApiError",
    "answers",
    "bad",
    "fields_of",
    "filter_parameters",
    "filters_of",
    "int_query",
    "members_of",
    "page_json",
    "path_id",
    "read_body",
    "record_body",
    "record_json",
    "save_answer",
    "search_text",
    "unknown_fields",
]

Handler = Callable[[web.Request], Awaitable[web.Response]]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_INTEGER = re.compile(r"-?[0-9]{1,9}")
_MASKED = {
    name: tuple(s.name for s in e.fields.values() if s.kind in (FieldKind.NIK, FieldKind.KK))
    for name, e in ENTITIES.items()
}

PAGE: dict[str, Any] = {
    "name": "page",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1},
}
PER_PAGE: dict[str, Any] = {
    "name": "per_page",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
}
SEARCH: dict[str, Any] = {
    "name": SEARCH_PARAMETER,
    "in": "query",
    "description": "A NIK or family-card number (16 digits), or the start of a member's name",
    "schema": {"type": "string", "maxLength": 100},
}


class ApiError(Exception):
    """Stops a request with ``{"error": code, "fields": ...}`` and a 4xx status."""

    def __init__(self, status: int, code: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.fields = fields or {}


def answers(handler: Handler) -> Handler:
    """Turn the API's and the services' exceptions into JSON error answers."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return json_error(exc.status, exc.code, dict(exc.fields))
        except services.NotFound:
            return json_error(404, "not_found")
        except services.PermissionDenied:
            return json_error(403, "forbidden")

    wrapped.__name__ = handler.__name__
    return wrapped


def issues_json(issues: list[Issue]) -> dict[str, list[dict[str, str]]]:
    """Issues grouped by field path, each with its code, level and Indonesian message."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for issue in issues:
        grouped.setdefault(issue.field, []).append(
            {"code": issue.code, "level": issue.level, "message": issue.message()}
        )
    return grouped


def bad(status: int, code: str, issues: list[Issue]) -> ApiError:
    """An error answer naming the fields at fault."""
    return ApiError(status, code, issues_json(issues))


def record_json(record: Record, *, masked: bool = False) -> dict[str, Any]:
    """A record as the API shows it; ``masked`` hides NIK and family-card numbers (lists)."""
    values = dict(record.values)
    if masked:
        for name in _MASKED[record.entity]:
            if isinstance(values.get(name), str):
                values[name] = mask_number(values[name])
    return {
        "id": record.id,
        "entity": record.entity,
        "values": values,
        "household_id": record.household_id,
        "created_ms": record.created_ms,
        "updated_ms": record.updated_ms,
        "conflicts": record.conflicts,
        "deleted": record.deleted,
    }


# --- reading a request ----------------------------------------------------------------------


def path_id(request: web.Request) -> str:
    """The record id in the path; anything that is not a UUID names no record."""
    record_id = request.match_info["id"]
    if not _UUID.fullmatch(record_id):
        raise services.NotFound(record_id[:40])
    return record_id


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: web.Request, keys: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object of the request, with only ``keys`` (and ``confirm_warnings``)."""
    try:
        body = json.loads((await request.read()).decode("utf-8"), parse_constant=_reject_constant)
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be stored
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json") from None
    if not isinstance(body, dict):
        raise bad(400, "invalid_body", [Issue.error("", "invalid_value", {"field": ""})])
    problems = [
        Issue.error(key[:40], "unknown_field", {"field": key[:40]})
        for key in body
        if key not in (*keys, "confirm_warnings")
    ]
    if not isinstance(body.get("confirm_warnings", False), bool):
        label = {"field": "confirm_warnings", "label": "confirm_warnings"}
        problems.append(Issue.error("confirm_warnings", "not_boolean", label))
    if problems:
        raise bad(400, "invalid_body", problems)
    return body


async def record_body(request: web.Request, entity: str) -> tuple[dict[str, Any], bool]:
    """The fields of a one-record body ``{entity: {...}, "confirm_warnings": bool}``, and
    whether warnings are confirmed."""
    body = await read_body(request, (entity,))
    values = fields_of(body, entity)
    issues = unknown_fields(entity, values)
    if issues:
        raise bad(422, "validation_failed", issues)
    return values, body.get("confirm_warnings", False)


def fields_of(body: Mapping[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
    """The object under ``key``: the fields of one record."""
    if key not in body and not required:
        return {}
    value = body.get(key)
    if not isinstance(value, dict):
        code = "required" if value is None else "invalid_value"
        raise bad(400, "invalid_body", [Issue.error(key, code, {"field": key, "label": key})])
    return value


def unknown_fields(
    entity: str, values: Mapping[str, Any], prefix: str = "", *, with_id: bool = False
) -> list[Issue]:
    """Fields the entity does not have (a typo must not look saved) and fields only the
    district hub writes."""
    schema = ENTITIES[entity]
    issues = []
    for name in values:
        spec = schema.fields.get(name)
        path = f"{prefix}{name[:40]}"
        if name == "id" and with_id:
            if not isinstance(values[name], str):
                issues.append(Issue.error(path, "invalid_value", {"field": "id"}))
        elif spec is None:
            issues.append(Issue.error(path, "unknown_field", {"field": name[:40]}))
        elif spec.readonly:
            issues.append(Issue.error(path, "readonly", {"field": name, "label": spec.label}))
    return issues


def members_of(
    body: Mapping[str, Any], *, with_ids: bool
) -> tuple[list[dict[str, Any]], list[Issue]]:
    """The ``members`` list of a household body, and the issues of its fields' names
    (an ``id``, naming a member to change, only ``with_ids``)."""
    members = body.get("members", [])
    if not isinstance(members, list):
        label = {"field": "members", "label": "members"}
        raise bad(400, "invalid_body", [Issue.error("members", "not_list", label)])
    issues: list[Issue] = []
    seen: set[str] = set()
    for index, member in enumerate(members):
        path = f"members[{index}]"
        if not isinstance(member, dict):
            raise bad(400, "invalid_body", [Issue.error(path, "invalid_value", {"field": path})])
        issues += unknown_fields("member", member, f"{path}.", with_id=with_ids)
        member_id = member.get("id")
        if isinstance(member_id, str):
            if member_id in seen:
                issues.append(Issue.error(f"{path}.id", "invalid_value", {"field": "id"}))
            seen.add(member_id)
    return members, issues


def int_query(request: web.Request, parameter: Mapping[str, Any]) -> int:
    """An integer query parameter within the bounds its OpenAPI declaration states."""
    name, schema = parameter["name"], parameter["schema"]
    text = request.query.get(name)
    if text is None:
        return int(schema["default"])
    low, high = schema["minimum"], schema["maximum"]
    params = {"field": name, "label": name, "minimum": str(low), "maximum": str(high)}
    if not _INTEGER.fullmatch(text):
        raise bad(400, "invalid_query", [Issue.error(name, "not_integer", params)])
    if not low <= int(text) <= high:
        raise bad(400, "invalid_query", [Issue.error(name, "out_of_range", params)])
    return int(text)


def search_text(request: web.Request, *, required: bool) -> str:
    """The ``q`` query parameter: a NIK, a family-card number or the start of a name."""
    text = request.query.get("q", "").strip()
    limit = SEARCH["schema"]["maxLength"]
    params = {"field": "q", "label": "q", "limit": str(limit)}
    if required and not text:
        raise bad(400, "invalid_query", [Issue.error("q", "required", params)])
    if len(text) > limit:
        raise bad(400, "invalid_query", [Issue.error("q", "too_long", params)])
    return text


def filter_parameters(entity: str) -> list[dict[str, Any]]:
    """The OpenAPI query parameters of a list's filters (:data:`edge.services.FILTERS`)."""
    fields = ENTITIES[entity].fields
    return [
        {"name": name, "in": "query", "schema": field_schema(fields[name], nullable=False)}
        for name in services.FILTERS[entity]
    ]


def filters_of(request: web.Request, entity: str) -> dict[str, str]:
    """The list filters given in the query, each a valid value of its field."""
    fields = ENTITIES[entity].fields
    chosen = {n: request.query[n] for n in services.FILTERS[entity] if n in request.query}
    issues = []
    for name, value in chosen.items():
        problem = wire_value_problem(fields[name], value)
        if problem is not None:
            params = {"field": name, "label": fields[name].label, **dict(problem.params)}
            issues.append(Issue.error(name, problem.code, params))
    if issues:
        raise bad(400, "invalid_query", issues)
    return chosen


# --- answers -------------------------------------------------------------------------------


def page_json(items: list[Any], total: int, page: int, per_page: int) -> web.Response:
    """One page of a list."""
    return web.json_response({"items": items, "total": total, "page": page, "per_page": per_page})


def save_answer(outcome: services.Outcome, status: int, rename: str = "") -> web.Response:
    """A save's answer: the records written and the warnings, or why nothing was."""
    issues = [
        Issue(i.field.removeprefix(rename), i.code, i.level, i.params) if rename else i
        for i in outcome.issues
    ]
    if not outcome.saved:
        if outcome.needs_confirmation:
            return json_error(409, "needs_confirmation", issues_json(issues))
        return json_error(422, "validation_failed", issues_json(issues))
    main = next(r for r in outcome.records if r.id == outcome.record_id)
    return web.json_response(
        {
            "id": outcome.record_id,
            "record": record_json(main),
            "records": [record_json(r) for r in outcome.records],
            "warnings": issues_json(issues),
        },
        status=status,
    )
