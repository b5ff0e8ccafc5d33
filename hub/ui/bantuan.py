"""Panduan (``/bantuan``): a short guide per role in Bahasa Indonesia, the reader's own
first, the others one link away (templates ``bantuan_<role>.html``)."""

from __future__ import annotations

from aiohttp import web

from hub import auth
from hub.roles import ROLE_LABELS, Role
from hub.ui.base import ALL_ROLES, CONFIG, USER, RouteTable, render
from puskesos.passwords import MIN_LENGTH
from puskesos.webpages import guides

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/bantuan", roles=ALL_ROLES)
async def bantuan(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    shown, order = guides(request[USER].role, Role, request.query.get("peran", ""))
    return render(
        request, "bantuan.html", shown=shown, guides=order, labels=ROLE_LABELS,
        idle_minutes=auth.SESSION_IDLE_S // 60, max_hours=auth.SESSION_MAX_S // 3600,
        min_length=MIN_LENGTH, cutoff_day=config.cutoff_day, cutoff_time=config.cutoff_time,
    )  # fmt: skip
