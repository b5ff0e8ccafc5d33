"""Staff change their own password on the box: the current one is asked (and counted like
a sign-in when wrong), the new one follows the password rule, and other sessions end."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from edge import auth
from edge.web.app import SESSION_COOKIE
from tests.edge.api_client import store_of
from tests.edge.conftest import PASSWORD, login

NEW_PASSWORD = "kopi-jahe-hangat-7"


async def _change(client: TestClient, csrf: str, current: str, new: str, repeat: str):
    form = {"csrf_token": csrf, "current": current, "new": new, "repeat": repeat}
    return await client.post("/ganti-sandi", data=form)


async def test_an_operator_changes_their_own_password(client):
    store = store_of(client)
    operator = next(u for u in await auth.list_users(store) if u.username == "operator1")
    other_device = await auth.create_session(store, operator, "10.0.0.9")
    csrf = await login(client, "operator1")
    page = await (await client.get("/")).text()
    assert 'href="/ganti-sandi"' in page

    wrong = await _change(client, csrf, "bukan-sandi-ini", NEW_PASSWORD, NEW_PASSWORD)
    assert wrong.status == 422 and "Kata sandi sekarang salah." in await wrong.text()
    weak = await _change(client, csrf, PASSWORD, "password123", "password123")
    assert weak.status == 422 and 'id="new-pesan"' in await weak.text()
    mismatch = await _change(client, csrf, PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x")
    assert mismatch.status == 422 and "tidak sama" in await mismatch.text()
    assert await auth.user_for_session(store, other_device) is not None, "nothing changed yet"

    done = await _change(client, csrf, PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    assert done.status == 200 and "Kata sandi Anda sudah diganti." in await done.text()
    assert (await client.get("/")).status == 200, "this browser stays signed in"
    assert await auth.user_for_session(store, other_device) is None, "the other device is out"

    client.session.cookie_jar.clear()
    await login(client, "operator1", NEW_PASSWORD)
    assert SESSION_COOKIE in {c.key for c in client.session.cookie_jar}
    rows, _ = await store.audit_log(actions=("password_change_failed",))
    assert [row.actor for row in rows] == ["operator1"]
