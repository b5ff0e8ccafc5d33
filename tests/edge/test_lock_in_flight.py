"""An admin presses "Kunci perangkat" while others are in the middle of a request: the lock
waits for the requests already inside the store, and whatever arrives meanwhile is answered
as the locked box answers (docs/storage.md §3). Nobody sees a server error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from edge.config import EdgeConfig
from edge.store import Store
from edge.web import app as edge_app
from edge.web.app import LOCKED_SIGN_IN, STORE, create_app
from tests.edge.api_client import household_body
from tests.edge.conftest import PASSWORD, _hidden, login
from tests.edge.hub_peer import eventually
from tests.edge.test_locked_box import LOCKED, encrypted_box, sign_in
from tests.factories import DEFAULT_VILLAGE

NODE = "edge-3201022001-a"
T = TypeVar("T")


@pytest.fixture
def config(tmp_path: Path) -> EdgeConfig:
    return EdgeConfig(village=DEFAULT_VILLAGE, node=NODE, data_dir=tmp_path / "box")


class HeldReads:
    """The next ``count`` reads of ``store`` wait until :meth:`release`: requests caught
    inside the store, as a slow page or a slow SD card catches them."""

    def __init__(self, store: Store, count: int = 1) -> None:
        self.count = count
        self.inside = 0
        self._released = asyncio.Event()
        read = store.read

        async def held_read(query: Callable[[Any], T]) -> T:
            if self.inside < self.count:
                self.inside += 1
                await self._released.wait()
            return await read(query)

        store.read = held_read  # type: ignore[method-assign]

    def release(self) -> None:
        self._released.set()


async def admin_and_operator(client: TestClient, operator: TestClient) -> str:
    """The admin signed in on Pengguna (returns the page's CSRF token), the operator too."""
    assert (await sign_in(client, "admin", PASSWORD))[0] == 303
    await login(operator, "operator1")
    return _hidden(await (await client.get("/pengguna")).text(), "csrf_token")


def lock_box(client: TestClient, csrf: str) -> asyncio.Task[ClientResponse]:
    return asyncio.ensure_future(
        client.post("/pengguna/kunci", data={"csrf_token": csrf}, allow_redirects=False)
    )


def started(request: Awaitable[ClientResponse]) -> asyncio.Task[ClientResponse]:
    return asyncio.ensure_future(request)


async def test_kunci_perangkat_waits_for_a_page_being_read_and_new_requests_get_sign_in(config):
    token = await encrypted_box(config)
    bearer = {"Authorization": f"Bearer {token}"}
    async with (
        TestClient(TestServer(create_app(config))) as admin,
        TestClient(admin.server) as operator,
    ):
        app = admin.server.app
        csrf = await admin_and_operator(admin, operator)
        held = HeldReads(app[STORE])
        page = started(operator.get("/rumah-tangga"))
        await eventually(lambda: held.inside == 1, what="the page inside the store")

        locking = lock_box(admin, csrf)
        lock = app[LOCKED_SIGN_IN].lock
        await eventually(lambda: locking.done() or lock.locked(), what="the lock under way")
        assert not locking.done()  # it waits for the page
        arriving_page = started(operator.get("/", allow_redirects=False))
        arriving_api = started(admin.get("/api/v1/households", headers=bearer))
        await asyncio.sleep(0.3)
        assert not locking.done() and app[STORE].opened  # the page is still being read
        held.release()

        answer = await page
        assert answer.status == 200 and "<h1>Rumah tangga</h1>" in await answer.text()
        locked = await locking
        assert locked.status == 303 and locked.headers["Location"] == "/masuk"
        assert not app[STORE].opened
        arrived = await arriving_page
        assert arrived.status == 303 and arrived.headers["Location"].startswith("/masuk?next=")
        answer = await arriving_api
        assert answer.status == 503 and (await answer.json())["error"] == "locked"
        page = await operator.get("/rumah-tangga")
        assert page.url.path == "/masuk" and LOCKED in await page.text()


async def test_a_request_still_inside_when_the_wait_is_over_is_told_the_box_was_locked(
    config, monkeypatch
):
    token = await encrypted_box(config)
    bearer = {"Authorization": f"Bearer {token}"}
    monkeypatch.setattr(edge_app, "CLOSE_WAIT_S", 0.3)
    async with (
        TestClient(TestServer(create_app(config))) as admin,
        TestClient(admin.server) as operator,
    ):
        app = admin.server.app
        csrf = await admin_and_operator(admin, operator)
        held = HeldReads(app[STORE], count=2)
        page = started(operator.get("/rumah-tangga"))
        save = started(
            admin.post("/api/v1/households", json=household_body(seed=4), headers=bearer)
        )
        await eventually(lambda: held.inside == 2, what="two requests inside the store")

        locked = await lock_box(admin, csrf)  # they are still inside: it does not wait forever
        assert locked.status == 303 and not app[STORE].opened
        held.release()

        answer = await page
        assert answer.status == 503
        text = await answer.text()
        assert "Perangkat terkunci" in text and "periksa apakah data terakhir" in text
        answer = await save
        assert answer.status == 503 and (await answer.json())["error"] == "locked"


async def test_no_server_error_in_a_crowd_of_requests_during_kunci_perangkat(config):
    token = await encrypted_box(config)
    bearer = {"Authorization": f"Bearer {token}"}
    async with (
        TestClient(TestServer(create_app(config))) as admin,
        TestClient(admin.server) as operator,
    ):
        csrf = await admin_and_operator(admin, operator)

        def crowd(seed: int) -> list[asyncio.Task[ClientResponse]]:
            body = household_body(seed=seed)
            return [
                started(operator.get("/", allow_redirects=False)),
                started(operator.get("/rumah-tangga", allow_redirects=False)),
                started(admin.get("/api/v1/households", headers=bearer)),
                started(admin.post("/api/v1/households", json=body, headers=bearer)),
            ]

        before = [task for seed in range(10, 15) for task in crowd(seed)]
        locking = lock_box(admin, csrf)
        after = [task for seed in range(20, 25) for task in crowd(seed)]
        assert (await locking).status == 303
        saved = 0
        for answer in await asyncio.gather(*before, *after):
            body = await answer.text()
            assert answer.status in (200, 201, 303, 503), (answer.status, body)
            if answer.status == 303:
                assert answer.headers["Location"].startswith("/masuk")
            if answer.status == 503:
                assert "locked" in body or "Perangkat terkunci" in body
            saved += answer.status == 201

        # Every save that was answered 201 is in the database.
        assert (await sign_in(admin, "operator1", PASSWORD))[0] == 303
        listed = await admin.get("/api/v1/households", headers=bearer)
        assert listed.status == 200 and (await listed.json())["total"] == saved
