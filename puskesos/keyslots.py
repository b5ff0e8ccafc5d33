"""Key slots: the box's data key, wrapped once per staff account and once for the district.

One random 32-byte **data key** encrypts the box's database and its backups
(``docs/storage.md`` §2). It is never written in the clear, except in the *setup slot* that
``edge init`` leaves until the first account has a slot. ``<data_dir>/keyslots.json`` holds
it wrapped per slot:

- a **user slot**: AES-256-GCM under Argon2id(password, salt), with the associated data
  ``puskesos-slot/1/user/<name>/<node>``, so a slot cannot be moved to another account or
  box;
- a **district slot**: sealed to the district's X25519 recovery public key (ephemeral
  X25519 agreement, HKDF-SHA256, AES-256-GCM), associated data
  ``puskesos-slot/1/district/<node>``; its private key stays offline at the district. The
  same sealing (:func:`seal_to`) carries a box's own secrets to it (``edge/boxsecrets.py``).

The file is rewritten whole, atomically and durably (:func:`puskesos.durable.replace_file`);
slots of a kind this release does not know are kept as they were read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from puskesos.durable import replace_file, write_file

__all__ = [
    "DATA_KEY_BYTES",
    "SLOT_FILE",
    "Argon2Cost",
    "DistrictSlot",
    "KeySlotError",
    "KeySlots",
    "SetupSlot",
    "SlotFileError",
    "UnknownSlot",
    "UserSlot",
    "WrongKey",
    "generate_recovery_key",
    "load_recovery_private",
    "load_recovery_public",
    "new_data_key",
    "open_district",
    "open_sealed",
    "open_slots",
    "read_slots",
    "recovery_key_id",
    "seal_for_district",
    "seal_to",
    "spend_like",
    "unwrap_user",
    "wrap_for_user",
    "write_slots",
]

SLOT_FILE = "keyslots.json"
VERSION = 1
DATA_KEY_BYTES = 32
_NONCE_BYTES = 12
_SALT_BYTES = 16


class KeySlotError(ValueError):
    """A key slot or key file that cannot be used; the message says why."""


class WrongKey(KeySlotError):
    """The password or the recovery key does not open the slot (AES-GCM tag mismatch)."""


class SlotFileError(KeySlotError):
    """``keyslots.json`` or a recovery key file is unreadable, malformed or another box's."""


@dataclass(frozen=True, slots=True)
class Argon2Cost:
    """Argon2id parameters of a user slot: passes, memory (KiB), lanes."""

    t: int = 3
    m_kib: int = 65536
    p: int = 1


@dataclass(frozen=True, slots=True)
class UserSlot:
    """The data key wrapped under one account's password."""

    user: str
    cost: Argon2Cost
    salt: bytes
    nonce: bytes
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class DistrictSlot:
    """The data key sealed to the district's recovery public key (``key_id`` names it)."""

    key_id: str
    ephemeral: bytes
    nonce: bytes
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class SetupSlot:
    """The data key in the clear, only until the first account has a slot."""

    key: bytes


@dataclass(frozen=True, slots=True)
class UnknownSlot:
    """A slot of a kind a newer release wrote: kept untouched."""

    raw: dict[str, Any]


Slot = UserSlot | DistrictSlot | SetupSlot | UnknownSlot


@dataclass(frozen=True, slots=True)
class KeySlots:
    """The slots of one box (``node``)."""

    node: str
    slots: tuple[Slot, ...] = field(default=())

    def user(self, name: str) -> UserSlot | None:
        """The slot of account ``name``, if it has one."""
        return next((s for s in self.slots if isinstance(s, UserSlot) and s.user == name), None)

    def users(self) -> list[str]:
        """The accounts that have a slot."""
        return [slot.user for slot in self.slots if isinstance(slot, UserSlot)]

    def district(self) -> DistrictSlot | None:
        """The district's slot, if the box has one."""
        return next((s for s in self.slots if isinstance(s, DistrictSlot)), None)

    def setup(self) -> SetupSlot | None:
        """The setup slot, while no account has a slot yet."""
        return next((s for s in self.slots if isinstance(s, SetupSlot)), None)

    def with_user(self, slot: UserSlot) -> KeySlots:
        """These slots with ``slot`` replacing its account's old one; the setup slot goes as
        soon as an account has one."""
        kept = (
            s
            for s in self.slots
            if not isinstance(s, SetupSlot)
            and not (isinstance(s, UserSlot) and s.user == slot.user)
        )
        return replace(self, slots=(*kept, slot))

    def with_district(self, slot: DistrictSlot) -> KeySlots:
        """These slots with ``slot`` in place of the district's old one (if any)."""
        kept = tuple(s for s in self.slots if not isinstance(s, DistrictSlot))
        return replace(self, slots=(slot, *kept))

    def without_user(self, name: str) -> KeySlots:
        """These slots without account ``name``'s."""
        kept = tuple(s for s in self.slots if not (isinstance(s, UserSlot) and s.user == name))
        return replace(self, slots=kept)

    def to_json(self) -> bytes:
        """The file's content."""
        document = {"version": VERSION, "node": self.node, "slots": [_dump(s) for s in self.slots]}
        return (json.dumps(document, indent=1) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> KeySlots:
        """Parse the file's content; :class:`SlotFileError` when it is not a slot file."""
        try:
            document = json.loads(data)
            if document.get("version") != VERSION:
                raise SlotFileError(
                    f"key slot file version {document.get('version')!r} is not {VERSION}: "
                    "written by another release"
                )
            return cls(str(document["node"]), tuple(_load(raw) for raw in document["slots"]))
        except SlotFileError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
            raise SlotFileError(f"not a key slot file ({type(exc).__name__}: {exc})") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(text, validate=True)


def _dump(slot: Slot) -> dict[str, Any]:
    match slot:
        case UserSlot():
            kdf = {"alg": "argon2id", "t": slot.cost.t, "m_kib": slot.cost.m_kib}
            kdf |= {"p": slot.cost.p, "salt": _b64(slot.salt)}
            return {"kind": "user", "user": slot.user, "kdf": kdf, "nonce": _b64(slot.nonce),
                    "wrapped": _b64(slot.wrapped)}  # fmt: skip
        case DistrictSlot():
            return {"kind": "district", "key_id": slot.key_id, "ephemeral": _b64(slot.ephemeral),
                    "nonce": _b64(slot.nonce), "wrapped": _b64(slot.wrapped)}  # fmt: skip
        case SetupSlot():
            return {"kind": "setup", "key": _b64(slot.key)}
        case UnknownSlot():
            return slot.raw


def _load(raw: dict[str, Any]) -> Slot:
    kind = raw["kind"]
    if kind == "user":
        kdf = raw["kdf"]
        if kdf["alg"] != "argon2id":
            raise ValueError(f"unknown key derivation {kdf['alg']!r}")
        cost = Argon2Cost(int(kdf["t"]), int(kdf["m_kib"]), int(kdf["p"]))
        return UserSlot(str(raw["user"]), cost, _unb64(kdf["salt"]), _unb64(raw["nonce"]),
                        _unb64(raw["wrapped"]))  # fmt: skip
    if kind == "district":
        return DistrictSlot(str(raw["key_id"]), _unb64(raw["ephemeral"]), _unb64(raw["nonce"]),
                            _unb64(raw["wrapped"]))  # fmt: skip
    if kind == "setup":
        return SetupSlot(_unb64(raw["key"]))
    return UnknownSlot(dict(raw))


# --- the slot file ---------------------------------------------------------------------------


def read_slots(data_dir: Path, node: str) -> KeySlots | None:
    """The box's slots (``None`` when it has no slot file: a box of an older release, still
    plain); :class:`SlotFileError` when the file is damaged or belongs to another node."""
    path = data_dir / SLOT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    slots = KeySlots.from_json(data)
    if slots.node != node:
        raise SlotFileError(f"{path} belongs to node {slots.node}, this box is {node}")
    return slots


def write_slots(data_dir: Path, slots: KeySlots) -> None:
    """Replace the box's slot file with ``slots`` (0600, atomic, on disk when it returns)."""
    replace_file(data_dir / SLOT_FILE, slots.to_json(), mode=0o600)


# --- user slots ------------------------------------------------------------------------------


def new_data_key() -> bytes:
    """A fresh random data key."""
    return os.urandom(DATA_KEY_BYTES)


def _user_context(user: str, node: str) -> bytes:
    return f"puskesos-slot/1/user/{user}/{node}".encode()


def _kek(password: str, salt: bytes, cost: Argon2Cost) -> bytes:
    return hash_secret_raw(password.encode("utf-8"), salt, cost.t, cost.m_kib, cost.p,
                           DATA_KEY_BYTES, Type.ID)  # fmt: skip


def wrap_for_user(
    data_key: bytes, *, user: str, node: str, password: str, cost: Argon2Cost = Argon2Cost()
) -> UserSlot:
    """A slot that gives ``data_key`` back to ``password`` for account ``user`` on ``node``."""
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    wrapped = AESGCM(_kek(password, salt, cost)).encrypt(nonce, data_key, _user_context(user, node))
    return UserSlot(user, cost, salt, nonce, wrapped)


def unwrap_user(slot: UserSlot, *, node: str, password: str) -> bytes:
    """The data key in ``slot``; :class:`WrongKey` when ``password`` is not the one it was
    wrapped with (or the slot was moved from another account or box)."""
    try:
        return AESGCM(_kek(password, slot.salt, slot.cost)).decrypt(
            slot.nonce, slot.wrapped, _user_context(slot.user, node)
        )
    except InvalidTag:
        raise WrongKey(f"the password does not open the key slot of {slot.user}") from None


def spend_like(cost: Argon2Cost, password: str) -> None:
    """Spend the time of an unwrap with ``cost`` and throw the result away: a sign-in with
    an unknown name takes as long as one with a wrong password."""
    _kek(password, os.urandom(_SALT_BYTES), cost)


# --- the district slot -----------------------------------------------------------------------


def _district_context(node: str) -> bytes:
    return f"puskesos-slot/1/district/{node}".encode()


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def recovery_key_id(key: X25519PublicKey) -> str:
    """The name of a recovery key in slots: 16 hex digits of the SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def _sealing_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=DATA_KEY_BYTES,
        salt=None,
        info=b"puskesos-slot/1/district" + ephemeral + recipient,
    ).derive(shared)


def seal_to(secret: bytes, *, public_key: X25519PublicKey, context: bytes) -> DistrictSlot:
    """``secret`` sealed so that only ``public_key``'s private key opens it, and only for
    ``context`` (the associated data that says what it is and whose)."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw_public(ephemeral.public_key())
    kek = _sealing_key(ephemeral.exchange(public_key), ephemeral_raw, _raw_public(public_key))
    nonce = os.urandom(_NONCE_BYTES)
    wrapped = AESGCM(kek).encrypt(nonce, secret, context)
    return DistrictSlot(recovery_key_id(public_key), ephemeral_raw, nonce, wrapped)


def open_sealed(sealed: DistrictSlot, *, private_key: X25519PrivateKey, context: bytes) -> bytes:
    """What :func:`seal_to` sealed for ``context``; :class:`WrongKey` for another key or
    context."""
    public = private_key.public_key()
    if recovery_key_id(public) != sealed.key_id:
        raise WrongKey(
            f"this key is {recovery_key_id(public)}, the secret was sealed to {sealed.key_id}"
        )
    ephemeral = X25519PublicKey.from_public_bytes(sealed.ephemeral)
    kek = _sealing_key(private_key.exchange(ephemeral), sealed.ephemeral, _raw_public(public))
    try:
        return AESGCM(kek).decrypt(sealed.nonce, sealed.wrapped, context)
    except InvalidTag:
        raise WrongKey("the key does not open this sealed secret") from None


def seal_for_district(data_key: bytes, *, node: str, public_key: X25519PublicKey) -> DistrictSlot:
    """A slot only the holder of ``public_key``'s private key can open."""
    return seal_to(data_key, public_key=public_key, context=_district_context(node))


def open_district(slot: DistrictSlot, *, node: str, private_key: X25519PrivateKey) -> bytes:
    """The data key in the district slot; :class:`WrongKey` for another district's key."""
    public = private_key.public_key()
    if recovery_key_id(public) != slot.key_id:
        raise WrongKey(
            f"this recovery key is {recovery_key_id(public)}, the box's slot was sealed to "
            f"{slot.key_id}"
        )
    try:
        return open_sealed(slot, private_key=private_key, context=_district_context(node))
    except WrongKey:
        raise WrongKey("the recovery key does not open this box's district slot") from None


def open_slots(
    slots: KeySlots,
    *,
    user: str | None = None,
    password: str | None = None,
    private_key: X25519PrivateKey | None = None,
) -> bytes:
    """The data key of ``slots``: from the setup slot while there is one, else from the
    district slot with ``private_key``, else from ``user``'s slot with ``password``;
    :class:`WrongKey` when what is given does not open them."""
    setup = slots.setup()
    if setup is not None:
        return setup.key
    if private_key is not None:
        district = slots.district()
        if district is None:
            raise WrongKey("there is no district slot (the box was set up with --no-recovery-key)")
        return open_district(district, node=slots.node, private_key=private_key)
    slot = slots.user(user) if user is not None else None
    if slot is None or password is None:
        raise WrongKey(f"there is no key slot of {user!r}")
    return unwrap_user(slot, node=slots.node, password=password)


# --- recovery key files ----------------------------------------------------------------------


def generate_recovery_key(private_path: Path) -> Path:
    """Make the district's recovery key pair: the private key at ``private_path`` (0600,
    PKCS#8 PEM, to be kept offline) and the public key beside it (``.pub``, the file boxes
    are given). Never overwrites a key; returns the public key's path."""
    public_path = private_path.with_suffix(".pub")
    key = X25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (private_path, public_path):
        if path.exists():
            raise SlotFileError(f"{path} already exists; a recovery key is never overwritten")
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file(private_path, private_pem, new=True, mode=0o600)
    write_file(public_path, public_pem, new=True, mode=0o644)
    return public_path


def load_recovery_public(path: Path) -> X25519PublicKey:
    """The district's recovery public key in the PEM file ``path``."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise SlotFileError(f"cannot read the recovery key {path}: {exc.strerror}") from None
    except ValueError:
        raise SlotFileError(f"{path} is not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise SlotFileError(f"{path} is not an X25519 recovery public key")
    return key


def load_recovery_private(path: Path) -> X25519PrivateKey:
    """The district's recovery private key in the PEM file ``path``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SlotFileError(f"cannot read the recovery key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise SlotFileError(f"{path} is not a PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise SlotFileError(f"{path} is not an X25519 recovery private key")
    return key
