"""Fixtures for the edge: a fresh box (database migrated to head) and its app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from edge import auth
from edge.config import EdgeConfig
from edge.db import upgrade
from edge.store import Store
from edge.web.app import STORE, create_app
from tests.factories import DEFAULT_VILLAGE

PASSWORD = "rahasia-desa-123"


@pytest.fixture
def edge_config(tmp_path: Path) -> EdgeConfig:
    config = EdgeConfig(village=DEFAULT_VILLAGE, node="edge-test-a", data_dir=tmp_path / "box")
    upgrade(config.database_path)
    return config


@pytest.fixture
async def client(edge_config: EdgeConfig) -> AsyncIterator[TestClient]:
    app = create_app(edge_config)
    async with TestClient(TestServer(app)) as test_client:
        store: Store = app[STORE]
        for username, role in (
            ("operator1", auth.Role.OPERATOR),
            ("kades", auth.Role.KEPALA_DESA),
            ("admin", auth.Role.ADMIN),
        ):
            await auth.create_user(
                store, username=username, full_name=username.title(), role=role,
                password=PASSWORD, actor="test",
            )  # fmt: skip
        yield test_client


async def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form like a browser; returns the session's CSRF token."""
    page = await client.get("/masuk")
    form_csrf = _hidden(await page.text(), "csrf_token")
    response = await client.post(
        "/masuk",
        data={"username": username, "password": password, "csrf_token": form_csrf, "next": "/"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    home = await client.get("/")
    return _hidden(await home.text(), "csrf_token")


async def search(client: TestClient, csrf: str, text: str) -> ClientResponse:
    """Search households with the list's search box, like a browser (POST, then the page
    it is sent to)."""
    return await client.post("/rumah-tangga/cari", data={"q": text, "csrf_token": csrf})


def _hidden(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
