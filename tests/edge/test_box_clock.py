"""A box whose clock says 1970 still saves: dates are checked against the best time the box
knows (its wall clock, its persisted hybrid clock, a date an admin confirmed), and while its
own clock is wrong a date after that is a warning to confirm, never a refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient, TestServer

from edge import auth
from edge.boxtime import SOFTWARE_DATE, Confirmation, best_time
from edge.config import EdgeConfig
from edge.store import Store, wall_ms
from edge.web.app import create_app
from protocol.clock import pack
from tests.edge.api_client import household_body, store_of, token_headers
from tests.edge.conftest import PASSWORD, login
from tests.factories import DEFAULT_VILLAGE, make_nik

API = "/api/v1"
ZONE = ZoneInfo("Asia/Jakarta")
DRIFT = 5 * 60 * 1000
#: A box without an RTC, three minutes after it booted.
BOOTED_IN_1970 = 180_000
#: A baby registered this year: after the first day of the software, before today.
BABY_BORN = "2026-06-10"


def ms_of(day: date, hour: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=ZONE).timestamp() * 1000)


@asynccontextmanager
async def box(config: EdgeConfig, wall: Callable[[], int]) -> AsyncIterator[TestClient]:
    """The box's app on its database, its wall clock reading ``wall()``; an operator and an
    admin account exist."""
    app = create_app(config, store=Store(config, clock=wall))
    async with TestClient(TestServer(app)) as client:
        store = store_of(client)
        known = {user.username for user in await auth.list_users(store)}
        for username, role in (("operator1", auth.Role.OPERATOR), ("admin", auth.Role.ADMIN)):
            if username not in known:
                await auth.create_user(
                    store, username=username, full_name=username.title(), role=role,
                    password=PASSWORD, actor="test",
                )  # fmt: skip
        yield client


def with_baby(body: dict, born: str = BABY_BORN) -> dict:
    """The household body with a newborn child (its NIK made for its birth date)."""
    baby = dict(body["members"][-1])
    baby.update(
        name="Bayi Nurhayati",
        relation_to_head="anak",
        sex="perempuan",
        birth_date=born,
        nik=make_nik(born, "perempuan", DEFAULT_VILLAGE[:6], serial=77),
        marital_status="belum_kawin",
        education="tidak_belum_sekolah",
        occupation=None,
    )
    return {**body, "members": [*body["members"], baby]}


def codes(fields: dict) -> set[tuple[str, str, str]]:
    return {(field, i["code"], i["level"]) for field, found in fields.items() for i in found}


async def test_a_box_rebooted_to_1970_saves_a_households_notes_by_its_hybrid_clock(edge_config):
    async with box(edge_config, wall_ms) as client:
        headers = await token_headers(client, "operator1")
        created = await client.post(f"{API}/households", json=household_body(4), headers=headers)
        assert created.status == 201, await created.text()
        household_id = (await created.json())["id"]

    # Power cut: no RTC, the wall clock restarts at 1970; the persisted clock remembers 2026.
    async with box(edge_config, lambda: BOOTED_IN_1970) as client:
        headers = await token_headers(client, "operator1")
        change = {"household": {"notes": "Rumah direnovasi"}}
        patched = await client.patch(
            f"{API}/households/{household_id}", json=change, headers=headers
        )
        assert patched.status == 200, await patched.text()
        assert (await patched.json())["warnings"] == {}
        assert store_of(client).box_time().today >= date(2026, 11, 24)
        csrf = await login(client, "admin")
        older = await client.post("/jam", data={"tanggal": "2026-02-01", "csrf_token": csrf})
        assert older.status == 422 and "sudah tahu tanggal yang lebih baru" in await older.text()


async def test_a_box_in_1970_that_knows_nothing_saves_a_newborn_with_a_warning(edge_config):
    async with box(edge_config, lambda: BOOTED_IN_1970) as client:
        headers = await token_headers(client, "operator1")
        body = with_baby(household_body(3))
        first = await client.post(f"{API}/households", json=body, headers=headers)
        assert first.status == 409, await first.text()  # a warning to confirm, not a refusal
        fields = (await first.json())["fields"]
        assert codes(fields) == {("members[3].birth_date", "date_after_box_clock", "warning")}
        message = fields["members[3].birth_date"][0]["message"]
        assert "01-01-2026" in message and "Jam perangkat ini mungkin salah" in message

        saved = await client.post(
            f"{API}/households", json={**body, "confirm_warnings": True}, headers=headers
        )
        assert saved.status == 201, await saved.text()
        result = await saved.json()
        assert codes(result["warnings"]) == {
            ("members[3].birth_date", "date_after_box_clock", "warning")
        }
        births = {r["values"].get("birth_date") for r in result["records"]}
        assert BABY_BORN in births
        rows, _ = await store_of(client).audit_log(actions=["confirm_warnings"])
        assert '"date_after_box_clock"' in rows[0].detail


async def test_an_admin_confirms_todays_date_and_later_saves_use_it(edge_config):
    async with box(edge_config, lambda: BOOTED_IN_1970) as client:
        csrf = await login(client, "admin")
        home = await (await client.get("/")).text()
        assert "tampak salah" in home and 'href="/jam"' in home
        page = await client.get("/jam")
        assert page.status == 200 and "1 Januari 2026" in await page.text()

        refused = await client.post("/jam", data={"tanggal": "", "csrf_token": csrf})
        assert refused.status == 422
        assert 'id="tanggal-pesan">Tanggal hari ini wajib diisi.' in await refused.text()
        too_early = await client.post("/jam", data={"tanggal": "1970-01-01", "csrf_token": csrf})
        assert too_early.status == 422 and "lebih awal" in await too_early.text()
        no_token = await client.post("/jam", data={"tanggal": "2026-08-01"})
        assert no_token.status == 403

        confirmed = await client.post("/jam", data={"tanggal": "2026-08-01", "csrf_token": csrf})
        assert confirmed.status == 200, await confirmed.text()
        text = await confirmed.text()
        assert "Tanggal hari ini dikonfirmasi." in text and "1 Agustus 2026" in text
        rows, _ = await store_of(client).audit_log(actions=["clock_confirm"])
        assert rows[0].actor == "admin" and '"day": "2026-08-01"' in rows[0].detail

    # After a restart (the wall clock in 1970 again) the confirmed date still holds.
    async with box(edge_config, lambda: BOOTED_IN_1970) as client:
        assert store_of(client).box_time().today == date(2026, 8, 1)
        headers = await token_headers(client, "operator1")
        born_before = with_baby(household_body(3, seed=5))
        saved = await client.post(f"{API}/households", json=born_before, headers=headers)
        assert saved.status == 201, await saved.text()  # before 1 August: nothing to confirm
        born_after = with_baby(household_body(3, seed=6), born="2026-09-01")
        later = await client.post(f"{API}/households", json=born_after, headers=headers)
        assert later.status == 409
        fields = (await later.json())["fields"]
        assert codes(fields) == {("members[3].birth_date", "date_after_box_clock", "warning")}
        assert "01-08-2026" in fields["members[3].birth_date"][0]["message"]


async def test_only_an_admin_confirms_the_date(edge_config):
    async with box(edge_config, lambda: BOOTED_IN_1970) as client:
        csrf = await login(client, "operator1")
        assert (await client.get("/jam")).status == 403
        posted = await client.post("/jam", data={"tanggal": "2026-08-01", "csrf_token": csrf})
        assert posted.status == 403
        home = await (await client.get("/")).text()
        assert "tampak salah" in home and "Minta admin" in home


async def test_a_box_with_a_right_clock_still_refuses_a_birth_date_after_today(edge_config):
    async with box(edge_config, wall_ms) as client:
        headers = await token_headers(client, "operator1")
        tomorrow = (store_of(client).box_time().today + timedelta(days=1)).isoformat()
        body = with_baby(household_body(3), born=tomorrow)
        answer = await client.post(f"{API}/households", json=body, headers=headers)
        assert answer.status == 422, await answer.text()
        fields = (await answer.json())["fields"]
        assert ("members[3].birth_date", "date_in_future", "error") in codes(fields)
        assert store_of(client).box_time().trusted
        await login(client, "admin")
        assert "tampak salah" not in await (await client.get("/")).text()


# --- the best time, as a rule ---------------------------------------------------------------


def best(wall: int, clock_ms: int = 0, confirmation: Confirmation | None = None):
    return best_time(
        wall, pack(clock_ms, 0), confirmation, max_drift_ms=DRIFT, timezone="Asia/Jakarta"
    )


def test_a_right_wall_clock_is_trusted():
    now = ms_of(date(2026, 12, 4), 10)
    assert best(now, now - 1000) == best(now)
    assert best(now).trusted and best(now).today == date(2026, 12, 4)


def test_the_hybrid_clock_ahead_of_the_wall_clock_wins_and_distrusts_it():
    wall = ms_of(date(2026, 12, 4), 10)
    found = best(wall, wall + DRIFT + 1)
    assert not found.trusted and found.ms == wall + DRIFT + 1
    assert best(wall, wall + DRIFT).trusted  # within the drift: only a slow clock


def test_a_wall_clock_before_the_software_existed_is_never_trusted():
    found = best(BOOTED_IN_1970)
    assert not found.trusted and found.today == SOFTWARE_DATE


def test_a_confirmed_day_runs_on_with_the_wall_clock_until_a_restart():
    confirmed = Confirmation(date(2026, 8, 1), BOOTED_IN_1970, "admin")
    two_days_later = BOOTED_IN_1970 + 2 * 86_400_000
    assert best(two_days_later, confirmation=confirmed).today == date(2026, 8, 3)
    rebooted = best(60_000, confirmation=confirmed)
    assert rebooted.today == date(2026, 8, 1) and not rebooted.trusted


def test_a_clock_set_right_does_not_stretch_a_confirmed_day():
    confirmed = Confirmation(date(2026, 8, 1), BOOTED_IN_1970, "admin")
    right = ms_of(date(2026, 8, 2), 9)
    found = best(right, confirmation=confirmed)
    assert found.ms == right and found.trusted


def test_an_unreadable_confirmation_is_no_confirmation():
    assert Confirmation.from_json("{") is None
    assert Confirmation.from_json(None) is None
    kept = Confirmation(date(2026, 8, 1), 5, "admin")
    assert Confirmation.from_json(kept.to_json()) == kept
