"""Pages for complaints (pengaduan) and referrals (rujukan): lists, intake, status, history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from yarl import URL

from edge import services
from edge.records import Record, head_of
from edge.store import Store
from edge.web.app import CONFIG, STORE, actor, local_today, render
from edge.web.forms import (
    Raw,
    changed,
    editable,
    messages_by_input,
    parse,
    raw_from_post,
    raw_from_values,
)
from edge.web.lists import page_number, pager_base
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui import flash, record_or_404
from protocol.entities import COMPLAINT, REFERRAL, WORKFLOWS
from protocol.issues import Issue
from protocol.regions import lookup
from protocol.schema import FieldSpec
from puskesos.boxtrail import audit_rows
from puskesos.search import holds_number

__all__ = ["routes"]

routes = RouteTable()

COMPLAINT_FIELDS = editable(
    COMPLAINT,
    "channel",
    "category",
    "reporter_name",
    "anonymous",
    "reporter_contact",
    "received_date",
    "chronology",
)
COMPLAINT_STATUS_FIELDS = editable(COMPLAINT, "status", "rejection_reason")
REFERRAL_FIELDS = editable(
    REFERRAL, "destination", "destination_name", "need", "letter_number", "follow_up_date"
)
REFERRAL_STATUS_FIELDS = editable(REFERRAL, "status", "outcome", "follow_up_date")
#: Status fields that mean something in one status only: shown on the status form only
#: while that status is chosen (CSS, no JavaScript: ``.only-<status>`` in app.css).
ONLY_FOR = {"rejection_reason": "ditolak"}
#: Per entity: its pages' path, its status fields, its detail template.
_CASES = {
    "complaint": ("/pengaduan", COMPLAINT_STATUS_FIELDS, "pengaduan_detail.html"),
    "referral": ("/rujukan", REFERRAL_STATUS_FIELDS, "rujukan_detail.html"),
}


async def _view_or_404(request: web.Request, entity: str) -> Record:
    """A record shown in full (audited), or 404."""
    try:
        store, record_id = request.app[STORE], request.match_info["id"]
        return await services.view_record(store, actor(request), entity, record_id)
    except services.NotFound:
        raise web.HTTPNotFound(text="Data tidak ditemukan.") from None


async def _list(request: web.Request, entity: str, template: str) -> web.Response:
    store = request.app[STORE]
    size = request.app[CONFIG].page_size
    page = page_number(request)
    filters = {name: request.query.get(name, "") for name in services.FILTERS[entity]}
    rows, total = await services.find_records(
        store, actor(request), entity, filters=filters, offset=(page - 1) * size, limit=size
    )
    return render(
        request, template, records=rows, filters=filters, page=page, total=total, size=size,
        base=pager_base(request), notice=flash(request),
    )  # fmt: skip


def _form(
    request: web.Request,
    template: str,
    fields: Sequence[FieldSpec],
    raw: Raw,
    issues: Sequence[Issue] = (),
    status: int = 200,
    **context: Any,
) -> web.Response:
    errors = messages_by_input(issues)
    shown = {spec.name for spec in fields}
    general = [i for name, found in errors.items() if name not in shown for i in found]
    return render(
        request, template, status, fields=fields, form=raw, errors=errors, issues=list(issues),
        general=general, can_confirm=bool(issues) and all(i.level == "warning" for i in issues),
        **context,
    )  # fmt: skip


async def _detail(
    request: web.Request,
    entity: str,
    record: Record,
    *,
    raw: Raw | None = None,
    issues: Sequence[Issue] = (),
    status: int = 200,
) -> web.Response:
    """A case's page: its values, related records, the status form and the history."""
    store = request.app[STORE]
    _, fields, template = _CASES[entity]
    workflow = WORKFLOWS[entity]
    # The record's history is its changes; who viewed it is on the audit page.
    history, _ = await store.audit_log(record_id=record.id, actions=("create", "update"), limit=200)
    related: dict[str, Any] = {}
    if entity == "complaint":
        related["referrals"], _ = await store.list(
            "referral", where=[store.field_equals("complaint_id", record.id)], limit=100
        )
    else:
        complaint_id, member_id = record.get("complaint_id"), record.get("member_id")
        related["complaint"] = await store.get(str(complaint_id)) if complaint_id else None
        related["member"] = await store.get(str(member_id)) if member_id else None
    household_id = record.household_id or next(
        (r.household_id for r in (related.get("member"), related.get("complaint")) if r), None
    )
    related["household"] = await store.get(household_id) if household_id else None
    return render(
        request,
        template,
        status,
        record=record,
        next_statuses=workflow.transitions.get(str(record.get("status")), ()),
        fields=fields,
        form=raw or raw_from_values(fields[1:], record.values),
        errors=messages_by_input(issues),
        history=audit_rows(history),
        notice=flash(request),
        only_for=ONLY_FOR,
        **related,
    )


async def _update_status(request: web.Request, entity: str) -> web.Response:
    store = request.app[STORE]
    path, fields, _ = _CASES[entity]
    record = await record_or_404(store, entity, request.match_info["id"])
    raw = raw_from_post(await request.post(), fields)
    values = changed(parse(fields, raw), record.values)
    outcome = await services.update_record(
        store, actor(request), entity, record.id, values, today=local_today(request)
    )
    if outcome.saved:
        raise web.HTTPSeeOther(f"{path}/{record.id}?pesan=status")
    return await _detail(request, entity, record, raw=raw, issues=outcome.issues, status=422)


# --- pengaduan ------------------------------------------------------------------------------


@routes.get("/pengaduan", roles=ALL_ROLES, summary="Complaints: list with filters")
async def complaint_list(request: web.Request) -> web.Response:
    return await _list(request, "complaint", "pengaduan_list.html")


#: The complaint form's household picker before anything was searched.
_NO_PICKER: dict[str, Any] = {"cari": "", "found": [], "heads": {}, "problem": None}


async def _household_from(store: Store, household_id: str) -> Record | None:
    return await record_or_404(store, "household", household_id) if household_id else None


@routes.get("/pengaduan/baru", roles=ALL_ROLES, summary="Form: log a complaint")
async def complaint_new(request: web.Request) -> web.Response:
    """The form; without a household, a picker finds one by name or address (``cari``)."""
    store = request.app[STORE]
    household = await _household_from(store, request.query.get("household", ""))
    raw = raw_from_values(
        COMPLAINT_FIELDS, {"channel": "langsung", "received_date": local_today(request).isoformat()}
    )
    text = request.query.get("cari", "").strip()[:100]
    if holds_number(text):
        raise web.HTTPSeeOther("/pengaduan/baru")  # a number never stays in a URL
    picker: dict[str, Any] = {**_NO_PICKER, "cari": text}
    if household is None and text:
        picker["found"], _ = await services.find_records(
            store, actor(request), "household", text=text, limit=10
        )
        members = await store.related_to_each("member", [h.id for h in picker["found"]])
        picker["heads"] = {hid: head_of(people) for hid, people in members.items()}
    return _form(
        request, "pengaduan_form.html", COMPLAINT_FIELDS, raw, household=household, **picker
    )


@routes.post("/pengaduan/baru/cari", roles=ALL_ROLES, summary="Find the complaint's household")
async def complaint_pick(request: web.Request) -> web.Response:
    """The picker's search, posted so that a number typed into it never reaches a URL:
    names and addresses come back as ``?cari=``; a NIK/KK is sent to Rumah tangga."""
    text = str((await request.post()).get("cari", "")).strip()[:100]
    if not holds_number(text):
        raise web.HTTPSeeOther(
            str(URL("/pengaduan/baru").with_query(cari=text) if text else "/pengaduan/baru")
        )
    raw = raw_from_values(
        COMPLAINT_FIELDS, {"channel": "langsung", "received_date": local_today(request).isoformat()}
    )
    problem = "Cari dengan nama atau alamat. NIK/KK dicari di menu Rumah tangga."
    return _form(
        request, "pengaduan_form.html", COMPLAINT_FIELDS, raw, status=422, household=None,
        **(_NO_PICKER | {"cari": text, "problem": problem}),
    )  # fmt: skip


@routes.post("/pengaduan/baru", roles=ALL_ROLES, summary="Log a complaint")
async def complaint_create(request: web.Request) -> web.Response:
    store = request.app[STORE]
    post = await request.post()
    household = await _household_from(store, str(post.get("household_id", "")))
    raw = raw_from_post(post, COMPLAINT_FIELDS)
    values = {k: v for k, v in parse(COMPLAINT_FIELDS, raw).items() if v is not None}
    if household is not None:
        values["household_id"] = household.id
    outcome = await services.create_record(
        store, actor(request), "complaint", values, today=local_today(request),
        confirm_warnings=post.get("confirm_warnings") == "1",
    )  # fmt: skip
    if outcome.saved:
        raise web.HTTPSeeOther(f"/pengaduan/{outcome.record_id}?pesan=tersimpan")
    return _form(
        request, "pengaduan_form.html", COMPLAINT_FIELDS, raw, outcome.issues,
        200 if outcome.needs_confirmation else 422, household=household, **_NO_PICKER,
    )  # fmt: skip


@routes.get("/pengaduan/{id}", roles=ALL_ROLES, summary="A complaint: status and history")
async def complaint_detail(request: web.Request) -> web.Response:
    return await _detail(request, "complaint", await _view_or_404(request, "complaint"))


@routes.post("/pengaduan/{id}/status", roles=ALL_ROLES, summary="Change a complaint's status")
async def complaint_status(request: web.Request) -> web.Response:
    return await _update_status(request, "complaint")


# --- rujukan --------------------------------------------------------------------------------


@routes.get("/rujukan", roles=ALL_ROLES, summary="Referrals: list with filters")
async def referral_list(request: web.Request) -> web.Response:
    return await _list(request, "referral", "rujukan_list.html")


async def _subject(store: Store, complaint_id: str, member_id: str) -> dict[str, Any]:
    """What a referral is about: a complaint, a household member, or a complaint and the
    member of its household who is referred; with the members one may choose from."""
    complaint = await record_or_404(store, "complaint", complaint_id) if complaint_id else None
    member = await record_or_404(store, "member", member_id) if member_id else None
    if complaint is None and member is None:
        raise web.HTTPBadRequest(text="Rujukan dibuat dari halaman pengaduan atau rumah tangga.")
    choices: list[Record] = []
    if complaint is not None and complaint.household_id:
        related = await store.related_to_each("member", [complaint.household_id])
        choices = [m for m in related[complaint.household_id] if m.get("status") == "aktif"]
    if complaint is not None and member is not None and member.id not in {m.id for m in choices}:
        raise web.HTTPBadRequest(text="Anggota itu bukan anggota rumah tangga pengaduan ini.")
    return {"complaint": complaint, "member": member, "members": choices}


@routes.get("/rujukan/baru", roles=ALL_ROLES, summary="Form: refer a complaint or a member")
async def referral_new(request: web.Request) -> web.Response:
    subject = await _subject(
        request.app[STORE], request.query.get("complaint", ""), request.query.get("member", "")
    )
    raw = raw_from_values(REFERRAL_FIELDS, {})
    return _form(request, "rujukan_form.html", REFERRAL_FIELDS, raw, **subject)


@routes.post("/rujukan/baru", roles=ALL_ROLES, summary="Refer a complaint or a member")
async def referral_create(request: web.Request) -> web.Response:
    store = request.app[STORE]
    post = await request.post()
    subject = await _subject(
        store, str(post.get("complaint_id", "")), str(post.get("member_id", ""))
    )
    raw = raw_from_post(post, REFERRAL_FIELDS)
    values = {k: v for k, v in parse(REFERRAL_FIELDS, raw).items() if v is not None}
    for name, record in (("complaint_id", subject["complaint"]), ("member_id", subject["member"])):
        if record is not None:
            values[name] = record.id
    outcome = await services.create_record(
        store, actor(request), "referral", values, today=local_today(request)
    )
    if outcome.saved:
        raise web.HTTPSeeOther(f"/rujukan/{outcome.record_id}?pesan=tersimpan")
    return _form(request, "rujukan_form.html", REFERRAL_FIELDS, raw, outcome.issues, 422, **subject)


@routes.get("/rujukan/{id}", roles=ALL_ROLES, summary="A referral: status and outcome")
async def referral_detail(request: web.Request) -> web.Response:
    return await _detail(request, "referral", await _view_or_404(request, "referral"))


@routes.get("/rujukan/{id}/surat", roles=ALL_ROLES, summary="A referral's printable letter")
async def referral_letter(request: web.Request) -> web.Response:
    """The surat rujukan the resident takes to the destination: who is referred (their full
    NIK, so the viewing is audited as for the member's own page), what for, from whom."""
    store, who = request.app[STORE], actor(request)
    referral = await _view_or_404(request, "referral")
    complaint_id, member_id = referral.get("complaint_id"), referral.get("member_id")
    complaint = await store.get(str(complaint_id), "complaint") if complaint_id else None
    member = await services.view_record(store, who, "member", str(member_id)) if member_id else None
    household_id = next((r.household_id for r in (member, complaint) if r), None)
    household = await store.get(household_id, "household") if household_id else None
    return render(
        request,
        "rujukan_surat.html",
        record=referral,
        complaint=complaint,
        member=member,
        household=household,
        region=lookup(request.app[CONFIG].village),
        today=local_today(request),
    )


@routes.post("/rujukan/{id}/status", roles=ALL_ROLES, summary="Change a referral's status")
async def referral_status(request: web.Request) -> web.Response:
    return await _update_status(request, "referral")
