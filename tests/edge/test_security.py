"""What an attacker on the office LAN (or a curious colleague) runs into: CSRF checks,
sign-in throttling, an audit trail of who viewed a household, no route without login, role
checks for tokens, revocation, security headers and a locked-down session cookie."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import sqlite3
import stat
import statistics
import time

import sqlalchemy as sa
from yarl import URL

from edge import auth, db
from edge.config import EdgeConfig
from edge.db import upgrade
from edge.store import Store
from edge.web.app import ROUTES, SESSION_COOKIE
from hub import db as hub_db
from tests.edge.api_client import household_body, store_of, token_headers, written
from tests.edge.conftest import PASSWORD, login
from tests.factories import DEFAULT_VILLAGE

UNKNOWN_ID = "01970000-0000-7000-8000-000000000000"
PUBLIC = {
    ("GET", "/masuk"),
    ("POST", "/masuk"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    # Public on purpose: the document describes the API's shape and holds no data.
    ("GET", "/api/v1/openapi.json"),
}


def _routes(client):
    return client.server.app[ROUTES].values()


def _url(path: str) -> str:
    return re.sub(r"{[a-z_]+}", UNKNOWN_ID, path)


async def _login_form(client, username: str, password: str):
    page = await (await client.get("/masuk")).text()
    form_csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"username": username, "password": password, "csrf_token": form_csrf, "next": "/"}
    return await client.post("/masuk", data=form, allow_redirects=False)


async def test_no_csrf_token_means_403_and_nothing_written(client):
    csrf = await login(client, "admin")
    unsafe = [r for r in _routes(client) if r.method != "GET" and not r.public]
    assert {r.path for r in unsafe} >= {"/keluar", "/api/v1/households"}
    before = await written(client)
    for route in unsafe:
        for token in (None, "salah"):
            form = {"csrf_token": token} if token else {}
            answer = await client.request(route.method, _url(route.path), data=form)
            assert answer.status == 403, (route.method, route.path, token)
    api_call = await client.post("/api/v1/households", json=household_body(2))
    assert api_call.status == 403
    assert (await api_call.json())["error"] == "forbidden"
    assert await written(client) == before

    # The same cookie call with the session's token goes through: the 403s were the CSRF.
    with_token = await client.post(
        "/api/v1/households", json=household_body(2), headers={"X-CSRF-Token": csrf}
    )
    assert with_token.status == 201, await with_token.text()


async def test_five_wrong_passwords_make_this_device_wait_for_that_name(client):
    for _ in range(5):
        answer = await _login_form(client, "operator1", "bukan-sandinya")
        assert answer.status == 401
    waiting = await _login_form(client, "operator1", PASSWORD)
    assert waiting.status == 401
    assert "Terlalu banyak percobaan masuk dari perangkat ini. Coba lagi dalam 1 menit." in (
        await waiting.text()
    )
    assert SESSION_COOKIE not in {c.key for c in client.session.cookie_jar}
    # Other accounts still log in from this device: the account is not locked, the name waits.
    assert (await _login_form(client, "kades", PASSWORD)).status == 303


async def test_a_viewer_of_a_household_is_in_the_audit_trail(client):
    operator = await token_headers(client, "operator1")
    created = await client.post("/api/v1/households", json=household_body(2), headers=operator)
    household_id = (await created.json())["id"]
    kades = await token_headers(client, "kades")
    assert (await client.get(f"/api/v1/households/{household_id}", headers=kades)).status == 200
    rows, _ = await store_of(client).audit_log(record_id=household_id)
    assert ("kades", "view") in [(row.actor, row.action) for row in rows]


async def test_no_route_answers_without_a_session_or_token(client):
    routes = list(_routes(client))
    assert {(r.method, r.path) for r in routes if r.public} == PUBLIC
    for headers in ({}, {"Authorization": "Bearer psk_tebakan"}):
        for route in routes:
            if route.public:
                continue
            answer = await client.request(
                route.method, _url(route.path), headers=headers, allow_redirects=False
            )
            where = (route.method, route.path, headers)
            if route.path.startswith("/api/"):
                assert answer.status == 401, where
                assert (await answer.json())["error"] == "unauthorized", where
            elif route.method == "GET":
                assert answer.status == 303, where
                assert answer.headers["Location"].startswith("/masuk?next="), where
            else:
                assert answer.status == 401, where


async def test_an_operator_token_cannot_call_admin_routes(client):
    operator = await token_headers(client, "operator1")
    closed = [r for r in _routes(client) if not r.public and auth.Role.OPERATOR not in r.roles]
    assert "/pengguna" in {r.path for r in closed}
    before = await written(client)
    for route in closed:
        answer = await client.request(route.method, _url(route.path), headers=operator)
        assert answer.status == 403, (route.method, route.path)
    assert await written(client) == before


async def test_a_revoked_token_stops_working(client):
    headers = await token_headers(client, "admin")
    assert (await client.get("/api/v1/sync/status", headers=headers)).status == 200
    store = store_of(client)
    token = next(t for t in await auth.list_api_tokens(store) if t.name == "test-admin")
    await auth.revoke_api_token(store, token.id, actor="admin")
    answer = await client.get("/api/v1/sync/status", headers=headers)
    assert answer.status == 401


async def test_security_headers_on_pages_api_and_errors(client):
    headers = await token_headers(client, "operator1")
    answers = [
        await client.get("/masuk"),
        await client.get("/api/v1/households", headers=headers),
        await client.get(f"/api/v1/households/{UNKNOWN_ID}", headers=headers),
        await client.get("/api/v1/households"),
        await client.get("/no-such-page"),
    ]
    for answer in answers:
        assert answer.headers["Server"] == "Puskesos", "no aiohttp version to look up"
        csp = answer.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_session_cookie_is_httponly_and_samesite_strict(client):
    answer = await _login_form(client, "operator1", PASSWORD)
    assert answer.status == 303
    cookie = next(
        c for c in answer.headers.getall("Set-Cookie") if c.startswith(f"{SESSION_COOKIE}=")
    )
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"].strip() == "SameSite=Strict"
    assert int(attributes["max-age"].split("=")[1]) > 0


#: Sign-in targets that have led browsers elsewhere (decoded once by the sign-in page and
#: once more by the form's post, a tab in "/<tab>/evil.com" is dropped: "//evil.com").
REDIRECT_ATTACKS = (
    "/%252509/evil.com", "/%2509/evil.com", "/%09/evil.com", "//evil.com", "/%2F/evil.com",
    "/%255C/evil.com", "/%5C/evil.com", "https://evil.com/", "/%0D%0ALocation:%20//evil.com",
)  # fmt: skip


def browser_target(location: str) -> str:
    """Where a browser goes for ``location``, as far as the host is concerned."""
    return location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")


async def signed_in_to(client, query: str, username: str, password: str) -> str:
    """Open the sign-in page with ``?next=`` as typed in ``query`` (sent as is), post its
    form back as a browser does, and return the Location the sign-in answers with."""
    page = await (await client.get(URL(f"/masuk?next={query}", encoded=True))).text()
    target = html.unescape(re.search(r'name="next" value="([^"]*)"', page).group(1))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"username": username, "password": password, "csrf_token": csrf, "next": target}
    answer = await client.post("/masuk", data=form, allow_redirects=False)
    assert answer.status == 303, await answer.text()
    client.session.cookie_jar.clear()
    return answer.headers["Location"]


async def test_a_sign_in_never_sends_the_browser_to_another_site(client):
    for attack in REDIRECT_ATTACKS:
        location = await signed_in_to(client, attack, "admin", PASSWORD)
        where = browser_target(location)
        assert where.startswith("/") and not where.startswith("//"), (attack, location)
    kept = await signed_in_to(client, "/rumah-tangga%3Fq%3DSiti%2520A", "admin", PASSWORD)
    assert kept == "/rumah-tangga?q=Siti%20A", "an ordinary target survives the round trip"


async def test_database_files_are_readable_by_their_owner_only(tmp_path):
    """Whatever the folder and the umask, and for a database made 0644 by a release
    before: the box's and the hub's SQLite files, with their write-ahead logs, are 0600."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        made_before = folder / "edge-old.sqlite"
        sqlite3.connect(made_before).close()
        assert stat.S_IMODE(made_before.stat().st_mode) == 0o644
        for path in (folder / "edge.sqlite", made_before):
            upgrade(path)
            store = Store(EdgeConfig(village=DEFAULT_VILLAGE, node="edge-a", database=path.name,
                                     data_dir=folder))  # fmt: skip
            await store.open()
            await auth.create_user(
                store, username="admin", full_name="Admin", role=auth.Role.ADMIN,
                password=PASSWORD, actor="test",
            )  # fmt: skip
            files = sorted(folder.glob(f"{path.name}*"))
            assert {f.name for f in files} >= {path.name, f"{path.name}-wal"}
            assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
                f.name: 0o600 for f in files
            }
            await store.close()
        hub_file = folder / "hub.sqlite"
        await asyncio.to_thread(hub_db.upgrade, f"sqlite+aiosqlite:///{hub_file}")
        assert stat.S_IMODE(hub_file.stat().st_mode) == 0o600
    finally:
        os.umask(old)


async def test_a_failed_sign_in_keeps_no_typed_name_and_a_wait_tells_no_name_apart(client):
    """A password typed into the user-name field is not written to the trail; a name made
    to wait answers as slowly, and in the same words, whether it has an account or not."""
    typed = "Rahasia-Sekali-99"
    assert (await _login_form(client, typed, "x")).status == 401
    assert (await _login_form(client, typed, "y")).status == 401
    store = store_of(client)
    rows, _ = await store.audit_log(actions=("login_failed",), limit=10)
    assert len(rows) == 2 and typed not in repr(rows) and typed.lower() not in repr(rows).lower()
    assert len({json.loads(r.detail)["name_sha256"] for r in rows}) == 1, "the same name twice"
    for _ in range(5):
        await _login_form(client, "operator1", "bukan-sandinya")
        await _login_form(client, "tidak-ada-orangnya", "bukan-sandinya")

    async def answer(username: str) -> tuple[float, str]:
        started = time.perf_counter()
        page = await _login_form(client, username, "bukan-sandinya")
        took = time.perf_counter() - started
        assert page.status == 401
        return took, re.search(r'role="alert">([^<]*)<', await page.text()).group(1)

    existing, unknown = [], []
    for _ in range(5):  # in turns, so that a busy machine slows both alike
        existing.append(await answer("operator1"))
        unknown.append(await answer("tidak-ada-orangnya"))
    assert (
        {text for _, text in existing}
        == {text for _, text in unknown}
        == {"Terlalu banyak percobaan masuk dari perangkat ini. Coba lagi dalam 1 menit."}
    )
    usual_existing = statistics.median(took for took, _ in existing)
    usual_unknown = statistics.median(took for took, _ in unknown)
    assert usual_unknown / 2 < usual_existing < usual_unknown * 2, existing + unknown


async def test_a_login_left_idle_ends_and_one_in_use_goes_on(client):
    """A browser left signed in on the office PC stops working after session_idle_s without
    a request; one in use keeps going (its idle clock written at most once a minute)."""
    await login(client, "operator1")
    store = store_of(client)
    idle_ms = store.config.session_idle_s * 1000

    async def last_seen(value: int | None = None) -> int:
        s = db.sessions
        if value is not None:
            await store.run_write(lambda conn: conn.execute(s.update().values(last_seen_ms=value)))
        return await store.read(lambda conn: conn.execute(sa.select(s.c.last_seen_ms)).scalar_one())

    await last_seen(store.now_ms() - 2 * 60_000)
    assert (await client.get("/", allow_redirects=False)).status == 200
    assert store.now_ms() - await last_seen() < 10_000, "the idle clock restarted"
    await last_seen(store.now_ms() - idle_ms - 1000)
    gone = await client.get("/", allow_redirects=False)
    assert gone.status == 303 and gone.headers["Location"].startswith("/masuk")
