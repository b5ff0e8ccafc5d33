"""Periksa lapangan: per village, the households the district sent to a ground check, with
what the visits since found; printable for the PKH facilitator, whose visits (recorded on
the village's box) come back up like any change."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from hub import db, progress
from hub.ui.base import READERS, STORE, RouteTable, render
from protocol.entities import VISIT

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/periksa-lapangan", roles=READERS)
async def periksa_lapangan(request: web.Request) -> web.Response:
    store = request.app[STORE]
    village = request.query.get("desa", "")
    async with db.reading(store.engine) as conn:
        villages = list(
            (
                await conn.execute(sa.select(db.villages.c.code).order_by(db.villages.c.code))
            ).scalars()
        )
    if village not in villages:
        village = ""
    checks = await progress.field_checks(store, village) if village else []
    return render(
        request, "periksa_lapangan.html", villages=villages, village=village, checks=checks,
        visited=sum(1 for c in checks if c.visits), outcome_label=VISIT.fields["outcome"].label_of,
    )  # fmt: skip
