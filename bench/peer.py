"""Side by side with the peer (issue 18): box → hub replication against PouchDB's.

Run: ``python bench/peer.py [--rounds 5] [--records 20000] [--baseline /work/main]``
(from the repository root, after ``pip install -e .``; needs Mosquitto, and PostgreSQL at
127.0.0.1 for the PostgreSQL hub). Prints figures, asserts nothing.

The workload, the same on both sides: ``--records`` household records saved on the
sending side before replication starts, then replicated to the receiver and committed
there. Ours: a real box (``puskesos edge serve``) filled offline through its store, 500
records per transaction (households of ``puskesos.samples``, varied as real ones are:
names, NIKs, addresses, ranking variables), sending to a real hub (``puskesos hub
serve``) through Mosquitto, on a SQLite hub and on a PostgreSQL hub; WAL and
``synchronous=FULL`` on both ends. The peer: ``../shared/peer-pouchdb/peer2.js`` (PouchDB 9
replicating to express-pouchdb over HTTP on loopback, batches of 500; its documents are
nearly uniform), on memory adapters and on leveldb with an fsync per write. Each round
runs every variant once, one after the other (every other round in reverse order), so
that load on the machine falls on all of them alike; compare ratios, never absolute
figures of different sessions.

What is measured, per variant and round:

- records/s: ours from the first commit seen in the hub's database to the last
  (committed rows counted in the hub's database every 20 ms: SQLite read-only, PostgreSQL
  through its own connection; the hub's API lags the commits on SQLite), excluding the
  first batch; the peer's own figure (its whole ``replicate.to``, first batch included);
- wire B/record: bytes both ways on the sending side's link (ours: a counting TCP proxy
  between the box and the broker, MQTT headers, acks, status and telemetry included; the
  peer: HTTP requests and responses at its server's sockets);
- receiver CPU ms per 1,000 records: user + system time of the hub process over the same
  window as records/s (on PostgreSQL plus the server backends of the hub's database); the
  peer: its server process from the replication's start to its end;
- receiver peak RSS: VmHWM of the hub process (PostgreSQL's own memory not counted); the
  peer: its server process.

``--baseline DIR`` runs our hub and box from another checkout (e.g. the unchanged main)
too, in the same rounds, and prints the ratios of this tree against it. The peer needs
``node`` and its npm packages in ``--peer-dir`` (default ``$PEER_POUCHDB_DIR`` or
``~/peer``, set up as ``../shared/peer-pouchdb/README.md`` says); without them its runs
are skipped with the reason, and ours still run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, this file's folder would come first on sys.path; the repository root
# gives the packages, the test helpers and the fault proxy.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import asyncpg

from edge.config import SyncConfig, load_config
from edge.records import Edit
from edge.store import Store
from puskesos.fleet import Box, Fleet
from puskesos.samples import make_household_with_members
from tests.faultproxy import FaultProxy
from tests.hub.conftest import drop_postgres, fresh_postgres

VILLAGE = "3201022001"
NODE = "edge-bench"
PEER_SCRIPTS = HERE.parent.parent / "shared" / "peer-pouchdb"
PEER_PACKAGES = (
    "pouchdb-node",
    "pouchdb-adapter-memory",
    "express-pouchdb",
    "express",
    "leveldown",
)
POLL_S = 0.02
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Run:
    """One variant's figures in one round."""

    records_per_s: float
    wire_per_record: float
    cpu_ms_per_1000: float
    peak_rss_mb: float


@dataclass
class Variant:
    """A way of replicating the workload, and its runs so far."""

    name: str
    run: Callable[[Path, int], Awaitable[Run]]
    runs: list[Run] = field(default_factory=list)


# --- the receiver's process ------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class Committed:
    """Counts the household records committed in a hub database, from outside the hub."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: asyncpg.Connection | None = None

    async def open(self) -> None:
        if not self.url.startswith("sqlite"):
            self._pg = await asyncpg.connect(self.url.replace("+asyncpg", ""))

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()

    async def count(self) -> int:
        query = "SELECT count(*) FROM records WHERE entity = 'household'"
        if self._pg is not None:
            return int(await self._pg.fetchval(query))
        path = self.url.split("///", 1)[1]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            return int(connection.execute(query).fetchone()[0])

    async def backends(self) -> dict[int, float]:
        """CPU seconds so far of each PostgreSQL backend serving the hub's database."""
        if self._pg is None:
            return {}
        name = self.url.rsplit("/", 1)[1]
        rows = await self._pg.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return {row["pid"]: cpu_s(row["pid"]) for row in rows}


# --- ours ------------------------------------------------------------------------------------


async def fill_households(box: Box, records: int) -> None:
    """Save ``records`` households (no members) on a box that is not serving, straight
    through its store, 500 per transaction."""
    store = Store(load_config(box.config), key=box.data_key())
    await store.open()
    try:
        for start in range(0, records, 500):
            edits = []
            for number in range(start, min(records, start + 500)):
                household, _ = make_household_with_members(1, village=VILLAGE, seed=number + 1)
                values = {k: v for k, v in household.items() if k != "id"}
                edits.append(Edit("household", household["id"], values))
            await store.write(edits, actor="bench")
    finally:
        await store.close()


async def ours(root: Path, records: int, *, tree: Path, postgres: bool) -> Run:
    """Replicate ``records`` households from a real box to a real hub (code of ``tree``)."""
    os.environ["PYTHONPATH"] = str(tree)  # every puskesos child process runs that tree
    # ``python -m`` would put the working folder (a checkout, maybe not ``tree``) first.
    os.environ["PYTHONSAFEPATH"] = "1"
    name, url = fresh_postgres() if postgres else ("", "")
    sync = SyncConfig(backoff_min_s=1, backoff_max_s=2)
    # Only the keys set here: a baseline checkout refuses the keys added since.
    fleet = Fleet(root, database_url=url, sync=sync, changed_keys_only=True)
    proxy: FaultProxy | None = None
    try:
        hub = fleet.add_hub(start=False)
        url = url or f"sqlite+aiosqlite:///{hub.folder / 'hub.sqlite'}"
        fleet.write_broker_config()
        fleet.broker.start()
        proxy = FaultProxy(fleet.broker.port)
        box = fleet.enrol(VILLAGE, NODE, broker_port=proxy.port)
        await fill_households(box, records)
        fleet.write_broker_config()
        hub.service.start()
        assert hub.service.process is not None
        pid = hub.service.process.pid
        committed = Committed(url)
        await committed.open()
        try:
            box.service.start()
            first = last = 0.0
            seen = first_count = 0
            cpu0, backends = 0.0, {}
            deadline = time.monotonic() + 600
            while seen < records:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {seen} of {records} records committed")
                await asyncio.sleep(POLL_S)
                count = await committed.count()
                if count and not first:
                    first, first_count = time.monotonic(), count
                    cpu0, backends = cpu_s(pid), await committed.backends()
                if count > seen:
                    seen, last = count, time.monotonic()
            cpu = cpu_s(pid) - cpu0
            cpu += sum(cpu_s(p) - backends.get(p, 0.0) for p in await committed.backends())
        finally:
            await committed.close()
        flowing = records - first_count
        return Run(
            records_per_s=flowing / (last - first),
            wire_per_record=(proxy.bytes_up + proxy.bytes_down) / records,
            cpu_ms_per_1000=cpu * 1e6 / flowing,
            peak_rss_mb=peak_rss_mb(pid),
        )
    finally:
        fleet.stop()
        if proxy is not None:
            proxy.stop()
        if name:
            drop_postgres(name)


# --- the peer --------------------------------------------------------------------------------


def peer_missing(peer_dir: Path, scripts: Path) -> str | None:
    """Why the peer cannot run here (``None``: it can)."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed"
    if not (scripts / "peer2.js").exists():
        return f"no peer2.js in {scripts}"
    probe = ";".join(f"require.resolve({package!r})" for package in PEER_PACKAGES)
    result = subprocess.run(
        [node, "-e", probe],
        env=os.environ | {"NODE_PATH": str(peer_dir / "node_modules")},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return (
            f"its npm packages are not in {peer_dir} (set it up as "
            f"{scripts / 'README.md'} says: npm install {' '.join(PEER_PACKAGES)})"
        )
    return None


async def peer(root: Path, records: int, *, peer_dir: Path, scripts: Path, adapter: str) -> Run:
    """One run of the peer's ``peer2.js`` (``adapter``: memory, or leveldb with fsync)."""
    env = os.environ | {
        "NODE_PATH": str(peer_dir / "node_modules"),
        "ADAPTER": adapter,
        "FSYNC": "1" if adapter == "leveldb" else "0",
        "PEER_DATA": str(root),
    }
    process = await asyncio.create_subprocess_exec(
        "node", str(scripts / "peer2.js"), str(records),
        env=env, cwd=peer_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"peer2.js failed: {err.decode()[-2000:]}")
    report = json.loads(out.decode().strip().splitlines()[-1])
    if report["replicated"] != records:
        raise RuntimeError(f"the peer replicated {report['replicated']} of {records}")
    return Run(
        records_per_s=float(report["docs_per_s"]),
        wire_per_record=float(report["wire_bytes_per_doc"]),
        cpu_ms_per_1000=report["cpu_s_server"] * 1e6 / records,
        peak_rss_mb=float(report["server_peak_rss_mb"]),
    )


# --- report ----------------------------------------------------------------------------------


def spread(values: list[float], unit: str = "") -> str:
    return f"{min(values):8,.0f} {statistics.median(values):8,.0f} {max(values):8,.0f}{unit}"


def report(variants: list[Variant], records: int) -> None:
    print(f"\n{records:,} household records, {len(variants[0].runs)} rounds; min median max")
    print(f"{'variant':<28} {'records/s':>26}  {'wire B/rec':>9} {'CPU ms/1k':>9} {'RSS MB':>7}")
    for variant in variants:
        runs = variant.runs
        print(
            f"{variant.name:<28} {spread([r.records_per_s for r in runs])}  "
            f"{statistics.median(r.wire_per_record for r in runs):9,.0f} "
            f"{statistics.median(r.cpu_ms_per_1000 for r in runs):9,.0f} "
            f"{statistics.median(r.peak_rss_mb for r in runs):7,.0f}"
        )
    by_name = {variant.name: variant for variant in variants}
    pairs = [
        (mine, other)
        for mine in by_name
        if mine.startswith("ours")
        for other in by_name
        if other.startswith("peer") or (other.startswith("baseline") and _same_hub(mine, other))
    ]
    if pairs:
        print("\nratios, per round (min median max) of records/s; medians of the rest")
    for mine, other in pairs:
        a, b = by_name[mine].runs, by_name[other].runs
        ratios = [x.records_per_s / y.records_per_s for x, y in zip(a, b, strict=True)]

        def med(runs: list[Run], attribute: str) -> float:
            return statistics.median(getattr(r, attribute) for r in runs)

        print(
            f"{mine} / {other}: records/s {min(ratios):.2f} {statistics.median(ratios):.2f} "
            f"{max(ratios):.2f}; wire {med(a, 'wire_per_record') / med(b, 'wire_per_record'):.2f}"
            f"; CPU {med(a, 'cpu_ms_per_1000') / med(b, 'cpu_ms_per_1000'):.2f}"
            f"; RSS {med(a, 'peak_rss_mb') / med(b, 'peak_rss_mb'):.2f}"
        )


def _same_hub(mine: str, other: str) -> bool:
    return mine.split()[-1] == other.split()[-1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--hubs", default="sqlite,postgresql", help="our hub databases")
    parser.add_argument("--baseline", type=Path, help="another checkout to run ours from too")
    default_peer = os.environ.get("PEER_POUCHDB_DIR") or str(Path.home() / "peer")
    parser.add_argument("--peer-dir", type=Path, default=Path(default_peer))
    parser.add_argument("--peer-scripts", type=Path, default=PEER_SCRIPTS)
    args = parser.parse_args()
    tree = HERE.parent
    variants: list[Variant] = []
    trees = [("ours", tree)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    for label, where in trees:
        for hub in args.hubs.split(","):
            postgres = hub == "postgresql"

            async def run(
                root: Path, n: int, where: Path = where, postgres: bool = postgres
            ) -> Run:
                return await ours(root, n, tree=where, postgres=postgres)

            variants.append(Variant(f"{label} {hub}", run))
    missing = peer_missing(args.peer_dir, args.peer_scripts)
    if missing:
        print(f"peer skipped: {missing}")
    else:
        for adapter, label in (("memory", "memory"), ("leveldb", "leveldb+fsync")):

            async def run_peer(root: Path, n: int, adapter: str = adapter) -> Run:
                return await peer(
                    root, n, peer_dir=args.peer_dir, scripts=args.peer_scripts, adapter=adapter
                )

            variants.append(Variant(f"peer {label}", run_peer))
    for number in range(args.rounds):
        # Every other round in reverse order: what a run leaves behind (dirty pages being
        # written back, a busy PostgreSQL) falls on each variant alike.
        for variant in variants if number % 2 == 0 else variants[::-1]:
            with tempfile.TemporaryDirectory(prefix="puskesos-peer-") as folder:
                result = await variant.run(Path(folder), args.records)
            variant.runs.append(result)
            print(
                f"round {number + 1} {variant.name:<24} {result.records_per_s:8,.0f} records/s "
                f"{result.wire_per_record:6,.0f} B/record {result.cpu_ms_per_1000:6,.0f} CPU "
                f"ms/1k {result.peak_rss_mb:5,.0f} MB",
                flush=True,
            )
    report(variants, args.records)


if __name__ == "__main__":
    asyncio.run(main())
