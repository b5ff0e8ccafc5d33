"""A box database opened with a data key (edge.db.connect): the store, migrations and
backups work on it as on a plain one, and no file of it gives away what was saved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlcipher3

from edge import db
from edge.backup import backup, integrity_problems, restore
from edge.config import EdgeConfig
from edge.disk import is_disk_full
from edge.records import Edit
from edge.store import Store
from puskesos.keyslots import new_data_key
from tests.factories import DEFAULT_VILLAGE, make_household_with_members


def _config(tmp_path: Path, name: str) -> EdgeConfig:
    return EdgeConfig(village=DEFAULT_VILLAGE, node="edge-test-a", data_dir=tmp_path / name)


def _household(seed: int) -> tuple[list[Edit], list[str]]:
    household, members = make_household_with_members(4, seed=seed)
    edits = [Edit("household", household.pop("id"), household)]
    edits += [Edit("member", member.pop("id"), member) for member in members]
    return edits, [member["nik"] for member in members]


def _files(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        yield from (path for path in folder.rglob("*") if path.is_file())


def _encodings(text: str) -> list[bytes]:
    return [text.encode("ascii"), text.encode("utf-16-le"), text.encode("utf-16-be")]


def _found(niks: list[str], *folders: Path) -> list[tuple[str, str]]:
    """Which files hold one of ``niks`` in ASCII/UTF-8 or UTF-16 (either byte order)."""
    hits = []
    for path in _files(*folders):
        content = path.read_bytes()
        hits += [(path.name, nik) for nik in niks for raw in _encodings(nik) if raw in content]
    return hits


async def _save_households(config: EdgeConfig, key: bytes | None) -> list[str]:
    db.upgrade(config.database_path, key)
    store = Store(config, key=key)
    await store.open()
    niks: list[str] = []
    try:
        for seed in range(5):
            edits, household_niks = _household(seed)
            await store.write(edits, actor="operator1")
            niks += household_niks
    finally:
        await store.close()
    return niks


async def test_saved_niks_appear_in_no_file_of_an_encrypted_box_nor_its_backup(tmp_path):
    key = new_data_key()
    encrypted = _config(tmp_path, "encrypted")
    niks = await _save_households(encrypted, key)
    copy = backup(encrypted, tmp_path / "backups" / "night.sqlite", key)
    assert _found(niks, encrypted.data_dir, copy.parent) == []
    assert integrity_problems(copy, key) == []

    # The control: the same saves on a plain box leave the numbers readable on the card.
    plain = _config(tmp_path, "plain")
    plain_niks = await _save_households(plain, None)
    assert {nik for _, nik in _found(plain_niks, plain.data_dir)} == set(plain_niks)


async def test_an_encrypted_box_reads_back_what_it_saved_after_a_restart(tmp_path):
    key = new_data_key()
    config = _config(tmp_path, "box")
    await _save_households(config, key)
    db.upgrade(config.database_path, key)  # the next start: migrations run keyed too
    store = Store(config, key=key)
    await store.open()
    try:
        assert (await store.counts())["member"] == 20
    finally:
        await store.close()


async def test_the_wrong_key_or_no_key_reads_nothing(tmp_path):
    config = _config(tmp_path, "box")
    await _save_households(config, new_data_key())
    for key in (new_data_key(), None):
        with pytest.raises(sa.exc.DatabaseError, match="file is not a database"):
            db.upgrade(config.database_path, key)
    assert integrity_problems(config.database_path, new_data_key()) != []


async def test_a_backup_of_an_encrypted_box_restores_with_its_key(tmp_path):
    key = new_data_key()
    config = _config(tmp_path, "box")
    niks = await _save_households(config, key)
    copy = backup(config, tmp_path / "backups" / "night.sqlite", key)
    config.database_path.unlink()
    assert restore(config, copy, key) is None
    store = Store(config, key=key)
    await store.open()
    try:
        assert set(await store.active_niks(niks)) == set(niks)
    finally:
        await store.close()
    assert _found(niks, config.data_dir) == []


def test_a_full_disk_is_recognised_from_sqlcipher_too():
    wrapped = sa.exc.OperationalError(
        "INSERT", {}, sqlcipher3.OperationalError("database or disk is full")
    )
    assert is_disk_full(wrapped)
    assert not is_disk_full(sqlcipher3.OperationalError("database is locked"))
