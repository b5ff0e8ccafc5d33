"""Duplikat: one NIK on two or more active members; the verifier picks who keeps the
person and the others are marked "Data ganda" (nothing is deleted).

Nothing is chosen beforehand. A choice first gets a page naming who keeps the person and
who is marked, with links to their households; its "Ya, pertahankan" posts the choice
again with ``konfirmasi=ya``, and only that marks anyone.
"""

from __future__ import annotations

from aiohttp import web

from hub import duplicates
from hub.review import ReviewError
from hub.roles import Role
from hub.ui.base import READERS, STORE, USER, RouteTable, actor, form_data, push_down, render

__all__ = ["routes"]

routes = RouteTable()


async def _page(
    request: web.Request, status: int = 200, *, error: str | None = None,
    errors: dict[str, str] | None = None,
) -> web.Response:  # fmt: skip
    groups = await duplicates.duplicates(request.app[STORE].engine, limit=200)
    flash = "Data ganda ditandai." if request.query.get("pesan") == "ganda" else None
    return render(
        request, "duplikat.html", status, groups=groups, error=error, errors=errors or {},
        flash=flash, may_keep=request[USER].role is Role.VERIFIER,
    )  # fmt: skip


@routes.get("/duplikat", roles=READERS)
async def duplikat(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/duplikat", roles={Role.VERIFIER})
async def keep(request: web.Request) -> web.StreamResponse:
    form = await form_data(request)
    chosen = form.get("pertahankan", "")
    if not chosen:  # the group's form names its first member, to show the error there
        field = f"pertahankan-{form.get('kelompok', '')}"
        return await _page(request, 422, errors={field: "Pilih data yang dipertahankan."})
    store = request.app[STORE]
    # The group is found by the member kept: the page never holds a whole NIK.
    group = next(
        (
            g
            for g in await duplicates.duplicates(store.engine, limit=200)
            if any(m.record_id == chosen for m in g.members)
        ),
        None,
    )
    if group is not None and form.get("konfirmasi") != "ya":
        kept = next(m for m in group.members if m.record_id == chosen)
        others = [m for m in group.members if m.record_id != chosen]
        return render(request, "duplikat_konfirmasi.html", group=group, kept=kept, others=others)
    nik = group.nik if group is not None else ""
    villages = {m.village for m in group.members} if group is not None else set()
    try:
        await duplicates.keep(store, nik, chosen, actor(request))
    except ReviewError as exc:
        return await _page(request, 422, error=exc.message)
    for village in sorted(villages):
        await push_down(request, village)
    raise web.HTTPSeeOther("/duplikat?pesan=ganda")
