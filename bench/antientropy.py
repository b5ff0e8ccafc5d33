"""Anti-entropy benchmark: what comparing a box's data with the hub's costs.

Run: ``python bench/antientropy.py`` (from the repository root, after ``pip install -e .``;
needs Mosquitto). Prints figures, asserts nothing. Sections (``--only a,b,c``):

a. bytes: a status with and without the digest (JSON, and on the wire with the MQTT
   header and topic); the probe, a reply for one bucket and a repair in a village of
   ``--households`` households;
b. CPU per write: microseconds per ``record_digest`` of a household and of a member (the
   box and the hub compute one per record written), against the box's own cost of a save
   of one household with four members (``Store.write`` end to end, SQLite with
   ``synchronous=FULL``), min/median/max over ``--rounds`` rounds;
c. time to detect and repair one divergent record: a box of a ``--households`` village
   (5 records each) online with a hub; a batch forged with the box's password changes one
   record at the hub only; from the forge to the hub seeing the divergence (the box's next
   status, ``status_interval_s`` = ``--status-interval``), and from there to the roots
   agreeing again, over ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import timeit
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from edge.config import EdgeConfig, SyncConfig
from edge.db import upgrade
from edge.records import Edit
from edge.store import Store
from protocol.changes import Batch, Change, FieldVersion
from protocol.clock import COUNTER_BITS, HybridClock
from protocol.codec import encode
from protocol.digest import BUCKETS, DigestProbe, DigestReply, record_digest
from protocol.ids import uuid7
from protocol.merge import local_change, merge
from protocol.status import Status, encode_status
from protocol.topics import Topic, TopicKind
from puskesos.fleet import Fleet, wait_for
from puskesos.mqtt import MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.e2e.conftest import box_states, converged, fill_offline
from tests.factories import make_household_with_members

VILLAGE = "3201022001"
NODE = "edge-3201022001-a"


def spread(samples: list[float], unit: str, digits: int = 1) -> str:
    return (
        f"min {min(samples):.{digits}f} / median {statistics.median(samples):.{digits}f} / "
        f"max {max(samples):.{digits}f} {unit}"
    )


def on_wire(payload: bytes, kind: TopicKind) -> int:
    """An MQTT 5 QoS 1 PUBLISH: fixed header, topic, packet id, properties length."""
    topic = len(str(Topic(VILLAGE, NODE, kind)).encode())
    rest = 2 + topic + 2 + 1 + len(payload)
    return 1 + (1 if rest < 128 else 2 if rest < 16384 else 3) + rest


def section_a(households: int) -> None:
    print("a. bytes")
    base = Status(
        "online", up_seq=41_237, up_floor=41_238, down_watermark=3_917, outbox=0,
        oldest_ms=None, wall_ms=1_796_390_000_000, software="0.1.0", wire=1,
        epoch="", schema=2,
    )  # fmt: skip
    with_digest = replace(base, digest="9f3c2a7be01d44c5", records=households * 5)
    before = {k: v for k, v in asdict(base).items() if k not in ("digest", "records")}
    old = json.dumps(before, separators=(",", ":")).encode()  # a status of the last release
    new = encode_status(with_digest)
    print(
        f"   status JSON: {len(old)} B without the digest, {len(new)} B with it "
        f"(+{len(new) - len(old)} B); on the wire {on_wire(old, TopicKind.STATUS)} → "
        f"{on_wire(new, TopicKind.STATUS)} B (every status_interval_s, 60 s by default: "
        f"+{(len(new) - len(old)) * 1440 / 1000:.0f} KB a day)"
    )
    rng = random.Random(7)
    probe = encode(DigestProbe(NODE, tuple(rng.getrandbits(64) for _ in range(BUCKETS))))
    per_bucket = max(1, households * 5 // BUCKETS)
    reply = encode(
        DigestReply(
            NODE, (7,), tuple((str(uuid7(i)), rng.getrandbits(64)) for i in range(per_bucket))
        )
    )
    wanted = encode(DigestProbe(NODE, wanted=(str(uuid7(1)),)))
    matched = encode(DigestProbe(NODE))
    print(
        f"   probe with the 256 bucket hashes: {on_wire(probe, TopicKind.DOWN)} B; reply for one "
        f"bucket ({per_bucket} records): {on_wire(reply, TopicKind.UP)} B; a probe wanting one "
        f"record: {on_wire(wanted, TopicKind.DOWN)} B; a 'match' notice: "
        f"{on_wire(matched, TopicKind.DOWN)} B"
    )


def _states() -> tuple[dict, dict]:
    household, members = make_household_with_members(4, seed=7)
    states = []
    for entity, record in (("household", household), ("member", members[0])):
        values = {k: v for k, v in record.items() if k != "id"}
        change = local_change(
            None, entity=entity, record_id=record["id"], village=VILLAGE,
            stamp=HybridClock(NODE).now(1_796_390_000_000), new_values=values,
        )  # fmt: skip
        assert change is not None
        states.append((entity, record["id"], merge(None, change).state))
    return states[0], states[1]


def _digest_us(record: tuple[str, str, dict], number: int = 2000) -> float:
    """Microseconds per ``record_digest`` of ``record`` (best of 3)."""
    entity, record_id, state = record
    runs = timeit.repeat(lambda: record_digest(entity, record_id, state), number=number, repeat=3)
    return min(runs) / number * 1e6


def section_b(rounds: int) -> None:
    print("b. CPU per write")
    household, member = _states()
    for label, record in (("household", household), ("member", member)):
        runs = [_digest_us(record) for _ in range(rounds)]
        print(f"   record_digest of a {label} ({len(record[2])} fields): {spread(runs, 'µs')}")
    saves = asyncio.run(_save_times(rounds))
    digests_ms = (_digest_us(household) + 4 * _digest_us(member)) / 1000
    share = 100 * digests_ms / statistics.median(saves)
    print(
        f"   a save of one household with 4 members on the box: {spread(saves, 'ms', 2)}; "
        f"its 5 digests {digests_ms:.3f} ms = {share:.1f} % of the median save"
    )


async def _save_times(rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        upgrade(Path(folder) / "edge.sqlite")
        store = Store(EdgeConfig(village=VILLAGE, node=NODE, data_dir=Path(folder)))
        await store.open()
        try:
            medians = []
            for round_ in range(rounds):
                times = []
                for number in range(100):
                    household, members = make_household_with_members(4, seed=round_ * 1000 + number)
                    household["village_code"] = VILLAGE
                    edits = [
                        Edit(e, r["id"], {k: v for k, v in r.items() if k != "id"})
                        for e, r in (("household", household), *(("member", m) for m in members))
                    ]
                    started = time.perf_counter()
                    await store.write(edits, actor="bench")
                    times.append((time.perf_counter() - started) * 1000)
                medians.append(statistics.median(times))
            return medians
        finally:
            await store.close()


def _forge(fleet: Fleet, box, record_id: str, seq: int, value: str) -> None:
    state = box_states(box)[record_id]
    stamp = max(v.time for f in state.values() for v in f) + (1 << COUNTER_BITS)
    seen = ((box.node, state["address"][0].time),)
    fields = {"address": FieldVersion(value, stamp, box.node, seen)}
    batch = Batch(box.node, seq, (Change("household", record_id, box.village, box.node, fields),))
    password = (box.folder / "broker.password").read_text().strip()

    async def publish() -> None:
        link = MqttLink(
            BrokerConfig(port=fleet.broker.port, username=box.node),
            client_id=f"{box.node}-x", password=password, subscriptions=[], clean_start=True,
        )  # fmt: skip
        await link.start()
        assert await link.wait_connected(10)
        assert await link.publish(str(Topic(box.village, box.node, TopicKind.UP)), encode(batch))
        await link.stop()

    asyncio.run(publish())


def section_c(households: int, rounds: int, status_interval: int) -> None:
    print(f"c. detect and repair one divergent record, {households} households")
    with tempfile.TemporaryDirectory() as folder:
        sync = SyncConfig(ack_timeout_s=5, status_interval_s=status_interval, backoff_max_s=2)
        fleet = Fleet(Path(folder), sync=sync)
        try:
            fleet.add_hub("hub-1", start=False)
            box = fleet.enrol(VILLAGE, NODE)
            fill_offline(box, households)
            fleet.start()
            hub = fleet.hubs[0]
            wait_for(lambda: converged(hub, VILLAGE, [box]), 600, "the village at the hub", 2)
            wait_for(
                lambda: hub.api(f"/api/v1/devices/{NODE}")["digest_state"] == "match",
                120, "the first match",
            )  # fmt: skip
            records = [r for r, s in box_states(box).items() if "address" in s]
            detect, repair = [], []
            for round_ in range(rounds):
                device = hub.api(f"/api/v1/devices/{NODE}")
                seq = device["up_watermark"] + 1
                started = time.monotonic()
                _forge(fleet, box, records[round_], seq, f"Jl. Palsu {round_}")
                wait_for(
                    lambda d=device: hub.api(f"/api/v1/devices/{NODE}")["divergences"]
                    > d["divergences"],
                    120, "the divergence",
                )  # fmt: skip
                found = time.monotonic()
                wait_for(
                    lambda: hub.api(f"/api/v1/devices/{NODE}")["digest_state"] == "match",
                    120, "the repair",
                )  # fmt: skip
                detect.append(found - started)
                repair.append(time.monotonic() - found)
            every = f"status every {status_interval} s"
            print(f"   forge → divergence seen ({every}): {spread(detect, 's', 2)}")
            print(f"   divergence seen → roots agree again: {spread(repair, 's', 2)}")
        finally:
            fleet.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="a,b,c")
    parser.add_argument("--households", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--status-interval", type=int, default=10)
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "a" in only:
        section_a(args.households)
    if "b" in only:
        section_b(args.rounds)
    if "c" in only:
        section_c(args.households, args.rounds, args.status_interval)


if __name__ == "__main__":
    main()
