"""The published-results file of a period: decile and programme eligibility per household.

This is a **stand-in** for what BPS publishes on the 20th (a proxy-means test over 39
variables, ranked nationally). It is deterministic, so tests and demos can rely on it:

- welfare points: one point for each of nine household conditions that a better-off
  household tends to have (floor not earth/bamboo, brick walls, concrete or tile roof,
  piped/bottled/bored-well water, metered PLN electricity, clean cooking fuel, own toilet,
  own house, at least 40 m² of floor);
- a per-household jitter of -1, 0 or +1 from the SHA-256 of its id (so equal houses do not
  all land in one decile);
- decile = points + 1 + jitter, kept within 1..10;
- programmes by decile: ``blt_dana_desa`` 1, ``pkh`` 1-3, ``sembako_bpnt`` 1-4, ``pbi_jk`` 1-5
  (the codes of the household field ``programmes``).

Withdrawn households (``deleted``) are left out. The file is JSON Lines: a header line
``{"format": "puskesos.published", "version": 1, "district", "period", "published_ms",
"method"}``, then ``{"id", "decile", "programmes"}`` per household. Beside it,
``<file>.sig`` holds ``{"statement": {...}, "signature": ...}``: the receiver's Ed25519
signature over the canonical JSON of a statement naming the file's SHA-256, size and
household count. The delivery is read line by line, so memory stays flat.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hub.keys import sign
from national.store import DeliveryStore
from protocol.dataset import canonical_json, file_name

__all__ = ["PUBLISHED_FORMAT", "PublishError", "decile_of", "programmes_of", "publish"]

PUBLISHED_FORMAT = "puskesos.published"
METHOD = "stand-in-v1: welfare points + id jitter (not BPS's proxy-means test)"

_BETTER: Mapping[str, frozenset[str]] = {
    "floor_material": frozenset(
        {"marmer_granit", "keramik", "parket_vinil_karpet", "ubin_tegel_teraso", "kayu_papan"}
    ),
    "wall_material": frozenset({"tembok"}),
    "roof_material": frozenset({"beton", "genteng"}),
    "drinking_water_source": frozenset(
        {"air_kemasan", "air_isi_ulang", "leding", "sumur_bor_pompa"}
    ),
    "lighting_source": frozenset({"pln_meteran"}),
    "cooking_fuel": frozenset({"listrik", "elpiji_5_5_12kg", "gas_kota"}),
    "toilet_facility": frozenset({"sendiri"}),
    "ownership_status": frozenset({"milik_sendiri"}),
}
#: Programme code → the highest decile that is eligible.
_PROGRAMMES = (("blt_dana_desa", 1), ("pkh", 3), ("sembako_bpnt", 4), ("pbi_jk", 5))


class PublishError(ValueError):
    """A period that cannot be published; the message says why."""


def decile_of(record_id: str, values: Mapping[str, Any]) -> int:
    """The stand-in decile (1 poorest .. 10) of a household (see the module docstring)."""
    points = sum(1 for name, better in _BETTER.items() if values.get(name) in better)
    area = values.get("floor_area_m2")
    if isinstance(area, int | float) and not isinstance(area, bool) and area >= 40:
        points += 1
    jitter = hashlib.sha256(record_id.encode()).digest()[0] % 3 - 1
    return max(1, min(10, points + 1 + jitter))


def programmes_of(decile: int) -> list[str]:
    """The programmes a household of ``decile`` is eligible for, in a stable order."""
    return [code for code, highest in _PROGRAMMES if decile <= highest]


def publish(
    data_dir: Path, district: str, period: str, *, key: Any, out: Path, now_ms: int
) -> dict[str, Any]:
    """Write the published-results file ``out`` and ``out.sig`` for a delivered period;
    returns the signed statement. Raises :class:`PublishError` when nothing was delivered."""
    source_dir = DeliveryStore(data_dir).delivery_dir(district, period)
    source = source_dir / file_name("household", "jsonl")
    if not source.is_file():
        raise PublishError(f"no delivery of {district} for {period}")
    digest = hashlib.sha256()
    size = households = 0
    header = {
        "format": PUBLISHED_FORMAT,
        "version": 1,
        "district": district,
        "period": period,
        "published_ms": now_ms,
        "method": METHOD,
    }
    temp = out.with_name(f".{out.name}.partial")
    with open(source, "rb") as lines, open(temp, "wb", buffering=1 << 20) as target:

        def emit(item: Mapping[str, Any]) -> None:
            nonlocal size
            data = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
            target.write(data)
            digest.update(data)
            size += len(data)

        emit(header)
        for line in lines:
            record = json.loads(line)
            values = record["values"]
            if values.get("deleted") is True:
                continue
            decile = decile_of(record["id"], values)
            emit({"id": record["id"], "decile": decile, "programmes": programmes_of(decile)})
            households += 1
        target.flush()
        os.fsync(target.fileno())
    statement = {
        "format": PUBLISHED_FORMAT,
        "district": district,
        "period": period,
        "file_sha256": digest.hexdigest(),
        "bytes": size,
        "households": households,
    }
    signed = {"statement": statement, "signature": sign(key, canonical_json(statement))}
    signature_file = out.with_name(out.name + ".sig")
    signature_file.write_bytes(canonical_json(signed) + b"\n")
    temp.replace(out)
    return signed
