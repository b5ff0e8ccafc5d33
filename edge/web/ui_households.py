"""Pages for households (rumah tangga) with their members: list, search, form, detail."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from edge import services
from edge.auth import AUDITORS
from edge.records import Record, head_of
from edge.web.app import CONFIG, SEARCHES, STORE, USER, actor, local_today, render
from edge.web.forms import (
    Raw,
    changed,
    editable,
    first_to_fix,
    in_form_order,
    input_name,
    messages_by_input,
    parse,
    raw_from_post,
    raw_from_values,
)
from edge.web.lists import page_number, pager_base
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui import flash, record_or_404
from edge.web.ui_registry import missing_labels
from protocol.changes import Value
from protocol.entities import HOUSEHOLD, MEMBER
from protocol.issues import Issue
from protocol.posyandu import flags_in
from puskesos.boxtrail import audit_rows
from puskesos.search import holds_number, matches, number_issue, parse_query

__all__ = ["routes"]

routes = RouteTable()

HOUSEHOLD_FIELDS = editable(HOUSEHOLD, exclude=("village_code",))
MEMBER_FIELDS = editable(MEMBER, exclude=("household_id",))
#: The member fields the vulnerable-group registers read that the member table shows too.
_REGISTER_MEMBER_FIELDS = [
    MEMBER.fields[name]
    for name in ("pregnant", "breastfeeding", "school_status", "health_insurance")
]
#: A form never carries more member blocks than this (a household of 30 is already rare).
MAX_MEMBERS = 30
#: A new member block with none of these typed in is an unused block, not a member.
_IDENTIFYING = ("nik", "name", "birth_date")


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


@routes.get(
    "/rumah-tangga", roles=ALL_ROLES,
    summary="Households: list and search (?q= text, ?cari= the token of a NIK/KK search)",
)  # fmt: skip
async def household_list(request: web.Request) -> web.Response:
    text = request.query.get("q", "").strip()[:100]
    if holds_number(text):
        # A URL is kept in browser histories and proxies' logs: numbers are searched by POST.
        raise web.HTTPSeeOther("/rumah-tangga")
    token = request.query.get("cari", "")
    if not token:
        return await _list_page(request, text)
    number = request.app[SEARCHES].number(token, request[USER].username, _monotonic_ms())
    if number is None:
        return await _list_page(request, "", expired=True)
    return await _list_page(request, number)


@routes.post(
    "/rumah-tangga/cari", roles=ALL_ROLES,
    summary="Search households; a NIK or KK number is held under a token, never put in a URL",
)  # fmt: skip
async def household_search(request: web.Request) -> web.Response:
    text = str((await request.post()).get("q", "")).strip()[:100]
    issue = number_issue("q", text)
    if issue is not None:
        return await _list_page(request, "", typed=text, errors={"q": [issue]}, status=422)
    number = parse_query(text).number
    if number:
        token = request.app[SEARCHES].hold(request[USER].username, number, _monotonic_ms())
        raise web.HTTPSeeOther(f"/rumah-tangga?cari={token}")
    raise web.HTTPSeeOther(str(URL("/rumah-tangga").with_query({"q": text} if text else {})))


async def _list_page(
    request: web.Request,
    text: str,
    *,
    typed: str | None = None,
    errors: Mapping[str, list[Issue]] | None = None,
    expired: bool = False,
    status: int = 200,
) -> web.Response:
    """A page of households answering the search ``text`` (all of them when empty), each
    with its head and why it matched; with ``errors``, only the search box, showing what
    was ``typed``."""
    store = request.app[STORE]
    size = request.app[CONFIG].page_size
    page = page_number(request)
    rows: list[Record] = []
    total = 0
    if not errors:
        rows, total = await services.find_records(
            store, actor(request), "household", text=text, offset=(page - 1) * size, limit=size
        )
    members = await store.related_to_each("member", [h.id for h in rows])
    query = parse_query(text)
    found = {
        h.id: matches(query, h.values, [m.values for m in members[h.id]]) if query else []
        for h in rows
    }
    # A search by NIK asks "is this person registered, and in which decile?": answer it.
    registered = [
        (household, member)
        for household in rows
        for member in members[household.id]
        if query.number and member.get("nik") == query.number
    ]
    return render(
        request,
        "rumah_tangga_list.html",
        status,
        households=rows,
        heads={h.id: head_of(members[h.id]) for h in rows},
        found=found,
        number=query.number,
        registered=registered,
        q=text if typed is None else typed,
        errors=errors or {},
        expired=expired,
        page=page,
        total=total,
        size=size,
        base=pager_base(request),
        notice=flash(request),
    )


def _member_prefix(index: int) -> str:
    return f"members-{index}-"


def _new_member_raw(index: int, *, head: bool) -> Raw:
    prefix = _member_prefix(index)
    raw: Raw = {f"{prefix}status": "aktif"}
    if head:
        raw[f"{prefix}relation_to_head"] = "kepala_keluarga"
    return raw


def _first_input(index: int) -> str:
    """The first input of the member block ``index``: where the form opens once it is added."""
    return input_name(MEMBER_FIELDS[0].name, _member_prefix(index))


def _labelled_inputs(blocks: Sequence[tuple[int, str]]) -> Iterator[tuple[str, str]]:
    """The form's inputs in page order, labelled as the error banner names them."""
    for spec in HOUSEHOLD_FIELDS:
        yield spec.name, spec.label
    for position, (index, _) in enumerate(blocks, start=1):
        for spec in MEMBER_FIELDS:
            yield input_name(spec.name, _member_prefix(index)), f"Anggota {position}, {spec.label}"


def _form_page(
    request: web.Request,
    *,
    household: Record | None,
    raw: Raw,
    blocks: list[tuple[int, str]],
    issues: Sequence[Issue] = (),
    member_inputs: Sequence[int] = (),
    focus: str = "",
    status: int = 200,
) -> web.Response:
    """The household form. It opens at ``focus``, else at the first input with an issue:
    ``autofocus`` scrolls a phone's long page there without JavaScript."""
    errors = messages_by_input(issues, member_inputs)
    general = [issue for name, found in errors.items() if name not in raw for issue in found]
    listed = in_form_order(_labelled_inputs(blocks), errors)
    return render(
        request,
        "rumah_tangga_form.html",
        status,
        household=household,
        form=raw,
        blocks=blocks,
        errors=errors,
        issues=list(issues),
        general=general,
        listed=listed,
        focus=focus or first_to_fix(listed),
        next_member=_first_input(len(blocks)),
        can_confirm=bool(issues) and all(i.level == "warning" for i in issues),
        household_fields=HOUSEHOLD_FIELDS,
        member_fields=MEMBER_FIELDS,
    )


@routes.get("/rumah-tangga/baru", roles=ALL_ROLES, summary="Form: register a household")
async def household_new(request: web.Request) -> web.Response:
    raw = raw_from_values(HOUSEHOLD_FIELDS, {}) | _new_member_raw(0, head=True)
    return _form_page(request, household=None, raw=raw, blocks=[(0, "")])


@routes.post("/rumah-tangga/baru", roles=ALL_ROLES, summary="Register a household")
async def household_create(request: web.Request) -> web.Response:
    return await _save(request, None)


async def _viewed_household(request: web.Request) -> services.HouseholdView:
    """The household of the URL with its members etc., audited as viewed; or 404."""
    try:
        return await services.view_household(
            request.app[STORE], actor(request), request.match_info["id"]
        )
    except services.NotFound:
        raise web.HTTPNotFound(text="Rumah tangga tidak ditemukan.") from None


@routes.get("/rumah-tangga/{id}", roles=ALL_ROLES, summary="A household's page (audited view)")
async def household_detail(request: web.Request) -> web.Response:
    view = await _viewed_household(request)
    missing = missing_labels(view.household.values, (m.values for m in view.members))
    period = local_today(request).strftime("%Y-%m")
    flags = {
        m.id: flags_in([s.values for s in view.services if s.get("member_id") == m.id], period)
        for m in view.members
    }
    return render(
        request,
        "rumah_tangga_detail.html",
        view=view,
        names={m.id: m.get("name") for m in view.members},
        flags=flags,
        period=period,
        missing=missing,
        civil_flagged=any(member.get("civil_flags") for member in view.members),
        household_fields=HOUSEHOLD.field_list,
        register_fields=_REGISTER_MEMBER_FIELDS,
        notice=flash(request),
    )


@routes.get(
    "/rumah-tangga/{id}/anggota/{member}/data-pribadi", roles=AUDITORS,
    summary="A person's data report: what the box holds about them and who processed it",
)  # fmt: skip
async def person_report(request: web.Request) -> web.Response:
    try:
        report = await services.person_report(
            request.app[STORE], actor(request), request.match_info["id"],
            request.match_info["member"],
        )  # fmt: skip
    except services.NotFound:
        raise web.HTTPNotFound(text="Anggota keluarga tidak ditemukan.") from None
    return render(
        request,
        "data_pribadi.html",
        report=report,
        member_fields=MEMBER.field_list,
        household_fields=HOUSEHOLD.field_list,
        trail=audit_rows(report.trail),
        today=local_today(request),
    )


@routes.get("/rumah-tangga/{id}/ubah", roles=ALL_ROLES, summary="Form: edit a household")
async def household_edit(request: web.Request) -> web.Response:
    # The form shows every NIK and the KK in full: an audited view, like the detail page.
    view = await _viewed_household(request)
    household = view.household
    raw = raw_from_values(HOUSEHOLD_FIELDS, household.values)
    blocks = []
    for index, member in enumerate(view.members):
        raw |= raw_from_values(MEMBER_FIELDS, member.values, _member_prefix(index))
        blocks.append((index, member.id))
    return _form_page(request, household=household, raw=raw, blocks=blocks)


@routes.post("/rumah-tangga/{id}/ubah", roles=ALL_ROLES, summary="Save a household's changes")
async def household_update(request: web.Request) -> web.Response:
    return await _save(request, request.match_info["id"])


def _block_count(post: MultiDictProxy[Any]) -> int:
    text = str(post.get("member_count", "0"))
    return min(int(text), MAX_MEMBERS) if text.isdigit() else 0


async def _save(request: web.Request, household_id: str | None) -> web.Response:
    """Save the household form, or show it again with what was typed and why not."""
    store = request.app[STORE]
    post = await request.post()
    current = await record_or_404(store, "household", household_id) if household_id else None
    existing = {m.id: m for m in await store.related("member", current.id)} if current else {}
    raw = raw_from_post(post, HOUSEHOLD_FIELDS)
    blocks: list[tuple[int, str]] = []
    for index in range(_block_count(post)):
        raw |= raw_from_post(post, MEMBER_FIELDS, _member_prefix(index))
        member_id = str(post.get(f"{_member_prefix(index)}id", ""))
        if member_id and member_id not in existing:
            raise web.HTTPBadRequest(text="Anggota tidak dikenal pada formulir ini.")
        blocks.append((index, member_id))

    if post.get("action") == "tambah_anggota" and len(blocks) < MAX_MEMBERS:
        raw |= _new_member_raw(len(blocks), head=not blocks)
        blocks.append((len(blocks), ""))
        return _form_page(
            request, household=current, raw=raw, blocks=blocks, focus=_first_input(blocks[-1][0])
        )

    household = parse(HOUSEHOLD_FIELDS, raw)
    if current is not None:
        household = changed(household, current.values)
    members: list[dict[str, Value]] = []
    member_inputs: list[int] = []
    for index, member_id in blocks:
        values = parse(MEMBER_FIELDS, raw, _member_prefix(index))
        if member_id:
            values = changed(values, existing[member_id].values) | {"id": member_id}
        elif all(values.get(name) is None for name in _IDENTIFYING):
            continue
        members.append(values)
        member_inputs.append(index)
    outcome = await services.save_household(
        store,
        actor(request),
        household_id=household_id,
        household=household,
        members=members,
        today=local_today(request),
        confirm_warnings=post.get("confirm_warnings") == "1",
    )
    if outcome.saved:
        notice = "tersimpan_peringatan" if outcome.issues else "tersimpan"
        raise web.HTTPSeeOther(f"/rumah-tangga/{outcome.record_id}?pesan={notice}")
    return _form_page(
        request,
        household=current,
        raw=raw,
        blocks=blocks,
        issues=outcome.issues,
        member_inputs=member_inputs,
        status=200 if outcome.needs_confirmation else 422,
    )
