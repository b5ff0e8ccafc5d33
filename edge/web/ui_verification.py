"""Field verification on the box (``docs/registry.md`` section 3): the worklist of the
current round by RT/RW, the visit form, the printable door-to-door list, and the round's
progress that Beranda shows.

A household is on the worklist for any of three reasons: nobody visited it this round, it
still lacks ranking variables, or the district marked it "periksa lapangan" and nobody
visited it since.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from yarl import URL

from edge import services
from edge.web.app import CONFIG, STORE, USER, actor, local_today, render
from edge.web.forms import editable, messages_by_input, parse, raw_from_post, raw_from_values
from edge.web.lists import page_number, paged, pager_base, stream_page
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui import flash, record_or_404
from edge.web.ui_registry import (
    HouseholdRow,
    current_round,
    over_village,
    places,
    round_progress,
    walk_village,
)
from protocol.entities import VISIT, VISIT_PROPOSALS
from protocol.rounds import Round

__all__ = ["reasons", "routes"]

routes = RouteTable()

VISIT_FIELDS = editable(VISIT, "outcome", "visit_date", "officer", "notes")

#: Why a household is on the worklist: code → how its row says it.
REASONS = {
    "belum": "Belum dikunjungi",
    "tidak_lengkap": "Belum lengkap",
    "periksa": "Periksa lapangan",
}
#: The worklist's selections: code → what the page calls it.
LISTS = {
    "semua": "Semua yang perlu dikunjungi",
    "belum": "Belum dikunjungi putaran ini",
    "tidak_lengkap": "Data belum lengkap",
    "periksa": "Periksa lapangan (dari kabupaten/kota)",
}


def reasons(household: HouseholdRow, period: Round) -> list[str]:
    """Why a household is on the worklist (codes of :data:`LISTS`); empty: it is not."""
    found = []
    if not household.visited_in(period):
        found.append("belum")
    if household.missing:
        found.append("tidak_lengkap")
    if household.field_check:
        found.append("periksa")
    return found


def _filters(request: web.Request) -> dict[str, str]:
    """The worklist's RT, RW and which list, as the query asks."""
    chosen = request.query.get("daftar", "semua")
    return {
        "rt": request.query.get("rt", "").strip()[:3],
        "rw": request.query.get("rw", "").strip()[:3],
        "chosen": chosen if chosen in LISTS else "semua",
    }


def _worklist(
    households: Iterable[HouseholdRow], period: Round, chosen: str
) -> Iterator[tuple[HouseholdRow, list[str]]]:
    """The households of the list ``chosen``, each with why it is on the worklist."""
    for household in households:
        why = reasons(household, period)
        if why and (chosen == "semua" or chosen in why):
            yield household, why


async def _context(request: web.Request) -> dict[str, Any]:
    """What the worklist and its printable version both show besides the list: the
    round's progress, the filters and the village's RTs and RWs."""
    period = current_round(request)
    store = request.app[STORE]
    rts, rws = await store.read(places)
    return {
        "period": period,
        "progress": await round_progress(store, period),
        "lists": LISTS,
        "reasons": REASONS,
        "rts": rts,
        "rws": rws,
        "query": request.query_string,
        **_filters(request),
    }


@routes.get("/verifikasi", roles=ALL_ROLES, summary="Field verification: the worklist by RT/RW")
async def worklist(request: web.Request) -> web.Response:
    context = await _context(request)
    size = request.app[CONFIG].page_size
    listed = await over_village(
        request.app[STORE],
        lambda households: paged(
            _worklist(households, context["period"], context["chosen"]),
            page_number(request),
            size,
        ),
        rt=context["rt"],
        rw=context["rw"],
    )
    return render(
        request, "verifikasi.html", notice=flash(request), listed=listed,
        base=pager_base(request), **context,
    )  # fmt: skip


@routes.get(
    "/verifikasi/cetak", roles=ALL_ROLES, summary="Printable door-to-door list (masked NIK)"
)
async def door_to_door(request: web.Request) -> web.StreamResponse:
    context = await _context(request) | {"today": local_today(request)}

    def whole_list(conn: sa.Connection) -> dict[str, Any]:
        def listed() -> Iterator[tuple[HouseholdRow, list[str]]]:
            village = walk_village(conn, rt=context["rt"], rw=context["rw"])
            return _worklist(village, context["period"], context["chosen"])

        # Counted first (the heading says how many), listed while the page is sent.
        return context | {"count": sum(1 for _ in listed()), "listed": listed()}

    return await stream_page(request, "verifikasi_cetak.html", whole_list)


def _back(request: web.Request, query: str) -> str:
    """The worklist with the selection the officer came from (only its own parameters)."""
    kept = {k: v for k, v in URL(f"?{query}").query.items() if k in ("rt", "rw", "daftar", "page")}
    return str(URL("/verifikasi").with_query(kept))


def _visit_form(
    request: web.Request, household: Any, raw: dict[str, Any], issues: Sequence[Any] = (),
    status: int = 200, back: str = "",
) -> web.Response:  # fmt: skip
    return render(
        request, "kunjungan_form.html", status, household=household, fields=VISIT_FIELDS,
        form=raw, errors=messages_by_input(issues), issues=list(issues),
        outcome_spec=VISIT.fields["outcome"], proposals=VISIT_PROPOSALS, back=back,
        can_confirm=bool(issues) and all(i.level == "warning" for i in issues),
    )  # fmt: skip


@routes.get("/rumah-tangga/{id}/kunjungan", roles=ALL_ROLES, summary="Form: record a visit")
async def visit_new(request: web.Request) -> web.Response:
    household = await record_or_404(request.app[STORE], "household", request.match_info["id"])
    user = request[USER]
    raw = raw_from_values(
        VISIT_FIELDS,
        {
            "visit_date": local_today(request).isoformat(),
            "officer": user.full_name or user.username,
        },
    )
    return _visit_form(request, household, raw, back=request.query.get("kembali", ""))


@routes.post("/rumah-tangga/{id}/kunjungan", roles=ALL_ROLES, summary="Record a field visit")
async def visit_create(request: web.Request) -> web.Response:
    store = request.app[STORE]
    household = await record_or_404(store, "household", request.match_info["id"])
    post = await request.post()
    back = str(post.get("kembali", ""))
    raw = raw_from_post(post, VISIT_FIELDS)
    values = {k: v for k, v in parse(VISIT_FIELDS, raw).items() if v is not None}
    values["household_id"] = household.id
    outcome = await services.create_record(
        store, actor(request), VISIT.name, values, today=local_today(request),
        confirm_warnings=post.get("confirm_warnings") == "1",
    )  # fmt: skip
    if outcome.saved:
        target = URL(_back(request, back))
        raise web.HTTPSeeOther(str(target.update_query(pesan="kunjungan")))
    status = 200 if outcome.needs_confirmation else 422
    return _visit_form(request, household, raw, outcome.issues, status, back)
