"""The box's own secrets on an encrypted box (``docs/security.md``, "Secrets on the box"):
its broker password and the key its CSRF tokens are derived from, neither readable from the
SD card without the data key.

Both come from the data key, which only an unlocked box holds (``docs/storage.md`` §2):

- the **session key** is derived from it (HKDF-SHA256), so it is stored nowhere;
- the box's **sealing key pair** is derived from it too: the public key is written beside
  the database (``box-seal.pub``) whenever the box holds the data key, and anyone may seal
  a secret to it without a password (``puskesos edge secret set``, run by provisioning);
  the private key exists only in the running, unlocked box. The broker password sealed to
  it (``broker-password.sealed``, :func:`puskesos.keyslots.seal_to`) is opened each time
  the sync connects, so a rotation takes effect at the next reconnect, without a restart.

A plain box keeps the files of older releases (``[broker] password_file``,
``session_secret_file``). :func:`settle`, run whenever an encrypted box gets its data key
(``edge init``, a sign-in that unlocks or secures it), moves them over: a plain broker
password is sealed (written and fsynced beside, then renamed into place) before the plain
file is deleted, so a ``kill -9`` at any point leaves the password readable in one of the two
forms; a plain password file is never older than the sealed one (:func:`seal_secret` removes
it first), so sealing it again is always right.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge import keys
from edge.config import EdgeConfig
from puskesos.durable import fsync_dir, replace_file
from puskesos.keyslots import DistrictSlot, WrongKey, open_sealed, seal_to
from puskesos.webauth import load_secret

__all__ = [
    "PUBLIC_KEY_FILE",
    "SECRETS",
    "BoxSecretError",
    "broker_password",
    "prepare",
    "seal_secret",
    "session_secret",
    "settle",
]

log = logging.getLogger("puskesos.edge.boxsecrets")

#: The box's sealing public key, in its data folder.
PUBLIC_KEY_FILE = "box-seal.pub"
#: The secrets that can be sealed to a box, and their files in its data folder.
SECRETS = {"broker-password": "broker-password.sealed"}
_VERSION = 1


class BoxSecretError(ValueError):
    """A secret cannot be sealed to this box, or its sealed file is unusable."""


def _derive(data_key: bytes, purpose: str, node: str) -> bytes:
    info = f"puskesos-box/1/{purpose}/{node}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)


@functools.lru_cache(maxsize=4)
def session_secret(data_key: bytes, node: str) -> bytes:
    """The key CSRF tokens are derived from on an encrypted box (stored nowhere)."""
    return _derive(data_key, "session", node)


def _private_key(data_key: bytes, node: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_derive(data_key, "seal", node))


def _public_pem(data_key: bytes, node: str) -> bytes:
    return (
        _private_key(data_key, node)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _public_key(config: EdgeConfig) -> X25519PublicKey:
    path = config.data_dir / PUBLIC_KEY_FILE
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise BoxSecretError(
            f"there is no {path}: the box is not encrypted, or has not held its data key "
            "since this release (a staff sign-in makes it); give a plain box its password "
            "in [broker] password_file"
        ) from None
    except ValueError:
        raise BoxSecretError(f"{path} is not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise BoxSecretError(f"{path} is not an X25519 public key")
    return key


def _context(name: str, node: str) -> bytes:
    return f"puskesos-secret/1/{name}/{node}".encode()


def _sealed_path(config: EdgeConfig, name: str) -> Path:
    try:
        return config.data_dir / SECRETS[name]
    except KeyError:
        raise BoxSecretError(
            f"{name!r} is not a secret of the box: {', '.join(sorted(SECRETS))}"
        ) from None


def _plain_path(config: EdgeConfig, name: str) -> Path | None:
    """The plain file of secret ``name`` that older releases (and plain boxes) read."""
    if name == "broker-password" and config.broker.password_file:
        return config.data_dir / Path(config.broker.password_file)
    return None


def _write_sealed(config: EdgeConfig, name: str, value: str, public: X25519PublicKey) -> Path:
    sealed = seal_to(value.encode("utf-8"), public_key=public, context=_context(name, config.node))
    document = {
        "version": _VERSION,
        "node": config.node,
        "secret": name,
        "key_id": sealed.key_id,
        "ephemeral": base64.b64encode(sealed.ephemeral).decode("ascii"),
        "nonce": base64.b64encode(sealed.nonce).decode("ascii"),
        "wrapped": base64.b64encode(sealed.wrapped).decode("ascii"),
    }
    path = _sealed_path(config, name)
    replace_file(path, (json.dumps(document, indent=1) + "\n").encode("utf-8"), mode=0o600)
    return path


def _open(config: EdgeConfig, data_key: bytes, name: str) -> str | None:
    """The secret in its sealed file (``None`` when there is none); :class:`BoxSecretError`
    when the file is damaged or sealed to another key (another box, another data key)."""
    path = _sealed_path(config, name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        document = json.loads(data)
        if document["version"] != _VERSION or document["node"] != config.node:
            raise BoxSecretError(f"{path} was not sealed to this box by this release")
        fields = ("ephemeral", "nonce", "wrapped")
        raw = (base64.b64decode(document[field], validate=True) for field in fields)
        sealed = DistrictSlot(str(document["key_id"]), *raw)
        private = _private_key(data_key, config.node)
        opened = open_sealed(sealed, private_key=private, context=_context(name, config.node))
        return opened.decode("utf-8")
    except BoxSecretError:
        raise
    except WrongKey:
        raise BoxSecretError(
            f"{path} was sealed to another key: seal the secret again "
            "(`puskesos edge secret set`, or rotate-credentials.yml)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:  # binascii and JSON errors too
        raise BoxSecretError(f"{path} is damaged ({type(exc).__name__})") from None


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def seal_secret(config: EdgeConfig, name: str, value: str) -> Path:
    """Seal ``value`` as secret ``name`` to the box (no password needed) and return its
    file; the plain file it replaces is removed first, so a plain file is never older than
    the sealed one. :class:`BoxSecretError` on a box without a sealing key."""
    _sealed_path(config, name)  # a secret the box knows
    public = _public_key(config)
    plain = _plain_path(config, name)
    if plain is not None and plain.exists():
        try:
            _remove(plain)
        except PermissionError:
            raise BoxSecretError(
                f"cannot remove the plain {plain}: remove it first (provisioning does)"
            ) from None
    return _write_sealed(config, name, value, public)


def broker_password(config: EdgeConfig, data_key: bytes | None) -> str | None:
    """The broker password: sealed to the box when it holds ``data_key`` and has the sealed
    file, else from ``[broker] password_file`` (a plain box, or one not moved yet); ``None``
    without one. An unusable file is logged, not fatal: the box keeps working offline and
    the broker refuses the connection, which the sync page shows."""
    try:
        if data_key is not None and (sealed := _open(config, data_key, "broker-password")):
            return sealed
    except BoxSecretError as exc:
        log.error("cannot open the sealed broker password: %s", exc)
        return None
    plain = _plain_path(config, "broker-password")
    if plain is None:
        return None
    try:
        return plain.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if data_key is None and keys.encrypted(config):
            return None  # locked: the sealed file opens at the sign-in
        log.error("cannot read the broker password file %s: it does not exist", plain)
    except OSError as exc:
        log.error("cannot read the broker password file %s: %s", plain, exc.strerror)
    return None


def settle(config: EdgeConfig, data_key: bytes) -> None:
    """On a box that holds ``data_key``: write its sealing public key, seal a plain broker
    password and delete the plain file, delete a plain session key file (see the module's
    docstring for the order). A plain file the box may not delete (``/etc/puskesos`` is
    root's) is left to provisioning, and logged."""
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_file = config.data_dir / PUBLIC_KEY_FILE
    pem = _public_pem(data_key, config.node)
    if not public_file.exists() or public_file.read_bytes() != pem:
        replace_file(public_file, pem, mode=0o644)
    plain = _plain_path(config, "broker-password")
    if plain is not None and plain.exists():
        value = plain.read_text(encoding="utf-8").strip()
        public = _private_key(data_key, config.node).public_key()
        _write_sealed(config, "broker-password", value, public)
        try:
            _remove(plain)
        except PermissionError:
            log.warning("the broker password is sealed; provisioning removes the plain %s", plain)
        else:
            log.info("the broker password is sealed to the box; the plain file is deleted")
    session = config.data_dir / config.session_secret_file
    if session.exists():
        _remove(session)
        log.info("the plain session key file is deleted: the data key gives it")


def prepare(config: EdgeConfig, data_key: bytes | None) -> None:
    """What ``edge init`` does for the box's secrets: a plain box gets its session key file
    (made once), an encrypted one holding ``data_key`` is settled (:func:`settle`)."""
    if data_key is not None:
        settle(config, data_key)
    elif not keys.encrypted(config):
        load_secret(config.data_dir / config.session_secret_file)
