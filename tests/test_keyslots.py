"""Key slots (puskesos.keyslots): the data key opens only for the right password or the
district's recovery key, and the slot file survives crashes and newer releases."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from puskesos import durable
from puskesos.keyslots import (
    SLOT_FILE,
    Argon2Cost,
    KeySlots,
    SetupSlot,
    SlotFileError,
    UnknownSlot,
    WrongKey,
    generate_recovery_key,
    load_recovery_private,
    load_recovery_public,
    new_data_key,
    open_district,
    read_slots,
    seal_for_district,
    unwrap_user,
    wrap_for_user,
    write_slots,
)

NODE = "edge-3201022001-a"
#: Cheap Argon2id for tests; the default cost is checked once below.
CHEAP = Argon2Cost(t=1, m_kib=64, p=1)


def test_a_user_slot_opens_with_its_password_only() -> None:
    key = new_data_key()
    slot = wrap_for_user(key, user="sari", node=NODE, password="Kopi-Tubruk-42", cost=CHEAP)
    assert unwrap_user(slot, node=NODE, password="Kopi-Tubruk-42") == key
    with pytest.raises(WrongKey):
        unwrap_user(slot, node=NODE, password="Kopi-Tubruk-43")


def test_a_user_slot_cannot_be_moved_to_another_account_or_box() -> None:
    key = new_data_key()
    slot = wrap_for_user(key, user="sari", node=NODE, password="Kopi-Tubruk-42", cost=CHEAP)
    moved = type(slot)("budi", slot.cost, slot.salt, slot.nonce, slot.wrapped)
    with pytest.raises(WrongKey):
        unwrap_user(moved, node=NODE, password="Kopi-Tubruk-42")
    with pytest.raises(WrongKey):
        unwrap_user(slot, node="edge-3201022001-b", password="Kopi-Tubruk-42")


def test_the_default_cost_is_argon2id_with_64_mib() -> None:
    key = new_data_key()
    slot = wrap_for_user(key, user="sari", node=NODE, password="Kopi-Tubruk-42")
    assert (slot.cost.t, slot.cost.m_kib, slot.cost.p) == (3, 65536, 1)
    assert unwrap_user(slot, node=NODE, password="Kopi-Tubruk-42") == key


def test_the_district_opens_its_slot_with_the_private_key_only(tmp_path: Path) -> None:
    public_path = generate_recovery_key(tmp_path / "recovery.key")
    other_public = generate_recovery_key(tmp_path / "other.key")
    assert stat.S_IMODE(os.stat(tmp_path / "recovery.key").st_mode) == 0o600
    key = new_data_key()
    slot = seal_for_district(key, node=NODE, public_key=load_recovery_public(public_path))
    private = load_recovery_private(tmp_path / "recovery.key")
    assert open_district(slot, node=NODE, private_key=private) == key
    with pytest.raises(WrongKey, match="sealed to"):
        open_district(slot, node=NODE, private_key=load_recovery_private(tmp_path / "other.key"))
    with pytest.raises(WrongKey):
        open_district(slot, node="edge-3201022001-b", private_key=private)
    assert load_recovery_public(other_public) != load_recovery_public(public_path)


def test_a_recovery_key_is_never_overwritten(tmp_path: Path) -> None:
    generate_recovery_key(tmp_path / "recovery.key")
    before = (tmp_path / "recovery.key").read_bytes()
    with pytest.raises(SlotFileError, match="never overwritten"):
        generate_recovery_key(tmp_path / "recovery.key")
    assert (tmp_path / "recovery.key").read_bytes() == before


def test_a_public_key_is_not_taken_for_a_private_one(tmp_path: Path) -> None:
    public = generate_recovery_key(tmp_path / "recovery.key")
    with pytest.raises(SlotFileError, match="not a PEM private key"):
        load_recovery_private(public)
    with pytest.raises(SlotFileError, match="cannot read"):
        load_recovery_public(tmp_path / "missing.pub")


def test_the_first_user_slot_removes_the_setup_slot_and_rewrap_replaces(tmp_path: Path) -> None:
    key = new_data_key()
    public = load_recovery_public(generate_recovery_key(tmp_path / "recovery.key"))
    slots = KeySlots(NODE, (seal_for_district(key, node=NODE, public_key=public), SetupSlot(key)))
    write_slots(tmp_path, slots)
    assert stat.S_IMODE(os.stat(tmp_path / SLOT_FILE).st_mode) == 0o600
    assert read_slots(tmp_path, NODE) == slots

    sari = wrap_for_user(key, user="sari", node=NODE, password="Kopi-Tubruk-42", cost=CHEAP)
    slots = slots.with_user(sari)
    assert slots.setup() is None and slots.district() is not None
    renewed = wrap_for_user(key, user="sari", node=NODE, password="Teh-Manis-77", cost=CHEAP)
    slots = slots.with_user(renewed)
    assert slots.users() == ["sari"]
    write_slots(tmp_path, slots)
    again = read_slots(tmp_path, NODE)
    assert again is not None
    sari_slot = again.user("sari")
    assert sari_slot is not None
    assert unwrap_user(sari_slot, node=NODE, password="Teh-Manis-77") == key
    assert again.without_user("sari").users() == []


def test_slots_of_a_kind_a_newer_release_wrote_are_kept(tmp_path: Path) -> None:
    key = new_data_key()
    tpm = {"kind": "tpm", "handle": "0x81000001", "blob": "AAAA", "extra": [1, 2]}
    document = {"version": 1, "node": NODE, "slots": [tpm, {"kind": "setup", "key": "AAAA"}]}
    (tmp_path / SLOT_FILE).write_text(json.dumps(document))
    slots = read_slots(tmp_path, NODE)
    assert slots is not None and slots.slots[0] == UnknownSlot(tpm)
    sari = wrap_for_user(key, user="sari", node=NODE, password="Kopi-Tubruk-42", cost=CHEAP)
    write_slots(tmp_path, slots.with_user(sari))
    written = json.loads((tmp_path / SLOT_FILE).read_text())
    assert written["slots"][0] == tpm
    assert [slot["kind"] for slot in written["slots"]] == ["tpm", "user"]


def test_a_box_of_an_older_release_has_no_slot_file(tmp_path: Path) -> None:
    assert read_slots(tmp_path, NODE) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not a key slot file"),
        (b'{"version": 2, "node": "x", "slots": []}', "written by another release"),
        (b'{"version": 1, "node": "edge-3201022001-a", "slots": [{"kind": "user"}]}', "KeyError"),
        (b'{"version": 1, "node": "edge-9999999999-z", "slots": []}', "belongs to node"),
    ],
)
def test_a_damaged_or_foreign_slot_file_is_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / SLOT_FILE).write_bytes(content)
    with pytest.raises(SlotFileError, match=message):
        read_slots(tmp_path, NODE)


def test_a_crash_while_writing_leaves_the_old_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_data_key()
    old = KeySlots(NODE, (SetupSlot(key),))
    write_slots(tmp_path, old)

    def power_cut(*_args: object, **_kwargs: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(durable.os, "replace", power_cut)
    sari = wrap_for_user(key, user="sari", node=NODE, password="Kopi-Tubruk-42", cost=CHEAP)
    with pytest.raises(OSError, match="power cut"):
        write_slots(tmp_path, old.with_user(sari))
    monkeypatch.undo()
    assert read_slots(tmp_path, NODE) == old
