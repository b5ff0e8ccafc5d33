"""Pages for proposals (usulan): the list, the kepala desa's agreement, objections, and the
printable list for the village deliberation (musyawarah desa)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from aiohttp import web

from edge import services
from edge.auth import APPROVERS
from edge.records import Record, head_of
from edge.store import Store
from edge.web.app import CONFIG, STORE, USER, actor, local_today, render
from edge.web.forms import editable, messages_by_input, parse, raw_from_post
from edge.web.lists import page_number, pager_base
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui import flash, record_or_404
from protocol.entities import PROPOSAL
from protocol.issues import Issue
from protocol.schema import wire_value_problem

__all__ = ["routes"]

routes = RouteTable()

OBJECTION_FIELDS = editable(PROPOSAL, "description")
#: A printed deliberation list holds at most this many proposals.
MUSDES_LIMIT = 2000


async def _households(
    store: Store, proposals: list[Record]
) -> tuple[dict[str, Record], dict[str, Record | None]]:
    """The proposals' households by id, and their heads (lists name a household by its
    head and RT/RW: many households share one address)."""
    households = await store.get_each(
        "household", (p.household_id for p in proposals if p.household_id)
    )
    members = await store.related_to_each("member", list(households))
    return households, {hid: head_of(members[hid]) for hid in households}


async def _list_page(
    request: web.Request,
    *,
    issues: Sequence[Issue] = (),
    status: int = 200,
    agreement: Mapping[str, str] | None = None,
    chosen: Collection[str] = (),
    all_drafts: bool = False,
) -> web.Response:
    """The list; after a refused agreement or "Pilih semua", with the kepala desa's
    ``agreement`` form (``how``, ``reference``) kept and ``chosen`` proposals ticked (every
    draft shown when ``all_drafts``)."""
    store = request.app[STORE]
    size = request.app[CONFIG].page_size
    page = page_number(request)
    filters = {name: request.query.get(name, "") for name in services.FILTERS["proposal"]}
    proposals, total = await services.find_records(
        store, actor(request), "proposal", filters=filters, offset=(page - 1) * size, limit=size
    )
    user = request[USER]
    households, heads = await _households(store, proposals)
    drafts = [p.id for p in proposals if p.get("status") == "draf"]
    notice = flash(request)
    if all_drafts:
        chosen = drafts
        notice = _chosen_notice(len(drafts))
    return render(
        request,
        "usulan_list.html",
        status,
        proposals=proposals,
        households=households,
        heads=heads,
        filters=filters,
        page=page,
        total=total,
        size=size,
        base=pager_base(request, "/usulan"),
        can_agree=user.role in APPROVERS,
        drafts=len(drafts),
        issues=list(issues),
        errors=messages_by_input(issues),
        notice=notice,
        chosen=set(chosen),
        agreement=agreement or {},
        query=request.query_string,
    )


def _chosen_notice(count: int) -> str:
    """What "Pilih semua" says it did, naming the count before anything is agreed."""
    if count == 0:
        return "Tidak ada usulan berstatus draf di halaman ini."
    return (
        f"Semua usulan draf di halaman ini ({count} usulan) sudah dipilih. Periksa pilihannya, "
        'isi nomor berita acara atau SPTJM, lalu tekan "Sepakati usulan terpilih".'
    )


@routes.get("/usulan", roles=ALL_ROLES, summary="Proposals: list with filters")
async def proposal_list(request: web.Request) -> web.Response:
    return await _list_page(request)


@routes.post(
    "/usulan/sepakati",
    roles=APPROVERS,
    summary="Mark draft proposals agreed (musdes / SPTJM); pilih=semua ticks every draft shown",
)
async def proposal_agree(request: web.Request) -> web.Response:
    post = await request.post()
    chosen = [str(v) for v in post.getall("proposal", [])]
    agreement = {"how": str(post.get("how", "")), "reference": str(post.get("reference", ""))}
    if post.get("pilih") == "semua":
        return await _list_page(request, agreement=agreement, all_drafts=True)
    try:
        outcome = await services.agree_proposals(
            request.app[STORE],
            actor(request),
            chosen,
            how=str(post.get("how", "")),
            reference=str(post.get("reference", "")).strip(),
            today=local_today(request),
        )
    except services.NotFound:
        raise web.HTTPNotFound(text="Usulan tidak ditemukan.") from None
    if not outcome.saved:
        unique = list(dict.fromkeys(outcome.issues))
        return await _list_page(
            request, issues=unique, status=422, agreement=agreement, chosen=chosen
        )
    raise web.HTTPSeeOther("/usulan?pesan=disepakati")


@routes.get("/usulan/baru", roles=ALL_ROLES, summary="Form: an objection (sanggahan)")
async def objection_new(request: web.Request) -> web.Response:
    household = await record_or_404(
        request.app[STORE], "household", request.query.get("household", "")
    )
    return render(
        request, "usulan_form.html", household=household, form={}, errors={}, issues=[],
        fields=OBJECTION_FIELDS,
    )  # fmt: skip


@routes.post("/usulan/baru", roles=ALL_ROLES, summary="Record an objection (sanggahan)")
async def objection_create(request: web.Request) -> web.Response:
    store = request.app[STORE]
    post = await request.post()
    household = await record_or_404(store, "household", str(post.get("household_id", "")))
    raw = raw_from_post(post, OBJECTION_FIELDS)
    values = parse(OBJECTION_FIELDS, raw) | {"household_id": household.id, "kind": "sanggahan"}
    outcome = await services.create_record(
        store, actor(request), "proposal", values, today=local_today(request)
    )
    if outcome.saved:
        raise web.HTTPSeeOther(f"/rumah-tangga/{household.id}?pesan=tersimpan")
    return render(
        request, "usulan_form.html", 422, household=household, form=raw,
        errors=messages_by_input(outcome.issues), issues=outcome.issues, fields=OBJECTION_FIELDS,
    )  # fmt: skip


@routes.get("/musdes", roles=ALL_ROLES, summary="Printable list for the village deliberation")
async def musdes(request: web.Request) -> web.Response:
    store = request.app[STORE]
    today = local_today(request)
    period = request.query.get("period", "")
    if wire_value_problem(PROPOSAL.fields["period"], period) is not None or not period:
        period = services.period_of(today)
    proposals, total = await services.find_records(
        store,
        actor(request),
        "proposal",
        filters={"status": "draf", "period": period},
        limit=MUSDES_LIMIT,
    )
    households, heads = await _households(store, proposals)
    return render(
        request,
        "musdes.html",
        period=period,
        proposals=sorted(proposals, key=lambda p: p.created_ms),
        total=total,
        households=households,
        heads=heads,
        today=today,
    )
