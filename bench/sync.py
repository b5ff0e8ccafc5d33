"""Replication benchmark: box → hub throughput and lag, a hub under 100 boxes, catch-up,
and bytes on the wire.

Run: ``python bench/sync.py`` (from the repository root, after ``pip install -e .``;
needs Mosquitto, and PostgreSQL at 127.0.0.1 for the PostgreSQL figures). Prints figures,
asserts nothing. Sections (``--only a,b,c,d``):

a. one real box → hub (SQLite): changes/s end to end (from the first commit seen in the
   hub's database until it holds everything, counted there, not through its API) for a
   20,000-change backlog, and the lag from commit at the
   box to commit at the hub for single-change saves through the box API at 100 saves/s;
b. 100 simulated boxes (MQTT clients sending real batches; each change a new household of
   ``puskesos.samples`` with all its fields, varied, as a box's first sync of a village
   sends them) → one hub worker: changes applied and committed per second, on SQLite and
   on PostgreSQL (and with two workers);
c. catch-up time of a box that comes online with a 20,000-change backlog (same run as a);
d. bytes on the wire per change: encoded batch (wire versions 1 and 2) plus MQTT PUBLISH
   header and topic;
e. bytes up per change through the real stack (a box behind a counting TCP proxy, a hub),
   one household revisit of 10 fields per second through the box API: all the box sends
   (minus the idle traffic measured before), by message and with MQTT apart. A revisit
   that needs the district's review also makes a proposal record, and a save writes audit
   entries (update, create, view): they travel too, and the count ends once the hub has
   the box's whole audit chain. ``--seal-delays 0,10`` runs it once for each
   ``sync.seal_delay_s`` (the box gathering saves before it seals a batch).

Goals (issue 4): a ≥ 5,000 changes/s, p99 lag < 1 s at 100 changes/s, b ≥ 20,000
changes/s on PostgreSQL, c < 10 s. Issue 18: b ≥ 40,000 whole-household changes/s on
PostgreSQL with two workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Run as a script, this file's folder would come first on sys.path; the repository root
# gives the packages, the test factories and the helpers.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]


from edge.config import SyncConfig
from hub import db
from hub.devices import add_device
from protocol.codec import MAGIC, WIRE_VERSION, Kind, encode
from protocol.entities import ENTITIES
from protocol.regions import lookup
from protocol.topics import Topic, TopicKind
from puskesos.fleet import Fleet, free_port, wait_for
from puskesos.mqtt import MqttLink
from puskesos.samples import make_household_with_members
from puskesos.tomlconfig import BrokerConfig
from tests.e2e.conftest import fill_offline, register
from tests.faultproxy import FaultProxy
from tests.hub.boxes import Box
from tests.hub.conftest import drop_postgres, fresh_postgres

VILLAGE = "3201022001"


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49]:7.1f} ms  p99 {cuts[98]:7.1f} ms  max {max(samples):7.1f} ms"


def committed(fleet: Fleet) -> int:
    """The village's records committed in the hub's SQLite database, read from outside the
    hub (its API shows progress seconds after the first commit: issue 18)."""
    hub_db = fleet.hubs[0].folder / "hub.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True)) as connection:
        query = "SELECT count(*) FROM records WHERE village = ?"
        return int(connection.execute(query, (VILLAGE,)).fetchone()[0])


# --- a + c: one real box -------------------------------------------------------------------


def one_box(root: Path, backlog: int, lag_saves: int) -> None:
    fleet = Fleet(root / "one-box", sync=SyncConfig(backoff_min_s=1, backoff_max_s=2))
    try:
        fleet.add_hub(start=False)
        box = fleet.enrol(VILLAGE, "edge-bench")
        waiting = fill_offline(box, backlog // 5)
        fleet.start()  # returns once the box serves
        started = time.monotonic()
        first = wait_for(lambda: committed(fleet), 600, "the first batch", 0.02)
        flowing = time.monotonic()
        wait_for(lambda: committed(fleet) >= waiting, 600, "the backlog", 0.02)
        took = time.monotonic() - started
        rate = (waiting - first) / (time.monotonic() - flowing)
        print(
            f"c    backlog of {waiting:,} changes: all committed at the hub {took:4.1f} s after "
            f"the box started serving (first batch after {flowing - started:3.1f} s)\n"
            f"a    one box → hub, committed at the hub: {rate:,.0f} changes/s"
        )
        lag(fleet, box, lag_saves)
    finally:
        fleet.stop()


def lag(fleet: Fleet, box, saves: int) -> None:  # type: ignore[no-untyped-def]
    """Single-change saves through the box API at 100/s; commit-to-commit lag."""
    households = [register(box, 10_000 + n) for n in range(200)]
    time.sleep(3)  # the registrations are at the hub
    interval = 1 / 100
    next_at = time.monotonic()
    for n in range(saves):
        household = households[n % len(households)]
        box.api(
            f"/api/v1/households/{household}",
            {"household": {"rt": f"{n % 999 + 1:03d}"}},
            method="PATCH",
        )
        next_at += interval
        time.sleep(max(0, next_at - time.monotonic()))
    achieved = saves / (time.monotonic() - next_at + saves * interval)
    time.sleep(5)
    with contextlib.closing(box.connect(readonly=True)) as connection:
        saved = connection.execute(
            "SELECT record_id, at_ms FROM audit WHERE action = 'update' ORDER BY id DESC LIMIT ?",
            (saves,),
        ).fetchall()
    # A hub row's updated_ms is its last commit: compare each record's last save only.
    last: dict[str, int] = {}
    for record_id, at_ms in saved:
        last.setdefault(record_id, at_ms)
    hub_db = fleet.hubs[0].folder / "hub.sqlite"
    with sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True) as connection:
        samples = [
            float(connection.execute(query, (record_id,)).fetchone()[0] - at_ms)
            for record_id, at_ms in last.items()
            for query in ("SELECT updated_ms FROM records WHERE id = ?",)
        ]
    print(
        f"a    lag box commit → hub commit at {achieved:.0f} saves/s "
        f"({len(samples)} records' last saves): {percentiles(samples)}"
    )


# --- b: 100 simulated boxes ----------------------------------------------------------------


async def hundred_boxes(
    root: Path, url: str, workers: int, boxes: int, batches: int, size: int
) -> None:
    await asyncio.to_thread(db.upgrade, url)
    engine = db.create_engine(url)
    # One box per village, like a district's fleet (each box's changes then go to no other).
    candidates = (f"3201{k:02d}{v}" for k in range(1, 41) for v in range(2001, 2031))
    villages = [code for code in candidates if lookup(code)][:boxes]
    nodes = [(village, f"sim-{n:03d}") for n, village in enumerate(villages)]
    for village, node in nodes:
        await add_device(engine, village=village, node=node, now_ms=int(time.time() * 1000))
    await engine.dispose()
    fleet = Fleet(root)
    fleet.broker.password_file = fleet.broker.acl_file = None  # anonymous bench broker
    fleet.broker.start()
    hubs = []
    try:
        for number in range(workers):
            port = free_port()
            folder = root / f"hub-{number + 1}"
            folder.mkdir(parents=True)
            config = folder / "hub.toml"
            config.write_text(
                f'[hub]\nnode = "hub-{number + 1}"\ndata_dir = "{folder}"\n'
                f'database_url = "{url}"\nlisten_port = {port}\n'
                f"[broker]\nport = {fleet.broker.port}\n",
                encoding="utf-8",
            )
            log = open(folder / "hub.log", "wb")  # noqa: SIM115 (lives as long as the hub)
            hubs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "puskesos", "hub", "serve", "--config", str(config)],
                    stdout=log,
                    stderr=log,
                )
            )
            wait_for(lambda port=port: _up(port), 60, "hub worker")
        payloads = []
        seed = 0
        for village, node in nodes:
            box = Box(node, village)
            now = int(time.time() * 1000)
            for _ in range(batches):
                changes = []
                for _ in range(size):
                    seed += 1
                    household, _ = make_household_with_members(1, village=village, seed=seed)
                    values = {k: v for k, v in household.items() if k != "id"}
                    changes.append(box.edit(household["id"], now, **values))
                frame = encode(box.batch(*changes), version=WIRE_VERSION)  # what a box sends today
                payloads.append((Topic(village, node, TopicKind.UP), frame))
        total = boxes * batches * size
        fields = len(values)
        await asyncio.sleep(2)
        started = time.monotonic()
        await _publish_all(fleet.broker.port, payloads)
        sent = time.monotonic() - started
        await asyncio.to_thread(
            wait_for, lambda: _applied_total(url) >= total, 600, "every change", 0.1
        )
        took = time.monotonic() - started
        dialect = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
        print(
            f"b    {boxes} boxes → {workers} hub worker(s) on {dialect}: {total:,} changes "
            f"(each a new household, all {fields} fields; {size}/batch) published in "
            f"{sent:4.1f} s, committed after {took:5.1f} s = "
            f"{total / took:,.0f} changes/s"
        )
    finally:
        for hub in hubs:
            hub.terminate()
            hub.wait(30)
        fleet.broker.stop()


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _applied_total(url: str) -> int:
    async def count() -> int:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                from sqlalchemy import func, select

                value = (
                    await conn.execute(select(func.sum(db.devices.c.changes_applied)))
                ).scalar()
                return int(value or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


async def _publish_all(port: int, payloads: list[tuple[Topic, bytes]]) -> None:
    by_node: dict[str, list[tuple[Topic, bytes]]] = {}
    for topic, payload in payloads:
        by_node.setdefault(topic.node, []).append((topic, payload))

    async def one(node: str, items: list[tuple[Topic, bytes]]) -> None:
        async with MqttLink(BrokerConfig(port=port), client_id=node, clean_start=True) as link:
            assert await link.wait_connected(30)
            for topic, payload in items:
                assert await link.publish(str(topic), payload, timeout=120)

    await asyncio.gather(*(one(node, items) for node, items in by_node.items()))


# --- d: bytes on the wire ------------------------------------------------------------------


def wire_bytes() -> None:
    from puskesos.samples import make_household_with_members

    box = Box("edge-3201022001-a")
    topic = str(Topic(VILLAGE, box.node, TopicKind.UP))
    now = int(time.time() * 1000)
    for size in (1, 10, 500):
        changes = []
        for _ in range(size):
            household, _members = make_household_with_members(1)
            values = {k: v for k, v in household.items() if k not in ("id",)}
            changes.append(box.edit(household["id"], now, **values))
        batch = box.batch(*changes)
        sizes = []
        for version in (1, 2):
            payload = encode(batch, version=version)
            # PUBLISH QoS 1 (MQTT 5): fixed header 1 + remaining length (1-3) + topic length
            # 2 + topic + packet id 2 + properties length 1; the PUBACK back is 4 bytes.
            remaining = 2 + len(topic) + 2 + 1 + len(payload)
            header = 1 + (1 if remaining < 128 else 2 if remaining < 16384 else 3)
            mqtt = header + remaining - len(payload) + 4
            sizes.append((len(payload), mqtt))
        (v1, mqtt1), (v2, mqtt2) = sizes
        print(
            f"d    batch of {size:3d} new households ({len(changes[0].fields)} fields each), "
            f"per change: payload v1 {v1 / size:6.0f} B, v2 {v2 / size:6.0f} B "
            f"(v2/v1 {v2 / v1:.2f}); MQTT {mqtt2 / size:4.0f} B; on the wire v1 "
            f"{(v1 + mqtt1) / size:6.0f} B, v2 {(v2 + mqtt2) / size:6.0f} B"
        )


# --- e: bytes up per change at one change per second ----------------------------------------

REVISITED = (
    "floor_material",
    "wall_material",
    "drinking_water_source",
    "cooking_fuel",
    "presence_status",
)


def revisit(rng: random.Random) -> dict[str, object]:
    """A household revisit of 10 fields with varied values, as ``bench/protocol.py``'s."""
    schema = ENTITIES["household"].fields
    values: dict[str, object] = {
        "address": f"Jl. Kenanga Gg. {rng.randint(1, 30)} No. {rng.randint(1, 250)}",
        "rt": f"{rng.randint(1, 25):03d}",
        "rw": f"{rng.randint(1, 12):03d}",
        "floor_area_m2": round(rng.uniform(12, 250), 1),
        "programmes": sorted(rng.sample(schema["programmes"].choices, rng.randint(1, 3))),
    }
    values.update((name, rng.choice(schema[name].choices)) for name in REVISITED)
    return values


KIND_NAMES = {Kind.BATCH: "batches", Kind.AUDIT: "audit entries", Kind.ACK: "acks"}
MQTT_NAMES = {3: "", 4: "PUBACK", 12: "PINGREQ", 14: "DISCONNECT", 1: "CONNECT", 8: "SUBSCRIBE"}


def variable_int(data: bytes, at: int) -> tuple[int, int]:
    """MQTT's variable byte integer at ``at``, and where what follows it starts."""
    value, shift = 0, 0
    while True:
        byte, at = data[at], at + 1
        value |= (byte & 127) << shift
        shift += 7
        if byte < 128:
            return value, at


def mqtt_packets(stream: bytes, start: int = 0) -> list[tuple[str, int, bytes]]:
    """The MQTT 5 packets a client sent, whole, from the packet at ``start`` on (the stream
    is read from its beginning, for the topic aliases): (the topic's last level for a
    PUBLISH, else the packet's name; its size; its payload)."""
    packets = []
    aliases: dict[int, str] = {}
    at = 0
    while at < len(stream):
        begin, first = at, stream[at]
        length, at = variable_int(stream, at + 1)
        body, at = stream[at : at + length], at + length
        name = MQTT_NAMES.get(first >> 4, f"packet type {first >> 4}")
        payload = b""
        if first >> 4 == 1:
            aliases.clear()  # a new connection: aliases start over
        if first >> 4 == 3:
            topic_end = 2 + int.from_bytes(body[:2], "big")
            topic = body[2:topic_end].decode()
            cursor = topic_end + (2 if first & 0b0110 else 0)
            size, cursor = variable_int(body, cursor)
            alias = _topic_alias(body[cursor : cursor + size])
            if alias is not None:
                topic = topic or aliases[alias]  # an alias alone: the topic it was given
                aliases[alias] = topic
            name = topic.rsplit("/", 1)[-1]
            payload = body[cursor + size :]
        if begin >= start:
            packets.append((name, at - begin, payload))
    return packets


def _topic_alias(properties: bytes) -> int | None:
    """The Topic Alias (0x23) among a PUBLISH's properties (those paho may send)."""
    at = 0
    while at < len(properties):
        kind, at = properties[at], at + 1
        if kind == 0x23:
            return int.from_bytes(properties[at : at + 2], "big")
        if kind == 0x01:
            at += 1
        elif kind == 0x02:
            at += 4
        elif kind == 0x0B:
            _, at = variable_int(properties, at)
        elif kind == 0x26:
            for _ in range(2):
                at += 2 + int.from_bytes(properties[at : at + 2], "big")
        else:  # 0x03, 0x08, 0x09: a string or binary data
            at += 2 + int.from_bytes(properties[at : at + 2], "big")
    return None


def audit_at_hub(fleet: Fleet, box) -> bool:  # type: ignore[no-untyped-def]
    """Whether the hub has verified the box's whole audit chain."""
    with contextlib.closing(box.connect(readonly=True)) as connection:
        head = connection.execute("SELECT max(seq) FROM audit").fetchone()[0] or 0
    hub_db = fleet.hubs[0].folder / "hub.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True)) as connection:
        query = "SELECT audit_seq FROM devices WHERE node = ?"
        row = connection.execute(query, (box.node,)).fetchone()
    return row is not None and row[0] == head


def one_per_second(root: Path, changes: int, seal_delay_s: int) -> None:
    fleet = Fleet(
        root / f"one-per-second-{seal_delay_s}",
        sync=SyncConfig(backoff_min_s=1, backoff_max_s=2, seal_delay_s=seal_delay_s),
    )
    proxy: FaultProxy | None = None
    try:
        fleet.add_hub(start=False)
        fleet.write_broker_config()
        fleet.broker.start()
        proxy = FaultProxy(fleet.broker.port)
        box = fleet.enrol(VILLAGE, "edge-bench", broker_port=proxy.port)
        fleet.start()
        households = [register(box, 20_000 + n) for n in range(changes)]
        time.sleep(10)  # registered, sent, acked: the link is idle
        wait_for(lambda: audit_at_hub(fleet, box), 180, "the registrations' audit entries", 0.5)
        idle_s = 30.0
        before = proxy.bytes_up
        time.sleep(idle_s)
        idle = (proxy.bytes_up - before) / idle_s
        rng = random.Random(18)
        before, started = proxy.bytes_up, time.monotonic()
        offset = len(proxy.seen_up)
        for n, household in enumerate(households):
            box.api(f"/api/v1/households/{household}", {"household": revisit(rng)}, method="PATCH")
            time.sleep(max(0.0, started + n + 1 - time.monotonic()))
        pending = lambda: box.api("/api/v1/sync/status")["outbox_pending"]  # noqa: E731
        wait_for(lambda: pending() == 0, 60, "the last changes sent and acked", 0.5)
        # Audit entries may wait for company (`sync.audit_delay_s`): count them all.
        wait_for(lambda: audit_at_hub(fleet, box), 180, "the box's audit chain at the hub", 0.5)
        time.sleep(2)  # the last audit ack's PUBACK
        took = time.monotonic() - started
        up = proxy.bytes_up - before - idle * took
        state = box.api("/api/v1/sync/status")
        print(
            f"e    one 10-field revisit per second, sync.seal_delay_s = {seal_delay_s}, "
            f"{changes} changes: {up / changes:5.0f} B up "
            f"per change through the real stack (idle link {idle:.1f} B/s subtracted; "
            f"outbox now {state['outbox_pending']}), of which per change:"
        )
        sizes: dict[str, list[int]] = {}
        for name, packet, payload in mqtt_packets(bytes(proxy.seen_up), offset):
            if name == "up" and payload[:1] == bytes((MAGIC,)):
                name = f"up, wire v{payload[1]}, {KIND_NAMES.get(payload[2], payload[2])}"
            counted = sizes.setdefault(name, [0, 0, 0])
            counted[0] += 1
            counted[1] += len(payload)
            counted[2] += packet - len(payload)
        for name, (count, payload_bytes, mqtt) in sorted(sizes.items()):
            print(
                f"e      {name:28} {count:4d} packets: payload {payload_bytes / changes:5.0f} B, "
                f"MQTT {mqtt / changes:4.0f} B"
            )
        sent = sum(payload + mqtt for _, payload, mqtt in sizes.values())
        print(f"e      all of them (nothing subtracted): {sent / changes:5.1f} B per change")
    finally:
        fleet.stop()
        if proxy is not None:
            proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="a,b,d", help="sections to run (a-e; c is in a)")
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--lag-saves", type=int, default=1000)
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--seal-delays",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[0],
        help="e: the box's sync.seal_delay_s, one run each (e.g. 0,10)",
    )
    args = parser.parse_args()
    sections = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="puskesos-bench-") as folder:
        root = Path(folder)
        if "d" in sections:
            wire_bytes()
        if "e" in sections:
            for delay in args.seal_delays:
                one_per_second(root, 60, delay)
        if sections & {"a", "c"}:
            one_box(root, args.backlog, args.lag_saves)
        if "b" in sections:
            shape = (args.boxes, args.batches, args.batch_size)
            sqlite_url = f"sqlite+aiosqlite:///{root / 'b-sqlite' / 'hub.sqlite'}"
            (root / "b-sqlite").mkdir()
            asyncio.run(hundred_boxes(root / "b-sqlite", sqlite_url, 1, *shape))
            for workers in (1, 2):
                name, url = fresh_postgres()
                try:
                    (root / f"b-pg{workers}").mkdir()
                    asyncio.run(hundred_boxes(root / f"b-pg{workers}", url, workers, *shape))
                finally:
                    drop_postgres(name)


if __name__ == "__main__":
    main()
