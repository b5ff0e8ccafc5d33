"""Protocol benchmark: field merges per second and bytes on the wire per household update.

Run: ``python bench/protocol.py`` (from the repository root, after ``pip install -e .``).
Prints figures (and the time to decode a version 3 batch of 500 changes, what the hub does
for every batch); asserts nothing. Goals (issue "Foundation"): >= 200,000 field merges/s on
one core; a household update (10 changed fields) batched by 500 <= 25 % of its plain JSON.
Issue 18: <= 60 B per change in batches of 500 (wire version 2 against version 1).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow
# the `protocol` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from protocol.changes import Batch, Change, FieldVersion
from protocol.clock import HybridClock, Timestamp
from protocol.codec import decode, encode
from protocol.entities import ENTITIES
from protocol.ids import UuidV7Generator
from protocol.merge import RecordState, local_change, merge, merge_field
from puskesos.samples import make_household_with_members

BOX = "edge-3201012001-a"
VILLAGE = "3201012001"
START_MS = 1_795_478_400_000

#: What a village operator changes in a typical household revisit: 10 fields.
UPDATED_FIELDS = (
    "address",
    "rt",
    "rw",
    "floor_area_m2",
    "floor_material",
    "wall_material",
    "drinking_water_source",
    "cooking_fuel",
    "programmes",
    "presence_status",
)
STREETS = ("Melati", "Mawar", "Kenanga", "Flamboyan", "Cempaka", "Anggrek", "Dahlia", "Teratai")


def household_values(rng: random.Random) -> dict[str, object]:
    """Plausible, varied values for the updated fields."""
    schema = ENTITIES["household"].fields
    values: dict[str, object] = {
        "address": f"Jl. {rng.choice(STREETS)} Gg. {rng.randint(1, 30)} No. {rng.randint(1, 250)}",
        "rt": f"{rng.randint(1, 25):03d}",
        "rw": f"{rng.randint(1, 12):03d}",
        "floor_area_m2": round(rng.uniform(12, 250), 1),
        "programmes": sorted(rng.sample(schema["programmes"].choices, rng.randint(0, 3))),
    }
    for name in UPDATED_FIELDS:
        if name not in values:
            values[name] = rng.choice(schema[name].choices)
    return values


def typical_updates(count: int) -> list[tuple[RecordState, Change]]:
    """``count`` updates of 10 fields of households the box created a day earlier, each with
    the record's state before it."""
    rng = random.Random(7)
    clock = HybridClock(BOX)
    make_id = UuidV7Generator(random_bytes=rng.randbytes)
    updates = []
    for n in range(count):
        record_id = make_id(START_MS + n)
        before = household_values(rng)
        created = local_change(
            None,
            entity="household",
            record_id=record_id,
            village=VILLAGE,
            stamp=clock.now(START_MS + n),
            new_values=before,
        )
        assert created is not None
        after = household_values(rng)
        while any(after[name] == before[name] for name in UPDATED_FIELDS):
            after = {
                name: (value if value != before[name] else household_values(rng)[name])
                for name, value in after.items()
            }
        state = merge(None, created).state
        change = local_change(
            state,
            entity="household",
            record_id=record_id,
            village=VILLAGE,
            stamp=clock.now(START_MS + 86_400_000 + n * 1000),
            new_values=after,
        )
        assert change is not None and len(change.fields) == len(UPDATED_FIELDS)
        updates.append((state, change))
    return updates


def plain_json(change: Change) -> dict[str, object]:
    """The straightforward JSON a simple implementation would send for the same change."""
    return {
        "entity": change.entity,
        "record_id": change.record_id,
        "village": change.village,
        "origin": change.origin,
        "fields": {
            name: {
                "value": v.value,
                "hlc": Timestamp(v.time, v.node).to_string(),
                "seen": {node: Timestamp(t, node).to_string() for node, t in v.seen},
            }
            for name, v in change.fields.items()
        },
    }


def wire_sizes() -> None:
    updates = [change for _, change in typical_updates(500)]
    fields_per_update = statistics.mean(len(c.fields) for c in updates)
    one_json = len(json.dumps(plain_json(updates[0]), separators=(",", ":")).encode())
    batch_json = json.dumps(
        {"node": BOX, "seq": 1, "changes": [plain_json(c) for c in updates]},
        separators=(",", ":"),
    ).encode()
    # Alone: the mean over the 500 updates (each frame on its own), not one lucky sample.
    alone = {
        v: statistics.mean(len(encode(Batch(BOX, 1, (c,)), version=v)) for c in updates)
        for v in (1, 2, 3)
    }
    batch = {v: len(encode(Batch(BOX, 1, tuple(updates)), version=v)) / 500 for v in (1, 2, 3)}
    print(f"typical household update: {fields_per_update:.0f} changed fields")
    print(f"  {'':10} {'plain JSON':>10} {'wire v1':>9} {'wire v2':>9} {'wire v3':>9} {'v2/v1':>6}")
    per_json = len(batch_json) / 500
    for label, plain, sizes in (("alone", one_json, alone), ("batch 500", per_json, batch)):
        print(
            f"  {label:10} {plain:8.0f} B {sizes[1]:7.0f} B {sizes[2]:7.0f} B {sizes[3]:7.0f} B "
            f"{sizes[2] / sizes[1]:6.2f}   (v2 {100 * sizes[2] / plain:.0f} % of plain JSON)"
        )
    per_gzip_json = len(zlib.compress(batch_json, 6)) / 500
    print(f"  batch 500, zlib'd JSON: {per_gzip_json:.0f} B per change")


def merge_rate(seconds: float) -> None:
    """Field merges/s: each incoming version lands on a one-version frontier it has seen
    (the common case), plus a share of duplicates and concurrent writes."""
    rng = random.Random(3)
    frontiers = []
    incoming = []
    for i in range(10_000):
        base = FieldVersion(f"v{i}", (START_MS + i) << 16, BOX)
        frontiers.append((base,))
        roll = rng.random()
        if roll < 0.8:
            incoming.append(FieldVersion(f"w{i}", base.time + 5, "hub-1", ((BOX, base.time),)))
        elif roll < 0.9:
            incoming.append(base)
        else:
            incoming.append(FieldVersion(f"c{i}", base.time + 5, "edge-3201012001-b"))
    pairs = list(zip(frontiers, incoming, strict=True))
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for frontier, version in pairs:
            merge_field(frontier, version)
        done += len(pairs)
    elapsed = time.perf_counter() - started
    print(f"merge_field: {done / elapsed:,.0f} field merges/s (one core)")

    updates = typical_updates(2000)
    fields = sum(len(change.fields) for _, change in updates)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for state, change in updates:
            merge(state, change)
        done += fields
    elapsed = time.perf_counter() - started
    print(f"merge (10-field change into a record): {done / elapsed:,.0f} field merges/s")


def decode_rate(seconds: float) -> None:
    """Decoding a version 3 batch of 500 changes, as the hub does for every batch a box
    sends: the median time of one, for revisits (10 fields) and for new households (every
    field, a box's first sync)."""
    samples = {
        "500 revisits (10 fields)": [change for _, change in typical_updates(500)],
        "500 new households": new_households(500),
    }
    for label, changes in samples.items():
        frame = encode(Batch(BOX, 1, tuple(changes)), version=3)
        took = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            before = time.perf_counter()
            decode(frame)
            took.append(time.perf_counter() - before)
        median = statistics.median(took)
        print(
            f"decode, wire v3, {label}: {median * 1000:.2f} ms a batch (median of "
            f"{len(took)}), {500 / median:,.0f} changes/s"
        )


def new_households(count: int) -> list[Change]:
    """``count`` households as a box first sends them: every field, one stamp."""
    clock = HybridClock(BOX)
    changes = []
    for n in range(count):
        household, _ = make_household_with_members(1, village=VILLAGE, seed=n + 1)
        change = local_change(
            None,
            entity="household",
            record_id=household.pop("id"),
            village=VILLAGE,
            stamp=clock.now(START_MS + n),
            new_values=household,
        )
        assert change is not None
        changes.append(change)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per rate figure")
    args = parser.parse_args()
    wire_sizes()
    merge_rate(args.seconds)
    decode_rate(args.seconds)


if __name__ == "__main__":
    main()
