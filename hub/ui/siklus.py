"""Siklus bulanan: the periods and their states, the per-village totals for the leader, and
the buttons each role may use (docs/cycle.md, "The monthly cycle").

Freeze, submit and sign are not undone: their buttons post without ``konfirmasi=ya`` and
get a page saying what the step will do (period, villages, households; for a submission
the households still waiting for a decision), whose "Ya" button posts the step again with
``konfirmasi=ya``. Only that second post takes the step.

A button is shown only when :func:`hub.cycle_rules.allowed` says the role may take the
step and the period stands where the step starts; the route's roles refuse the rest with
403, and :mod:`hub.cycle` refuses a step from the wrong state (a second click).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from aiohttp import BodyPartReader, web

from hub import cycle, cycle_delivery, review
from hub.cycle_rules import Action, CycleError, State, allowed, following, next_state
from hub.forward import ForwardError
from hub.review_queue import queue_counts
from hub.roles import Role
from hub.ui.base import (
    CONFIG,
    CSRF,
    READERS,
    STORE,
    USER,
    RouteTable,
    actor,
    export_list,
    render,
)
from protocol.regions import village_label
from puskesos.export import Table, local_time

__all__ = ["routes"]

routes = RouteTable()

#: The step each button takes, from the state it starts at.
_STARTS = {
    Action.FREEZE: State.OPEN,
    Action.SUBMIT: State.FROZEN,
    Action.RETURN_VILLAGES: State.LEADER_REVIEW,
    Action.SIGN: State.LEADER_REVIEW,
    Action.FORWARD: State.SIGNED,
    Action.PUBLISH: State.FORWARDED,
}
FLASH = {
    "bekukan": "Periode dibekukan.",
    "ajukan": "Periode diajukan ke pimpinan.",
    "kembalikan": "Desa dikembalikan ke verifikator.",
    "tandatangani": "Periode ditandatangani.",
    "kirim": "Data terkirim ke pusat.",
    "impor": "Hasil pusat diimpor.",
}
TOTAL_LABELS = {
    "households": "Keluarga",
    "members": "Anggota aktif",
    "added": "Keluarga baru",
    "changed": "Keluarga berubah",
    "moved_or_deceased": "Pindah/meninggal",
    "rejected": "Ditolak",
}


def actions_for(role: Role, state: State) -> set[Action]:
    """The buttons a role sees on a period in ``state``."""
    return {a for a, start in _STARTS.items() if start is state and allowed(a, role)}


async def _page(
    request: web.Request, status: int = 200, *, error: str | None = None,
    errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
) -> web.Response:  # fmt: skip
    store = request.app[STORE]
    await cycle.ensure_current(store, request.app[CONFIG], store.wall())
    role = request[USER].role
    periods = await cycle.periods(store.engine)
    return render(
        request, "siklus.html", status, periods=periods,
        actions={p.period: actions_for(role, p.state) for p in periods},
        Action=Action, State=State, totals_labels=TOTAL_LABELS, error=error,
        errors=errors or {}, form=form or {}, flash=FLASH.get(request.query.get("pesan", "")),
    )  # fmt: skip


@routes.get("/siklus", roles=READERS)
async def siklus(request: web.Request) -> web.Response:
    return await _page(request)


@routes.downloads("/siklus/{period}", roles=READERS)
async def totals_export(request: web.Request) -> web.StreamResponse:
    """A frozen period's per-village totals as the leader reviews them, as a spreadsheet."""
    period = request.match_info["period"]
    found = [p for p in await cycle.periods(request.app[STORE].engine) if p.period == period]
    if not found or not found[0].villages:
        raise web.HTTPNotFound(text="Periode ini belum punya rekap per desa.")
    config = request.app[CONFIG]
    rows = [
        [
            v.village,
            *(v.totals.get(key, 0) for key in TOTAL_LABELS),
            local_time(v.returned_ms, config.timezone),
            v.returned_by,
            v.return_note,
        ]
        for v in found[0].villages
    ]
    headers = [
        "Kode desa", *TOTAL_LABELS.values(), "Dikembalikan", "Dikembalikan oleh", "Catatan",
    ]  # fmt: skip
    return await export_list(
        request, Table(f"Rekap {period}", headers, rows), list_name="rekap-desa",
        scope="-".join(filter(None, (config.district, period))), filters={"periode": period},
        full=None,
    )  # fmt: skip


@routes.get("/siklus/{period}/ringkasan-cetak", roles=READERS)
async def printable_summary(request: web.Request) -> web.Response:
    """A period's summary on paper for the regent (Bupati) and the head of the social
    office to sign: per village the households approved, rejected, sent for a field check
    and still waiting, and who froze, submitted and signed the period when."""
    period = request.match_info["period"]
    store = request.app[STORE]
    found = await cycle.get(store.engine, period)
    if found is None:
        raise web.HTTPNotFound(text=f"Periode {period} tidak ditemukan.")
    decided = await review.period_decisions(store.engine, period)
    waiting = await queue_counts(store.engine) if found.state is State.OPEN else {}
    in_dataset = {v.village: v.totals.get("households", 0) for v in found.villages}
    codes = set(decided) | set(waiting) | set(in_dataset)
    rows = [
        {**dict.fromkeys(review.DECISIONS, 0), **decided.get(code, {}), "village": code,
         "waiting": waiting.get(code, 0), "households": in_dataset.get(code, 0)}
        for code in sorted(codes, key=lambda code: (village_label(code), code))
    ]  # fmt: skip
    totals = {
        key: sum(row[key] for row in rows) for key in (*review.DECISIONS, "waiting", "households")
    }
    return render(
        request, "siklus_cetak.html", period=found, rows=rows, totals=totals,
        decisions=review.DECISIONS,
        is_open=found.state is State.OPEN, frozen=bool(found.villages), printed_ms=store.wall(),
    )  # fmt: skip


def _done(code: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/siklus?pesan={code}")


#: The steps that ask first, and the last segment of their route ("Ya, <that>").
_CONFIRMED = {Action.FREEZE: "bekukan", Action.SUBMIT: "ajukan", Action.SIGN: "tandatangani"}


async def _unconfirmed(request: web.Request, action: Action) -> web.Response | None:
    """The confirmation page of ``action`` unless the form says ``konfirmasi=ya``."""
    if (await request.post()).get("konfirmasi") == "ya":
        return None
    store = request.app[STORE]
    period = request.match_info["period"]
    found = await cycle.get(store.engine, period)
    if found is None:
        raise web.HTTPNotFound(text=f"Periode {period} tidak ditemukan.")
    try:
        next_state(found.state, action)
    except CycleError as exc:
        return await _page(request, 409, error=exc.message)
    if action is Action.FREEZE:
        totals = await cycle.freeze_totals(store, period)
    else:
        totals = {v.village: dict(v.totals) for v in found.villages}
    villages = {village: counts.get("households", 0) for village, counts in sorted(totals.items())}
    undecided = 0
    if action is Action.SUBMIT:
        waiting = await queue_counts(store.engine)
        undecided = sum(waiting.get(village, 0) for village in villages)
    return render(
        request, "siklus_konfirmasi.html", Action=Action, action=action,
        step=_CONFIRMED[action], period=period, next_period=following(period),
        villages=villages, households=sum(villages.values()), undecided=undecided,
    )  # fmt: skip


@routes.post("/siklus/{period}/bekukan", roles={Role.VERIFIER})
async def freeze(request: web.Request) -> web.StreamResponse:
    if (confirmation := await _unconfirmed(request, Action.FREEZE)) is not None:
        return confirmation
    try:
        await cycle.freeze(
            request.app[STORE], request.app[CONFIG], request.match_info["period"], actor(request)
        )
    except CycleError as exc:
        return await _page(request, 409, error=exc.message)
    raise _done("bekukan")


@routes.post("/siklus/{period}/ajukan", roles={Role.VERIFIER})
async def submit(request: web.Request) -> web.StreamResponse:
    if (confirmation := await _unconfirmed(request, Action.SUBMIT)) is not None:
        return confirmation
    try:
        await cycle.submit(request.app[STORE], request.match_info["period"], actor(request))
    except CycleError as exc:
        return await _page(request, 409, error=exc.message)
    raise _done("ajukan")


@routes.post("/siklus/{period}/kembalikan", roles={Role.LEADER})
async def return_villages(request: web.Request) -> web.StreamResponse:
    post = await request.post()
    villages = [str(v) for v in post.getall("desa", [])]
    note = str(post.get("catatan", ""))
    period = request.match_info["period"]
    try:
        await cycle.return_villages(request.app[STORE], period, villages, note, actor(request))
    except CycleError as exc:
        field = {"note_required": "catatan", "no_villages": "desa"}.get(exc.code)
        if field is None:
            return await _page(request, 409, error=exc.message)
        return await _page(request, 422, errors={field: exc.message}, form={"catatan": note})
    raise _done("kembalikan")


@routes.post("/siklus/{period}/tandatangani", roles={Role.LEADER})
async def sign(request: web.Request) -> web.StreamResponse:
    if (confirmation := await _unconfirmed(request, Action.SIGN)) is not None:
        return confirmation
    try:
        await cycle.sign(
            request.app[STORE], request.app[CONFIG], request.match_info["period"], actor(request)
        )
    except CycleError as exc:
        return await _page(request, 409, error=exc.message)
    raise _done("tandatangani")


@routes.post("/siklus/{period}/kirim", roles={Role.ADMIN})
async def forward(request: web.Request) -> web.StreamResponse:
    try:
        await cycle_delivery.forward_period(
            request.app[STORE], request.app[CONFIG], request.match_info["period"], actor(request)
        )
    except CycleError as exc:
        return await _page(request, 409, error=exc.message)
    except ForwardError as exc:
        return await _page(request, 502, error=f"Pengiriman gagal: {exc.detail}")
    raise _done("kirim")


@routes.post("/siklus/impor", roles={Role.ADMIN}, upload=True)
async def publish(request: web.Request) -> web.StreamResponse:
    """The national receiver's results file and its signature, streamed to a folder of
    their own under ``data_dir`` and imported from there."""
    config = request.app[CONFIG]
    folder = config.data_dir / "published" / secrets.token_hex(8)
    folder.mkdir(parents=True)
    try:
        path = await _receive(request, folder)
        if path is None:
            return await _page(
                request, 422, errors={"hasil": "Pilih berkas hasil dan tanda tangannya."}
            )
        await cycle_delivery.import_published(request.app[STORE], config, path, actor(request))
    except CycleError as exc:
        return await _page(request, 422, errors={"hasil": exc.message})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    raise _done("impor")


async def _receive(request: web.Request, folder: Path) -> Path | None:
    """Read the upload form: the CSRF token first (nothing is written without it), then
    the results file and its ``.sig``. ``None`` when a file is missing."""
    reader = await request.multipart()
    first = await reader.next()
    expected = request[CSRF]
    if (
        not isinstance(first, BodyPartReader)
        or first.name != "csrf_token"
        or not expected
        or not secrets.compare_digest(await first.text(), expected)
    ):
        raise web.HTTPForbidden(text="Token formulir tidak sah. Muat ulang halaman lalu coba lagi.")
    results = folder / "hasil.jsonl"
    targets = {"hasil": results, "tanda_tangan": folder / "hasil.jsonl.sig"}
    received = set()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name not in targets:
            continue
        size = 0
        with targets[part.name].open("wb") as out:
            while chunk := await part.read_chunk():
                out.write(chunk)
                size += len(chunk)
        if size:
            received.add(part.name)
    return results if received == set(targets) else None
