"""A box of an older release, plain on its SD card, is given the district's recovery key: the
first staff sign-in encrypts it once, a crash at any step leaves a box that opens with every
record, and an admin can lock it again from Pengguna (docs/storage.md §3 and §5)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edge import auth, db, keys, securing
from edge.backup import backup
from edge.config import BrokerConfig, EdgeConfig, SyncConfig, render_toml
from edge.store import Store
from edge.web.app import STORE, create_app
from puskesos.fleet import free_port
from puskesos.keyslots import generate_recovery_key
from tests.browser import LAPTOP
from tests.browser import sign_in as browser_sign_in
from tests.edge.api_client import household_body
from tests.edge.box_process import ServedBox, init_box, puskesos
from tests.edge.conftest import PASSWORD, _hidden, login
from tests.edge.hub_peer import HubPeer, eventually
from tests.edge.test_encrypted_box import files_holding
from tests.edge.test_locked_box import LOCKED, encrypted_box, sign_in
from tests.edge.test_ui import register
from tests.factories import DEFAULT_VILLAGE
from tests.mqtt_broker import mosquitto  # noqa: F401 (fixture)

NODE = "edge-3201022001-a"
#: The steps of ``securing.secure``, in order.
STEPS = ("exported", "slots-pending", "plain-wal-removed", "switched")


@pytest.fixture
def plain(tmp_path: Path) -> EdgeConfig:
    """A plain box's settings, as an older release left them: no recovery key yet."""
    return EdgeConfig(village=DEFAULT_VILLAGE, node=NODE, data_dir=tmp_path / "box")


def with_recovery_key(config: EdgeConfig, folder: Path) -> EdgeConfig:
    """``config`` given the district's recovery public key (made like `hub keys
    recovery-init` makes it)."""
    public = generate_recovery_key(folder / "usb" / "recovery.key")
    return replace(config, recovery_key=str(public))


async def plain_box_with_data(config: EdgeConfig) -> tuple[str, dict[str, set[str]], list[str]]:
    """An admin and an operator, and households saved through the form and the API of a
    plain box; returns an API token of the operator, each household's id with its members'
    NIKs, and all the NIKs."""
    db.upgrade(config.database_path)
    store = Store(config)
    await store.open()
    try:
        for key in ("village", "node"):  # as `edge init` claims the database
            await store.set_meta(key, getattr(config, key))
        for username, role in (("admin", auth.Role.ADMIN), ("operator1", auth.Role.OPERATOR)):
            user = await auth.create_user(
                store, username=username, full_name=username.title(), role=role,
                password=PASSWORD, actor="test",
            )  # fmt: skip
        token = await auth.create_api_token(store, user, "tablet")
    finally:
        await store.close()
    bearer = {"Authorization": f"Bearer {token}"}
    households: dict[str, set[str]] = {}
    async with TestClient(TestServer(create_app(config))) as client:
        csrf = await login(client, "operator1")
        for seed in (1, 2):
            household_id, members = await register(client, csrf, n=3, seed=seed)
            households[household_id] = {member["nik"] for member in members}
        body = household_body(4, seed=3)
        answer = await client.post("/api/v1/households", json=body, headers=bearer)
        assert answer.status == 201, await answer.text()
        households[(await answer.json())["id"]] = {member["nik"] for member in body["members"]}
    return token, households, [nik for niks in households.values() for nik in niks]


async def households_seen(client: TestClient, token: str) -> dict[str, set[str]]:
    """Each household the API lists, with the NIKs of its members (read one by one)."""
    bearer = {"Authorization": f"Bearer {token}"}
    answer = await client.get("/api/v1/households", headers=bearer)
    assert answer.status == 200, await answer.text()
    seen = {}
    for item in (await answer.json())["items"]:
        household_id = item["household"]["id"]
        answer = await client.get(f"/api/v1/households/{household_id}", headers=bearer)
        detail = await answer.json()
        seen[household_id] = {member["values"]["nik"] for member in detail["members"]}
    return seen


def is_plain_sqlite(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            connection.execute("SELECT count(*) FROM records").fetchone()
    except sqlite3.DatabaseError:
        return False
    return True


async def test_the_first_sign_in_encrypts_a_plain_box_with_every_record(plain, tmp_path):
    token, households, niks = await plain_box_with_data(plain)
    # Earlier nights' plain backups, and files in the backup folder the box did not make.
    nightly = backup(plain, f"{plain.data_dir / 'backups'}/")
    other_box = plain.data_dir / "backups" / "edge-lain.sqlite"
    sqlite3.connect(other_box).executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('node', 'edge-3201022001-b');"
    )
    notes = plain.data_dir / "backups" / "catatan.txt"
    notes.write_text("dipindah ke USB tiap bulan\n")
    assert files_holding(niks[:1], plain.data_dir)  # the control: plain, the NIK is there

    config = with_recovery_key(plain, tmp_path)
    async with TestClient(TestServer(create_app(config))) as client:
        # Until then the box works plain, as before the upgrade.
        assert await households_seen(client, token) == households
        status, _ = await sign_in(client, "operator1", "bukan-sandinya-9")
        assert status == 401 and is_plain_sqlite(plain.database_path)

        status, _ = await sign_in(client, "operator1", PASSWORD)
        assert status == 303
        assert not is_plain_sqlite(plain.database_path)
        assert await households_seen(client, token) == households
        home = await client.get("/")
        assert home.status == 200 and "Beranda" in await home.text()
        # Saves go on, into the encrypted database.
        csrf = _hidden(await home.text(), "csrf_token")
        new_id, members = await register(client, csrf, n=2, seed=9)
        niks += [member["nik"] for member in members]

        slots = json.loads((plain.data_dir / "keyslots.json").read_text())
        assert [(s["kind"], s.get("user")) for s in slots["slots"]] == [
            ("district", None),
            ("user", "operator1"),
        ]
        # The other staff get their slot at their next sign-in.
        assert (await sign_in(client, "admin", PASSWORD))[0] == 303
        assert keys.open_with_password(plain, "admin", PASSWORD) is not None

    assert not nightly.exists()
    assert other_box.exists() and notes.exists()
    leftovers = {path.name for path in plain.data_dir.iterdir()}
    assert not leftovers & {"edge.sqlite.enc", securing.PENDING_SLOTS, "edge.sqlite-journal"}
    assert files_holding(niks, plain.data_dir) == []

    key = keys.open_with_password(plain, "operator1", PASSWORD)
    with db.connect(plain.database_path, key) as connection:
        actions = [row[0] for row in connection.execute("SELECT action FROM audit ORDER BY seq")]
    assert actions.count("keys.secure") == 1 and actions[-1] != "keys.secure"

    # After a restart the box is locked, and a sign-in opens it with everything in it.
    async with TestClient(TestServer(create_app(config))) as client:
        assert not client.server.app[STORE].opened
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/households", headers=bearer)).status == 503
        page = await client.get("/rumah-tangga")
        assert page.url.path == "/masuk" and LOCKED in await page.text()
        assert (await sign_in(client, "admin", PASSWORD))[0] == 303
        households[new_id] = {member["nik"] for member in members}
        assert await households_seen(client, token) == households


async def test_securing_deletes_the_plain_backups_on_a_usb_stick_outside_the_data_folder(
    plain, tmp_path
):
    stick = tmp_path / "media" / "usb" / "puskesos"
    settings = replace(plain, backup_dir=str(stick))
    _, _, niks = await plain_box_with_data(settings)
    config_file = tmp_path / "edge.toml"
    config_file.write_text(render_toml(settings))
    made = puskesos("edge", "backup", "--config", str(config_file))  # as the nightly timer
    assert made.returncode == 0, made.stderr
    nightly = Path(made.stdout.strip())
    assert nightly.parent == stick and files_holding(niks[:1], stick)
    notes = stick / "catatan.txt"
    notes.write_text("dipindah ke laptop tiap bulan\n")

    config = with_recovery_key(settings, tmp_path)
    async with TestClient(TestServer(create_app(config))) as client:
        assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
    assert keys.encrypted(config)
    assert not nightly.exists() and notes.exists()
    assert files_holding(niks, stick, plain.data_dir) == []


async def test_a_plain_box_without_a_recovery_key_stays_plain(plain, caplog):
    token, households, _ = await plain_box_with_data(plain)
    async with TestClient(TestServer(create_app(plain))) as client:
        assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
        assert await households_seen(client, token) == households
    assert is_plain_sqlite(plain.database_path)
    assert not (plain.data_dir / "keyslots.json").exists()
    assert "NOT encrypted" in caplog.text and "recovery_key" in caplog.text


async def test_the_sign_in_page_asks_staff_to_wait_while_their_sign_in_secures_the_box(
    plain, tmp_path
):
    await plain_box_with_data(plain)
    waits = ("data di perangkat ini dienkripsi", "sekitar 2 detik untuk setiap 2.000 rumah tangga",
             "jangan muat ulang halaman dan jangan matikan perangkat")  # fmt: skip
    async with TestClient(TestServer(create_app(plain))) as client:
        page = await (await client.get("/masuk")).text()
        assert not any(text in page for text in waits)  # no recovery key: it stays plain

    config = with_recovery_key(plain, tmp_path)
    async with TestClient(TestServer(create_app(config))) as client:
        page = await (await client.get("/masuk")).text()
        assert all(text in page for text in waits) and LOCKED not in page
        status, page = await sign_in(client, "operator1", "bukan-sandinya-9")
        assert status == 401 and all(text in page for text in waits)
        assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
        page = await (await client.get("/masuk")).text()
        assert not any(text in page for text in waits)  # secured: nothing to wait for
    async with TestClient(TestServer(create_app(config))) as client:
        page = await (await client.get("/masuk")).text()
        assert LOCKED in page and not any(text in page for text in waits)


CRASH = """
import os, signal, sys
from pathlib import Path
from edge.config import BrokerConfig, EdgeConfig, SyncConfig
from edge.securing import secure

data_dir, recovery_key, stop_at = sys.argv[1:]
config = EdgeConfig(village="{village}", node="{node}", data_dir=Path(data_dir),
                    recovery_key=recovery_key)

def after(step):
    if step == stop_at:
        os.kill(os.getpid(), signal.SIGKILL)

secure(config, "operator1", "{password}", after=after)
"""


def killed_while_securing(config: EdgeConfig, step: str) -> None:
    """Run :func:`securing.secure` in another process and ``kill -9`` it after ``step``."""
    script = CRASH.format(village=config.village, node=config.node, password=PASSWORD)
    done = subprocess.run(
        [sys.executable, "-c", script, str(config.data_dir), config.recovery_key, step],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == -9, done.stderr


@pytest.mark.parametrize("step", STEPS)
async def test_a_kill_at_any_step_leaves_a_box_that_opens_with_every_record(plain, tmp_path, step):
    token, households, _ = await plain_box_with_data(plain)
    config = with_recovery_key(plain, tmp_path)
    killed_while_securing(config, step)

    securing.finish_interrupted(config)  # what `serve` does first
    switched = step == "switched"
    assert keys.encrypted(config) is switched
    assert is_plain_sqlite(config.database_path) is not switched
    assert not (config.data_dir / securing.PENDING_SLOTS).exists()
    assert not (config.data_dir / "edge.sqlite.enc").exists()
    if not switched:
        db.upgrade(config.database_path)
    async with TestClient(TestServer(create_app(config))) as client:
        assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
        assert await households_seen(client, token) == households
    # Interrupted before the switch, the sign-in secured it after all.
    assert keys.encrypted(config) and not is_plain_sqlite(config.database_path)


async def test_a_failure_before_the_switch_leaves_the_plain_box_as_it_was(plain, tmp_path):
    await plain_box_with_data(plain)
    config = with_recovery_key(plain, tmp_path)
    before = plain.database_path.read_bytes()

    def disk_full(step: str) -> None:
        if step == "slots-pending":
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        securing.secure(config, "operator1", PASSWORD, after=disk_full)
    assert plain.database_path.read_bytes() == before
    assert sorted(path.name for path in plain.data_dir.iterdir() if "sqlite" in path.name) == [
        "edge.sqlite"
    ]
    assert securing.needs_securing(config)


async def test_serve_finishes_a_securing_killed_after_the_switch_over_https(plain, tmp_path):
    users = {"admin": ("admin", PASSWORD), "operator1": ("operator", PASSWORD)}
    config_file = init_box(tmp_path, users=users)  # a plain box, as an older release made it
    settings = replace(plain, data_dir=tmp_path / "data")
    box = ServedBox(config_file, tmp_path / "serve.log").start()
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            status, _ = await sign_in_over(session, box.url, "operator1")
            assert status == 303
            async with session.get(f"{box.url}/") as home:
                csrf = _hidden(await home.text(), "csrf_token")
            body = household_body(3, seed=5)
            async with session.post(f"{box.url}/api/v1/households", json=body,
                                    headers={"X-CSRF-Token": csrf}) as answer:  # fmt: skip
                assert answer.status == 201
                household_id = (await answer.json())["id"]
        assert box.stop() == 0
    finally:
        box.kill()

    settings = with_recovery_key(settings, tmp_path)
    killed_while_securing(settings, "switched")
    assert (settings.data_dir / securing.PENDING_SLOTS).exists()

    env = {"PUSKESOS_EDGE_RECOVERY_KEY": settings.recovery_key}
    box = ServedBox(config_file, tmp_path / "serve-again.log", env=env).start()
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{box.url}/healthz") as health:
                assert (await health.json())["locked"] is True
            assert (await sign_in_over(session, box.url, "operator1"))[0] == 303
            async with session.get(f"{box.url}/api/v1/households/{household_id}") as answer:
                assert answer.status == 200
        assert box.stop() == 0
    finally:
        box.kill()
    assert "interrupted after the switch" in (tmp_path / "serve-again.log").read_text()
    assert files_holding([m["nik"] for m in body["members"]], settings.data_dir) == []


async def sign_in_over(session: aiohttp.ClientSession, url: str, username: str) -> tuple[int, str]:
    async with session.get(f"{url}/masuk") as page:
        form = {"username": username, "password": PASSWORD, "next": "/"}
        form["csrf_token"] = _hidden(await page.text(), "csrf_token")
    async with session.post(f"{url}/masuk", data=form, allow_redirects=False) as answer:
        return answer.status, await answer.text()


# --- Kunci perangkat -----------------------------------------------------------------------


async def test_an_admin_locks_the_box_from_pengguna_and_a_sign_in_opens_it(plain):
    token = await encrypted_box(plain)
    bearer = {"Authorization": f"Bearer {token}"}
    async with (
        TestClient(TestServer(create_app(plain))) as admin,
        TestClient(admin.server) as operator,
    ):
        assert (await sign_in(admin, "admin", PASSWORD))[0] == 303
        operator_csrf = await login(operator, "operator1")
        page = await (await admin.get("/pengguna")).text()
        assert "Kunci perangkat" in page
        csrf = _hidden(page, "csrf_token")

        refused = await operator.post("/pengguna/kunci", data={"csrf_token": operator_csrf})
        assert refused.status == 403
        forged = await admin.post("/pengguna/kunci", data={"csrf_token": "palsu"})
        assert forged.status == 403
        assert (await admin.get("/api/v1/households", headers=bearer)).status == 200

        locked = await admin.post(
            "/pengguna/kunci", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert locked.status == 303 and locked.headers["Location"] == "/masuk"
        assert not admin.server.app[STORE].opened
        for client in (admin, operator):
            page = await client.get("/rumah-tangga")
            assert page.url.path == "/masuk" and LOCKED in await page.text()
        answer = await admin.get("/api/v1/households", headers=bearer)
        assert answer.status == 503 and (await answer.json())["error"] == "locked"
        assert (await (await admin.get("/healthz")).json())["locked"] is True

        assert (await sign_in(admin, "operator1", PASSWORD))[0] == 303
        assert (await admin.get("/api/v1/households", headers=bearer)).status == 200
        # Every session ended with the lock: the admin's tab must sign in again.
        page = await operator.get("/")
        assert page.url.path == "/masuk"
        store: Store = admin.server.app[STORE]
        rows, total = await store.audit_log(actions=["keys.lock"])
    assert total == 1 and rows[0].actor == "admin"


async def test_a_plain_box_cannot_be_locked(plain):
    await plain_box_with_data(plain)
    async with TestClient(TestServer(create_app(plain))) as client:
        csrf = await login(client, "admin")
        page = await (await client.get("/pengguna")).text()
        assert "Kunci perangkat" not in page
        answer = await client.post("/pengguna/kunci", data={"csrf_token": csrf})
        assert answer.status == 409 and "tidak terenkripsi" in await answer.text()
        assert client.server.app[STORE].opened


async def test_a_locked_box_stops_syncing_and_resumes_after_the_sign_in(
    tmp_path,
    mosquitto,  # noqa: F811
):
    config = EdgeConfig(
        village=DEFAULT_VILLAGE, node=NODE, data_dir=tmp_path / "box",
        broker=BrokerConfig(port=mosquitto.port),
        sync=SyncConfig(enabled=True, ack_timeout_s=2, backoff_min_s=1, backoff_max_s=2),
    )  # fmt: skip
    token = await encrypted_box(config)
    bearer = {"Authorization": f"Bearer {token}"}
    hub = HubPeer(mosquitto.port).start()
    try:
        async with TestClient(TestServer(create_app(config))) as client:
            csrf = await login(client, "admin")
            await eventually(lambda: any(s.state == "online" for s in hub.statuses), what="online")
            answer = await client.post("/pengguna/kunci", data={"csrf_token": csrf})
            assert answer.url.path == "/masuk"
            await eventually(lambda: hub.statuses[-1].state == "offline", what="offline")

            assert (await sign_in(client, "operator1", PASSWORD))[0] == 303
            await eventually(lambda: hub.statuses[-1].state == "online", what="online again")
            answer = await client.post("/api/v1/households", json=household_body(seed=3),
                                       headers=bearer)  # fmt: skip
            assert answer.status == 201
            await eventually(hub.received, what="an up batch")
    finally:
        hub.stop()


async def test_in_a_browser_the_first_sign_in_secures_and_kunci_perangkat_locks(
    plain,
    tmp_path,
    browser,
):
    _, households, niks = await plain_box_with_data(plain)
    config = with_recovery_key(plain, tmp_path)
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        context = await browser.new_context(viewport=LAPTOP)
        page = await context.new_page()
        await browser_sign_in(page, base_url, "admin", PASSWORD)
        assert keys.encrypted(config) and not is_plain_sqlite(config.database_path)
        assert files_holding(niks, config.data_dir) == []

        await page.click("nav >> text=Pengguna")
        await page.click("button:has-text('Kunci perangkat')")
        await page.wait_for_url(f"{base_url}/masuk")
        await page.goto(f"{base_url}/rumah-tangga")
        assert page.url.startswith(f"{base_url}/masuk?next=")
        assert LOCKED in await page.inner_text("main")

        await browser_sign_in(page, base_url, "admin", PASSWORD)
        await page.goto(f"{base_url}/rumah-tangga")
        assert len(households) == await page.locator("main table tbody tr").count()
        await context.close()
    finally:
        await runner.cleanup()
