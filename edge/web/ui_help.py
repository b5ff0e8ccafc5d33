"""Panduan (``/bantuan``): a short guide per role in Bahasa Indonesia, the reader's own
first, the others one link away (templates ``bantuan_<role>.html``)."""

from __future__ import annotations

from aiohttp import web

from edge.auth import MIN_PASSWORD_LENGTH, ROLE_LABELS, Role
from edge.web.app import CONFIG, USER, render
from edge.web.routing import ALL_ROLES, RouteTable
from puskesos.webpages import guides

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/bantuan", roles=ALL_ROLES, summary="Panduan: the guide of each role, own first")
async def guide(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    shown, order = guides(request[USER].role, Role, request.query.get("peran", ""))
    return render(
        request, "bantuan.html", shown=shown, guides=order, labels=ROLE_LABELS,
        idle_minutes=config.session_idle_s // 60, max_hours=config.session_max_age_s // 3600,
        min_length=MIN_PASSWORD_LENGTH,
    )  # fmt: skip
