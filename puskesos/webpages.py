"""What the edge's and the hub's server-rendered pages share: the security headers, the
private cookies, and a Jinja environment with the Indonesian date filters and the shared
templates (``puskesos/templates``: the sign-in page, the frame of the help page)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from protocol.identity import mask_number
from protocol.regions import district_label, village_label
from protocol.schema import FieldKind, FieldSpec

__all__ = [
    "CSP",
    "MONTHS",
    "environment",
    "field_text",
    "guides",
    "secure",
    "security_headers",
    "set_private_cookie",
    "tanggal",
]

#: No inline script or style, nothing from elsewhere, never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

MONTHS = (
    "Januari", "Februari", "Maret", "April", "Mei", "Juni",
    "Juli", "Agustus", "September", "Oktober", "November", "Desember",
)  # fmt: skip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
R = TypeVar("R", bound=StrEnum)


def tanggal(value: object) -> str:
    """An ISO date as Indonesians write it: ``24 November 2026``."""
    if not isinstance(value, str):
        return ""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def field_text(spec: FieldSpec, value: object, names: Mapping[str, str] | None = None) -> str:
    """A field's value as a person reads it, from the one schema: an enum's label (a set's
    labels joined), a date or a number as Indonesians write it, ``Ya``/``Tidak``, a reference by the
    name ``names`` gives it; ``—`` when empty."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "Ya" if value else "Tidak"
    if isinstance(value, list):
        return ", ".join(spec.label_of(code) for code in value)
    if spec.kind is FieldKind.DATE:
        return tanggal(value)
    if spec.kind in (FieldKind.INT, FieldKind.DECIMAL):
        return angka(value)
    if spec.kind is FieldKind.REF and isinstance(value, str):
        return (names or {}).get(value, value)
    return spec.label_of(value)


def angka(value: object) -> str:
    """A number as Indonesians write it: ``1.234``, ``36`` for 36.0, ``1.234,5``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:,.6f}".rstrip("0").rstrip(".")
        return text.replace(",", " ").replace(".", ",").replace(" ", ".")
    return f"{int(value):,}".replace(",", ".")


def environment(loader: jinja2.BaseLoader, timezone: str) -> jinja2.Environment:
    """A template environment (autoescaped, strict about undefined names) with the
    ``tanggal``, ``angka`` and ``mask`` (a NIK or KK shown masked) filters and ``waktu``,
    which shows stored milliseconds as local time in ``timezone``. Templates come from
    ``loader`` first, then the shared ones, which extend the app's own ``base.html``."""
    zone = ZoneInfo(timezone)

    def waktu(ms: object) -> str:
        if not isinstance(ms, int) or ms <= 0:
            return "-"
        moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
        return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year} {moment:%H:%M}"

    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([loader, jinja2.PackageLoader("puskesos", "templates")]),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tanggal"] = tanggal
    env.filters["angka"] = angka
    env.filters["mask"] = mask_number
    env.filters["waktu"] = waktu
    env.filters["desa"] = village_label
    env.filters["kabupaten"] = district_label
    return env


def guides(own: R, roles: Iterable[R], asked: str) -> tuple[R, list[R]]:
    """The help page's (Panduan, ``/bantuan``) choice: the role whose guide it shows, the
    one ``?peran=`` names (``asked``) or else the reader's ``own``, and every role in the
    order the page lists their guides, the reader's own first. An unknown role is a 404."""
    order = [own, *(role for role in roles if role != own)]
    if not asked:
        return own, order
    for role in order:
        if role.value == asked:
            return role, order
    raise web.HTTPNotFound(text="Panduan untuk peran itu tidak ada.")


def secure(request: web.Request, response: web.StreamResponse) -> None:
    """Give ``response`` the headers :func:`security_headers` sets (a response streamed
    by its handler needs them before it is prepared)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers["Server"] = "Puskesos"  # not aiohttp's name and version, for a scanner to match
    if request.secure:  # the browser then refuses plain HTTP to this host for a year
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if not request.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSP without inline script, no framing, no sniffing; pages are never cached; the
    ``Server`` header names no software version; HSTS on HTTPS."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        secure(request, exc)
        raise
    secure(request, response)
    return response


def set_private_cookie(
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    secure: bool,
    max_age: int | None = None,
) -> None:
    """A cookie scripts cannot read and other sites never send (HttpOnly,
    SameSite=Strict); ``secure`` when the pages are served over HTTPS."""
    response.set_cookie(
        name, value, httponly=True, samesite="Strict", secure=secure, max_age=max_age, path="/"
    )
