"""An encrypted box's SD card dies; its last backup, carried away with its key slots
(``<backup>.keys.json``), brings the village back on a replacement box set up under the
old node id, opened with a staff password of the backup's time or the district's recovery
key; what cannot open it changes nothing (docs/storage.md §3, README "Replace a box")."""

from __future__ import annotations

import contextlib
import json
import shutil
import stat
from pathlib import Path

import aiohttp

from edge import keys
from edge.config import EdgeConfig, load_config
from edge.db import connect
from edge.records import Edit
from edge.store import Store
from tests.edge.box_process import ServedBox, init_box, puskesos
from tests.edge.conftest import PASSWORD
from tests.edge.test_encrypted_box import files_holding, recovery_key, sign_in
from tests.factories import make_household_with_members

USERS = {"admin": ("admin", PASSWORD), "operator1": ("operator", PASSWORD)}
NEW_PASSWORD = "Pulihkan-Balai-Desa-8"


async def save_households(config: EdgeConfig, key: bytes) -> tuple[list[str], list[str]]:
    """Three households of four saved on the box; returns their ids and the members' NIKs."""
    store = Store(config, key=key)
    await store.open()
    ids: list[str] = []
    niks: list[str] = []
    try:
        for seed in range(3):
            household, members = make_household_with_members(4, seed=seed)
            ids.append(household.pop("id"))
            edits = [Edit("household", ids[-1], household)]
            edits += [Edit("member", member.pop("id"), member) for member in members]
            niks += [member["nik"] for member in members]
            await store.write(edits, actor="operator1")
    finally:
        await store.close()
    return ids, niks


async def active(config: EdgeConfig, key: bytes, niks: list[str]) -> set[str]:
    store = Store(config, key=key)
    await store.open()
    try:
        return set(await store.active_niks(niks))
    finally:
        await store.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def lost_box_and_its_backup(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """An encrypted box with data, backed up at night with a staff password; then its SD
    card dies. Returns the backup, the households' ids and the members' NIKs."""
    old = init_box(tmp_path / "old", users=USERS, recovery_key=tmp_path / "usb" / "recovery.pub")
    settings = load_config(old)
    key = keys.open_with_password(settings, "admin", PASSWORD)
    assert key is not None
    ids, niks = await save_households(settings, key)
    made = puskesos("edge", "backup", str(tmp_path / "backups") + "/", "--config", str(old),
                    "--as", "admin", stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    copy = Path(made.stdout.strip())
    slots = copy.with_name(copy.name + ".keys.json")
    assert stat.S_IMODE(slots.stat().st_mode) == 0o600
    assert slots.read_bytes() == (settings.data_dir / "keyslots.json").read_bytes()
    assert files_holding(niks, tmp_path / "backups") == []
    shutil.rmtree(settings.data_dir)
    return copy, ids, niks


def replacement_box(tmp_path: Path) -> Path:
    """README "Replace a box", with a backup to restore: a new box under the old node id,
    set up with the district's recovery key (init_box gives it the old box's node id)."""
    return init_box(tmp_path / "new", recovery_key=tmp_path / "usb" / "recovery.pub")


async def test_a_staff_password_of_the_time_restores_the_backup_on_a_replacement_box(tmp_path):
    recovery_key(tmp_path)
    copy, ids, niks = await lost_box_and_its_backup(tmp_path)
    config = replacement_box(tmp_path)
    settings = load_config(config)
    before = snapshot(settings.data_dir)
    restore = ["edge", "restore", str(copy), "--config", str(config)]

    wrong = puskesos(*restore, "--as", "operator1", stdin="bukan-sandinya-9\n")
    assert wrong.returncode == 1 and "does not open" in wrong.stderr, wrong.stderr
    nobody = puskesos(*restore, "--as", "lurah", stdin=PASSWORD + "\n")
    assert nobody.returncode == 1 and "no key slot of 'lurah'" in nobody.stderr
    asked = puskesos(*restore)
    assert asked.returncode == 2 and "--as NAME" in asked.stderr
    bare = tmp_path / "bare" / copy.name
    bare.parent.mkdir()
    shutil.copy(copy, bare)
    no_slots = puskesos("edge", "restore", str(bare), "--config", str(config), "--as",
                        "operator1", stdin=PASSWORD + "\n")  # fmt: skip
    assert no_slots.returncode == 1 and f"{bare.name}.keys.json" in no_slots.stderr
    assert snapshot(settings.data_dir) == before

    done = puskesos(*restore, "--as", "operator1", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "edge.sqlite.before-restore" in done.stdout
    # The backup's slots are the box's now: they open the restored database.
    assert (settings.data_dir / "keyslots.json").read_bytes() == copy.with_name(
        copy.name + ".keys.json"
    ).read_bytes()
    assert (settings.data_dir / "keyslots.json.before-restore").exists()
    assert files_holding(niks, settings.data_dir) == []

    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            status, _ = await sign_in(session, box.url, PASSWORD)
            assert status == 303
            for household in ids:
                async with session.get(f"{box.url}/api/v1/households/{household}") as answer:
                    assert answer.status == 200
                    assert len((await answer.json())["members"]) == 4
        assert box.stop() == 0
    finally:
        box.kill()
    key = keys.open_with_password(settings, "admin", PASSWORD)
    assert key is not None and await active(settings, key, niks) == set(niks)


async def test_the_district_key_restores_the_backup_and_gives_the_admin_a_new_password(tmp_path):
    recovery_key(tmp_path)
    copy, _, niks = await lost_box_and_its_backup(tmp_path)
    config = replacement_box(tmp_path)
    settings = load_config(config)
    before = snapshot(settings.data_dir)
    restore = ["edge", "restore", str(copy), "--config", str(config), "--recovery-key"]

    other = puskesos("hub", "keys", "recovery-init", "--out", str(tmp_path / "other.key"))
    assert other.returncode == 0
    wrong = puskesos(*restore, str(tmp_path / "other.key"), stdin=NEW_PASSWORD + "\n")
    assert wrong.returncode == 1 and "sealed to" in wrong.stderr, wrong.stderr
    public = puskesos(*restore, str(tmp_path / "usb" / "recovery.pub"), stdin=NEW_PASSWORD + "\n")
    assert public.returncode == 1 and "not a PEM private key" in public.stderr
    weak = puskesos(*restore, str(tmp_path / "usb" / "recovery.key"), stdin="admin\n")
    assert weak.returncode == 1
    bare = tmp_path / "bare" / copy.name
    bare.parent.mkdir()
    shutil.copy(copy, bare)
    private = str(tmp_path / "usb" / "recovery.key")
    no_slots = puskesos("edge", "restore", str(bare), "--config", str(config), "--recovery-key",
                        private, stdin=NEW_PASSWORD + "\n")  # fmt: skip
    assert no_slots.returncode == 1 and f"{bare.name}.keys.json" in no_slots.stderr
    assert snapshot(settings.data_dir) == before

    done = puskesos(*restore, str(tmp_path / "usb" / "recovery.key"), stdin=NEW_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "admin admin given a new password" in done.stdout

    token = ["edge", "token", "add", "--config", str(config), "--username", "operator1",
             "--name", "laporan", "--as", "admin"]  # fmt: skip
    assert puskesos(*token, stdin=PASSWORD + "\n").returncode == 1  # the lost one is gone
    assert puskesos(*token, stdin=NEW_PASSWORD + "\n").returncode == 0
    key = keys.open_with_password(settings, "admin", NEW_PASSWORD)
    assert key is not None and await active(settings, key, niks) == set(niks)
    with contextlib.closing(connect(settings.database_path, key)) as connection:
        audited = connection.execute("SELECT detail FROM audit WHERE action = 'keys.recover'")
        assert [json.loads(row[0])["username"] for row in audited] == ["admin"]
    assert files_holding(niks, settings.data_dir, tmp_path / "backups") == []


async def test_a_plain_backup_is_refused_by_an_encrypted_box(tmp_path):
    public = recovery_key(tmp_path)
    plain = init_box(tmp_path / "plain")
    made = puskesos("edge", "backup", str(tmp_path / "plain.sqlite"), "--config", str(plain))
    assert made.returncode == 0, made.stderr
    assert not (tmp_path / "plain.sqlite.keys.json").exists()
    config = init_box(tmp_path / "box", recovery_key=public)
    before = snapshot(tmp_path / "box" / "data")
    refused = puskesos("edge", "restore", str(tmp_path / "plain.sqlite"), "--config", str(config))
    assert refused.returncode == 1 and "in the clear" in refused.stderr, refused.stderr
    assert snapshot(tmp_path / "box" / "data") == before


async def test_a_plain_replacement_box_becomes_encrypted_with_the_backups_slots(tmp_path):
    recovery_key(tmp_path)
    copy, _, niks = await lost_box_and_its_backup(tmp_path)
    config = init_box(tmp_path / "new")  # set up the way provisioning still does: plain
    settings = load_config(config)
    done = puskesos("edge", "restore", str(copy), "--config", str(config), "--as", "operator1",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert keys.encrypted(settings)
    key = keys.open_with_password(settings, "operator1", PASSWORD)
    assert key is not None and await active(settings, key, niks) == set(niks)
    assert files_holding(niks, settings.data_dir) == []


async def test_after_a_restore_the_sign_in_seals_the_district_slot_to_the_districts_new_key(
    tmp_path,
):
    recovery_key(tmp_path)
    copy, _, niks = await lost_box_and_its_backup(tmp_path)
    # Since that backup the district replaced its recovery key; the replacement box and its
    # configuration have the new one.
    made = puskesos("hub", "keys", "recovery-init", "--out", str(tmp_path / "usb-2" / "new.key"))
    assert made.returncode == 0, made.stderr
    new_public = Path(made.stdout.strip())
    config = init_box(tmp_path / "new", recovery_key=new_public)
    settings = load_config(config)
    done = puskesos("edge", "restore", str(copy), "--config", str(config), "--as", "operator1",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    recover = ["edge", "recover", "--config", str(config), "--recovery-key"]
    refused = puskesos(*recover, str(tmp_path / "usb-2" / "new.key"), stdin=NEW_PASSWORD + "\n")
    assert refused.returncode == 1 and "sealed to" in refused.stderr  # the backup's slot
    users_before = json.loads((settings.data_dir / "keyslots.json").read_text())["slots"][1:]

    env = {"PUSKESOS_EDGE_RECOVERY_KEY": str(new_public)}
    box = ServedBox(config, tmp_path / "serve.log", env=env).start()
    try:
        async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            status, _ = await sign_in(session, box.url, PASSWORD)
            assert status == 303
        assert box.stop() == 0
    finally:
        box.kill()

    slots_file = settings.data_dir / "keyslots.json"
    assert stat.S_IMODE(slots_file.stat().st_mode) == 0o600
    slots = json.loads(slots_file.read_text())["slots"]
    assert slots[1:] == users_before  # the staff's slots as they were
    old = puskesos(*recover, str(tmp_path / "usb" / "recovery.key"), stdin=NEW_PASSWORD + "\n")
    assert old.returncode == 1 and "sealed to" in old.stderr
    done = puskesos(*recover, str(tmp_path / "usb-2" / "new.key"), stdin=NEW_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    key = keys.open_with_password(settings, "admin", NEW_PASSWORD)
    assert key is not None and await active(settings, key, niks) == set(niks)
    with contextlib.closing(connect(settings.database_path, key)) as connection:
        audited = connection.execute(
            "SELECT actor, detail FROM audit WHERE action = 'keys.reseal'"
        ).fetchall()
    assert [(actor, json.loads(detail)["to"]) for actor, detail in audited] == [
        ("operator1", slots[0]["key_id"])
    ]
