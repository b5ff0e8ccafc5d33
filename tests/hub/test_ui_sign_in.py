"""Signing in to the review UI and changing one's password, as district staff meet them
(issue 16): someone hammering ``admin`` from one PC cannot lock the real admin out, a wait
tells no account apart, a restart forgets nothing, a weak password is refused, and everyone
changes their own password on "Ganti kata sandi" (on SQLite and on PostgreSQL).

A test middleware takes the client's address from the ``X-Test-Remote`` header, so one test
client can be several PCs."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub import auth, db
from hub.config import HubConfig
from hub.roles import Role
from hub.store import HubStore
from hub.ui.base import SESSION_COOKIE
from hub.web import create_app

PASSWORD = "rahasia-kabupaten-1"
ATTACKER = "10.20.0.66"
OFFICE_PC = "10.20.0.10"
WAIT = re.compile(
    r"Terlalu banyak percobaan masuk dari perangkat ini\. Coba lagi dalam \d+ menit\."
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@web.middleware
async def _test_remote(request: web.Request, handler):
    remote = request.headers.get("X-Test-Remote")
    return await handler(request.clone(remote=remote) if remote else request)


@asynccontextmanager
async def hub(url: str, data_dir: Path) -> AsyncIterator[TestClient]:
    """The hub's app on the database at ``url`` (a fresh engine: a restarted process), with
    an admin and a verifier."""
    engine = db.create_engine(url)
    store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
    try:
        known = {user.username for user in await auth.list_users(store)}
        for username, role in (("admin", Role.ADMIN), ("rina", Role.VERIFIER)):
            if username not in known:
                await auth.create_user(
                    store, username=username, full_name=username.title(), role=role,
                    password=PASSWORD, actor="test",
                )  # fmt: skip
        config = HubConfig(data_dir=data_dir, district="3201")
        app = create_app(config, store, password=None, with_ingest=False)
        app.middlewares.insert(0, _test_remote)
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        await engine.dispose()


async def sign_in(client: TestClient, username: str, password: str, address: str = OFFICE_PC):
    page = await (await client.get("/masuk", headers={"X-Test-Remote": address})).text()
    csrf = _CSRF.search(page, page.index('action="/masuk"')).group(1)
    form = {"username": username, "password": password, "csrf_token": csrf, "next": "/"}
    return await client.post(
        "/masuk", data=form, headers={"X-Test-Remote": address}, allow_redirects=False
    )


def alert(page: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', page)
    return found.group(1) if found else ""


async def signed_in_csrf(client: TestClient, username: str, password: str = PASSWORD) -> str:
    client.session.cookie_jar.clear()
    answer = await sign_in(client, username, password)
    assert answer.status == 303, alert(await answer.text())
    return _CSRF.search(await (await client.get("/")).text()).group(1)


async def trail(url: str) -> list[tuple[str, str, str]]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            a = db.audit
            rows = await conn.execute(sa.select(a.c.actor, a.c.action, a.c.detail).order_by(a.c.id))
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


async def test_hammering_admin_from_one_pc_does_not_keep_the_admin_out(hub_url, tmp_path):
    async with hub(hub_url, tmp_path) as client:
        answers = [await sign_in(client, "admin", f"tebakan-{n}", ATTACKER) for n in range(50)]
        assert {answer.status for answer in answers} == {401}
        admin = await sign_in(client, "admin", PASSWORD, OFFICE_PC)
        assert admin.status == 303, alert(await admin.text())
        assert WAIT.search(await answers[-1].text()), "the attacker's PC waits"
    failed = [row for row in await trail(hub_url) if row[1] == "login.failed"]
    assert len(failed) == 5 and {actor for actor, _, _ in failed} == {"admin"}


async def test_a_wait_reads_and_takes_the_same_for_a_name_nobody_has(hub_url, tmp_path):
    async with hub(hub_url, tmp_path) as client:
        for name in ("admin", "bukan_siapa_siapa"):
            for _ in range(5):
                await sign_in(client, name, "bukan-sandinya", ATTACKER)

        async def answer(name: str) -> tuple[float, int, str]:
            started = time.perf_counter()
            page = await sign_in(client, name, "bukan-sandinya", ATTACKER)
            return time.perf_counter() - started, page.status, alert(await page.text())

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


async def test_a_restart_does_not_end_the_wait(hub_url, tmp_path):
    async with hub(hub_url, tmp_path) as client:
        for _ in range(5):
            await sign_in(client, "rina", "bukan-sandinya", ATTACKER)
    async with hub(hub_url, tmp_path) as client:  # a new process on the same database
        waiting = await sign_in(client, "rina", PASSWORD, ATTACKER)
        assert waiting.status == 401 and WAIT.search(await waiting.text())
        assert (await sign_in(client, "rina", PASSWORD, OFFICE_PC)).status == 303


async def test_the_admin_cannot_give_a_new_account_a_weak_password(hub_url, tmp_path):
    async with hub(hub_url, tmp_path) as client:
        csrf = await signed_in_csrf(client, "admin")
        for password, message in (
            ("bismillah", "Kata sandi minimal 10 karakter."),
            ("Indonesia2026!", "Kata sandi ini terlalu umum dan mudah ditebak. Pilih yang lain."),
            ("dewi-lestari-99", "Kata sandi tidak boleh memuat nama pengguna."),
            ("bogor-hujan-99", "Kata sandi tidak boleh memuat nama atau kode desa, kecamatan"),
        ):
            form = {
                "csrf_token": csrf, "username": "lestari", "full_name": "Dewi Lestari",
                "role": "verifikator", "password": password,
            }  # fmt: skip
            refused = await client.post("/pengguna", data=form)
            page = await refused.text()
            assert refused.status == 422, password
            assert re.search(r'id="password-pesan">' + re.escape(message), page), password
            assert 'id="password" name="password" type="password"' in page


async def test_everyone_changes_their_own_password(hub_url, tmp_path):
    new = "sawah-hijau-tiga-petak"
    async with hub(hub_url, tmp_path) as client:
        # Rina is signed in on a second PC too: its session cookie, kept aside.
        await signed_in_csrf(client, "rina")
        other_pc = {SESSION_COOKIE: client.session.cookie_jar.filter_cookies(
            client.make_url("/"))[SESSION_COOKIE].value}  # fmt: skip
        csrf = await signed_in_csrf(client, "rina")
        home = await (await client.get("/")).text()
        assert 'href="/ganti-sandi"' in home and "Ganti kata sandi" in home

        async def change(current: str, password: str, repeat: str | None = None):
            form = {"csrf_token": csrf, "current": current, "new": password,
                    "repeat": password if repeat is None else repeat}  # fmt: skip
            return await client.post("/ganti-sandi", data=form, allow_redirects=False)

        forged = await client.post(
            "/ganti-sandi", data={"current": PASSWORD, "new": new, "repeat": new}
        )
        assert forged.status == 403  # no CSRF token, no change
        wrong = await change("bukan-sandinya", new)
        assert wrong.status == 422
        assert 'id="current-pesan">Kata sandi sekarang salah.' in await wrong.text()
        weak = await change(PASSWORD, "qwerty12345")
        assert weak.status == 422
        assert 'id="new-pesan">Kata sandi ini terlalu umum' in await weak.text()
        mismatch = await change(PASSWORD, new, "sawah-hijau-tiga-petak!")
        assert 'id="repeat-pesan">Kedua kata sandi baru tidak sama.' in await mismatch.text()

        async with aiohttp.ClientSession(cookies=other_pc) as browser:
            alive = await browser.get(client.make_url("/antrian"), allow_redirects=False)
            assert alive.status == 200  # until the change
        done = await change(PASSWORD, new)
        assert done.status == 303 and done.headers["Location"] == "/ganti-sandi?pesan=diganti"
        shown = await client.get("/ganti-sandi?pesan=diganti")
        assert "Kata sandi Anda sudah diganti." in await shown.text()
        assert (await client.get("/antrian")).status == 200  # this browser stays signed in
        async with aiohttp.ClientSession(cookies=other_pc) as browser:
            ended = await browser.get(client.make_url("/antrian"), allow_redirects=False)
            assert ended.status == 303  # the other PC signs in again

        client.session.cookie_jar.clear()
        assert (await sign_in(client, "rina", PASSWORD)).status == 401
        assert (await sign_in(client, "rina", new)).status == 303
    actions = [(actor, action) for actor, action, _ in await trail(hub_url)]
    assert ("rina", "password.change_failed") in actions
    assert ("rina", "password.change") in actions
