"""The hub's review UI in-process: sign-in, roles per page, CSRF, the queue and its
decisions, conflicts, the audit trail (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from edge import auth as edge_auth
from edge.config import EdgeConfig
from edge.db import upgrade as edge_upgrade
from edge.store import Store as EdgeStore
from hub import auth, cycle, db, review
from hub.config import HubConfig
from hub.keys import generate_key_pair
from hub.progress import field_checks
from hub.roles import Role
from hub.store import HubStore
from hub.tokens import add_token
from hub.ui.base import PRE_CSRF_COOKIE, SESSION_COOKIE
from hub.web import create_app
from protocol.identity import mask_number
from puskesos import cli, logs
from tests.edge.test_security import REDIRECT_ATTACKS, browser_target, signed_in_to
from tests.factories import DEFAULT_VILLAGE
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family
from tests.hub.test_progress import district_with_visits

PASSWORD = "rahasia-kabupaten-1"
USERS = {
    "verif": Role.VERIFIER,
    "pimpinan": Role.LEADER,
    "admin": Role.ADMIN,
    "teknisi": Role.IT,
}
#: Who may open each page (GET); everyone else gets 403.
PAGES = {
    "/": set(USERS),
    "/antrian": {"verif", "pimpinan", "admin"},
    "/konflik": {"verif", "pimpinan", "admin"},
    "/duplikat": {"verif", "pimpinan", "admin"},
    "/periksa-lapangan": {"verif", "pimpinan", "admin"},
    "/posyandu": {"verif", "pimpinan", "admin"},
    "/siklus": {"verif", "pimpinan", "admin"},
    "/perangkat": {"teknisi", "admin"},
    "/audit": {"pimpinan", "admin"},
    "/pengguna": {"admin"},
}
OTHER_VILLAGE = "3201022002"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def client(hub_store: HubStore, tmp_path) -> AsyncIterator[TestClient]:
    for username, role in USERS.items():
        await auth.create_user(
            hub_store, username=username, full_name=username.title(), role=role,
            password=PASSWORD, actor="test",
        )  # fmt: skip
    config = HubConfig(data_dir=tmp_path, district="3201")
    app = create_app(config, hub_store, password=None, with_ingest=False)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def login_form(client: TestClient, username: str, password: str = PASSWORD):
    page = await (await client.get("/masuk")).text()
    token = _CSRF.search(page, page.index('action="/masuk"')).group(1)
    return await client.post(
        "/masuk",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        allow_redirects=False,
    )


async def login(client: TestClient, username: str) -> str:
    """Sign in as ``username``; returns the session's CSRF token."""
    client.session.cookie_jar.clear()
    answer = await login_form(client, username)
    assert answer.status == 303, await answer.text()
    return await csrf_of(client, "/")


async def csrf_of(client: TestClient, path: str) -> str:
    page = await client.get(path)
    assert page.status == 200, await page.text()
    return _CSRF.search(await page.text()).group(1)


async def audit_actions(store: HubStore) -> list[tuple[str, str, str]]:
    a = db.audit
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(a.c.actor, a.c.action, a.c.subject).order_by(a.c.id))
        return [tuple(row) for row in rows]


# --- sign-in and security --------------------------------------------------------------------


async def test_signing_in_and_out(client, hub_store):
    first = await client.get("/antrian", allow_redirects=False)
    assert first.status == 303 and first.headers["Location"].startswith("/masuk?next=/antrian")

    wrong = await login_form(client, "verif", "bukan-sandinya")
    assert wrong.status == 401 and "Nama pengguna atau kata sandi salah" in await wrong.text()
    csrf = await login(client, "verif")
    home = await client.get("/")
    assert "Ringkasan" in await home.text() and "Verif" in await home.text()
    # Signed in, one may still sign in as someone else from /masuk.
    assert (await login_form(client, "admin")).status == 303
    csrf = await login(client, "verif")

    out = await client.post("/keluar", data={"csrf_token": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/masuk"
    assert (await client.get("/", allow_redirects=False)).status == 303
    actions = [(actor, action) for actor, action, _ in await audit_actions(hub_store)]
    assert ("verif", "login.failed") in actions and ("verif", "login.ok") in actions


async def test_the_session_cookie_is_httponly_strict_and_only_hashed_in_the_database(
    client, hub_store
):
    answer = await login_form(client, "admin")
    cookie = answer.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    async with hub_store.engine.connect() as conn:
        stored = (await conn.execute(sa.select(db.sessions.c.token_hash))).scalars().all()
    assert cookie.value not in stored and len(stored) == 1 and len(stored[0]) == 64


async def test_served_over_https_the_cookies_are_marked_secure(client, hub_store, tmp_path):
    plain = await client.get("/masuk")
    assert "secure" not in plain.headers["Set-Cookie"].lower()  # the default: plain HTTP
    config = HubConfig(data_dir=tmp_path, district="3201", cookie_secure=True)
    app = create_app(config, hub_store, password=None, with_ingest=False)
    async with TestClient(TestServer(app)) as https:
        form = await https.get("/masuk")
        pre = form.cookies[PRE_CSRF_COOKIE]
        assert pre["secure"] and pre["httponly"]
        # The browser sends a Secure cookie back only over HTTPS; here it is sent by hand.
        answer = await https.post(
            "/masuk",
            data={"username": "admin", "password": PASSWORD, "csrf_token": pre.value},
            headers={"Cookie": f"{PRE_CSRF_COOKIE}={pre.value}"},
            allow_redirects=False,
        )
        assert answer.status == 303, await answer.text()
        session = answer.cookies[SESSION_COOKIE]
        assert session["secure"] and session["httponly"] and session["samesite"] == "Strict"


async def test_a_session_ends_after_half_an_hour_without_a_request(hub_store):
    now = [hub_store.wall()]
    store = HubStore(hub_store.engine, node="hub-1", max_clock_drift_ms=0, clock=lambda: now[0])
    user = await auth.create_user(
        store, username="rina", full_name="Rina", role=Role.VERIFIER, password=PASSWORD,
        actor="test",
    )  # fmt: skip
    token = await auth.create_session(store, user)
    for _ in range(3):  # in use: 20 minutes apart, still signed in after an hour
        now[0] += 20 * 60_000
        assert await auth.user_for_session(store, token) == user
    now[0] += auth.SESSION_IDLE_S * 1000 + 1
    assert await auth.user_for_session(store, token) is None


async def test_five_wrong_passwords_make_this_device_wait_for_that_name(client):
    for _ in range(5):
        assert (await login_form(client, "pimpinan", "salah-terus")).status == 401
    waiting = await login_form(client, "pimpinan")
    assert waiting.status == 401
    assert "Terlalu banyak percobaan masuk dari perangkat ini. Coba lagi dalam 1 menit." in (
        await waiting.text()
    )
    assert (await login_form(client, "admin")).status == 303  # others still sign in


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(client, hub_store):
    csrf = await login(client, "admin")
    form = {"username": "baru", "full_name": "Baru", "role": "it", "password": PASSWORD}
    for token in (None, "salah"):
        data = {**form, "csrf_token": token} if token else form
        answer = await client.post("/pengguna", data=data)
        assert answer.status == 403
        assert "Token formulir tidak sah" in await answer.text()
    assert "baru" not in {u.username for u in await auth.list_users(hub_store)}
    answer = await client.post("/pengguna", data={**form, "csrf_token": csrf})
    assert answer.status == 200 and "Pengguna ditambahkan" in await answer.text()


@pytest.mark.parametrize("username", sorted(USERS))
async def test_each_role_opens_its_pages_and_gets_403_elsewhere(client, username):
    await login(client, username)
    for path, allowed in PAGES.items():
        answer = await client.get(path, allow_redirects=False)
        if username in allowed:
            assert answer.status == 200, (username, path)
        else:
            assert answer.status == 403, (username, path)
            assert "Anda tidak berhak membuka halaman ini" in await answer.text()


async def test_the_access_log_names_the_signed_in_user(hub_store, tmp_path, caplog):
    await auth.create_user(
        hub_store, username="verif", full_name="Verif", role=Role.VERIFIER, password=PASSWORD,
        actor="test",
    )  # fmt: skip
    app = create_app(HubConfig(data_dir=tmp_path), hub_store, password=None, with_ingest=False)
    server = TestServer(app)
    access = logging.getLogger("puskesos.hub.access")
    await server.start_server(access_log_class=logs.AccessLogger, access_log=access)  # as served
    caplog.set_level(logging.INFO, logger=access.name)
    async with TestClient(server) as signed_in:
        await login(signed_in, "verif")
        assert (await signed_in.get("/antrian")).status == 200
    users = {(r.path, r.user) for r in caplog.records if r.name == "puskesos.hub.access"}
    assert ("/antrian", "verif") in users and ("/masuk", None) in users


async def test_pages_carry_security_headers(client):
    await login(client, "admin")
    for path in ("/", "/masuk", "/tidak-ada"):
        headers = (await client.get(path)).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"


async def test_api_tokens_open_no_page_and_sessions_open_no_api(client, hub_store, tmp_path):
    token = await add_token(hub_store, "dinsos")
    bearer = {"Authorization": f"Bearer {token}"}
    for path in PAGES:
        answer = await client.get(path, headers=bearer, allow_redirects=False)
        assert answer.status == 303 and answer.headers["Location"].startswith("/masuk")
    assert (await client.get("/api/v1/conflicts", headers=bearer)).status == 200

    await login(client, "admin")
    answer = await client.get("/api/v1/conflicts")
    assert answer.status == 401 and (await answer.json())["error"] == "unauthorized"

    # A village box's operator token is no credential at the hub.
    box = EdgeConfig(village=DEFAULT_VILLAGE, node="edge-a", data_dir=tmp_path / "box")
    edge_upgrade(box.database_path)
    edge_store = EdgeStore(box)
    await edge_store.open()
    try:
        operator = await edge_auth.create_user(
            edge_store, username="operator1", full_name="Operator", role=edge_auth.Role.OPERATOR,
            password=PASSWORD, actor="test",
        )  # fmt: skip
        edge_token = await edge_auth.create_api_token(edge_store, operator, "hp")
    finally:
        await edge_store.close()
    client.session.cookie_jar.clear()
    answer = await client.get(
        "/api/v1/records",
        params={"village": DEFAULT_VILLAGE},
        headers={"Authorization": f"Bearer {edge_token}"},
    )
    assert answer.status == 401


# --- the queue and decisions ------------------------------------------------------------------


async def test_the_queue_shows_old_and_new_and_a_decision_clears_it(client, hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, (head,) = await send_family(hub_store, box)
    csrf = await login(client, "verif")
    queue = await (await client.get("/antrian")).text()
    assert "Asep Saepudin" in queue and "Keluarga baru" in queue
    assert "Desa Wanaherang, Kec. Gunungputri" in queue, "villages by name, not code alone"
    summary = await (await client.get("/")).text()
    assert "Desa Wanaherang, Kec. Gunungputri" in summary

    approved = await client.post(
        f"/antrian/{household}", data={"csrf_token": csrf, "keputusan": "disetujui"}
    )
    assert approved.status == 200 and "Perubahan disetujui" in await approved.text()
    assert "Tidak ada perubahan yang menunggu" in await (await client.get("/antrian")).text()

    await change(hub_store, box, head, "member", occupation="Petani")
    page = await (await client.get(f"/antrian?desa={DEFAULT_VILLAGE}")).text()
    assert "Asep Saepudin" in page and "Keluarga baru" not in page
    detail = await (await client.get(f"/antrian/{household}")).text()
    rows = re.findall(r'<tr class="perubahan">(.*?)</tr>', detail, re.S)
    [occupation] = [r for r in rows if "Pekerjaan" in r or "Petani" in r]
    assert "Buruh harian lepas" in occupation and "Petani" in occupation
    assert "edge-a" in occupation
    assert ("verif", "household.view", household) in await audit_actions(hub_store)


async def test_the_verifier_reads_the_changes_as_labels_dates_and_names_not_codes(
    client, hub_store
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    await login(client, "verif")
    detail = await (await client.get(f"/antrian/{household}")).text()
    rows = {
        label: new
        for label, new in re.findall(
            r'<tr class="perubahan">\s*<td>([^<]+)</td>\s*<td>[^<]*</td>\s*'
            r"<td><strong>([^<]*)</strong></td>",
            detail,
        )
    }
    assert rows["Jenis lantai terluas"] == "Semen/bata merah"
    assert rows["Jenis kelamin"] == "Laki-laki"
    assert rows["Tanggal lahir"] == "17 Mei 1980"
    assert rows["Keluarga"] == "Keluarga Asep Saepudin"
    assert rows["Luas lantai (m²)"] == "36", "36.0 m² reads as Indonesians write it"
    for code in ("semen_bata_merah", "laki_laki", "1980-05-17", household, "36.0"):
        assert f"<strong>{code}</strong>" not in detail
    await change(hub_store, box, household, "household", floor_area_m2=36.5)
    detail = await (await client.get(f"/antrian/{household}")).text()
    assert "<td><strong>36,5</strong></td>" in detail


async def test_a_rejection_without_a_reason_is_refused_next_to_the_field(client, hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    csrf = await login(client, "verif")

    refused = await client.post(
        f"/antrian/{household}", data={"csrf_token": csrf, "keputusan": "ditolak", "alasan": " "}
    )
    assert refused.status == 422
    text = await refused.text()
    assert re.search(r'id="alasan-pesan">Alasan wajib diisi', text)
    assert "Asep Saepudin" in await (await client.get("/antrian")).text()  # nothing changed

    rejected = await client.post(
        f"/antrian/{household}",
        data={"csrf_token": csrf, "keputusan": "ditolak", "alasan": "NIK kepala salah ketik"},
    )
    assert "Perubahan ditolak" in await rejected.text()
    history = await (await client.get(f"/antrian/{household}")).text()
    assert "NIK kepala salah ketik" in history  # in the decision history
    assert "Tidak ada perubahan yang menunggu" in await (await client.get("/antrian")).text()
    decisions = [a for a in await audit_actions(hub_store) if a[1] == "review.decide"]
    assert decisions == [("verif", "review.decide", household)]


async def test_only_the_verifier_may_decide(client, hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    csrf = await login(client, "pimpinan")
    detail = await (await client.get(f"/antrian/{household}")).text()
    assert "Asep Saepudin" in detail and 'value="disetujui"' not in detail
    answer = await client.post(
        f"/antrian/{household}", data={"csrf_token": csrf, "keputusan": "disetujui"}
    )
    assert answer.status == 403
    assert "Asep Saepudin" in await (await client.get("/antrian")).text()


# --- conflicts, accounts, devices, audit ----------------------------------------------------


async def _conflict(store: HubStore) -> str:
    """Two boxes set one household's address at once; returns the household id."""
    one, two = Box("edge-a"), Box("edge-b")
    await enrol(store, one, two)
    household, _ = await send_family(store, one)
    now = store.wall()
    two.states[household] = one.states[household]
    for box, address in ((one, "Jl. Mawar 1"), (two, "Jl. Melati 2")):
        edit = box.edit(household, now, entity="household", address=address)
        await store.apply(box.batch(edit), box.node)
    assert len(await store.conflicts()) == 1
    return household


async def test_a_conflict_is_resolved_from_the_page(client, hub_store):
    await _conflict(hub_store)
    csrf = await login(client, "verif")
    page = await (await client.get("/konflik")).text()
    assert "Jl. Mawar 1" in page and "Jl. Melati 2" in page and "edge-b" in page
    [conflict] = await hub_store.conflicts()

    chosen = next(i for i, v in enumerate(conflict["versions"]) if v["value"] == "Jl. Melati 2")
    done = await client.post(
        f"/konflik/{conflict['id']}", data={"csrf_token": csrf, "pilih": str(chosen)}
    )
    assert done.status == 200 and "Konflik diselesaikan" in await done.text()
    assert "Tidak ada konflik terbuka" in await done.text()
    assert await hub_store.conflicts() == []
    assert any(a[1] == "conflict.resolve" for a in await audit_actions(hub_store))
    settled = await (await client.get("/konflik")).text()
    assert "Baru diselesaikan" in settled and "Nilai ditetapkan: Jl. Melati 2" in settled


async def test_a_conflict_a_later_save_in_the_village_settled_shows_as_settled(client, hub_store):
    household = await _conflict(hub_store)
    box = Box("edge-a")
    box.states[household] = (await hub_store.record_state(household)) or {}
    box.seq = 1_000  # after the batches _conflict sent
    later = box.edit(household, hub_store.wall() + 60_000, address="Jl. Mawar 3")
    await hub_store.apply(box.batch(later), "edge-a")
    await login(client, "verif")
    page = await (await client.get("/konflik")).text()
    assert "Tidak ada konflik terbuka" in page
    assert "Diselesaikan oleh simpanan baru di desa" in page and "edge-a" in page


async def test_a_typed_value_is_validated_before_it_resolves(client, hub_store):
    household = await _conflict(hub_store)
    csrf = await login(client, "verif")
    [conflict] = await hub_store.conflicts()
    url = f"/konflik/{conflict['id']}"
    too_long = await client.post(
        url, data={"csrf_token": csrf, "pilih": "baru", "nilai": "x" * 600}
    )
    assert too_long.status == 422
    assert re.search(
        r'class="field-error"[^>]*>Alamat paling banyak 200 karakter', await too_long.text()
    )
    assert len(await hub_store.conflicts()) == 1

    typed = await client.post(
        url, data={"csrf_token": csrf, "pilih": "baru", "nilai": "Jl. Kenanga 3"}
    )
    assert "Konflik diselesaikan" in await typed.text()
    [record] = [r for r in await hub_store.records(DEFAULT_VILLAGE) if r["id"] == household]
    assert record["values"]["address"] == "Jl. Kenanga 3"


async def test_the_admin_adds_and_deactivates_an_account(client, hub_store):
    csrf = await login(client, "admin")
    short = await client.post(
        "/pengguna",
        data={"csrf_token": csrf, "username": "rina", "full_name": "Rina", "role": "verifikator",
              "password": "pendek"},
    )  # fmt: skip
    assert short.status == 422 and re.search(
        r'id="password-pesan">Kata sandi minimal 10', await short.text()
    )
    added = await client.post(
        "/pengguna",
        data={"csrf_token": csrf, "username": "rina", "full_name": "Rina", "role": "verifikator",
              "password": PASSWORD},
    )  # fmt: skip
    assert "Pengguna ditambahkan" in await added.text()
    rina = next(u for u in await auth.list_users(hub_store) if u.username == "rina")

    await login(client, "rina")
    assert (await client.get("/antrian")).status == 200
    csrf = await login(client, "admin")
    await client.post(f"/pengguna/{rina.id}/status", data={"csrf_token": csrf, "aktif": "0"})
    assert (await login_form(client, "rina")).status == 401
    actions = await audit_actions(hub_store)
    assert ("admin", "user.create", "rina") in actions
    assert ("admin", "user.deactivate", "rina") in actions


async def test_devices_and_the_audit_trail_newest_first(client, hub_store):
    await enrol(hub_store, Box("edge-a"))
    await login(client, "teknisi")
    assert "edge-a" in await (await client.get("/perangkat")).text()
    await login(client, "pimpinan")
    trail = await (await client.get("/audit")).text()
    assert trail.index("pimpinan") < trail.index("teknisi")  # newest first
    assert "Masuk" in trail


async def test_the_audit_trail_names_households_and_labels_its_details(client, hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    csrf = await login(client, "verif")
    await client.get(f"/antrian/{household}")
    await client.post(f"/antrian/{household}", data={"csrf_token": csrf, "keputusan": "disetujui"})
    await login(client, "pimpinan")
    trail = await (await client.get("/audit")).text()
    [decided] = [r for r in re.findall(r"<tr>(.*?)</tr>", trail, re.S) if "Memutuskan" in r]
    assert "Keluarga Asep Saepudin" in decided and household not in decided
    assert "Keputusan: Disetujui" in decided and "decision" not in decided
    assert "Periode: " in decided and "Nomor keputusan: 1" in decided
    [viewed] = [r for r in re.findall(r"<tr>(.*?)</tr>", trail, re.S) if "Melihat data" in r]
    assert f"Desa: {DEFAULT_VILLAGE}" in viewed and "village" not in viewed
    assert "Peran: Pimpinan (kantor bupati)" in trail and "role:" not in trail  # accounts made


async def test_the_devices_page_says_which_box_keeps_no_audit_chain_and_where_one_broke(
    client, hub_store
):
    from hub.auditchain import receive
    from protocol.auditchain import GENESIS, AuditBatch, AuditEntry, seal

    await enrol(hub_store, Box("edge-a"), Box("edge-b"))
    first = seal(GENESIS, AuditEntry(1, 1_000, "admin", "login", None, None, "{}", ""))
    second = seal(first.hash, AuditEntry(2, 2_000, "admin", "view", None, None, "{}", ""))
    tampered = AuditBatch("edge-b", (first, replace(second, actor="orang lain")))
    await receive(hub_store, "edge-b", tampered, grace_ms=0)
    await login(client, "teknisi")
    page = await (await client.get("/perangkat")).text()
    row_a = page[page.index("edge-a") : page.index("edge-b")]
    row_b = page[page.index("edge-b") :]
    assert "Tidak ada rantai audit" in row_a
    assert "Rusak" in row_b and "entri #2 tidak cocok dengan sebelumnya" in row_b


# --- duplicates and the monthly cycle -------------------------------------------------------


async def test_the_verifier_keeps_one_of_two_members_with_the_same_nik(client, hub_store):
    one, two = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, one, two)
    first, (head,) = await send_family(hub_store, one)
    [stored] = [r for r in await hub_store.records(DEFAULT_VILLAGE) if r["id"] == head]
    nik, born = stored["values"]["nik"], stored["values"]["birth_date"]
    second, _ = await send_family(
        hub_store, two, head="Dewi Lestari", Asep={"nik": nik, "birth_date": born}
    )
    csrf = await login(client, "verif")
    page = await (await client.get("/duplikat")).text()
    assert mask_number(nik) in page and OTHER_VILLAGE in page
    assert nik not in page, "a list shows the NIK masked, as the box does"
    assert "checked" not in page, "nothing is chosen beforehand"
    assert f'href="/antrian/{first}"' in page and f'href="/antrian/{second}"' in page
    queue = await (await client.get("/antrian")).text()
    [kk] = [
        r["values"]["kk_number"]
        for r in await hub_store.records(DEFAULT_VILLAGE)
        if r["values"].get("kk_number")
    ]
    assert kk not in queue and mask_number(kk) in queue

    async def statuses() -> list[str]:
        records = await hub_store.records(DEFAULT_VILLAGE) + await hub_store.records(OTHER_VILLAGE)
        return sorted(r["values"]["status"] for r in records if r["values"].get("nik") == nik)

    group = re.search(r'name="kelompok" value="([^"]+)"', page).group(1)
    unchosen = await client.post("/duplikat", data={"csrf_token": csrf, "kelompok": group})
    assert unchosen.status == 422
    assert f'id="pertahankan-{group}-pesan">Pilih data yang dipertahankan' in await unchosen.text()

    ask = await client.post("/duplikat", data={"csrf_token": csrf, "pertahankan": head})
    text = await ask.text()
    assert ask.status == 200 and "Pertahankan data Asep Saepudin?" in text
    assert f'href="/antrian/{first}">Keluarga Asep Saepudin' in text
    assert f'href="/antrian/{second}">Keluarga Dewi Lestari' in text
    assert 'name="konfirmasi" value="ya"' in text and 'href="/duplikat">Batal' in text
    assert await statuses() == ["aktif", "aktif"]  # nothing marked yet

    kept = await client.post(
        "/duplikat", data={"csrf_token": csrf, "pertahankan": head, "konfirmasi": "ya"}
    )
    assert "Data ganda ditandai" in await kept.text()
    assert "Tidak ada NIK ganda" in await kept.text()
    assert await statuses() == ["aktif", "ganda"]
    [other] = [r for r in await hub_store.records(OTHER_VILLAGE) if r["values"].get("nik") == nik]
    assert other["values"]["status"] == "ganda"


def confirmed(csrf: str) -> dict[str, str]:
    """A cycle step's form as its confirmation page posts it."""
    return {"csrf_token": csrf, "konfirmasi": "ya"}


def _buttons(page: str) -> set[str]:
    return set(re.findall(r'<button type="submit"[^>]*>([^<]+)</button>', page)) - {"Keluar"}


async def test_the_cycle_moves_by_the_buttons_each_role_may_use(client, hub_store, tmp_path):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    csrf = await login(client, "verif")
    await client.post(f"/antrian/{household}", data={"csrf_token": csrf, "keputusan": "disetujui"})

    page = await (await client.get("/siklus")).text()
    assert "Terbuka" in page and _buttons(page) == {"Bekukan sekarang"}
    period = re.search(r'action="/siklus/([0-9-]+)/bekukan"', page).group(1)
    # A verifier cannot sign: no button, and the request is refused.
    assert (await client.post(f"/siklus/{period}/tandatangani", data=confirmed(csrf))).status == 403

    frozen = await client.post(f"/siklus/{period}/bekukan", data=confirmed(csrf))
    assert "Periode dibekukan" in await frozen.text()
    again = await client.post(f"/siklus/{period}/bekukan", data=confirmed(csrf))
    assert again.status == 409 and "hanya dapat dibekukan selagi terbuka" in await again.text()
    submitted = await client.post(f"/siklus/{period}/ajukan", data=confirmed(csrf))
    assert "Periode diajukan ke pimpinan" in await submitted.text()

    csrf = await login(client, "pimpinan")
    page = await (await client.get("/siklus")).text()
    assert "Ditinjau pimpinan" in page
    assert {"Kembalikan desa", "Tandatangani"} <= _buttons(page)
    section = page[page.index(f'id="periode-{period}"') :]
    assert re.search(r"<td>1</td>", section)  # the village's household, counted at the freeze
    no_note = await client.post(
        f"/siklus/{period}/kembalikan", data={"csrf_token": csrf, "desa": DEFAULT_VILLAGE}
    )
    assert no_note.status == 422
    assert 'id="catatan-pesan">Catatan pengembalian wajib diisi' in await no_note.text()

    generate_key_pair(tmp_path / "signing.key")
    signed = await client.post(f"/siklus/{period}/tandatangani", data=confirmed(csrf))
    assert "Periode ditandatangani" in await signed.text(), await signed.text()
    assert "Ditandatangani" in await signed.text()

    await login(client, "admin")
    page = await (await client.get("/siklus")).text()
    assert "Coba kirim lagi" in _buttons(page)
    actions = [a[1] for a in await audit_actions(hub_store)]
    assert {"cycle.freeze", "cycle.submit", "cycle.sign"} <= set(actions)
    trail = await (await client.get("/audit")).text()
    assert "Menandatangani periode" in trail and "Membekukan periode" in trail


async def test_freeze_submit_and_sign_ask_first_and_warn_of_undecided_households(
    client, hub_store, tmp_path
):
    box, elsewhere = Box("edge-a"), Box("edge-b", village="3201022002")
    await enrol(hub_store, box, elsewhere)
    decided, _ = await send_family(hub_store, box)
    await send_family(hub_store, box, head="Dewi Lestari")  # left undecided
    await send_family(hub_store, elsewhere, head="Ujang Saepudin")  # its village: nothing yet
    csrf = await login(client, "verif")
    await client.post(f"/antrian/{decided}", data={"csrf_token": csrf, "keputusan": "disetujui"})
    page = await (await client.get("/siklus")).text()
    period = re.search(r'action="/siklus/([0-9-]+)/bekukan"', page).group(1)

    async def state() -> str:
        found = await cycle.get(hub_store.engine, period)
        return found.state.label

    ask = await client.post(f"/siklus/{period}/bekukan", data={"csrf_token": csrf})
    text = await ask.text()
    assert ask.status == 200 and f"Bekukan periode {period}?" in text
    assert "1 keluarga dari 1 desa" in text and DEFAULT_VILLAGE in text
    assert 'name="konfirmasi" value="ya"' in text and "Ya, bekukan" in _buttons(text)
    assert f'href="/siklus#periode-{period}">Batal</a>' in text
    assert await state() == "Terbuka"
    await client.post(f"/siklus/{period}/bekukan", data=confirmed(csrf))
    assert await state() == "Dibekukan"
    # Three families at the hub, one in the period's data: both pages say why they differ.
    cycle_page = await (await client.get("/siklus")).text()
    assert "hanya keluarga yang sudah disetujui" in cycle_page.split(f'id="arti-rekap-{period}"')[1]
    summary = await (await client.get("/")).text()
    assert "termasuk yang masih menunggu verifikasi" in summary

    ask = await client.post(f"/siklus/{period}/ajukan", data={"csrf_token": csrf})
    text = await ask.text()
    assert f"Ajukan periode {period} ke pimpinan?" in text
    assert "2 keluarga masih menunggu keputusan verifikasi" in text
    assert await state() == "Dibekukan"
    await client.post(f"/siklus/{period}/ajukan", data=confirmed(csrf))
    assert await state() == "Ditinjau pimpinan"

    csrf = await login(client, "pimpinan")
    generate_key_pair(tmp_path / "signing.key")
    ask = await client.post(f"/siklus/{period}/tandatangani", data={"csrf_token": csrf})
    text = await ask.text()
    assert f"Tandatangani periode {period}?" in text and "1 keluarga dari 1 desa" in text
    assert "menunggu keputusan" not in text
    assert await state() == "Ditinjau pimpinan"
    signed = await client.post(f"/siklus/{period}/tandatangani", data=confirmed(csrf))
    assert "Periode ditandatangani" in await signed.text()
    assert await state() == "Ditandatangani"


async def test_after_an_early_freeze_the_summary_names_the_period_the_cycle_page_opens(client):
    csrf = await login(client, "verif")
    page = await (await client.get("/siklus")).text()
    frozen = re.search(r'action="/siklus/([0-9-]+)/bekukan"', page).group(1)
    await client.post(f"/siklus/{frozen}/bekukan", data=confirmed(csrf))
    page = await (await client.get("/siklus")).text()
    [open_period] = re.findall(r'Periode ([0-9-]+) · <span class="status">Terbuka', page)
    assert open_period != frozen
    summary = await (await client.get("/")).text()
    assert f"Periode berjalan: {open_period} " in summary


# --- the command line ----------------------------------------------------------------------


def test_init_makes_the_session_key_and_user_add_makes_an_account_that_signs_in(
    tmp_path, capsys, monkeypatch
):
    config = tmp_path / "hub.toml"
    data = tmp_path / "data"
    assert cli.main(["hub", "init", "--config", str(config), "--data-dir", str(data)]) == 0
    assert (data / "session.secret").stat().st_mode & 0o777 == 0o600
    add = ["hub", "user", "add", "--config", str(config), "--username", "rina",
           "--role", "verifikator", "--full-name", "Rina Marlina"]  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO("pendek\n"))
    assert cli.main(add) == 2
    assert "at least 10 characters (Kata sandi minimal 10" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(add) == 0
    capsys.readouterr()
    assert cli.main(["hub", "user", "list", "--config", str(config)]) == 0
    assert "rina\tverifikator\tactive\tRina Marlina" in capsys.readouterr().out

    async def sign_in() -> bool:
        engine = db.create_engine(f"sqlite+aiosqlite:///{data / 'hub.sqlite'}")
        store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
        try:
            result = await auth.authenticate(store, "rina", PASSWORD, "", lockout_s=900)
            return result.user is not None and result.user.role is Role.VERIFIER
        finally:
            await engine.dispose()

    assert asyncio.run(sign_in())


async def test_ringkasan_and_the_field_check_list_show_what_the_boxes_found(
    hub_store: HubStore, client
):
    ids = await district_with_visits(hub_store)
    for household_id in (ids["gone"], ids["lacking"]):
        await review.decide(
            hub_store, household_id, "periksa_lapangan", "Alamat tidak jelas", "verif",
            period="2026-11",
        )  # fmt: skip
    checks = await field_checks(hub_store, DEFAULT_VILLAGE)
    assert {c.id for c in checks} == {ids["gone"], ids["lacking"]}
    found = {c.id: c for c in checks}
    assert [v["outcome"] for v in found[ids["gone"]].visits] == ["tidak_ditemukan"]
    assert found[ids["lacking"]].visits == []
    assert found[ids["gone"]].head["name"] == "Joko Susilo"

    await login(client, "verif")
    summary = await (await client.get("/")).text()
    row = summary.split(f"?desa={DEFAULT_VILLAGE}")[1].split("</tr>")[0]
    assert "2 dari 4" in row
    page = await (await client.get("/periksa-lapangan", params={"desa": DEFAULT_VILLAGE})).text()
    assert "2 rumah tangga perlu periksa lapangan; 1 sudah dikunjungi" in page
    assert "data-cetak" in page  # a Cetak button (cetak.js shows it)
    listed = page.split('id="daftar-periksa"')[1]
    assert "Joko Susilo" in listed and "Tidak ditemukan (Petugas Desa)" in listed
    assert "Budi Santoso" in listed and "belum dikunjungi" in listed
    assert "Siti Aminah" not in listed
    none = await (await client.get("/periksa-lapangan", params={"desa": "9999999999"})).text()
    assert 'id="daftar-periksa"' not in none


async def test_a_sign_in_never_sends_the_browser_to_another_site(client):
    for attack in REDIRECT_ATTACKS:
        location = await signed_in_to(client, attack, "admin", PASSWORD)
        where = browser_target(location)
        assert where.startswith("/") and not where.startswith("//"), (attack, location)
    assert await signed_in_to(client, "/antrian%3Fdesa%3D3201022001", "admin", PASSWORD) == (
        "/antrian?desa=3201022001"
    )
