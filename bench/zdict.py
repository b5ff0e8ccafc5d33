"""How ``protocol/data/zdict-2.bin``, the preset dictionary of wire compression code 2, was
made. Run once (2026-12, entity schema version 7); never again to change that file: boxes
and hubs in the field inflate with it, and a new dictionary would be a new compression code
(``protocol/SPEC.md`` §5.1). ``tests/protocol/test_codec.py`` checks its hash.

Run: ``python bench/zdict.py OUT`` (from the repository root). The dictionary holds, in this
order (zlib finds the end of a dictionary at the shortest distances, so the commonest comes
last): every entity's name, field names and enum codes as MessagePack strings; then the
version 2 bodies of single-change batches of synthetic records unlike the benchmark's
(other seeds): records of the smaller entities, members and households as created, and
household revisits of 1 to 10 fields. It stays under 32 KB, zlib's window.
"""

from __future__ import annotations

import random
import sys
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import msgspec

from protocol.changes import Batch, Change, FieldVersion
from protocol.clock import HybridClock
from protocol.codec import _batch_to_wire_2  # the body before compression: what zlib sees
from protocol.entities import ENTITIES
from protocol.ids import UuidV7Generator
from protocol.schema import FieldKind, FieldSpec
from puskesos.samples import make_household_with_members

LIMIT = 30 * 1024
START_MS = 1_796_000_000_000
VILLAGES = ("3201022001", "3204052003", "3273011005", "3603122004")
PLACES = ("Kp. Cikaret", "Jl. Raya Bogor", "Gg. Haji Sanip", "Perum Griya Asri Blok C")
TEXTS = ("Sudah dikunjungi", "Rumah kosong", "Pindah ke Bekasi", "Perlu verifikasi ulang")


def vocabulary() -> bytes:
    words: list[str] = []
    for entity in ENTITIES.values():
        words.append(entity.name)
        for spec in entity.fields.values():
            words.append(spec.name)
            words.extend(spec.choices)
    return b"".join(msgspec.msgpack.encode(word) for word in dict.fromkeys(words))


def value(spec: FieldSpec, rng: random.Random, make_id: UuidV7Generator) -> object:
    """A plausible value of ``spec`` (a dictionary needs the bytes, not valid records)."""
    kind = spec.kind
    if kind is FieldKind.ENUM:
        return rng.choice(spec.choices)
    if kind is FieldKind.ENUM_SET:
        return sorted(rng.sample(spec.choices, rng.randint(0, min(2, len(spec.choices)))))
    if kind is FieldKind.BOOL:
        return rng.random() < 0.2
    if kind is FieldKind.INT:
        return rng.randint(1, 10)
    if kind is FieldKind.DECIMAL:
        return round(rng.uniform(2, 120), 1)
    if kind is FieldKind.DATE:
        return (date(2026, 1, 1) + timedelta(days=rng.randint(0, 330))).isoformat()
    if kind is FieldKind.REF:
        return make_id(START_MS - rng.randint(0, 10**9))
    if kind is FieldKind.PERIOD:
        return f"2026-{rng.randint(1, 12):02d}"
    if kind is FieldKind.REGION:
        return rng.choice(VILLAGES)
    if spec.name in ("rt", "rw"):
        return f"{rng.randint(1, 20):03d}"
    if spec.name == "address":
        return f"{rng.choice(PLACES)} No. {rng.randint(1, 200)}"
    return rng.choice(TEXTS)


def body(node: str, seq: int, change: Change) -> bytes:
    return msgspec.msgpack.encode(_batch_to_wire_2(Batch(node, seq, (change,))))


def samples(rng: random.Random) -> list[bytes]:
    """Single-change batch bodies, commonest last."""
    make_id = UuidV7Generator(random_bytes=rng.randbytes)
    clocks = {f"edge-{v}-{s}": HybridClock(f"edge-{v}-{s}") for v in VILLAGES for s in "ab"}
    nodes = list(clocks)
    out: list[bytes] = []
    now = START_MS

    def change(entity: str, village: str, node: str, values: dict[str, object], rid: str) -> bytes:
        nonlocal now
        now += rng.randint(1000, 90_000)
        stamp = clocks[node].now(now)
        seen = ((node, stamp.time - rng.randint(1, 10**12)),) if rng.random() < 0.5 else ()
        fields = {k: FieldVersion(v, stamp.time, node, seen) for k, v in values.items()}  # type: ignore[arg-type]
        return body(node, rng.randint(1, 5000), Change(entity, rid, village, node, fields))

    for name in ("referral", "complaint", "visit", "layanan", "proposal"):
        entity = ENTITIES[name]
        for _ in range(2):
            node = rng.choice(nodes)
            specs = [s for s in entity.fields.values() if not s.readonly and s.name != "deleted"]
            values = {s.name: value(s, rng, make_id) for s in specs}
            out.append(change(name, node[5:15], node, values, make_id(now)))
    for seed in range(6):
        node = rng.choice(nodes)
        household, members = make_household_with_members(3, village=node[5:15], seed=100 + seed)
        for member in members[:2]:
            values = {k: v for k, v in member.items() if k != "id"}
            out.append(change("member", node[5:15], node, values, member["id"]))
        values = {k: v for k, v in household.items() if k not in ("id",)}
        out.append(change("household", node[5:15], node, values, household["id"]))
    household_fields = [
        s
        for s in ENTITIES["household"].fields.values()
        if not s.readonly and s.kind not in ("region", "nik", "kk")
    ]
    for _ in range(400):
        node = rng.choice(nodes)
        chosen = rng.sample(household_fields, rng.randint(1, 10))
        values = {s.name: value(s, rng, make_id) for s in chosen}
        out.append(change("household", node[5:15], node, values, make_id(now - 10**8)))
    return out


def main() -> None:
    rng = random.Random(2026_12)
    dictionary = vocabulary()
    parts = samples(rng)
    # The revisits fill what the vocabulary and the records leave, newest (last) kept.
    head, revisits = parts[:-400], parts[-400:]
    dictionary += b"".join(head)
    room = LIMIT - len(dictionary)
    tail = b""
    for part in reversed(revisits):
        if len(tail) + len(part) > room:
            break
        tail = part + tail
    Path(sys.argv[1]).write_bytes(dictionary + tail)
    print(f"{len(dictionary + tail)} bytes")


if __name__ == "__main__":
    main()
