"""Sign-in throttling and the password rule, as people at the village office meet them
(issue 16): someone hammering ``admin`` from one PC cannot lock the real admin out, a wait
tells no account apart, a restart forgets nothing, and a weak password is refused.

The app is served in-process; a test middleware takes the client's address from the
``X-Test-Remote`` header, so one test client can be several PCs on the LAN."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edge import auth
from edge.config import EdgeConfig
from edge.web.app import STORE, create_app
from tests.edge.conftest import PASSWORD, login

ATTACKER = "192.168.1.66"
OFFICE_PC = "192.168.1.10"
WAIT = re.compile(
    r"Terlalu banyak percobaan masuk dari perangkat ini\. Coba lagi dalam \d+ menit\."
)


@web.middleware
async def _test_remote(request: web.Request, handler):
    remote = request.headers.get("X-Test-Remote")
    return await handler(request.clone(remote=remote) if remote else request)


@asynccontextmanager
async def box(config: EdgeConfig) -> AsyncIterator[TestClient]:
    """The box's app on ``config``'s database, with an admin and an operator."""
    app = create_app(config)
    app.middlewares.insert(0, _test_remote)
    async with TestClient(TestServer(app)) as client:
        store = app[STORE]
        known = {user.username for user in await auth.list_users(store)}
        for username, role in (("admin", auth.Role.ADMIN), ("operator1", auth.Role.OPERATOR)):
            if username not in known:
                await auth.create_user(
                    store, username=username, full_name=username.title(), role=role,
                    password=PASSWORD, actor="test",
                )  # fmt: skip
        yield client


async def sign_in(client: TestClient, username: str, password: str, address: str):
    page = await (await client.get("/masuk", headers={"X-Test-Remote": address})).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"username": username, "password": password, "csrf_token": csrf, "next": "/"}
    return await client.post(
        "/masuk", data=form, headers={"X-Test-Remote": address}, allow_redirects=False
    )


def alert(page: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', page)
    return found.group(1) if found else ""


async def test_hammering_admin_from_one_pc_does_not_keep_the_admin_out(edge_config):
    async with box(edge_config) as client:
        answers = [await sign_in(client, "admin", f"tebakan-{n}", ATTACKER) for n in range(50)]
        assert {answer.status for answer in answers} == {401}
        # The real admin, at the office PC, signs in at once.
        admin = await sign_in(client, "admin", PASSWORD, OFFICE_PC)
        assert admin.status == 303, alert(await admin.text())
        assert WAIT.search(await answers[-1].text()), "the attacker's PC waits"
        # Not even the right password opens the door from the attacker's PC meanwhile.
        client.session.cookie_jar.clear()
        again = await sign_in(client, "admin", PASSWORD, ATTACKER)
        assert again.status == 401 and WAIT.search(await again.text())
        # Every checked guess is in the trail under the admin's name; the refused ones
        # checked nothing and wrote nothing.
        rows, _ = await client.app[STORE].audit_log(actions=("login_failed",), limit=100)
        assert {(row.actor, row.address) for row in rows} == {("admin", ATTACKER)}
        assert len(rows) == 5


async def test_a_wait_reads_and_takes_the_same_for_a_name_nobody_has(edge_config):
    async with box(edge_config) as client:
        for name in ("admin", "bukan_siapa_siapa"):
            for _ in range(5):
                await sign_in(client, name, "bukan-sandinya", ATTACKER)

        async def answer(name: str) -> tuple[float, int, str]:
            started = time.perf_counter()
            page = await sign_in(client, name, "bukan-sandinya", ATTACKER)
            took = time.perf_counter() - started
            return took, page.status, alert(await page.text())

        # Taken in turns, so that a busy machine slows both alike; compared by the median.
        existing, unknown = [], []
        for _ in range(5):
            existing.append(await answer("admin"))
            unknown.append(await answer("bukan_siapa_siapa"))
        assert {a[1:] for a in existing} == {a[1:] for a in unknown}
        assert WAIT.fullmatch(existing[0][2])
        usual_existing = statistics.median(a[0] for a in existing)
        usual_unknown = statistics.median(a[0] for a in unknown)
        assert usual_unknown / 2 < usual_existing < usual_unknown * 2, (existing, unknown)


async def test_a_restart_does_not_end_the_wait(edge_config):
    async with box(edge_config) as client:
        for _ in range(5):
            await sign_in(client, "operator1", "bukan-sandinya", ATTACKER)
    async with box(edge_config) as client:  # the box restarted on the same database
        waiting = await sign_in(client, "operator1", PASSWORD, ATTACKER)
        assert waiting.status == 401 and WAIT.search(await waiting.text())
        elsewhere = await sign_in(client, "operator1", PASSWORD, OFFICE_PC)
        assert elsewhere.status == 303


async def test_the_admin_setting_a_new_password_lets_the_name_try_again(edge_config):
    async with box(edge_config) as client:
        for _ in range(5):
            await sign_in(client, "operator1", "bukan-sandinya", OFFICE_PC)
        csrf = await login(client, "admin")
        operator = {u.username: u for u in await auth.list_users(client.app[STORE])}["operator1"]
        new = "sawah-hijau-di-desa-7"
        reset = await client.post(
            f"/pengguna/{operator.id}/sandi",
            data={"csrf_token": csrf, "password": new, "password2": new},
        )
        assert reset.status == 200 and "Kata sandi operator1 diganti." in await reset.text()
        client.session.cookie_jar.clear()
        assert (await sign_in(client, "operator1", new, OFFICE_PC)).status == 303


async def test_a_weak_password_is_refused_next_to_the_field(edge_config):
    async with box(edge_config) as client:
        csrf = await login(client, "admin")
        for password, message in (
            ("pendek", "Kata sandi minimal 10 karakter."),
            ("Bismillah123", "Kata sandi ini terlalu umum dan mudah ditebak. Pilih yang lain."),
            ("indonesia2026", "Kata sandi ini terlalu umum dan mudah ditebak. Pilih yang lain."),
            ("siti.aminah-kuat-9", "Kata sandi tidak boleh memuat nama pengguna."),
            (
                "wanaherang-jaya-9",
                "Kata sandi tidak boleh memuat nama atau kode desa, kecamatan atau kabupaten.",
            ),
        ):
            form = {
                "csrf_token": csrf, "username": "siti.aminah", "full_name": "Siti Aminah",
                "role": "operator", "password": password, "password2": password,
            }  # fmt: skip
            refused = await client.post("/pengguna", data=form)
            page = await refused.text()
            assert refused.status == 422, password
            assert message in page, (password, page)
        users = {user.username for user in await auth.list_users(client.app[STORE])}
        assert "siti.aminah" not in users
