"""The district's Ed25519 signing key: make it once, load it, sign and verify detached.

The private key is a PKCS#8 PEM file readable by its owner only (0600), next to it the
public key (``<name>.pub``, SubjectPublicKeyInfo PEM) that the national receiver registers.
Making a key never overwrites one: a lost or replaced key must be a deliberate act, because
the receiver only accepts datasets signed with the key it registered. A detached signature
travels as base64 text (one line).

``cryptography`` is imported inside the functions that need it: this module is imported
whenever the ``puskesos`` command builds its parser, also on a box.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from puskesos.durable import write_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from hub.cli import HubCommands

__all__ = [
    "KeyFileError",
    "add_commands",
    "decode_signature",
    "encode_signature",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "public_key_file",
    "public_pem",
    "sign",
    "verify",
]


class KeyFileError(ValueError):
    """A key file that cannot be made or read; the message says which and why."""


def public_key_file(private_path: Path) -> Path:
    """Where the public key of ``private_path`` is written: ``signing.key`` → ``signing.pub``."""
    return private_path.with_suffix(".pub")


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The public half of ``key`` as PEM (SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        write_file(path, data, new=True, mode=mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; a key is never overwritten") from None


def generate_key_pair(private_path: Path) -> bytes:
    """Make a new key pair at ``private_path`` (0600) and :func:`public_key_file`; returns
    the public key PEM. Raises :class:`KeyFileError` if either file exists."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public_path = public_key_file(private_path)
    if public_path.exists():
        raise KeyFileError(f"{public_path} already exists; a key is never overwritten")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem(key), 0o644)
    return public_pem(key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise KeyFileError(f"no signing key at {path}: make one with `hub keys init`") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """The Ed25519 public key in ``pem``; raises :class:`KeyFileError` if it is not one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError("not an Ed25519 public key")
    return key


def encode_signature(signature: bytes) -> str:
    """A raw signature as its one-line text form (base64)."""
    return base64.b64encode(signature).decode("ascii")


def decode_signature(text: str) -> bytes | None:
    """The raw signature from its text form; ``None`` when it is not base64 of 64 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """A detached signature of ``data``, in text form."""
    return encode_signature(key.sign(data))


def verify(key: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    """Whether ``signature`` (text form) is ``key``'s signature of ``data``."""
    from cryptography.exceptions import InvalidSignature

    raw = decode_signature(signature)
    if raw is None:
        return False
    try:
        key.verify(raw, data)
    except InvalidSignature:
        return False
    return True


def add_commands(commands: HubCommands) -> None:
    """Register ``keys init`` and ``keys recovery-init`` under ``puskesos hub``."""
    commands.group("keys", "the district's signing key and the boxes' recovery key")
    text = "make the signing key (hub.signing_key_file) and print its public key"
    commands.command("keys init", _init, text)
    text = (
        "make the district's recovery key pair for the boxes' encrypted data: the private key "
        "(0600) is kept offline, the public key (FILE.pub) goes to every box"
    )
    recovery = commands.command("keys recovery-init", _recovery_init, text)
    recovery.add_argument(
        "--out", type=Path, required=True, metavar="FILE",
        help="where to write the private key, e.g. on a USB stick (provisioning makes it on "
        "the hub: provisioning/README.md)",
    )  # fmt: skip


def _init(args: argparse.Namespace) -> int:
    from hub.config import load_config

    config = load_config(args.config)
    path = config.path(config.signing_key_file)
    pem = generate_key_pair(path)
    print(pem.decode("ascii"), end="")
    where = f"private key {path} (keep it secret), public key {public_key_file(path)}"
    print(where, file=sys.stderr)
    return 0


def _recovery_init(args: argparse.Namespace) -> int:
    from puskesos.keyslots import generate_recovery_key

    public = generate_recovery_key(args.out)
    print(public)
    print(
        f"private key {args.out}: keep it offline (two copies in two places); give boxes "
        f"{public} (provisioning: edge_district_recovery_key)",
        file=sys.stderr,
    )
    return 0
