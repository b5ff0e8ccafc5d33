"""The box's key slots in use (``docs/storage.md`` §2–3): made at ``edge init``, opened at
sign-in, rewrapped when a password is set, dropped when an account is disabled; the
district's slot sealed again when the district's recovery key in use changes.

A box without ``keyslots.json`` is a box of an older release (or one set up without
encryption): its database is plain and every function here leaves it so. The slot file is
read and rewritten whole under an exclusive ``flock`` of ``keyslots.lock`` (held across
processes: the running box and a command line), so two password changes at once never lose
one another's slot. Argon2id runs for seconds of CPU in total: callers in the event loop run
these functions in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from typing import TYPE_CHECKING

from edge.config import EdgeConfig
from puskesos.durable import replace_file
from puskesos.keyslots import (
    SLOT_FILE,
    Argon2Cost,
    KeySlots,
    SetupSlot,
    UserSlot,
    WrongKey,
    load_recovery_public,
    new_data_key,
    read_slots,
    recovery_key_id,
    seal_for_district,
    spend_like,
    unwrap_user,
    wrap_for_user,
    write_slots,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

__all__ = [
    "create_slots",
    "encrypted",
    "forget_user",
    "has_slot",
    "open_with_password",
    "replace_slots",
    "reseal_district",
    "setup_key",
    "spend",
    "store_password",
]

LOCK_FILE = "keyslots.lock"


@contextlib.contextmanager
def _locked(config: EdgeConfig) -> Iterator[None]:
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(config.data_dir / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def encrypted(config: EdgeConfig) -> bool:
    """Whether the box's database is encrypted (it has key slots)."""
    return read_slots(config.data_dir, config.node) is not None


def create_slots(config: EdgeConfig, recovery_key: X25519PublicKey | None) -> bytes:
    """Make the data key and the box's first slots: the district's (sealed to
    ``recovery_key``; none without one) and the setup slot; returns the data key."""
    key = new_data_key()
    district = (
        (seal_for_district(key, node=config.node, public_key=recovery_key),)
        if recovery_key is not None
        else ()
    )
    with _locked(config):
        write_slots(config.data_dir, KeySlots(config.node, (*district, SetupSlot(key))))
    return key


def setup_key(config: EdgeConfig) -> bytes | None:
    """The data key while no account has a slot yet (``None`` after, or on a plain box)."""
    slots = read_slots(config.data_dir, config.node)
    setup = slots.setup() if slots is not None else None
    return setup.key if setup is not None else None


def has_slot(config: EdgeConfig, username: str) -> bool:
    """Whether ``username`` can unlock the box with their password."""
    slots = read_slots(config.data_dir, config.node)
    return slots is not None and slots.user(username) is not None


def open_with_password(config: EdgeConfig, username: str, password: str) -> bytes | None:
    """The data key from ``username``'s slot, or ``None`` when the password does not open
    it or the name has no slot; both take one Argon2id of the slots' cost."""
    slots = read_slots(config.data_dir, config.node)
    slot = slots.user(username) if slots is not None else None
    if slot is None:
        spend(config, password)
        return None
    try:
        return unwrap_user(slot, node=config.node, password=password)
    except WrongKey:
        return None


def spend(config: EdgeConfig, password: str) -> None:
    """Take the time of opening a slot of this box, and open nothing."""
    slots = read_slots(config.data_dir, config.node)
    costs = [s.cost for s in (slots.slots if slots else ()) if isinstance(s, UserSlot)]
    spend_like(costs[0] if costs else Argon2Cost(), password)


def store_password(config: EdgeConfig, key: bytes, username: str, password: str) -> None:
    """Wrap ``key`` for ``username`` under ``password`` (a new slot or a rewrap); the setup
    slot goes with the first account's. Nothing on a plain box."""
    if not encrypted(config):
        return
    slot = wrap_for_user(key, user=username, node=config.node, password=password)
    with _locked(config):
        slots = read_slots(config.data_dir, config.node)
        assert slots is not None
        write_slots(config.data_dir, slots.with_user(slot))


def forget_user(config: EdgeConfig, username: str) -> None:
    """Remove ``username``'s slot (a disabled account no longer unlocks the box)."""
    with _locked(config):
        slots = read_slots(config.data_dir, config.node)
        if slots is not None and slots.user(username) is not None:
            write_slots(config.data_dir, slots.without_user(username))


def replace_slots(config: EdgeConfig, slots: KeySlots) -> None:
    """Make ``slots`` (those of a restored backup) the box's; its own, if any, are kept as
    ``keyslots.json.before-restore`` (they open the database the restore kept aside)."""
    with _locked(config):
        current = config.data_dir / SLOT_FILE
        if current.exists():
            kept = current.with_name(f"{SLOT_FILE}.before-restore")
            replace_file(kept, current.read_bytes(), mode=0o600)
        write_slots(config.data_dir, slots)


def reseal_district(config: EdgeConfig, key: bytes) -> tuple[str | None, str] | None:
    """Seal the data ``key`` (of the open box) to the district's recovery key named by
    ``[edge] recovery_key`` when the district slot is sealed to another one (a backup of
    before the district's key was replaced, restored; the key replaced since) or missing.
    Returns the old slot's key id (``None``: there was none) and the new one, or ``None``
    when nothing changed (no key configured, a plain box, or the slot already sealed to
    it). :class:`~puskesos.keyslots.SlotFileError` when the key file cannot be read."""
    if not config.recovery_key:
        return None
    public = load_recovery_public(config.path(config.recovery_key))
    with _locked(config):
        slots = read_slots(config.data_dir, config.node)
        if slots is None:
            return None
        old = slots.district()
        if old is not None and old.key_id == recovery_key_id(public):
            return None
        district = seal_for_district(key, node=config.node, public_key=public)
        write_slots(config.data_dir, slots.with_district(district))
    return (old.key_id if old is not None else None), district.key_id
