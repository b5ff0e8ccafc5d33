"""District IT sets a box up with `puskesos edge ...`, staff use it, and a backup brings the
data back after the database is lost."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp

from edge.backup import integrity_problems
from edge.config import load_config
from tests.edge.box_process import (
    NODE,
    VILLAGE,
    ServedBox,
    household_body,
    init_box,
    puskesos,
    query,
)
from tests.edge.conftest import PASSWORD


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match is not None, f"no hidden field {name}"
    return match.group(1)


async def log_in(session: aiohttp.ClientSession, url: str, username: str) -> str:
    """Log in through the form like a browser; returns the session's CSRF token."""
    async with session.get(f"{url}/masuk") as page:
        form_csrf = hidden(await page.text(), "csrf_token")
    form = {"username": username, "password": PASSWORD, "csrf_token": form_csrf, "next": "/"}
    async with session.post(f"{url}/masuk", data=form, allow_redirects=False) as answer:
        assert answer.status == 303, await answer.text()
    async with session.get(f"{url}/") as home:
        assert home.status == 200
        assert "Beranda" in await home.text()
        return hidden(await home.text(), "csrf_token")


async def register(session: aiohttp.ClientSession, url: str, csrf: str, seed: int) -> str:
    """Register a household with 4 members through the API; returns its id."""
    body = household_body(seed)
    headers = {"X-CSRF-Token": csrf}
    async with session.post(f"{url}/api/v1/households", json=body, headers=headers) as answer:
        assert answer.status == 201, await answer.text()
        record_id: str = (await answer.json())["id"]
        return record_id


def households(database: Path) -> set[object]:
    return {row[0] for row in query(database, "SELECT id FROM records WHERE entity='household'")}


async def test_a_backup_made_while_serving_brings_the_data_back(tmp_path):
    config = init_box(tmp_path, users={"operator1": ("operator", PASSWORD)})
    database = tmp_path / "data" / "edge.sqlite"
    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with box.client(cookie_jar=jar) as session:
            csrf = await log_in(session, box.url, "operator1")
            kept = await register(session, box.url, csrf, seed=1)
            nik = query(
                database, "SELECT nik FROM records WHERE entity='member' AND household_id=?", kept
            )[0][0]
            search = {"q": nik, "csrf_token": csrf}
            async with session.post(f"{box.url}/rumah-tangga/cari", data=search) as found:
                assert found.status == 200 and f"NIK {nik} terdaftar" in await found.text()
                assert nik not in str(found.url)  # the answer's address holds a token

            backup = puskesos(
                "edge", "backup", str(tmp_path / "backups") + "/", "--config", str(config)
            )
            assert backup.returncode == 0, backup.stderr
            copy = Path(backup.stdout.strip())
            assert copy.parent == tmp_path / "backups" and copy.name.startswith(f"puskesos-{NODE}-")
            assert integrity_problems(copy) == []
            assert households(copy) == {kept}
            later = await register(session, box.url, csrf, seed=2)

        # While the box serves, its database is not replaced, and a second server is refused.
        refused = puskesos("edge", "restore", str(copy), "--config", str(config))
        assert refused.returncode == 1
        assert "stop `puskesos edge serve`" in refused.stderr
        second = puskesos("edge", "serve", "--config", str(config))
        assert second.returncode == 1 and "already serving" in second.stderr
        assert box.stop() == 0
    finally:
        box.kill()

    log = [json.loads(line) for line in box.output().splitlines()]
    assert {"serving", "stopped"} <= {event["msg"] for event in log}
    requests = [e for e in log if e["logger"] == "puskesos.edge.access"]
    assert {"method": "POST", "path": "/api/v1/households", "status": 201}.items() <= next(
        e for e in requests if e["method"] == "POST" and e["path"] == "/api/v1/households"
    ).items()
    assert any(e["path"] == "/rumah-tangga" and e["user"] == "operator1" for e in requests)
    assert nik not in box.output()  # the search's number is in no logged path or query

    # Restoring over the current database keeps it aside.
    restored = puskesos("edge", "restore", str(copy), "--config", str(config))
    assert restored.returncode == 0, restored.stderr
    before = database.with_name("edge.sqlite.before-restore")
    assert households(before) == {kept, later}
    assert households(database) == {kept}

    # The database is lost; the backup brings it back.
    for path in database.parent.glob("edge.sqlite*"):
        path.unlink()
    restored = puskesos("edge", "restore", str(copy), "--config", str(config))
    assert restored.returncode == 0, restored.stderr
    assert integrity_problems(database) == []
    assert households(database) == {kept}

    box = ServedBox(config, tmp_path / "serve-again.log").start()
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await log_in(session, box.url, "operator1")
            async with session.get(f"{box.url}/api/v1/households/{kept}") as answer:
                assert answer.status == 200
                assert len((await answer.json())["members"]) == 4
            async with session.get(f"{box.url}/api/v1/households/{later}") as answer:
                assert answer.status == 404
        assert box.stop() == 0
    finally:
        box.kill()


def imported(output: str) -> set[str]:
    """The modules a process imported, from its ``-X importtime`` lines."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in output.splitlines()
        if line.startswith("import time:")
    }


async def served_modules(config: Path, log: Path) -> set[str]:
    """Serve the box, sign in and open the home page, stop; what the server imported."""
    box = ServedBox(config, log, env={"PYTHONPROFILEIMPORTTIME": "1"}).start()
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await log_in(session, box.url, "operator1")
        assert box.stop() == 0
    finally:
        box.kill()
    return imported(box.output())


async def test_a_box_at_the_newest_schema_serves_without_the_migration_tool_in_memory(tmp_path):
    config = init_box(tmp_path, users={"operator1": ("operator", PASSWORD)})
    modules = await served_modules(config, tmp_path / "serve.log")
    assert {"sqlalchemy", "edge.web.app"} <= modules  # the profile lists what it loaded
    assert not {m for m in modules if m.split(".")[0] in ("alembic", "mako", "hub", "national")}


async def test_a_box_of_the_previous_release_is_migrated_when_it_starts(tmp_path):
    from alembic import command

    from edge.db import HEAD_REVISION, _alembic_config

    config = init_box(tmp_path, users={"operator1": ("operator", PASSWORD)})
    database = tmp_path / "data" / "edge.sqlite"
    command.downgrade(_alembic_config(database), "-1")
    assert query(database, "SELECT version_num FROM alembic_version") != [(HEAD_REVISION,)]
    modules = await served_modules(config, tmp_path / "serve.log")
    assert "alembic" in modules
    assert query(database, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def test_init_with_a_code_that_is_not_a_village_says_so(tmp_path):
    config = tmp_path / "edge.toml"
    result = puskesos(
        "edge", "init", "--config", str(config), "--village", "3201012001", "--node", NODE,
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert "village 3201012001 does not exist in the Kemendagri 2025 list" in result.stderr
    assert "Cibinong" in result.stderr  # the kecamatan it would be in
    assert not config.exists() and not (tmp_path / "data").exists()

    kecamatan = puskesos("edge", "init", "--config", str(config), "--village", "320102",
                         "--node", NODE)  # fmt: skip
    assert kecamatan.returncode == 2
    assert "is a kecamatan code, not a village" in kecamatan.stderr
    bad_node = puskesos("edge", "init", "--config", str(config), "--village", VILLAGE,
                        "--node", "Box 1")  # fmt: skip
    assert bad_node.returncode == 2 and "node id 'Box 1' is not valid" in bad_node.stderr


def test_init_again_is_safe_and_another_box_identity_is_refused(tmp_path):
    config = init_box(tmp_path)
    written = config.read_text()
    assert f'village = "{VILLAGE}"' in written and "# port of the web UI and API" in written
    database = tmp_path / "data" / "edge.sqlite"
    again = puskesos("edge", "init", "--config", str(config), "--village", VILLAGE, "--node", NODE)
    assert again.returncode == 0, again.stderr
    assert "Wanaherang" in again.stdout
    assert config.read_text() == written
    assert dict(query(database, "SELECT key, value FROM meta")) == {
        "village": VILLAGE,
        "node": NODE,
    }

    other = puskesos("edge", "init", "--config", str(config), "--node", "edge-3201022001-b")
    assert other.returncode == 2 and "says node edge-3201022001-a" in other.stderr

    # Another configuration pointing at this box's database: init and serve refuse it.
    stranger = tmp_path / "stranger.toml"
    stranger.write_text(written.replace(NODE, "edge-3201022001-b"))
    for command in ("init", "serve"):
        refused = puskesos("edge", command, "--config", str(stranger))
        assert refused.returncode == 2, refused.stderr
        assert f"belongs to village {VILLAGE} node {NODE}" in refused.stderr
    assert dict(query(database, "SELECT key, value FROM meta")) == {
        "village": VILLAGE,
        "node": NODE,
    }


def test_a_password_is_never_taken_from_the_command_line(tmp_path):
    config = init_box(tmp_path)
    base = ["edge", "user", "add", "--config", str(config), "--username", "kades",
            "--full-name", "Kepala Desa", "--role", "kepala_desa"]  # fmt: skip
    for extra in (["--password", PASSWORD], [f"--password={PASSWORD}"], ["--pass", PASSWORD]):
        result = puskesos(*base, *extra, stdin=PASSWORD + "\n")
        assert result.returncode == 2
        assert "unrecognized arguments" in result.stderr
    short = puskesos(*base, stdin="pendek\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    assert query(tmp_path / "data" / "edge.sqlite", "SELECT username FROM users") == []

    added = puskesos(*base, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    token = puskesos("edge", "token", "add", "--config", str(config), "--username", "kades",
                     "--name", "laporan bulanan")  # fmt: skip
    assert token.returncode == 0 and token.stdout.startswith("psk_")
    stored = query(tmp_path / "data" / "edge.sqlite", "SELECT password_hash, token_hash FROM "
                   "users JOIN api_tokens ON api_tokens.user_id = users.id")  # fmt: skip
    assert stored[0][0].startswith("$argon2id$")
    assert token.stdout.strip() not in stored[0][1]


def test_commands_on_a_box_that_is_not_set_up_say_what_to_do(tmp_path):
    config = tmp_path / "edge.toml"
    missing = puskesos("edge", "serve", "--config", str(config))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    config.write_text(f'[edge]\ndata_dir = "data"\nvillage = "{VILLAGE}"\nnode = "{NODE}"\n')
    for args in (["serve"], ["backup", str(tmp_path)], ["user", "add", "--username", "a",
                 "--full-name", "A", "--role", "admin"]):  # fmt: skip
        result = puskesos("edge", *args, "--config", str(config), stdin=PASSWORD + "\n")
        assert result.returncode in (1, 2), result.stderr
        assert "puskesos edge init" in result.stderr
    config.write_text("[edge]\nlisten_port = 'http'\n")
    wrong = puskesos("edge", "serve", "--config", str(config))
    assert wrong.returncode == 2 and "listen_port" in wrong.stderr


def test_init_points_a_new_box_at_the_district_broker_with_replication_on(tmp_path):
    config = tmp_path / "edge.toml"
    made = puskesos(
        "edge", "init", "--config", str(config), "--village", VILLAGE, "--node", NODE,
        "--data-dir", str(tmp_path / "data"), "--broker-host", "mqtt.dinsos.example",
        "--broker-port", "8883", "--broker-password-file", "broker.password", "--plain",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    settings = load_config(config, env={})
    assert (settings.broker.host, settings.broker.port) == ("mqtt.dinsos.example", 8883)
    assert settings.broker.password_file == "broker.password"
    assert settings.sync.enabled is True
    # Once written, the file is the truth: a different broker on the command line is refused.
    other = puskesos("edge", "init", "--config", str(config), "--broker-host", "elsewhere")
    assert other.returncode == 2 and "says broker host mqtt.dinsos.example" in other.stderr
    same = puskesos("edge", "init", "--config", str(config), "--broker-port", "8883")
    assert same.returncode == 0, same.stderr
