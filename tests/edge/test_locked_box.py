"""An encrypted box after a restart (docs/storage.md §3): locked until a staff member signs
in, refusing everything but sign-in, health and static files, not syncing; the right
password opens it and replication starts. Passwords set, changed and accounts disabled keep
the key slots in step."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge import auth, db, keys
from edge.config import BrokerConfig, EdgeConfig, SyncConfig
from edge.store import Store
from edge.web.app import STORE, create_app
from puskesos.keyslots import (
    generate_recovery_key,
    load_recovery_private,
    load_recovery_public,
    open_slots,
    read_slots,
    recovery_key_id,
)
from tests.edge.api_client import household_body
from tests.edge.conftest import PASSWORD, _hidden, login
from tests.edge.hub_peer import HubPeer, eventually
from tests.edge.test_ui import register
from tests.factories import DEFAULT_VILLAGE
from tests.mqtt_broker import MosquittoBroker, mosquitto  # noqa: F401 (fixture)

NODE = "edge-3201022001-a"
LOCKED = "Perangkat terkunci setelah dinyalakan ulang. Masuk untuk membukanya."


async def encrypted_box(config: EdgeConfig) -> str:
    """Set up an encrypted box with an admin and an operator, like ``edge init`` and
    ``edge user add`` do; returns an API token of the operator."""
    key = keys.create_slots(config, None)
    db.upgrade(config.database_path, key)
    store = Store(config, key=key)
    await store.open()
    try:
        for username, role in (("admin", auth.Role.ADMIN), ("operator1", auth.Role.OPERATOR)):
            user = await auth.create_user(
                store, username=username, full_name=username.title(), role=role,
                password=PASSWORD, actor="test",
            )  # fmt: skip
        return await auth.create_api_token(store, user, "test")
    finally:
        await store.close()


@pytest.fixture
def config(tmp_path: Path) -> EdgeConfig:
    return EdgeConfig(village=DEFAULT_VILLAGE, node=NODE, data_dir=tmp_path / "box")


@pytest.fixture
async def locked(config: EdgeConfig) -> AsyncIterator[tuple[TestClient, str]]:
    token = await encrypted_box(config)
    async with TestClient(TestServer(create_app(config))) as client:
        yield client, token


async def sign_in(client: TestClient, username: str, password: str) -> tuple[int, str]:
    page = await client.get("/masuk")
    form = {"username": username, "password": password, "next": "/"}
    form["csrf_token"] = _hidden(await page.text(), "csrf_token")
    answer = await client.post("/masuk", data=form, allow_redirects=False)
    return answer.status, await answer.text()


async def test_the_first_account_replaces_the_setup_slot(config):
    await encrypted_box(config)
    assert keys.setup_key(config) is None
    assert keys.open_with_password(config, "admin", PASSWORD) is not None
    assert keys.open_with_password(config, "admin", "salah-sandi-123") is None


async def test_a_locked_box_answers_only_sign_in_health_and_static_files(locked):
    client, token = locked
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["locked"] is True
    page = await client.get("/rumah-tangga", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"].startswith("/masuk?next=/rumah-tangga")
    sign_in_page = await (await client.get("/masuk")).text()
    assert LOCKED in sign_in_page
    api = await client.get("/api/v1/households", headers={"Authorization": f"Bearer {token}"})
    assert api.status == 503 and (await api.json())["error"] == "locked"
    posted = await client.post("/api/v1/households", json=household_body(seed=1),
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert posted.status == 503
    assert (await client.get("/static/app.css")).status == 200
    assert not client.server.app[STORE].opened


async def test_a_wrong_password_leaves_it_locked_and_the_right_one_opens_it(locked):
    client, token = locked
    status, text = await sign_in(client, "admin", "bukan-sandinya-99")
    assert status == 401 and "Nama pengguna atau kata sandi salah." in text and LOCKED in text
    status, _ = await sign_in(client, "siapa", PASSWORD)  # no such account: the same answer
    assert status == 401
    assert (await (await client.get("/healthz")).json())["locked"] is True

    status, _ = await sign_in(client, "admin", PASSWORD)
    assert status == 303
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and "locked" not in health
    home = await client.get("/")
    assert home.status == 200 and LOCKED not in await home.text()
    api = await client.get("/api/v1/households", headers={"Authorization": f"Bearer {token}"})
    assert api.status == 200


async def test_guessing_on_a_locked_box_is_throttled_like_on_an_open_one(locked):
    client, _ = locked
    for _ in range(5):
        assert (await sign_in(client, "admin", "tebakan-salah-1"))[0] == 401
    status, text = await sign_in(client, "admin", PASSWORD)
    assert status == 401 and "Terlalu banyak percobaan masuk" in text
    assert (await (await client.get("/healthz")).json())["locked"] is True
    # Another account from the same address is not refused because of these guesses.
    assert (await sign_in(client, "operator1", PASSWORD))[0] == 303


async def test_saves_after_unlock_are_in_the_encrypted_database(locked, config):
    client, _ = locked
    assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
    csrf = _hidden(await (await client.get("/")).text(), "csrf_token")
    _, members = await register(client, csrf, n=2, seed=7)
    raw = b"".join(path.read_bytes() for path in config.data_dir.iterdir() if path.is_file())
    assert members[0]["nik"].encode() not in raw
    assert members[0]["nik"].encode("utf-16-le") not in raw


async def test_passwords_set_changed_and_accounts_disabled_keep_the_slots_in_step(locked, config):
    client, _ = locked
    await login(client, "admin")
    store: Store = client.server.app[STORE]
    users = {user.username: user for user in await auth.list_users(store)}
    await auth.set_password(store, users["operator1"].id, "Sandi-Baru-Desa-7", actor="admin")
    assert keys.open_with_password(config, "operator1", PASSWORD) is None
    assert keys.open_with_password(config, "operator1", "Sandi-Baru-Desa-7") is not None

    await auth.set_user_active(store, users["operator1"].id, False, actor="admin")
    assert not keys.has_slot(config, "operator1")
    await auth.set_user_active(store, users["operator1"].id, True, actor="admin")
    # Reactivated, the account gets its slot back at its next sign-in.
    assert (await sign_in(client, "operator1", "Sandi-Baru-Desa-7"))[0] == 303
    assert keys.open_with_password(config, "operator1", "Sandi-Baru-Desa-7") is not None

    kades = await auth.create_user(
        store, username="kades", full_name="Kades", role=auth.Role.KEPALA_DESA,
        password="Pohon-Jambu-Merah-41", actor="admin",
    )  # fmt: skip
    assert keys.open_with_password(config, kades.username, "Pohon-Jambu-Merah-41") is not None


async def test_a_locked_box_does_not_sync_and_starts_after_sign_in(
    tmp_path,
    mosquitto,  # noqa: F811
):
    config = EdgeConfig(
        village=DEFAULT_VILLAGE, node=NODE, data_dir=tmp_path / "box",
        broker=BrokerConfig(port=mosquitto.port),
        sync=SyncConfig(enabled=True, ack_timeout_s=2, backoff_min_s=1, backoff_max_s=2),
    )  # fmt: skip
    token = await encrypted_box(config)
    hub = HubPeer(mosquitto.port).start()
    try:
        async with TestClient(TestServer(create_app(config))) as client:
            await asyncio.sleep(2)
            assert hub.statuses == [] and hub.received() == []
            assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
            await eventually(lambda: any(s.state == "online" for s in hub.statuses), what="online")
            answer = await client.post(
                "/api/v1/households", json=household_body(seed=3),
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            assert answer.status == 201
            await eventually(hub.received, what="an up batch")
    finally:
        hub.stop()


async def test_the_next_unlock_seals_the_district_slot_to_the_configured_recovery_key(
    config, tmp_path, caplog
):
    await encrypted_box(config)  # set up without a district slot
    unreadable = replace(config, recovery_key=str(tmp_path / "usb" / "hilang.pub"))
    async with TestClient(TestServer(create_app(unreadable))) as client:
        assert (await sign_in(client, "admin", PASSWORD))[0] == 303  # it opens all the same
    assert "the district slot was not sealed" in caplog.text
    assert read_slots(config.data_dir, config.node).district() is None

    # The district's key given (or replaced: the same step), and the box restarted.
    public = generate_recovery_key(tmp_path / "usb" / "recovery.key")
    configured = replace(config, recovery_key=str(public))
    for _ in range(2):  # a second restart finds the slot sealed to it already
        async with TestClient(TestServer(create_app(configured))) as client:
            assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
            rows, total = await client.server.app[STORE].audit_log(actions=["keys.reseal"])
    assert total == 1 and rows[0].actor == "operator1"
    sealed_to = recovery_key_id(load_recovery_public(public))
    assert json.loads(rows[0].detail) == {"from": None, "to": sealed_to}
    slots = read_slots(config.data_dir, config.node)
    private = load_recovery_private(tmp_path / "usb" / "recovery.key")
    assert open_slots(slots, private_key=private) == keys.open_with_password(
        config, "admin", PASSWORD
    )
