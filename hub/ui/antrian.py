"""Antrian verifikasi: the households a box changed since their last decision, each
change old → new with the box and time that wrote it, and the verifier's decision."""

from __future__ import annotations

from aiohttp import web

from hub import audit, cycle, review
from hub.roles import Role
from hub.ui.audit import trail_entries
from hub.ui.base import (
    CONFIG,
    READERS,
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
from puskesos.export import ROW_LIMIT, Table, local_time, yes_no

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


@routes.get("/antrian", roles=READERS)
async def antrian(request: web.Request) -> web.Response:
    village = request.query.get("desa", "").strip()
    if village and not valid_village(village):
        village = ""
    page = page_number(request)
    store = request.app[STORE]
    items = await review.queue(
        store.engine, village=village or None, limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )  # fmt: skip
    counts = await review.queue_counts(store.engine)
    base = f"/antrian?desa={village}&" if village else "/antrian?"
    return render(
        request, "antrian.html", items=items[:PAGE_SIZE], has_next=len(items) > PAGE_SIZE,
        page=page, base=base, village=village, counts=counts,
        flash=FLASH.get(request.query.get("pesan", "")),
    )  # fmt: skip


@routes.downloads("/antrian", roles=READERS)
async def antrian_export(request: web.Request) -> web.StreamResponse:
    """The whole queue (of the chosen village) as a spreadsheet; KK numbers in full only
    for who may print a person's data report."""
    village = request.query.get("desa", "").strip()
    village = village if valid_village(village) else ""
    config = request.app[CONFIG]
    items = await review.queue(request.app[STORE].engine, village=village or None, limit=ROW_LIMIT)
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
    request: web.Request, status: int = 200, *, errors: dict[str, str], form: dict[str, str]
) -> web.Response:
    """The household's changes; every view of its personal data is audited."""
    household_id = request.match_info["household_id"]
    store = request.app[STORE]
    changes = await review.household_changes(store.engine, household_id)
    if changes is None:
        raise web.HTTPNotFound(text="Keluarga tidak ditemukan.")
    async with store.engine.begin() as conn:
        await audit.record(
            conn, at_ms=store.wall(), actor=actor(request), action="household.view",
            subject=household_id, detail={"village": changes.village},
        )  # fmt: skip
    return render(
        request, "antrian_detail.html", status, household=changes, errors=errors, form=form,
        buttons=BUTTONS, decisions=review.DECISIONS,
        may_decide=request[USER].role is Role.VERIFIER,
        flash=FLASH.get(request.query.get("pesan", "")),
    )  # fmt: skip


@routes.get("/antrian/{household_id}", roles=READERS)
async def household(request: web.Request) -> web.Response:
    return await _detail(request, errors={}, form={})


@routes.get("/antrian/{household_id}/anggota/{member_id}/data-pribadi", roles=REPORTERS)
async def person_report(request: web.Request) -> web.Response:
    """A person's data report: what the hub holds about them and who processed it."""
    member_id = request.match_info["member_id"]
    store = request.app[STORE]
    report = await review.person_report(store.engine, request.match_info["household_id"], member_id)
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
    raise web.HTTPSeeOther(f"/antrian/{household_id}?pesan={decision}")
