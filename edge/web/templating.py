"""Jinja2 environment of the edge UI, with the filters the templates use."""

from __future__ import annotations

import jinja2

from protocol.entities import ENTITIES
from puskesos.webpages import environment

__all__ = ["create_environment"]


def create_environment(timezone: str) -> jinja2.Environment:
    """The template environment; ``timezone`` shows stored milliseconds as local time."""

    def choice_label(code: object, entity: str, name: str) -> str:
        spec = ENTITIES[entity].fields.get(name)
        if spec is None:
            return "" if code is None else str(code)
        return spec.label_of(code)

    env = environment(jinja2.PackageLoader("edge", "templates"), timezone)
    env.globals["choice_label"] = choice_label
    env.globals["ENTITIES"] = ENTITIES
    return env
