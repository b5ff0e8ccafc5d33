"""The JSON API (``/api/v1``): same validation and permissions as the UI.

Handlers read the request's shape with :mod:`edge.web.api_io` and leave every rule to
:mod:`edge.services`. The OpenAPI document (:mod:`edge.web.openapi`) is built from the
routes below and their ``body``/``response``/``parameters`` declarations.
"""

from __future__ import annotations

from aiohttp import web

from edge import services
from edge.records import AuditEntry, Record
from edge.web.api_io import (
    PAGE,
    PER_PAGE,
    SEARCH,
    answers,
    bad,
    fields_of,
    filter_parameters,
    filters_of,
    int_query,
    members_of,
    page_json,
    path_id,
    read_body,
    record_body,
    record_json,
    save_answer,
    search_text,
    unknown_fields,
)
from edge.web.app import ROUTES, STORE, actor, local_today
from edge.web.openapi import build_document
from edge.web.routing import ALL_ROLES, PUBLIC, RouteTable
from edge.web.sync_view import sync_json, sync_view
from protocol.entities import ENTITIES, HOUSEHOLD, MEMBER
from protocol.issues import Issue

__all__ = ["routes"]

routes = RouteTable(api=True)


async def _household_page(request: web.Request, text: str) -> web.Response:
    store = request.app[STORE]
    page, per_page = int_query(request, PAGE), int_query(request, PER_PAGE)
    households, total = await services.find_records(
        store,
        actor(request),
        "household",
        filters=filters_of(request, "household"),
        text=text,
        offset=(page - 1) * per_page,
        limit=per_page,
    )
    members = await store.related_to_each("member", [h.id for h in households])
    items = [
        {
            "household": record_json(h, masked=True),
            "members": [record_json(m, masked=True) for m in members[h.id]],
        }
        for h in households
    ]
    return page_json(items, total, page, per_page)


# --- households and members ----------------------------------------------------------------


@routes.get(
    "/api/v1/households",
    roles=ALL_ROLES,
    summary="List or search households (NIK and KK masked)",
    parameters=[SEARCH, PAGE, PER_PAGE, *filter_parameters("household")],
    response="HouseholdPage",
)
@answers
async def list_households(request: web.Request) -> web.Response:
    return await _household_page(request, search_text(request, required=False))


@routes.get(
    "/api/v1/search",
    roles=ALL_ROLES,
    summary="Find households by NIK, family-card number or member name (masked)",
    parameters=[{**SEARCH, "required": True}, PAGE, PER_PAGE],
    response="HouseholdPage",
)
@answers
async def search(request: web.Request) -> web.Response:
    return await _household_page(request, search_text(request, required=True))


async def _save_household(request: web.Request, household_id: str | None) -> web.Response:
    body = await read_body(request, ("household", "members"))
    household = fields_of(body, "household", required=household_id is None)
    members, issues = members_of(body, with_ids=household_id is not None)
    issues = unknown_fields(HOUSEHOLD.name, household) + issues
    if issues:
        raise bad(422, "validation_failed", issues)
    try:
        outcome = await services.save_household(
            request.app[STORE],
            actor(request),
            household_id=household_id,
            household=household,
            members=members,
            today=local_today(request),
            confirm_warnings=body.get("confirm_warnings", False),
        )
    except services.NotFound as exc:
        missing = str(exc)
        index = next((i for i, m in enumerate(members) if m.get("id") == missing), None)
        if index is None:
            raise
        path = f"members[{index}].id"
        issue = Issue.error(path, "invalid_ref", {"field": "id"})
        raise bad(422, "validation_failed", [issue]) from None
    if outcome.saved and household_id is not None:
        await _audit_shown(request, household_id)  # the answer shows the household in full
    return save_answer(outcome, 201 if household_id is None else 200)


async def _audit_shown(request: web.Request, household_id: str) -> None:
    who = actor(request)
    entry = AuditEntry(who.username, "view", HOUSEHOLD.name, household_id, {}, who.address)
    await request.app[STORE].audit(entry)


@routes.post(
    "/api/v1/households",
    roles=ALL_ROLES,
    summary="Register a household with its members (makes an usulan_baru proposal)",
    body="HouseholdCreate",
    response="WriteResult",
    status=201,
)
@answers
async def create_household(request: web.Request) -> web.Response:
    return await _save_household(request, None)


@routes.get(
    "/api/v1/households/{id}",
    roles=ALL_ROLES,
    summary="A household in full, with members, proposals, complaints, visits (audited view)",
    response="HouseholdDetail",
)
@answers
async def get_household(request: web.Request) -> web.Response:
    view = await services.view_household(request.app[STORE], actor(request), path_id(request))
    return web.json_response(
        {
            "household": record_json(view.household),
            "members": [record_json(m) for m in view.members],
            "proposals": [record_json(p) for p in view.proposals],
            "complaints": [record_json(c) for c in view.complaints],
            "visits": [record_json(v) for v in view.visits],
            "services": [record_json(v) for v in view.services],
        }
    )


@routes.patch(
    "/api/v1/households/{id}",
    roles=ALL_ROLES,
    summary="Change a household; members with an id are changed, without are added",
    body="HouseholdUpdate",
    response="WriteResult",
)
@answers
async def update_household(request: web.Request) -> web.Response:
    return await _save_household(request, path_id(request))


async def _member(request: web.Request) -> Record:
    member = await request.app[STORE].get(path_id(request), MEMBER.name)
    if member is None or member.household_id is None:
        raise services.NotFound(request.match_info["id"])
    return member


@routes.get(
    "/api/v1/members/{id}",
    roles=ALL_ROLES,
    summary="A member in full (audited view)",
    response="MemberRecord",
)
@answers
async def get_member(request: web.Request) -> web.Response:
    store = request.app[STORE]
    member = await services.view_record(store, actor(request), MEMBER.name, path_id(request))
    return web.json_response(record_json(member))


@routes.patch(
    "/api/v1/members/{id}",
    roles=ALL_ROLES,
    summary="Change a member (saved with its household, so household rules hold)",
    body="MemberUpdate",
    response="WriteResult",
)
@answers
async def update_member(request: web.Request) -> web.Response:
    member = await _member(request)
    values, confirm = await record_body(request, MEMBER.name)
    store = request.app[STORE]
    assert member.household_id is not None
    # Every member of the household goes in, unchanged but this one, so that issues of
    # other members are named by their place in the household, never mistaken for ours.
    siblings = await store.related(MEMBER.name, member.household_id)
    given = [{**values, "id": m.id} if m.id == member.id else {"id": m.id} for m in siblings]
    outcome = await services.save_household(
        store,
        actor(request),
        household_id=member.household_id,
        household={},
        members=given,
        today=local_today(request),
        confirm_warnings=confirm,
    )
    if outcome.saved:
        await _audit_shown(request, member.household_id)
    place = next(i for i, m in enumerate(siblings) if m.id == member.id)
    outcome = services.Outcome(outcome.saved, member.id, outcome.issues, outcome.records)
    return save_answer(outcome, 200, rename=f"members[{place}].")


# --- proposals, complaints, referrals, visits ----------------------------------------------


def _register(entity: str, plural: str, *, changeable: bool = True) -> None:
    """List, create, read and (when ``changeable``) change one entity (no delete)."""
    title = entity.title()
    base = f"/api/v1/{plural}"

    async def listing(request: web.Request) -> web.Response:
        page, per_page = int_query(request, PAGE), int_query(request, PER_PAGE)
        records, total = await services.find_records(
            request.app[STORE],
            actor(request),
            entity,
            filters=filters_of(request, entity),
            offset=(page - 1) * per_page,
            limit=per_page,
        )
        return page_json([record_json(r) for r in records], total, page, per_page)

    async def create(request: web.Request) -> web.Response:
        values, confirm = await record_body(request, entity)
        outcome = await services.create_record(
            request.app[STORE],
            actor(request),
            entity,
            values,
            today=local_today(request),
            confirm_warnings=confirm,
        )
        return save_answer(outcome, 201)

    async def read(request: web.Request) -> web.Response:
        store = request.app[STORE]
        record = await services.view_record(store, actor(request), entity, path_id(request))
        return web.json_response(record_json(record))

    async def change(request: web.Request) -> web.Response:
        record_id = path_id(request)
        values, confirm = await record_body(request, entity)
        outcome = await services.update_record(
            request.app[STORE],
            actor(request),
            entity,
            record_id,
            values,
            today=local_today(request),
            confirm_warnings=confirm,
        )
        return save_answer(outcome, 200)

    for handler, verb in ((listing, "list"), (create, "create"), (read, "get")):
        handler.__name__ = f"{verb}_{plural if verb == 'list' else entity}"
    change.__name__ = f"update_{entity}"
    label = ENTITIES[entity].label
    routes.get(
        base,
        roles=ALL_ROLES,
        summary=f"List {plural} ({label}), filtered and paged",
        parameters=[PAGE, PER_PAGE, *filter_parameters(entity)],
        response=f"{title}Page",
    )(answers(listing))
    routes.post(
        base,
        roles=ALL_ROLES,
        summary=f"Create a {entity} ({label})",
        body=f"{title}Create",
        response="WriteResult",
        status=201,
    )(answers(create))
    routes.get(
        f"{base}/{{id}}", roles=ALL_ROLES, summary=f"One {entity}", response=f"{title}Record"
    )(answers(read))
    if not changeable:
        return
    routes.patch(
        f"{base}/{{id}}",
        roles=ALL_ROLES,
        summary=f"Change a {entity} along its status workflow",
        body=f"{title}Update",
        response="WriteResult",
    )(answers(change))


_register("proposal", "proposals")
_register("complaint", "complaints")
_register("referral", "referrals")
# A visit is what was found on a day; a mistake is put right by recording another visit.
_register("visit", "visits", changeable=False)
# A service is what was given on a day: a mistaken weighing is put right by weighing again
# the same month (the month's last weighing counts, docs/posyandu.md).
_register("layanan", "services", changeable=False)


# --- sync and the document -----------------------------------------------------------------


@routes.get(
    "/api/v1/sync/status",
    roles=ALL_ROLES,
    summary="Replication: connection, what waits for the hub, acks, the hub's last refusal",
    response="SyncStatus",
)
async def sync_status(request: web.Request) -> web.Response:
    store = request.app[STORE]
    view = await sync_view(request.app)
    return web.json_response(sync_json(view, store.node, store.village))


@routes.get(
    "/api/v1/openapi.json",
    roles=PUBLIC,
    summary="This API's OpenAPI 3.1 document (public: it holds no data, only the shape)",
    response="OpenApiDocument",
)
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app[ROUTES].values()))
