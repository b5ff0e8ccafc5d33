"""Helpers for the API tests: bearer tokens, request bodies from the factories, and a
snapshot of everything a write leaves behind (to prove that a refused request wrote
nothing)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from edge import auth
from edge.store import Store
from edge.web.app import STORE
from tests.factories import make_household_with_members

__all__ = ["household_body", "store_of", "token_headers", "written"]


def store_of(client: TestClient) -> Store:
    """The store of the app behind ``client``."""
    store: Store = client.server.app[STORE]
    return store


async def token_headers(client: TestClient, username: str) -> dict[str, str]:
    """An ``Authorization`` header with a new API token acting as ``username``."""
    store = store_of(client)
    user = next(u for u in await auth.list_users(store) if u.username == username)
    token = await auth.create_api_token(store, user, f"test-{username}")
    return {"Authorization": f"Bearer {token}"}


def household_body(n: int = 3, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """A valid POST /api/v1/households body: a factory household of ``n`` members without
    the ids and the fields the box fills in itself."""
    household, members = make_household_with_members(n, seed=seed)
    for key in ("id", "village_code"):
        household.pop(key)
    for member in members:
        member.pop("id")
        member.pop("household_id")
    return {"household": household, "members": members, **extra}


async def written(client: TestClient) -> tuple[int, int, int]:
    """(records, outbox rows, audit rows) now on the box."""
    store = store_of(client)
    records = sum((await store.counts()).values())
    outbox, _ = await store.outbox_pending()
    _, audit_rows = await store.audit_log(limit=1)
    return records, outbox, audit_rows
