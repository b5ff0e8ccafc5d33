"""Konflik: fields two boxes (or a box and the hub) changed at once, their versions side by
side; the verifier keeps one or types a new value (validated like an edit on a box)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from edge.web.forms import parse
from hub import db
from hub.roles import Role
from hub.store import HubStore, ResolveError
from hub.ui.base import (
    READERS,
    STORE,
    USER,
    RouteTable,
    actor,
    form_data,
    push_down,
    render,
    valid_village,
)
from protocol.changes import Value
from protocol.clock import COUNTER_BITS
from protocol.entities import ENTITIES
from protocol.validate import validate_fields

__all__ = ["routes"]

routes = RouteTable()

#: How many of the latest resolved conflicts the page lists under the open ones, so that a
#: verifier sees where one went (settled by a colleague, or by a later save in the village).
RECENTLY_SETTLED = 20


def _shown(conflict: dict[str, Any]) -> dict[str, Any]:
    """A conflict as the page shows it: the field's label, each version's time, and whether
    a later save on a box settled it (else a person set ``resolution["value"]``)."""
    entity = ENTITIES[conflict["entity"]]
    spec = entity.fields.get(conflict["field"])
    versions = [
        {**v, "at_ms": int(v["stamp"].split("@")[0], 16) >> COUNTER_BITS}
        for v in conflict["versions"]
    ]
    return {
        **conflict,
        "entity_label": entity.label,
        "label": spec.label if spec is not None else conflict["field"],
        "versions": versions,
        "superseded": bool((conflict["resolution"] or {}).get("superseded")),
    }


async def _page(
    request: web.Request, status: int = 200, *, errors: dict[int, str] | None = None,
    typed: dict[int, str] | None = None, flash: str | None = None,
) -> web.Response:  # fmt: skip
    village = request.query.get("desa", "").strip()
    only = village if valid_village(village) else None
    store = request.app[STORE]
    conflicts = await store.conflicts(village=only, limit=200)
    settled = await store.conflicts(village=only, resolved=True, limit=RECENTLY_SETTLED)
    return render(
        request, "konflik.html", status, conflicts=[_shown(c) for c in conflicts],
        settled=[_shown(c) for c in settled], errors=errors or {}, typed=typed or {},
        flash=flash, may_resolve=request[USER].role is Role.VERIFIER,
    )  # fmt: skip


@routes.get("/konflik", roles=READERS)
async def konflik(request: web.Request) -> web.Response:
    flash = "Konflik diselesaikan." if request.query.get("pesan") == "selesai" else None
    return await _page(request, flash=flash)


async def _field_of(store: HubStore, conflict_id: int) -> tuple[str, str] | None:
    """The entity and field a conflict is about."""
    c = db.conflicts
    query = sa.select(c.c.entity, c.c.field).where(c.c.id == conflict_id)
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return (row.entity, row.field) if row is not None else None


def _typed_value(entity_name: str, field: str, text: str) -> tuple[Value, str | None]:
    """The typed text as the field's value, and the first error about it (in Indonesian).
    A list of choices is typed as codes separated by commas."""
    entity = ENTITIES[entity_name]
    spec = entity.fields[field]
    typed = [code.strip() for code in text.split(",")] if spec.kind == "enum_set" else text
    value = parse([spec], {spec.name: typed})
    today = datetime.now(UTC).date()
    issues = validate_fields(entity, value, is_new=False, today=today)
    errors = [issue.message() for issue in issues if issue.level == "error"]
    return value[spec.name], (errors[0] if errors else None)


@routes.post("/konflik/{conflict_id:[0-9]{1,12}}", roles={Role.VERIFIER})
async def resolve(request: web.Request) -> web.StreamResponse:
    conflict_id = int(request.match_info["conflict_id"])
    form = await form_data(request)
    store = request.app[STORE]
    choice = form.get("pilih", "")
    try:
        if choice == "baru":
            about = await _field_of(store, conflict_id)
            if about is None:
                raise ResolveError("no such conflict", 404)
            typed = form.get("nilai", "")
            value, error = _typed_value(*about, typed)
            if not typed:
                error = "Isi nilai baru atau pilih salah satu versi."
            if error is not None:
                return await _page(
                    request, 422, errors={conflict_id: error}, typed={conflict_id: typed}
                )
            resolved = await store.resolve(conflict_id, actor=actor(request), value=value)
        elif choice.isascii() and choice.isdigit() and len(choice) < 4:
            resolved = await store.resolve(conflict_id, actor=actor(request), choose=int(choice))
        else:
            return await _page(
                request, 422, errors={conflict_id: "Pilih salah satu versi atau isi nilai baru."}
            )
    except ResolveError as exc:
        message = {
            404: "Konflik tidak ditemukan.",
            409: "Konflik ini sudah diselesaikan orang lain.",
        }.get(exc.status, "Nilai tidak sah untuk isian ini.")
        return await _page(
            request, 409 if exc.status == 409 else 422, errors={conflict_id: message}
        )
    await push_down(request, resolved["village"])
    raise web.HTTPSeeOther("/konflik?pesan=selesai")
