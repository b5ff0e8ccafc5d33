"""What the receiver keeps: the district registry (SQLite) and the deliveries (folders).

The file system is the truth of a delivery, so a crash at any moment leaves a state the
next request reads correctly:

- ``uploads/<district>/<period>/<manifest sha256>/``: an open upload: the manifest, its
  signature and the files as received so far. A file's size on disk *is* its received
  offset: bytes are appended in order and a chunk cut short by a crash leaves a correct
  prefix, from which the client resumes.
- ``deliveries/<district>/<period>/``: a finished delivery: the verified files, the
  manifest, its signature and ``receipt.json``. It appears by one ``rename`` of the upload
  folder once every file has been checked against the manifest, so it is whole or absent.

The registry (``registry.sqlite``) holds each district's public key and the SHA-256 of its
bearer token (never the token).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.keys import KeyFileError, load_public_key, sign, verify
from protocol.dataset import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    DatasetError,
    DatasetReason,
    Manifest,
    Receipt,
    canonical_bytes,
    canonical_json,
    is_district,
    manifest_sha256,
    parse_manifest,
)
from protocol.ids import uuid7
from puskesos.durable import fsync_dir, write_file

__all__ = [
    "RECEIPT_FILE",
    "DeliveryStore",
    "FileState",
    "Registry",
    "RegistryError",
    "check_signature",
]

RECEIPT_FILE = "receipt.json"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS districts (
    code TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
)
"""


class RegistryError(ValueError):
    """A registry request that cannot be done; the message says why."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Registry:
    """The registered districts: code, public key, hashed bearer token."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path)
        connection.execute(_SCHEMA)
        return connection

    def add_district(self, code: str, public_key_pem: bytes, now_ms: int) -> str:
        """Register a district with its public key; returns its bearer token (shown once)."""
        if not is_district(code):
            raise RegistryError(f"{code!r} is not a 4-digit regency/city code")
        try:
            load_public_key(public_key_pem)
        except KeyFileError as exc:
            raise RegistryError(str(exc)) from None
        token = secrets.token_urlsafe(32)
        connection = self._connect()
        try:
            with connection:
                connection.execute(
                    "INSERT INTO districts VALUES (?, ?, ?, ?)",
                    (code, public_key_pem.decode("ascii"), _token_hash(token), now_ms),
                )
        except sqlite3.IntegrityError:
            raise RegistryError(f"district {code} is already registered") from None
        finally:
            connection.close()
        return token

    def public_key(self, code: str) -> bytes | None:
        """The district's registered public key (PEM); ``None`` for an unknown district."""
        connection = self._connect()
        try:
            row = connection.execute(
                "SELECT public_key FROM districts WHERE code = ?", (code,)
            ).fetchone()
        finally:
            connection.close()
        return None if row is None else str(row[0]).encode("ascii")

    def district_of(self, token: str) -> str | None:
        """The district whose bearer token this is."""
        connection = self._connect()
        try:
            row = connection.execute(
                "SELECT code FROM districts WHERE token_hash = ?", (_token_hash(token),)
            ).fetchone()
        finally:
            connection.close()
        return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class FileState:
    """One file of an upload: what the manifest declares and what is on disk."""

    name: str
    bytes: int
    received: int


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class DeliveryStore:
    """Uploads and deliveries under ``data_dir`` (see the module docstring).

    Every method is blocking (file system); the web layer runs them in a worker thread,
    one request per (district, period) at a time.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def delivery_dir(self, district: str, period: str) -> Path:
        """The folder of a finished delivery."""
        return self.data_dir / "deliveries" / district / period

    def upload_dir(self, district: str, period: str, upload: str) -> Path:
        """The folder of an open upload (``upload`` is its manifest's SHA-256)."""
        return self.data_dir / "uploads" / district / period / upload

    def delivered(self, district: str, period: str) -> dict[str, Any] | None:
        """The signed receipt of the period's delivery, if there is one."""
        path = self.delivery_dir(district, period) / RECEIPT_FILE
        try:
            document: dict[str, Any] = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        return document

    def current_upload(self, district: str, period: str) -> str | None:
        """The id of the period's open upload, if one is open."""
        folder = self.data_dir / "uploads" / district / period
        if not folder.is_dir():
            return None
        names = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
        return names[0] if names else None

    def open_upload(
        self, district: str, period: str, manifest: Manifest, signature: str
    ) -> tuple[str, bool]:
        """Open an upload for a verified manifest, or find the one already open.

        Returns (upload id, whether it was created). An open upload of another manifest
        for the same period is discarded: the district re-exported, the new one counts.
        """
        upload = manifest_sha256(manifest)
        folder = self.upload_dir(district, period, upload)
        if folder.is_dir():
            return upload, False
        period_dir = folder.parent
        if period_dir.is_dir():
            shutil.rmtree(period_dir)
        period_dir.mkdir(parents=True)
        temp = period_dir / f".{upload}"
        temp.mkdir()
        write_file(temp / MANIFEST_FILE, canonical_bytes(manifest))
        write_file(temp / SIGNATURE_FILE, (signature + "\n").encode("ascii"))
        for f in manifest.files:
            (temp / f.name).touch()
        fsync_dir(temp)
        temp.rename(folder)
        fsync_dir(period_dir)
        return upload, True

    def manifest(self, district: str, period: str, upload: str) -> Manifest:
        """The manifest of an open upload; ``no_upload`` when it is not open."""
        try:
            data = (self.upload_dir(district, period, upload) / MANIFEST_FILE).read_bytes()
        except FileNotFoundError:
            raise DatasetError(
                DatasetReason.NO_UPLOAD, f"no open upload {upload} for {district} {period}"
            ) from None
        return parse_manifest(data)

    def files(self, district: str, period: str, upload: str) -> list[FileState]:
        """Each file of an open upload with the bytes received so far."""
        folder = self.upload_dir(district, period, upload)
        return [
            FileState(f.name, f.bytes, (folder / f.name).stat().st_size)
            for f in self.manifest(district, period, upload).files
        ]

    def finalize(
        self, district: str, period: str, upload: str, key: Any, now_ms: int
    ) -> dict[str, Any]:
        """Check every file against the manifest and store the delivery; returns the
        signed receipt. A file that is short is ``incomplete``; one that is longer or does
        not hash right is discarded (truncated, to be sent again) and refused."""
        manifest = self.manifest(district, period, upload)
        folder = self.upload_dir(district, period, upload)
        short = [
            f"{f.name} ({size} of {f.bytes} bytes)"
            for f in manifest.files
            if (size := (folder / f.name).stat().st_size) < f.bytes
        ]
        if short:
            raise DatasetError(DatasetReason.INCOMPLETE, "missing bytes: " + ", ".join(short))
        for f in manifest.files:
            path = folder / f.name
            if path.stat().st_size != f.bytes:
                os.truncate(path, 0)
                raise DatasetError(
                    DatasetReason.SIZE_MISMATCH, f"{f.name} is longer than the manifest says"
                )
            if _sha256_of(path) != f.sha256:
                os.truncate(path, 0)
                raise DatasetError(
                    DatasetReason.CHECKSUM_MISMATCH,
                    f"{f.name} does not match its SHA-256 in the manifest; send it again",
                )
        receipt = Receipt(
            uuid7(now_ms), district, period, upload, now_ms, manifest.total_bytes
        ).to_json()
        signed = {"receipt": receipt, "signature": sign(key, canonical_json(receipt))}
        write_file(folder / RECEIPT_FILE, canonical_json(signed))
        fsync_dir(folder)
        target = self.delivery_dir(district, period)
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(target)
        fsync_dir(target.parent)
        shutil.rmtree(folder.parent, ignore_errors=True)
        return signed


def check_signature(public_key_pem: bytes, manifest: Manifest, signature: str | None) -> None:
    """Refuse an unsigned manifest or one the district's key did not sign."""
    if not signature:
        raise DatasetError(DatasetReason.UNSIGNED, "the manifest comes without a signature")
    if not verify(load_public_key(public_key_pem), canonical_bytes(manifest), signature):
        raise DatasetError(
            DatasetReason.BAD_SIGNATURE,
            "the signature does not match the manifest and the district's registered key",
        )
