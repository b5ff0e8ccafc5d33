"""Jinja2 environment of the edge UI, with the filters the templates use."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import jinja2

from protocol.entities import ENTITIES
from protocol.identity import mask_number

__all__ = ["MONTHS", "create_environment"]

MONTHS = (
    "Januari", "Februari", "Maret", "April", "Mei", "Juni",
    "Juli", "Agustus", "September", "Oktober", "November", "Desember",
)  # fmt: skip


def tanggal(value: object) -> str:
    """An ISO date as Indonesians write it: ``24 November 2026``."""
    if not isinstance(value, str):
        return ""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def create_environment(timezone: str) -> jinja2.Environment:
    """The template environment; ``timezone`` shows stored milliseconds as local time."""
    zone = ZoneInfo(timezone)

    def waktu(ms: object) -> str:
        if not isinstance(ms, int) or ms <= 0:
            return "-"
        moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
        return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year} {moment:%H:%M}"

    def choice_label(code: object, entity: str, name: str) -> str:
        spec = ENTITIES[entity].fields.get(name)
        if spec is None or not isinstance(code, str):
            return "" if code is None else str(code)
        if code in spec.choices and spec.choice_labels:
            return spec.choice_labels[spec.choices.index(code)]
        return code

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("edge", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["mask"] = mask_number
    env.filters["tanggal"] = tanggal
    env.filters["waktu"] = waktu
    env.globals["choice_label"] = choice_label
    env.globals["ENTITIES"] = ENTITIES
    return env
