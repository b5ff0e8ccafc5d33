"""District IT sets up a box, encrypted by default with the district's recovery key named in
its configuration (a box without one is refused unless made plain on purpose), staff save
households through the UI and the API, and the SD card (data folder and backup) gives none
of their numbers away; after a restart the box waits for a sign-in (docs/storage.md)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import aiohttp

from edge import keys
from edge.config import load_config
from edge.db import connect
from tests.edge.box_process import ServedBox, household_body, init_box, puskesos
from tests.edge.conftest import PASSWORD
from tests.edge.test_cli import hidden, log_in, register
from tests.edge.test_ui import household_form
from tests.factories import make_household_with_members

LOCKED = "Perangkat terkunci setelah dinyalakan ulang. Masuk untuk membukanya."


def encodings(text: str) -> list[bytes]:
    """ASCII (= UTF-8 for digits) and UTF-16 in both byte orders."""
    return [text.encode("ascii"), text.encode("utf-16-le"), text.encode("utf-16-be")]


def files_holding(needles: list[str], *folders: Path) -> list[str]:
    found = []
    for path in (p for folder in folders for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found += [f"{path.name}: {n}" for n in needles for raw in encodings(n) if raw in content]
    return found


def recovery_key(folder: Path) -> Path:
    made = puskesos("hub", "keys", "recovery-init", "--out", str(folder / "usb" / "recovery.key"))
    assert made.returncode == 0, made.stderr
    assert "keep it offline" in made.stderr
    return Path(made.stdout.strip())


async def sign_in(session: aiohttp.ClientSession, url: str, password: str) -> tuple[int, str]:
    async with session.get(f"{url}/masuk") as page:
        form = {"username": "operator1", "password": password, "next": "/"}
        form["csrf_token"] = hidden(await page.text(), "csrf_token")
    async with session.post(f"{url}/masuk", data=form, allow_redirects=False) as answer:
        return answer.status, await answer.text()


async def test_an_encrypted_box_gives_nothing_away_and_waits_for_a_sign_in(tmp_path):
    public = recovery_key(tmp_path)
    users = {"admin": ("admin", PASSWORD), "operator1": ("operator", PASSWORD)}
    config = init_box(tmp_path, users=users, recovery_key=public, configured=True)
    slots = json.loads((tmp_path / "data" / "keyslots.json").read_text())
    assert [slot["kind"] for slot in slots["slots"]] == ["district", "user", "user"]

    refused = puskesos("edge", "token", "add", "--config", str(config), "--username",
                       "operator1", "--name", "tablet")  # fmt: skip
    assert refused.returncode == 2 and "--as NAME" in refused.stderr
    wrong = puskesos("edge", "token", "add", "--config", str(config), "--username", "operator1",
                     "--name", "tablet", "--as", "admin", stdin="salah-sandi-99\n")  # fmt: skip
    assert wrong.returncode == 1 and "does not open" in wrong.stderr
    made = puskesos("edge", "token", "add", "--config", str(config), "--username", "operator1",
                    "--name", "tablet", "--as", "admin", stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    bearer = {"Authorization": f"Bearer {made.stdout.split()[0]}"}

    niks: list[str] = []
    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with box.client(cookie_jar=jar) as session:
            async with session.get(f"{box.url}/healthz") as health:
                assert (await health.json())["locked"] is True
            async with session.get(f"{box.url}/api/v1/households", headers=bearer) as api:
                assert api.status == 503
            async with session.get(f"{box.url}/rumah-tangga") as page:
                assert page.url.path == "/masuk" and LOCKED in await page.text()

            csrf = await log_in(session, box.url, "operator1")
            # Through the API (cookie session and bearer token) ...
            await register(session, box.url, csrf, seed=1)
            niks += [member["nik"] for member in household_body(1)["members"]]
            body = household_body(2)
            async with session.post(f"{box.url}/api/v1/households", json=body,
                                    headers=bearer) as answer:  # fmt: skip
                assert answer.status == 201, await answer.text()
            niks += [member["nik"] for member in body["members"]]
            # ... and through the form.
            household, members = make_household_with_members(3, seed=3)
            form = household_form(csrf, household, members)
            async with session.post(f"{box.url}/rumah-tangga/baru", data=form) as answer:
                assert answer.status == 200, await answer.text()
            niks += [member["nik"] for member in members]

            backup = puskesos("edge", "backup", str(tmp_path / "backups") + "/", "--config",
                              str(config), "--as", "admin", stdin=PASSWORD + "\n")  # fmt: skip
            assert backup.returncode == 0, backup.stderr
        assert box.stop() == 0
    finally:
        box.kill()
    assert len(niks) == 11
    assert files_holding(niks, tmp_path / "data", tmp_path / "backups") == []

    box = ServedBox(config, tmp_path / "serve-again.log").start()
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{box.url}/api/v1/households", headers=bearer) as api:
                assert api.status == 503
            status, text = await sign_in(session, box.url, "bukan-sandinya-9")
            assert status == 401 and LOCKED in text
            async with session.get(f"{box.url}/healthz") as health:
                assert (await health.json())["locked"] is True
            status, _ = await sign_in(session, box.url, PASSWORD)
            assert status == 303
            async with session.get(f"{box.url}/api/v1/households", headers=bearer) as api:
                assert api.status == 200
                assert len((await api.json())["items"]) == 3
    finally:
        box.kill()


def test_init_refuses_a_box_without_a_recovery_key_unless_told_to_make_it_plain(tmp_path):
    config = tmp_path / "edge.toml"
    box = ["--village", "3201022001", "--node", "edge-3201022001-a", "--data-dir",
           str(tmp_path / "data")]  # fmt: skip
    refused = puskesos("edge", "init", "--config", str(config), *box)
    assert refused.returncode == 2, refused.stderr
    for option in ("--recovery-key FILE", "[edge] recovery_key", "--no-recovery-key", "--plain"):
        assert option in refused.stderr
    assert list(tmp_path.iterdir()) == []  # no configuration, no data folder, no key

    made = puskesos("edge", "init", "--config", str(config), *box, "--plain")
    assert made.returncode == 0 and "NOT encrypted" in made.stdout
    assert "stolen SD card" in made.stdout
    assert not (tmp_path / "data" / "keyslots.json").exists()
    # An existing plain database is not encrypted in place by `edge init`: an upgrade
    # (provisioning's migration) goes on without an option.
    again = puskesos("edge", "init", "--config", str(config), "--no-recovery-key")
    assert again.returncode == 2 and "plain database" in again.stderr
    upgrade = puskesos("edge", "init", "--config", str(config))
    assert upgrade.returncode == 0 and "NOT encrypted" in upgrade.stdout
    bench = puskesos("edge", "init", "--config", str(tmp_path / "b.toml"), "--village",
                     "3201022001", "--node", "edge-3201022001-b", "--data-dir",
                     str(tmp_path / "bench"), "--no-recovery-key")  # fmt: skip
    assert bench.returncode == 0 and "WITHOUT a district recovery slot" in bench.stdout
    slots = json.loads((tmp_path / "bench" / "keyslots.json").read_text())
    assert [slot["kind"] for slot in slots["slots"]] == ["setup"]


def test_the_district_key_recovers_a_box_whose_every_password_is_lost(tmp_path):
    public = recovery_key(tmp_path)
    config = init_box(tmp_path, users={"admin": ("admin", PASSWORD)}, recovery_key=public)
    other = puskesos("hub", "keys", "recovery-init", "--out", str(tmp_path / "other.key"))
    assert other.returncode == 0
    recover = ["edge", "recover", "--config", str(config), "--recovery-key"]
    new = "Pulihkan-Balai-Desa-8"

    wrong = puskesos(*recover, str(tmp_path / "other.key"), stdin=new + "\n")
    assert wrong.returncode == 1 and "sealed to" in wrong.stderr
    public_only = puskesos(*recover, str(public), stdin=new + "\n")
    assert public_only.returncode == 1 and "not a PEM private key" in public_only.stderr
    done = puskesos(*recover, str(tmp_path / "usb" / "recovery.key"), stdin=new + "\n")
    assert done.returncode == 0, done.stderr
    assert "admin admin given a new password" in done.stdout

    token = ["edge", "token", "add", "--config", str(config), "--username", "admin", "--name",
             "laporan", "--as", "admin"]  # fmt: skip
    assert puskesos(*token, stdin=PASSWORD + "\n").returncode == 1  # the lost one is gone
    assert puskesos(*token, stdin=new + "\n").returncode == 0
    settings = load_config(config)
    key = keys.open_with_password(settings, "admin", new)
    with contextlib.closing(connect(settings.database_path, key)) as connection:
        audited = connection.execute(
            "SELECT actor, detail FROM audit WHERE action = 'keys.recover'"
        ).fetchall()
    assert len(audited) == 1 and json.loads(audited[0][1])["username"] == "admin"


def test_a_box_without_a_district_slot_cannot_be_recovered(tmp_path):
    recovery_key(tmp_path)
    config = tmp_path / "edge.toml"
    made = puskesos("edge", "init", "--config", str(config), "--village", "3201022001", "--node",
                    "edge-3201022001-a", "--data-dir", str(tmp_path / "data"),
                    "--no-recovery-key")  # fmt: skip
    assert made.returncode == 0, made.stderr
    private = str(tmp_path / "usb" / "recovery.key")
    refused = puskesos("edge", "recover", "--config", str(config), "--recovery-key", private,
                       stdin="Pulihkan-Balai-Desa-8\n")  # fmt: skip
    assert refused.returncode == 1 and "--no-recovery-key" in refused.stderr
