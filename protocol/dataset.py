"""The monthly dataset a district delivers to the national level: its manifest and receipt.

A dataset is a folder: per entity one JSON Lines file (``household.jsonl``) and one CSV file
(``household.csv``), then ``manifest.json`` (this module's :class:`Manifest`, written as its
:func:`canonical_bytes`) and ``manifest.sig`` (a detached Ed25519 signature over those bytes,
made with the district's key; see ``hub/keys.py``). The manifest names every file with its
record count, byte size and SHA-256, so the signature covers every byte of the delivery.

A receiver answers a completed delivery with a :class:`Receipt`. Both travel as JSON; the
reason codes of every refusal on the way are :class:`DatasetReason` (``docs/national.md``).

Pure: no I/O. Signing and verifying live with the keys, outside ``protocol/``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from protocol.entities import ENTITIES

__all__ = [
    "DATASET_FORMAT",
    "DATASET_VERSION",
    "FORMATS",
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "DatasetError",
    "DatasetFile",
    "DatasetReason",
    "Manifest",
    "Receipt",
    "canonical_bytes",
    "canonical_json",
    "file_name",
    "is_district",
    "is_period",
    "manifest_sha256",
    "parse_manifest",
    "parse_receipt",
]

#: What ``manifest.json`` says it is, and the version of this layout.
DATASET_FORMAT = "puskesos.dataset"
DATASET_VERSION = 1
#: The file formats of a dataset, one file of each per entity.
FORMATS = ("jsonl", "csv")
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"

_DISTRICT_RE = re.compile(r"[0-9]{4}")
_PERIOD_RE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class DatasetReason(StrEnum):
    """Why a dataset, a manifest or a step of a delivery is refused. Stable: they cross the
    wire between a hub and a national receiver."""

    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    WRONG_DISTRICT = "wrong_district"
    WRONG_PERIOD = "wrong_period"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_DISTRICT = "unknown_district"
    UNAUTHORIZED = "unauthorized"
    ALREADY_DELIVERED = "already_delivered"
    NO_UPLOAD = "no_upload"
    UNKNOWN_FILE = "unknown_file"
    OFFSET_MISMATCH = "offset_mismatch"
    TOO_LARGE = "too_large"
    INCOMPLETE = "incomplete"
    SIZE_MISMATCH = "size_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"


class DatasetError(ValueError):
    """A dataset or delivery refused; ``reason`` is the code, ``detail`` says where."""

    def __init__(self, reason: DatasetReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DatasetFile:
    """One file of a dataset, as the manifest lists it."""

    name: str
    entity: str
    format: str
    records: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a district delivers for one period: every file and the totals per entity."""

    district: str
    period: str
    created_ms: int
    schema_version: int
    files: tuple[DatasetFile, ...]
    counts: Mapping[str, int]

    @property
    def total_bytes(self) -> int:
        """The bytes of every file together."""
        return sum(f.bytes for f in self.files)

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (the form :func:`canonical_bytes` encodes)."""
        return {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "district": self.district,
            "period": self.period,
            "created_ms": self.created_ms,
            "schema_version": self.schema_version,
            "files": [
                {
                    "name": f.name,
                    "entity": f.entity,
                    "format": f.format,
                    "records": f.records,
                    "bytes": f.bytes,
                    "sha256": f.sha256,
                }
                for f in self.files
            ],
            "counts": dict(self.counts),
        }


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receiver's acknowledgement that a delivery is stored, whole and verified."""

    receipt_id: str
    district: str
    period: str
    manifest_sha256: str
    received_ms: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        """The receipt as a JSON object (the form a receiver signs)."""
        return {
            "receipt_id": self.receipt_id,
            "district": self.district,
            "period": self.period,
            "manifest_sha256": self.manifest_sha256,
            "received_ms": self.received_ms,
            "bytes": self.bytes,
        }


def is_district(text: object) -> bool:
    """Whether ``text`` is a 4-digit regency/city code (``3201``)."""
    return isinstance(text, str) and _DISTRICT_RE.fullmatch(text) is not None


def is_period(text: object) -> bool:
    """Whether ``text`` is a period ``YYYY-MM``."""
    return isinstance(text, str) and _PERIOD_RE.fullmatch(text) is not None


def file_name(entity: str, fmt: str) -> str:
    """The name of an entity's file in a given format: ``household.jsonl``."""
    return f"{entity}.{fmt}"


def canonical_json(value: Any) -> bytes:
    """``value`` as sorted-key, compact UTF-8 JSON: the bytes that get signed and hashed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def canonical_bytes(manifest: Manifest) -> bytes:
    """The manifest's signed form."""
    return canonical_json(manifest.to_json())


def manifest_sha256(manifest: Manifest) -> str:
    """The hex SHA-256 of the manifest's signed form: the identity of a delivery."""
    return hashlib.sha256(canonical_bytes(manifest)).hexdigest()


def _malformed(detail: str) -> DatasetError:
    return DatasetError(DatasetReason.MALFORMED, detail)


def _count(raw: Mapping[str, Any], key: str, where: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _malformed(f"{where}.{key} must be a non-negative integer")
    return value


def _file(raw: object, index: int) -> DatasetFile:
    where = f"files[{index}]"
    if not isinstance(raw, dict):
        raise _malformed(f"{where} must be an object")
    if set(raw) != {"name", "entity", "format", "records", "bytes", "sha256"}:
        raise _malformed(f"{where} must have name, entity, format, records, bytes, sha256")
    entity, fmt, name, digest = raw["entity"], raw["format"], raw["name"], raw["sha256"]
    if entity not in ENTITIES:
        raise _malformed(f"{where}.entity {entity!r} is not an entity")
    if fmt not in FORMATS:
        raise _malformed(f"{where}.format {fmt!r} is not one of {', '.join(FORMATS)}")
    if name != file_name(entity, fmt):
        raise _malformed(f"{where}.name must be {file_name(entity, fmt)!r}")
    if not isinstance(digest, str) or _SHA256_RE.fullmatch(digest) is None:
        raise _malformed(f"{where}.sha256 must be 64 lower-case hex digits")
    return DatasetFile(
        name, entity, fmt, _count(raw, "records", where), _count(raw, "bytes", where), digest
    )


def parse_manifest(
    data: bytes | Mapping[str, Any], *, district: str | None = None, period: str | None = None
) -> Manifest:
    """Read and check a manifest (its bytes or its JSON object).

    ``district`` and ``period``, when given, are what the manifest must be for. Raises
    :class:`DatasetError` with the reason: ``malformed`` (not JSON, a missing or wrong
    field, a file listed twice, counts that disagree with the files),
    ``unsupported_version``, ``wrong_district``, ``wrong_period``.
    """
    if isinstance(data, bytes | bytearray):
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _malformed(f"not JSON: {exc}") from None
    else:
        raw = data
    if not isinstance(raw, dict):
        raise _malformed("a manifest is a JSON object")
    if raw.get("format") != DATASET_FORMAT:
        raise _malformed(f"format must be {DATASET_FORMAT!r}")
    if raw.get("version") != DATASET_VERSION:
        raise DatasetError(
            DatasetReason.UNSUPPORTED_VERSION,
            f"version {raw.get('version')!r}; this side reads {DATASET_VERSION}",
        )
    expected = {
        "format",
        "version",
        "district",
        "period",
        "created_ms",
        "schema_version",
        "files",
        "counts",
    }
    if set(raw) != expected:
        raise _malformed(f"a manifest has exactly the keys {', '.join(sorted(expected))}")
    if not is_district(raw["district"]):
        raise _malformed("district must be a 4-digit regency code")
    if not is_period(raw["period"]):
        raise _malformed("period must be YYYY-MM")
    created_ms = _count(raw, "created_ms", "manifest")
    schema_version = _count(raw, "schema_version", "manifest")
    if not isinstance(raw["files"], list) or not raw["files"]:
        raise _malformed("files must be a non-empty list")
    files = tuple(_file(item, i) for i, item in enumerate(raw["files"]))
    if len({f.name for f in files}) != len(files):
        raise _malformed("a file is listed twice")
    counts = raw["counts"]
    if not isinstance(counts, dict):
        raise _malformed("counts must be an object")
    for entity in counts:
        _count(counts, entity, "counts")
    for f in files:
        if counts.get(f.entity) != f.records:
            raise _malformed(f"{f.name} has {f.records} records, counts say {counts.get(f.entity)}")
    if set(counts) != {f.entity for f in files}:
        raise _malformed("counts must name exactly the entities of the files")
    manifest = Manifest(
        raw["district"], raw["period"], created_ms, schema_version, files, dict(counts)
    )
    if district is not None and manifest.district != district:
        raise DatasetError(
            DatasetReason.WRONG_DISTRICT, f"manifest is for {manifest.district}, not {district}"
        )
    if period is not None and manifest.period != period:
        raise DatasetError(
            DatasetReason.WRONG_PERIOD, f"manifest is for {manifest.period}, not {period}"
        )
    return manifest


def parse_receipt(raw: object) -> Receipt:
    """Read a receipt's JSON object; raises :class:`DatasetError` (``malformed``)."""
    keys = {"receipt_id", "district", "period", "manifest_sha256", "received_ms", "bytes"}
    if not isinstance(raw, dict) or set(raw) != keys:
        raise _malformed(f"a receipt has exactly the keys {', '.join(sorted(keys))}")
    if not isinstance(raw["receipt_id"], str) or not raw["receipt_id"]:
        raise _malformed("receipt_id must be a non-empty string")
    if not is_district(raw["district"]) or not is_period(raw["period"]):
        raise _malformed("receipt district or period is not valid")
    digest = raw["manifest_sha256"]
    if not isinstance(digest, str) or _SHA256_RE.fullmatch(digest) is None:
        raise _malformed("manifest_sha256 must be 64 lower-case hex digits")
    return Receipt(
        raw["receipt_id"],
        raw["district"],
        raw["period"],
        digest,
        _count(raw, "received_ms", "receipt"),
        _count(raw, "bytes", "receipt"),
    )
