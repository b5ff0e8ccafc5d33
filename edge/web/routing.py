"""One table of routes: method, path, handler, who may call it, and what it is for.

The router, the permission middleware and the OpenAPI document are all built from this
table, so a route cannot exist without a role rule (deny by default) or be missing from
the API's documentation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from edge.auth import Role

__all__ = ["ALL_ROLES", "PUBLIC", "Route", "RouteTable"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Every logged-in role.
ALL_ROLES: frozenset[Role] = frozenset(Role)
#: No login needed (login page, health, metrics, static files).
PUBLIC: frozenset[Role] = frozenset()


@dataclass(frozen=True, slots=True)
class Route:
    """One route. ``roles`` empty means public; ``openapi`` holds the operation's extra
    OpenAPI fields (request body, parameters, responses) for API routes."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[Role]
    summary: str
    api: bool = False
    openapi: dict[str, Any] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        """Whether anyone may call it without logging in."""
        return not self.roles


class RouteTable:
    """Collects routes with a decorator: ``@routes.get("/path", roles=..., summary=...)``."""

    def __init__(self, *, api: bool = False) -> None:
        self.api = api
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        path: str,
        *,
        roles: Iterable[Role],
        summary: str,
        **openapi: Any,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler for ``method path``."""

        def decorate(handler: Handler) -> Handler:
            self.routes.append(
                Route(method, path, handler, frozenset(roles), summary, self.api, openapi)
            )
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A GET route."""
        return self.add("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A POST route."""
        return self.add("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A PATCH route."""
        return self.add("PATCH", path, **kw)
