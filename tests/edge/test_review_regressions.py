"""Defects a review found, each kept as the story of what must not happen again."""

from __future__ import annotations

import asyncio
import html
import sqlite3

from edge import auth
from edge.backup import backup, restore
from edge.records import Edit
from edge.store import Store
from tests.edge.api_client import household_body, store_of, token_headers
from tests.edge.conftest import PASSWORD, _hidden, login

API = "/api/v1"


def views(config, record_id: str) -> int:
    with sqlite3.connect(config.database_path) as conn:
        sql = "SELECT count(*) FROM audit WHERE action = 'view' AND record_id = ?"
        return conn.execute(sql, (record_id,)).fetchone()[0]


async def registered(client) -> tuple[dict, dict]:
    headers = await token_headers(client, "admin")
    body = household_body(3)
    answer = await client.post(f"{API}/households", json=body, headers=headers)
    assert answer.status == 201, await answer.text()
    return await answer.json(), body


async def test_the_edit_form_shows_full_numbers_and_is_audited(client, edge_config):
    created, body = await registered(client)
    await login(client, "operator1")
    before = views(edge_config, created["id"])
    page = await client.get(f"/rumah-tangga/{created['id']}/ubah")
    assert body["household"]["kk_number"] in await page.text()
    assert views(edge_config, created["id"]) == before + 1


async def test_a_patch_that_answers_with_the_household_is_audited(client, edge_config):
    created, _ = await registered(client)
    member = next(r for r in created["records"] if r["entity"] == "member")
    headers = await token_headers(client, "operator1")
    before = views(edge_config, created["id"])
    answer = await client.patch(
        f"{API}/members/{member['id']}", json={"member": {}}, headers=headers
    )
    assert answer.status == 200
    answer = await client.patch(f"{API}/households/{created['id']}", json={}, headers=headers)
    assert answer.status == 200
    assert views(edge_config, created["id"]) == before + 2


async def test_a_complaint_shown_in_full_is_audited(client, edge_config):
    headers = await token_headers(client, "operator1")
    complaint = {"channel": "sms", "category": "lainnya", "chronology": "Nama pelapor: Ibu Ani"}
    answer = await client.post(f"{API}/complaints", json={"complaint": complaint}, headers=headers)
    assert answer.status == 201, await answer.text()
    complaint_id = (await answer.json())["id"]
    await client.get(f"{API}/complaints/{complaint_id}", headers=headers)
    await login(client, "operator1")
    await client.get(f"/pengaduan/{complaint_id}")
    assert views(edge_config, complaint_id) == 2


async def test_a_login_link_cannot_send_people_to_another_site(client):
    for sneaky in (
        "/%09/evil.example",
        "//evil.example",
        "/%0a/evil.example",
        "https://evil.example",
    ):
        page = await client.get(f"/masuk?next={sneaky}")
        text = await page.text()
        answer = await client.post(
            "/masuk",
            data={
                "username": "operator1",
                "password": PASSWORD,
                "csrf_token": _hidden(text, "csrf_token"),
                "next": html.unescape(_hidden(text, "next")),
            },
            allow_redirects=False,
        )
        assert answer.status == 303
        assert answer.headers["Location"] == "/", sneaky


async def test_the_login_redirect_keeps_the_whole_address(client):
    answer = await client.get("/rumah-tangga?q=siti&page=2", allow_redirects=False)
    assert answer.status == 303
    page = await client.get(answer.headers["Location"])
    assert html.unescape(_hidden(await page.text(), "next")) == "/rumah-tangga?q=siti&page=2"


async def test_odd_page_numbers_show_the_first_page(client):
    await login(client, "operator1")
    for page in ("%C2%B2", "99999999999999999999", "-1", "abc"):
        assert (await client.get(f"/rumah-tangga?page={page}")).status == 200
        assert (await client.get(f"/pengaduan?page={page}")).status == 200


async def test_parallel_wrong_passwords_all_count_towards_the_wait(client, edge_config):
    store = store_of(client)
    await asyncio.gather(
        *[auth.authenticate(store, "operator1", "salah-sandi", "10.0.0.9") for _ in range(6)]
    )
    right = await auth.authenticate(store, "operator1", PASSWORD, "10.0.0.9")
    assert right.user is None and right.refused_ms > 0


async def test_restore_never_takes_the_clock_back(edge_config, tmp_path):
    wall = [1_800_000_000_000]
    store = Store(edge_config, clock=lambda: wall[0])
    record = "01970000-0000-7000-8000-0000000000a1"
    await store.open()
    await store.write([Edit("complaint", record, {"status": "baru"})], actor="op")
    await store.close()
    copy = backup(edge_config, tmp_path / "backup.sqlite")
    wall[0] += 3_600_000
    await store.open()
    await store.write([Edit("complaint", record, {"status": "diproses"})], actor="op")
    issued = store.clock.state
    await store.close()
    restore(edge_config, copy)
    wall[0] = 1_800_000_000_000  # rebooted without an RTC, near the backup's time
    rebooted = Store(edge_config, clock=lambda: wall[0])
    await rebooted.open()
    assert rebooted.clock.now(wall[0]).time > issued
    await rebooted.close()


async def test_a_restored_box_asks_the_hub_for_a_fresh_down_stream(edge_config, tmp_path):
    store = Store(edge_config)
    await store.open()
    await store.set_meta("down_applied", "[7, []]")
    await store.close()
    copy = backup(edge_config, tmp_path / "backup.sqlite")
    restore(edge_config, copy)
    first = Store(edge_config)
    await first.open()
    epoch = await first.get_meta("epoch")
    assert epoch and await first.get_meta("down_applied") is None
    assert await first.get_meta("clean_session") == "1"  # the broker's old session goes
    await first.close()
    restore(edge_config, copy)  # every restore is a new epoch
    second = Store(edge_config)
    await second.open()
    assert await second.get_meta("epoch") not in (None, epoch)
    await second.close()
