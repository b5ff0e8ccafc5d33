"""Registry import benchmark: the district's extract into the hub, and what it costs the
downlink (``docs/registry.md``).

Run: ``python bench/registry.py [--households N] [--villages V] [--postgres [--no-sqlite]]
[--runs R] [--link-households L] [--link-kbit K]`` (from the repository root, after ``pip
install -e .``; needs Mosquitto, and PostgreSQL at 127.0.0.1 for ``--postgres``). Prints figures,
asserts nothing. For each database:

a. import of a generated CSV extract (N households of 4 members, in V villages, one
   combined file) with ``puskesos hub registry import``: wall time, rows/s, records/s, the
   peak RSS of the importing process and its worker processes together, and the CPU time
   per record of each (the importer is one process: its CPU per record bounds the rate
   whatever the processors), and of the PostgreSQL server processes serving the
   import's database (``--postgres``, a local server); ``--import-only``: this step alone;
b. the downlink of one village to a new box: down batches packed by the hub for a box of
   that village, bytes per record and in total (what a 2G modem would carry);
c. re-import of the unchanged extract: wall time, and the downlink bytes it causes (goal 0);
   c2. a newer extract (every 10th household moved to a new address): its import, and
   the downlink bytes it causes to a box that holds the village (only the changed
   fields), against the same records sent whole (the hub's downlink before migration
   0013, by a second box of b's that is switched back to whole records);
d. the same village to a new box end to end over the real broker, ``R`` times (a new box
   each run, ``--runs``, default 3): a hub worker (``puskesos hub serve`` on the database
   of a-c), Mosquitto and a box (``puskesos edge serve``) as processes (``puskesos.fleet``,
   production ``[hub]`` and ``[sync]`` timings), the box reaching the broker through the
   counting TCP proxy of the chaos test (``tests/faultproxy.py``, unshaped; one hub and
   broker serve every run). Time from the box's start (process launched; its enrolment,
   ``device add`` and ``edge init``, came before) until its database holds every record
   of the village; bytes on the wire both ways (MQTT over TCP, without TCP/IP headers);
   down batches published by the hub (first sends and resends, from its ``/metrics``);
   and the box process's apply rate: field versions per second between its first and
   last "applied down batch" log lines (includes waiting for the hub and the broker);
e. (SQLite run only) the same through a link shaped to ``K`` kbit/s each way (``--link-kbit``,
   default 40: a 2G modem; the proxy holds each chunk it forwards for its length / rate, no
   latency added), for a village of ``L`` households
   (``--link-households``, default: as many as the village of b-d; 0 skips e; a village of
   its own, imported at the hub for this step): time, bytes on the wire, resends, and the
   extrapolation to the village of b-d. Goal: <= 4 MB, i.e. ~15 minutes on 2G.
f. the box's apply cost in isolation: the down batches of b decoded
   (``protocol.codec.decode``) and applied with ``edge.downlink.apply_remote`` on a fresh
   box store in this process (``R`` runs, a new store each): field versions applied per
   second, with and without decoding (the box's SQLite file in the temporary folder,
   ``synchronous=FULL`` as on a box). Goal: >= 20,000 field versions/s.

The issue's full size is 1,600,000 households (``--households 1600000 --villages 400``).
A quick look: ``--households 2000 --runs 1 --link-households 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from edge import db as edge_db
from edge.config import EdgeConfig
from edge.downlink import apply_remote
from edge.store import Store
from hub import db, downlink
from hub.config import HubConfig, load_config, render_toml
from hub.devices import add_device
from hub.store import HubStore
from protocol.changes import Batch
from protocol.codec import decode
from protocol.entities import SCHEMA_VERSION
from protocol.regions import normalize_region_code
from protocol.status import Status
from puskesos.fleet import Box, Fleet, Hub, wait_for
from tests.factories import make_household_with_members
from tests.faultproxy import FaultProxy, Shaping
from tests.hub.conftest import drop_postgres, fresh_postgres

COLUMNS = [
    "id_keluarga", "kode_desa", "alamat", "rt", "rw", "no_kk", "program", "desil",
    "floor_material", "wall_material", "roof_material", "cooking_fuel",
    "id_art", "nik", "nama", "hubungan", "jenis_kelamin", "tanggal_lahir", "pendidikan",
]  # fmt: skip


def write_extract(
    path: Path, households: int, villages: list[str], *, first: int = 0, moved: int = 0
) -> int:
    """A combined CSV extract (households numbered from ``first``); returns its rows.
    ``moved``: every ``moved``-th household has a new address (a newer extract)."""
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for number in range(first, first + households):
            village = villages[number % len(villages)]
            household, members = make_household_with_members(4, village=village, seed=number)
            base = [
                f"DTSEN-{number:08d}", village, household["address"], household["rt"],
                household["rw"], household["kk_number"], ";".join(household["programmes"]),
                str(1 + number % 10), household["floor_material"], household["wall_material"],
                household["roof_material"], household["cooking_fuel"],
            ]  # fmt: skip
            if moved and number % moved == 0:
                base[2] = f"Jl. Pindahan No. {number % 997}"
            for index, member in enumerate(members):
                writer.writerow(
                    [
                        *base, f"ART-{number:08d}-{index}", member["nik"], member["name"],
                        member["relation_to_head"], member["sex"], member["birth_date"],
                        member["education"],
                    ]
                )  # fmt: skip
                rows += 1
    return rows


@dataclass
class ImportRun:
    """What one ``registry import`` took: wall seconds, peak RSS (MB) of the importing
    process and its workers together, CPU seconds of the importing process, of its
    workers and of the PostgreSQL processes serving its database (sampled; 0 on SQLite),
    and its summary line."""

    seconds: float
    rss_mb: float
    importer_cpu: float
    workers_cpu: float
    line: str
    database_cpu: float = 0.0


def run_import(config: Path, extract: Path, database: str = "") -> ImportRun:
    """Run ``puskesos hub registry import``, sampling its process tree every 0.1 s, and
    the PostgreSQL backends of ``database`` (a local server) if given."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "puskesos", "hub", "registry", "import", str(extract),
         "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    peak = 0
    cpu: dict[int, float] = {}
    served: dict[int, float] = {}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        output = pool.submit(process.communicate)
        while process.poll() is None:
            peak = max(peak, tree_usage(process.pid, cpu))
            if database:
                backends_cpu(database, served)
            time.sleep(0.1)
        stdout, stderr = output.result()
    seconds = time.monotonic() - started
    if process.returncode:
        raise SystemExit(f"import failed:\n{stderr}")
    importer = cpu.pop(process.pid, 0.0)
    return ImportRun(
        seconds, peak / 1024, importer, sum(cpu.values()), stdout.splitlines()[0],
        sum(served.values()),
    )  # fmt: skip


def backends_cpu(database: str, cpu: dict[int, float]) -> None:
    """Note in ``cpu`` the CPU seconds so far of each PostgreSQL backend connected to
    ``database`` (its process title names the database; Linux ``/proc``)."""
    name = f" {database} ".encode()  # "postgres: USER DATABASE HOST(PORT) STATE"
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            title = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            if title.startswith(b"postgres: ") and name in title:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_usage(pid: int, cpu: dict[int, float]) -> int:
    """The resident memory of ``pid`` and its descendants, in kB, summed over them; notes
    each one's CPU seconds so far in ``cpu`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[current] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


async def downlink_bytes(
    url: str, village: str, node: str, *, enrol: bool, whole: bool = False
) -> list[bytes]:
    """Pack everything a box of ``village`` has not got yet; returns the encoded batches.
    ``whole``: as whole records, the way the hub sent them before it sent by field."""
    engine = db.create_engine(url)
    store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
    try:
        if enrol:
            await add_device(engine, village=village, node=node, now_ms=store.wall())
            await store.note_status(node, Status("online", schema=SCHEMA_VERSION), retained=True)
        if whole:
            async with engine.begin() as conn:
                await conn.execute(
                    db.devices.update().where(db.devices.c.node == node).values(down_by_field=False)
                )
        payloads: list[bytes] = []
        while True:
            made = await downlink.fill(store, node, window=64, max_changes=500, max_bytes=65536)
            due = await downlink.due(store, older_than_ms=store.wall() + 1, node=node, limit=100)
            if not made and not due:
                return payloads
            for batch in due:
                payloads.append(batch.payload)
                async with engine.begin() as conn:
                    await conn.execute(
                        db.down_batches.delete().where(
                            db.down_batches.c.node == node, db.down_batches.c.seq == batch.seq
                        )
                    )
    finally:
        await engine.dispose()


def measure(
    label: str, url: str, folder: Path, extract: Path, rows: int, args: argparse.Namespace
) -> list[bytes]:
    """Steps a-e on one database; returns the down batches of b (for f)."""
    village = VILLAGES[0]
    config = folder / f"hub-{label}.toml"
    config.write_text(
        render_toml(HubConfig(data_dir=folder / label, database_url=url)), encoding="utf-8"
    )
    subprocess.run(
        [sys.executable, "-m", "puskesos", "hub", "init", "--config", str(config)],
        capture_output=True, check=True,
    )  # fmt: skip
    database = (sa.make_url(url).database or "") if url else ""
    imported = run_import(config, extract, database)
    records = rows + rows // 4
    seconds = imported.seconds
    per_record = [
        cpu / records * 1e6
        for cpu in (imported.importer_cpu, imported.workers_cpu, imported.database_cpu)
    ]
    served = f", PostgreSQL {per_record[2]:.0f} us" if database else ""
    print(f"  [{label}] a. import: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, "
          f"{records / seconds:,.0f} records/s, "
          f"peak RSS {imported.rss_mb:.0f} MB (with its workers); CPU per record: "
          f"importer {per_record[0]:.0f} us, workers {per_record[1]:.0f} us{served}")  # fmt: skip
    print(f"           {imported.line}")
    if args.import_only:
        return []
    real = load_config(config).url
    payloads = asyncio.run(downlink_bytes(real, village, "edge-bench-a", enrol=True))
    size = sum(map(len, payloads))
    in_village, versions = batch_contents(payloads)
    print(f"  [{label}] b. one village to a new box: {len(payloads)} down batches, {size:,} B, "
          f"{size / max(1, in_village):.0f} B per record ({in_village:,} records, "
          f"{versions:,} field versions)")  # fmt: skip
    asyncio.run(downlink_bytes(real, village, "edge-bench-w", enrol=True))  # for c2
    reimport = run_import(config, extract)
    again = asyncio.run(downlink_bytes(real, village, "edge-bench-a", enrol=False))
    print(f"  [{label}] c. re-import unchanged: {reimport.seconds:.1f} s; downlink "
          f"{sum(map(len, again))} B in {len(again)} batches; {reimport.line}")  # fmt: skip
    newer = folder / f"newer-{label}.csv"
    write_extract(newer, args.households, VILLAGES, moved=10)
    updated = run_import(config, newer)
    by_field = asyncio.run(downlink_bytes(real, village, "edge-bench-a", enrol=False))
    whole = asyncio.run(downlink_bytes(real, village, "edge-bench-w", enrol=False, whole=True))
    moved, fields = batch_contents(by_field)
    sizes = [sum(map(len, sent)) for sent in (by_field, whole)]
    print(f"  [{label}] c2. newer extract, every 10th household's address changed: "
          f"{updated.seconds:.1f} s; downlink to a box that holds the village: {sizes[0]:,} B "
          f"in {len(by_field)} batches, {sizes[0] / max(1, moved):.0f} B per record changed "
          f"({moved:,} records, {fields:,} field versions); as whole records "
          f"{sizes[1]:,} B ({sizes[0] / max(1, sizes[1]):.2f}x)")  # fmt: skip
    link = args.link_households if label == "sqlite" else 0
    link_village = district_villages("3201", len(VILLAGES) + 1)[-1]
    if link:  # a village of its own for e, imported now (the hub is not serving yet)
        link_extract = folder / f"link-{label}.csv"
        write_extract(link_extract, link, [link_village], first=args.households)
        run_import(config, link_extract)
    if not args.runs and not link:
        return payloads
    fleet = Fleet(folder / f"fleet-{label}", database_url=real)
    try:
        hub = fleet.add_hub(start=False)
        production_timings(hub)
        fleet.start()
        taken, rates = [], []
        for run in range(args.runs):
            got = download(fleet, hub, village, f"edge-d{run}", in_village, Shaping())
            taken.append(got.seconds)
            rates.append(got.box_rate(versions / in_village))
            print(f"  [{label}] d. run {run + 1}: {got.describe(in_village)}")
        if taken:
            print(f"  [{label}] d. new box, loopback: {spread(taken, '{:.1f} s')}; box process "
                  f"applied {spread(rates, '{:,.0f}')} field versions/s")  # fmt: skip
        if link:
            shaping = Shaping(rate_bps=args.link_kbit * 1000 // 8)
            expected = link * 5
            got = download(fleet, hub, link_village, "edge-e", expected, shaping)
            print(f"  [{label}] e. new box at {args.link_kbit} kbit/s, {link:,} households: "
                  f"{got.describe(expected)}")  # fmt: skip
            full = got.wire / expected * in_village
            print(f"           extrapolated to the village of b ({in_village:,} records): "
                  f"{full / 1e6:.2f} MB, {full / shaping.rate_bps / 60:.1f} min on the wire "
                  f"at {args.link_kbit} kbit/s (goal <= 4 MB, ~15 min)")  # fmt: skip
    finally:
        fleet.stop()
    return payloads


def batch_contents(payloads: list[bytes]) -> tuple[int, int]:
    """Records and field versions in encoded down batches."""
    records: set[str] = set()
    versions = 0
    for payload in payloads:
        batch = decode(payload)
        assert isinstance(batch, Batch)
        records.update(change.record_id for change in batch.changes)
        versions += sum(len(change.fields) for change in batch.changes)
    return len(records), versions


def production_timings(hub: Hub) -> None:
    """The fleet shortens the hub's sweep and resend for tests: back to the defaults."""
    config = load_config(hub.config)
    defaults = HubConfig()
    config = replace(
        config, sweep_interval_s=defaults.sweep_interval_s, resend_after_s=defaults.resend_after_s
    )
    hub.config.write_text(render_toml(config), encoding="utf-8")


def spread(values: list[float], form: str) -> str:
    """min / median / max of ``values``."""
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"min {form.format(low)} / median {form.format(middle)} / max {form.format(high)}"


@dataclass(frozen=True, slots=True)
class Download:
    """What one new box's download took (step d or e)."""

    seconds: float
    up: int
    down: int
    batches: int
    published: int
    applied_s: float
    applied_records: int

    @property
    def wire(self) -> int:
        return self.up + self.down

    def box_rate(self, versions_per_record: float) -> float:
        """Field versions per second the box applied, first batch to last (log times)."""
        return self.applied_records * versions_per_record / max(self.applied_s, 1e-9)

    def describe(self, records: int) -> str:
        return (
            f"{self.seconds:.1f} s to hold all {records:,} records; wire {self.down:,} B down "
            f"+ {self.up:,} B up ({self.wire / records:.0f} B per record); {self.batches} "
            f"down batches, {self.published} published by the hub "
            f"({self.published - self.batches} resent)"
        )


def download(
    fleet: Fleet, hub: Hub, village: str, node: str, records: int, shaping: Shaping
) -> Download:
    """Enrol a new box of ``village`` behind a proxy shaped as ``shaping``, start it and
    wait until it holds ``records`` records; stop it."""
    proxy = FaultProxy(fleet.broker.port, shaping)
    try:
        box = fleet.enrol(village, node, broker_port=proxy.port)
        fleet.write_broker_config()
        published = hub_counter(hub, "puskesos_hub_down_batches_sent_total")
        rate = shaping.rate_bps or 1_000_000
        started = time.monotonic()
        box.service.start()
        wait_for(lambda: box_records(box) >= records, 600 + 200 * records / rate, node, 0.1)
        seconds = time.monotonic() - started
        time.sleep(1)  # the last down-ack
        up, down = proxy.bytes_up, proxy.bytes_down
        batches = hub.api(f"/api/v1/devices/{node}")["down_seq"]
        published = hub_counter(hub, "puskesos_hub_down_batches_sent_total") - published
        box.service.stop()
        applied_s, applied_records = applied_span(box)
        return Download(seconds, up, down, batches, int(published), applied_s, applied_records)
    finally:
        proxy.stop()


def box_records(box: Box) -> int:
    """Records in a box's database (read-only: the box is serving)."""
    try:
        with contextlib.closing(box.connect(readonly=True)) as c:
            return int(c.execute("SELECT count(*) FROM records").fetchone()[0])
    except edge_db.DATABASE_ERRORS:
        return 0


def hub_counter(hub: Hub, name: str) -> float:
    """A counter of the hub's ``/metrics``."""
    with urllib.request.urlopen(hub.service.plain_url + "/metrics", timeout=60) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


APPLIED = re.compile(r"applied down batch \d+: (\d+) records changed")


def applied_span(box: Box) -> tuple[float, int]:
    """From the box's log: seconds between its first and last applied down batch, and the
    records the batches after the first changed."""
    times, changed = [], []
    for line in box.service.output().splitlines():
        if "applied down batch" not in line:
            continue
        event = json.loads(line)
        if found := APPLIED.search(event["msg"]):
            times.append(datetime.fromisoformat(event["ts"]).timestamp())
            changed.append(int(found[1]))
    if len(times) < 2:
        return 0.0, 0
    return times[-1] - times[0], sum(changed[1:])


async def apply_in_process(folder: Path, payloads: list[bytes]) -> tuple[float, float, int]:
    """Decode and apply ``payloads`` in order on the fresh box store in ``folder``: seconds
    decoding, seconds in ``apply_remote``, field versions applied."""
    first = decode(payloads[0])
    assert isinstance(first, Batch)
    config = EdgeConfig(village=VILLAGES[0], node=first.node, data_dir=folder)
    store = Store(config)
    await store.open()
    decoding = applying = 0.0
    versions = 0
    try:
        for payload in payloads:
            started = time.perf_counter()
            batch = decode(payload)
            decoded = time.perf_counter()
            assert isinstance(batch, Batch)
            await apply_remote(store, batch)
            applying += time.perf_counter() - decoded
            decoding += decoded - started
            versions += sum(len(change.fields) for change in batch.changes)
    finally:
        await store.close()
    return decoding, applying, versions


def box_apply_rate(folder: Path, payloads: list[bytes], runs: int) -> None:
    with_decode, apply_only = [], []
    for run in range(max(1, runs)):
        box = folder / f"apply-{run}"
        edge_db.upgrade(box / "edge.sqlite")
        decoding, applying, versions = asyncio.run(apply_in_process(box, payloads))
        with_decode.append(versions / (decoding + applying))
        apply_only.append(versions / applying)
    print(f"f. box apply in process ({len(payloads)} down batches, {versions:,} field versions, "
          f"a fresh store each run): {spread(with_decode, '{:,.0f}')} field versions/s "
          f"decoded and applied; apply_remote alone {spread(apply_only, '{:,.0f}')}")  # fmt: skip


VILLAGES: list[str] = []


def district_villages(district: str, count: int) -> list[str]:
    """The first ``count`` village codes of ``district`` in the Kemendagri 2025 list."""
    source = HERE.parent / "protocol" / "data" / "wilayah_kemendagri_2025.csv"
    found = []
    with source.open(encoding="utf-8", newline="") as text:
        for code, _ in csv.reader(text):
            plain = normalize_region_code(code) if code[0].isdigit() else ""
            if len(plain) == 10 and plain.startswith(district):
                found.append(plain)
                if len(found) == count:
                    break
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=20_000)
    parser.add_argument("--villages", type=int, default=4)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL alone (a-d)")
    parser.add_argument("--runs", type=int, default=3, help="new boxes in d, stores in f")
    parser.add_argument(
        "--link-households", type=int, default=None, help="village size of e (0: skip e)"
    )
    parser.add_argument("--link-kbit", type=int, default=40, help="link speed of e")
    parser.add_argument("--import-only", action="store_true", help="step a only")
    args = parser.parse_args()
    if args.link_households is None:
        args.link_households = -(-args.households // args.villages)
    VILLAGES[:] = district_villages("3201", args.villages)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        extract = folder / "dtsen.csv"
        started = time.monotonic()
        rows = write_extract(extract, args.households, VILLAGES)
        made = time.monotonic() - started
        size = extract.stat().st_size / 1e6
        print(f"extract: {args.households:,} households, {rows:,} rows, {size:.0f} MB "
              f"(made in {made:.0f} s)")  # fmt: skip
        payloads = [] if args.no_sqlite else measure("sqlite", "", folder, extract, rows, args)
        if args.postgres:
            database, url = fresh_postgres()
            try:
                measure("postgresql", url, folder, extract, rows, args)
            finally:
                drop_postgres(database)
        if payloads:
            box_apply_rate(folder, payloads, args.runs)


if __name__ == "__main__":
    main()
