"""Antrian verifikasi: the households a box changed since their last decision (by village,
searched by name or by NIK/KK number, in the order the verifier chose), each change
old → new with the box and time that wrote it, and the verifier's decision, after which
the next household of the same queue opens."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from yarl import URL

from hub import audit, cycle, review
from hub.person_report import person_report
from hub.review_queue import (
    SORTS,
    QueueFilter,
    agreed_proposals,
    next_household,
    queue,
    queue_counts,
)
from hub.roles import Role
from hub.ui.audit import trail_entries
from hub.ui.base import (
    CONFIG,
    READERS,
    SEARCHES,
    STORE,
    USER,
    RouteTable,
    actor,
    export_list,
    form_data,
    page_number,
    push_down,
    render,
    valid_village,
)
from protocol.identity import mask_number
from puskesos.boxtrail import audit_rows
from puskesos.export import ROW_LIMIT, Table, local_time, yes_no
from puskesos.search import fold, holds_number, number_issue, parse_query

__all__ = ["routes"]

routes = RouteTable()

PAGE_SIZE = 50
#: Who may print a person's data report: who reads the audit trail.
REPORTERS = {Role.ADMIN, Role.LEADER}
#: The page's buttons: decision code → its label.
BUTTONS = {"disetujui": "Setujui", "ditolak": "Tolak", "periksa_lapangan": "Periksa lapangan"}
FLASH = {
    "disetujui": "Perubahan disetujui.",
    "ditolak": "Perubahan ditolak; desa akan memperbaiki dan mengirim lagi.",
    "periksa_lapangan": "Keluarga ditandai perlu periksa lapangan.",
}


def _state(values: Mapping[str, str]) -> dict[str, str]:
    """The queue's state in ``values`` (a query or a form), the valid parts only. Pages
    of the queue carry it in their links and the decision form, so that the verifier
    stays in the queue they chose: the village (``desa``), the order (``urut``), the name
    searched for (``q``) and the token of a NIK or KK search (``cari``; the number itself
    never goes in a URL)."""
    village = values.get("desa", "").strip()
    name = values.get("q", "").strip()[:100]
    state = {
        "desa": village if valid_village(village) else "",
        "urut": values.get("urut", "") if values.get("urut", "") in SORTS else "",
        "q": "" if holds_number(name) else name,
        "cari": values.get("cari", "")[:64],
    }
    return {key: value for key, value in state.items() if value}


def _url(path: str, state: Mapping[str, str], **more: str) -> str:
    return str(URL(path).with_query({**state, **more}))


def _filter(request: web.Request, state: Mapping[str, str]) -> QueueFilter | None:
    """The queue ``state`` asks for; ``None`` when its number search is no longer held
    (expired, or another user's token)."""
    number = ""
    if token := state.get("cari"):
        held = request.app[SEARCHES].number(
            token, request[USER].username, request.app[STORE].wall()
        )
        if held is None:
            return None
        number = held
    return QueueFilter(
        village=state.get("desa", ""), number=number, name=fold(state.get("q", "")),
        sort=state.get("urut", "lama"),
    )  # fmt: skip


@routes.get("/antrian", roles=READERS)
async def antrian(request: web.Request) -> web.Response:
    if holds_number(request.query.get("q", "")):
        # A URL is kept in browser histories and proxies' logs: numbers are searched by POST.
        raise web.HTTPSeeOther("/antrian")
    return await _list_page(request, _state(request.query))


@routes.post("/antrian/cari", roles=READERS)
async def antrian_search(request: web.Request) -> web.StreamResponse:
    """The queue's form: village, order and a search, a NIK or KK number held under a
    token (see :data:`hub.ui.base.SEARCHES`)."""
    form = await form_data(request)
    text = form.get("q", "").strip()[:100]
    state = {k: v for k, v in _state(form).items() if k in ("desa", "urut")}
    issue = number_issue("q", text)
    if issue is not None:
        return await _list_page(request, state, typed=text, errors={"q": issue.message()})
    number = parse_query(text).number
    if number:
        store = request.app[STORE]
        state["cari"] = request.app[SEARCHES].hold(request[USER].username, number, store.wall())
    elif text:
        state["q"] = text
    raise web.HTTPSeeOther(_url("/antrian", state))


async def _list_page(
    request: web.Request, state: dict[str, str], *, typed: str = "",
    errors: dict[str, str] | None = None,
) -> web.Response:  # fmt: skip
    """A page of the queue ``state`` asks for; with ``errors``, none of it but the form,
    showing what was ``typed``."""
    page = page_number(request)
    store = request.app[STORE]
    wanted = None if errors else _filter(request, state)
    items = []
    if wanted is not None:
        items = await queue(
            store.engine, wanted, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
        )
    if wanted is not None and wanted.number:
        # A lookup of personal data: the number masked (a trail is read by many) and whose
        # households the answer showed (a person's data report lists the searches that did).
        detail = {
            "nik_or_kk": mask_number(wanted.number),
            "shown": [item.household_id for item in items[:PAGE_SIZE]],
        }
        async with store.engine.begin() as conn:
            await audit.record(
                conn, at_ms=store.wall(), actor=actor(request), action="queue.search",
                detail=detail,
            )  # fmt: skip
    base = _url("/antrian", state) + ("&" if state else "?")
    return render(
        request, "antrian.html", 422 if errors else 200, items=items[:PAGE_SIZE],
        has_next=len(items) > PAGE_SIZE, page=page, base=base,
        state=state, links=_url("", state), village=state.get("desa", ""),
        sort=state.get("urut", "lama"), sorts=SORTS, q=typed or state.get("q", ""),
        number_search="cari" in state, expired=not errors and wanted is None,
        errors=errors or {}, counts=await queue_counts(store.engine),
        agreed=await agreed_proposals(store.engine),
        flash=FLASH.get(request.query.get("pesan", "")),
    )  # fmt: skip


@routes.downloads("/antrian", roles=READERS)
async def antrian_export(request: web.Request) -> web.StreamResponse:
    """The whole queue (of the chosen village) as a spreadsheet; KK numbers in full only
    for who may print a person's data report."""
    village = request.query.get("desa", "").strip()
    village = village if valid_village(village) else ""
    config = request.app[CONFIG]
    items = await queue(request.app[STORE].engine, QueueFilter(village=village), limit=ROW_LIMIT)
    full = request[USER].role in REPORTERS
    rows = [
        [
            item.head_name or None,
            (item.kk_number if full else mask_number(item.kk_number)) or None,
            item.village,
            item.pending_records,
            local_time(item.changed_ms, config.timezone),
            yes_no(item.is_new),
            yes_no(item.flagged),
        ]
        for item in items
    ]
    headers = [
        "Kepala keluarga", "No. KK", "Kode desa", "Data berubah", "Terakhir berubah",
        "Keluarga baru", "Perlu periksa lapangan",
    ]  # fmt: skip
    return await export_list(
        request, Table("Antrian verifikasi", headers, rows), list_name="antrian-verifikasi",
        scope=village or config.district or "semua", filters={"desa": village}, full=full,
    )  # fmt: skip


async def _detail(
    request: web.Request, status: int = 200, *, errors: dict[str, str], form: Mapping[str, str]
) -> web.Response:
    """The household's changes; every view of its personal data is audited. After a
    decision on the household before it in the queue, the page says so."""
    household_id = request.match_info["household_id"]
    state = _state(form or request.query)
    store = request.app[STORE]
    changes = await review.household_changes(store.engine, household_id)
    if changes is None:
        raise web.HTTPNotFound(text="Keluarga tidak ditemukan.")
    async with store.engine.begin() as conn:
        await audit.record(
            conn, at_ms=store.wall(), actor=actor(request), action="household.view",
            subject=household_id, detail={"village": changes.village},
        )  # fmt: skip
    flash = FLASH.get(request.query.get("pesan", ""))
    previous = request.query.get("sebelumnya", "")
    names = await review.record_names(store.engine, [previous]) if flash and previous else {}
    return render(
        request, "antrian_detail.html", status, household=changes, errors=errors, form=form,
        buttons=BUTTONS, decisions=review.DECISIONS,
        may_decide=request[USER].role is Role.VERIFIER, state=state,
        back=_url("/antrian", state or {"desa": changes.village}), flash=flash,
        previous=(previous, names[previous]) if previous in names else None,
    )  # fmt: skip


@routes.get("/antrian/{household_id}", roles=READERS)
async def household(request: web.Request) -> web.Response:
    return await _detail(request, errors={}, form={})


@routes.get("/antrian/{household_id}/anggota/{member_id}/data-pribadi", roles=REPORTERS)
async def personal_data_report(request: web.Request) -> web.Response:
    """A person's data report: what the hub holds about them and who processed it."""
    member_id = request.match_info["member_id"]
    store = request.app[STORE]
    report = await person_report(store.engine, request.match_info["household_id"], member_id)
    if report is None:
        raise web.HTTPNotFound(text="Anggota keluarga tidak ditemukan.")
    async with store.engine.begin() as conn:
        await audit.record(
            conn, at_ms=store.wall(), actor=actor(request), action="person.report",
            subject=member_id, detail={"village": report.village},
        )  # fmt: skip
    trail = await trail_entries(store.engine, report.trail)
    return render(
        request, "data_pribadi.html", report=report, trail=trail,
        box_trail=audit_rows(report.box_trail), box_nodes=[row.node for row in report.box_trail],
        household_id=request.match_info["household_id"], decisions=review.DECISIONS,
    )  # fmt: skip


@routes.post("/antrian/{household_id}", roles={Role.VERIFIER})
async def decide(request: web.Request) -> web.StreamResponse:
    household_id = request.match_info["household_id"]
    form = await form_data(request)
    store = request.app[STORE]
    # The open period decisions count for: after an early freeze, already the next one.
    period = (await cycle.ensure_current(store, request.app[CONFIG], store.wall())).period
    decision = form.get("keputusan", "")
    state = _state(form)
    # The next household is looked for before this one may leave the queue.
    wanted = _filter(request, state)
    following = await next_household(store.engine, wanted, household_id) if wanted else None
    try:
        await review.decide(
            store, household_id, decision, form.get("alasan", ""), actor(request),
            period=period, timezone=request.app[CONFIG].timezone,
        )  # fmt: skip
    except review.ReviewError as exc:
        field = "alasan" if exc.code == "reason_required" else "keputusan"
        return await _detail(request, 422, errors={field: exc.message}, form=form)
    changes = await review.household_changes(store.engine, household_id)
    if changes is not None:
        await push_down(request, changes.village)
    if following is None:
        raise web.HTTPSeeOther(_url("/antrian", state, pesan=decision))
    raise web.HTTPSeeOther(
        _url(f"/antrian/{following}", state, pesan=decision, sebelumnya=household_id)
    )
