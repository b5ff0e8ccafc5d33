"""Benchmark of the monthly cycle's heavy end: freeze, export and sign a district's
approved records from the hub database, on SQLite and on PostgreSQL, then forward the
dataset over loopback to the reference national receiver.

    python bench/cycle.py                            # 1,600,000 households, 4 members each
    python bench/cycle.py --households 100000 --databases sqlite --no-forward

Each database gets a fresh hub schema (the migrations) filled with approved households and
members in 400 villages, as the review queue leaves them: ``state``, ``data`` and
``approved`` columns in the store's own JSON forms (from 50 sample families). Loading is
set-up (COPY on PostgreSQL, one big transaction on SQLite) and is timed but not a goal.
Then, in a fresh process so that its peak RSS is the cycle's own, the hub's code runs
``cycle.freeze``, ``cycle.submit`` and ``cycle.sign`` (which streams the frozen records
out of the database, writes the JSON Lines and CSV files and signs the manifest).
Goals: export + sign < 120 s, peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub import cycle, db
from hub.config import HubConfig
from hub.forward import forward
from hub.keys import generate_key_pair, load_private_key, public_key_file
from hub.store import HubStore
from protocol.changes import FieldVersion
from protocol.clock import pack
from protocol.jsonform import dump_state
from puskesos.fleet import Service, free_port, puskesos
from puskesos.samples import make_household_with_members

DISTRICT = "3201"
VILLAGES = [f"3201{k:03d}{v:03d}" for k in range(10, 50) for v in range(1, 11)]
PERIOD = "2026-11"
#: When the sample records were created and stamped (2026-11-01).
CREATED_MS = 1_793_491_200_000
#: How many records one approval counter step covers (the queue approves in batches).
PER_APPROVAL = 1000
_HOUSEHOLD = "@household@"
_COLUMNS = [c.name for c in db.records.columns]


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def _state(values: dict[str, Any]) -> str:
    return dump_state(
        {k: (FieldVersion(v, pack(CREATED_MS, 0), "edge-1", ()),) for k, v in values.items()}
    )


def _templates(members: int) -> list[list[tuple[str, str, str, str | None]]]:
    """Per village: the household then its members as (entity, data, state, status),
    with :data:`_HOUSEHOLD` where the household's id goes."""
    families = [make_household_with_members(members, seed=n) for n in range(50)]
    templates = []
    for k, village in enumerate(VILLAGES):
        household, people = families[k % len(families)]
        values = {**household, "village_code": village}
        del values["id"]
        rows = [("household", _json(values), _state(values), None)]
        for person in people:
            values = {**person, "household_id": _HOUSEHOLD}
            del values["id"]
            rows.append(("member", _json(values), _state(values), values["status"]))
        templates.append(rows)
    return templates


def _record_id(n: int, k: int) -> str:
    """A UUIDv7 for household ``n``'s record ``k`` (0: the household): ids sort in
    creation order, as a box's do."""
    time_hex = f"{CREATED_MS + n:012x}"
    return f"{time_hex[:8]}-{time_hex[8:]}-7{k:03x}-8{n >> 48 & 0xFFF:03x}-{n & (1 << 48) - 1:012x}"


def rows(households: int, members: int) -> Iterator[tuple[Any, ...]]:
    """Every record row of the district, in the column order of ``db.records``."""
    templates = _templates(members)
    for n in range(households):
        village = VILLAGES[n % len(VILLAGES)]
        household_id = _record_id(n, 0)
        seq = n // PER_APPROVAL + 1
        for k, (entity, data, state, status) in enumerate(templates[n % len(VILLAGES)]):
            record_id = household_id if k == 0 else _record_id(n, k)
            if k:
                data = data.replace(_HOUSEHOLD, household_id)
                state = state.replace(_HOUSEHOLD, household_id)
            nik = None if k == 0 else json.loads(data)["nik"]
            row = {
                "id": record_id,
                "entity": entity,
                "village": village,
                "household_id": household_id,
                "state": state,
                "data": data,
                "deleted": False,
                "conflicts": 0,
                "log_seq": n * (members + 1) + k + 1,
                "writers": "edge-1",
                "created_ms": CREATED_MS + n,
                "updated_ms": CREATED_MS + n,
                "pending": False,
                "approved": data,
                "approved_seq": seq,
                "first_approved_seq": seq,
                "approved_status": status,
                "nik": nik,
            }
            yield tuple(row[c] for c in _COLUMNS)


def _chunks(items: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """This process's (or its largest finished child's) peak resident set size so far,
    in MB (Linux reports KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


def _show(label: str, text: str) -> None:
    print(f"  {label:<20} {text}")


def _approvals(households: int) -> int:
    return (households - 1) // PER_APPROVAL + 1


async def _load_postgres(url: str, households: int, members: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        for chunk in _chunks(rows(households, members), 20_000):
            await conn.copy_records_to_table("records", records=chunk, columns=_COLUMNS)
        await conn.executemany(
            "INSERT INTO villages (code, log_seq) VALUES ($1, $2)",
            [(v, households * (members + 1)) for v in VILLAGES],
        )
        await conn.execute(
            "INSERT INTO counters (name, value) VALUES ('approval_seq', $1)",
            _approvals(households),
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def _load_sqlite(path: str, households: int, members: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        insert = (
            f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        )
        for chunk in _chunks(rows(households, members), 20_000):
            conn.executemany(insert, chunk)
        conn.executemany(
            "INSERT INTO villages (code, log_seq) VALUES (?, ?)",
            [(v, households * (members + 1)) for v in VILLAGES],
        )
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('approval_seq', ?)",
            (_approvals(households),),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def load(url: str, households: int, members: int) -> dict[str, float]:
    """Create the hub schema at ``url`` and fill it (in a child process)."""
    started = time.perf_counter()
    db.upgrade(url)
    if db.is_sqlite(url):
        _load_sqlite(str(Path(url.split("///", 1)[1])), households, members)
    else:
        asyncio.run(_load_postgres(url, households, members))
    return {"load_s": time.perf_counter() - started, "rss_mb": _peak_rss_mb()}


async def _run_cycle(url: str, data_dir: Path) -> dict[str, Any]:
    engine = db.create_engine(url)
    try:
        store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
        config = HubConfig(district=DISTRICT, data_dir=data_dir, database_url=url)
        started = time.perf_counter()
        await cycle.freeze(store, config, PERIOD, "bench")
        froze = time.perf_counter()
        await cycle.submit(store, PERIOD, "bench")
        submitted = time.perf_counter()
        signed = await cycle.sign(store, config, PERIOD, "bench")
        done = time.perf_counter()
        async with engine.connect() as conn:
            if db.is_sqlite(url):
                size = Path(url.split("///", 1)[1]).stat().st_size
            else:
                size = (
                    await conn.exec_driver_sql("SELECT pg_database_size(current_database())")
                ).scalar_one()
    finally:
        await engine.dispose()
    folder = Path(signed.dataset or "")
    return {
        "freeze_s": froze - started,
        "export_s": done - submitted,
        "dataset": str(folder),
        "dataset_bytes": sum(f.stat().st_size for f in folder.iterdir()),
        "database_bytes": size,
        "rss_mb": _peak_rss_mb(),
        "worker_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
    }


def run_cycle(url: str, data_dir: str) -> dict[str, Any]:
    """Freeze, submit and sign the period (in a fresh child process)."""
    return asyncio.run(_run_cycle(url, Path(data_dir)))


async def _forward(dataset: Path, key_file: Path, root: Path, chunk_mib: int) -> dict[str, Any]:
    national = root / "national"
    config = national / "national.toml"
    puskesos("national", "init", "--config", str(config), "--data-dir", str(national / "data"))
    token = puskesos(
        "national", "district", "add", "--config", str(config), "--code", DISTRICT,
        "--public-key", str(public_key_file(key_file)),
    ).strip()  # fmt: skip
    port = free_port()
    receiver = Service(["national", "serve", "--config", str(config)], national / "log", port)
    receiver.env = {
        "PUSKESOS_NATIONAL_LISTEN_PORT": str(port),
        "PUSKESOS_NATIONAL_MAX_CHUNK_BYTES": str(chunk_mib << 20),
    }
    receiver.start()
    try:
        started = time.perf_counter()
        done = await forward(
            dataset,
            receiver.url,
            token,
            public_key=load_private_key(key_file).public_key(),
            chunk_bytes=chunk_mib << 20,
        )
        seconds = time.perf_counter() - started
    finally:
        receiver.stop()
    return {"forward_s": seconds, "bytes": done.bytes_sent, "rss_mb": _peak_rss_mb()}


def run_forward(dataset: str, key_file: str, root: str, chunk_mib: int) -> dict[str, Any]:
    """Forward the signed dataset to a reference receiver (in a fresh child process)."""
    return asyncio.run(_forward(Path(dataset), Path(key_file), Path(root), chunk_mib))


def _in_child(function: Any, *args: Any) -> Any:
    """``function(*args)`` in a fresh process: its peak RSS is its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _postgres_database(base: str, create: bool, name: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(f"{base.replace('+asyncpg', '')}/postgres")
        try:
            if create:
                await conn.execute(f"CREATE DATABASE {name}")
            else:
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    asyncio.run(run())


def bench_database(kind: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Load, then freeze, export and sign, on one database; the figures."""
    data_dir = root / kind
    data_dir.mkdir()
    shutil.copy(root / "signing.key", data_dir / "signing.key")
    name = ""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'hub.sqlite'}"
    else:
        name = f"bench_cycle_{uuid.uuid4().hex[:8]}"
        _postgres_database(args.postgres, True, name)
        url = f"{args.postgres}/{name}"
    try:
        loaded = _in_child(load, url, args.households, args.members)
        cycled = _in_child(run_cycle, url, str(data_dir))
    finally:
        if name:
            _postgres_database(args.postgres, False, name)
        else:
            (data_dir / "hub.sqlite").unlink(missing_ok=True)
    return {**cycled, "load_s": loaded["load_s"]}


def main() -> None:
    """Parse the options, run each database, forward once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1_600_000)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--no-forward", action="store_true", help="freeze, export and sign only")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-cycle-", dir=args.dir))
    records = args.households * (args.members + 1)
    members = records - args.households
    print(f"district {DISTRICT}: {args.households:,} households, {members:,} members")
    try:
        generate_key_pair(root / "signing.key")
        dataset = ""
        for kind in args.databases.split(","):
            got = bench_database(kind, args, root)
            dataset = got["dataset"]
            print(f"\n{kind}")
            _show("load (set-up)", f"{got['load_s']:.1f} s, {got['database_bytes'] / 1e9:.2f} GB")
            _show("freeze + totals", f"{got['freeze_s']:.1f} s")
            _show("export + sign", f"{got['export_s']:.1f} s ({records / got['export_s']:,.0f}/s)")
            _show("dataset", f"{got['dataset_bytes'] / 1e6:,.0f} MB")
            _show("peak RSS", f"{got['rss_mb']:.0f} MB hub, {got['worker_rss_mb']:.0f} MB writer")
        if args.no_forward or not dataset:
            return
        sent = _in_child(run_forward, dataset, str(root / "signing.key"), str(root), args.chunk_mib)
        rate = sent["bytes"] / 1e6 / sent["forward_s"]
        print("\nforward (loopback)")
        _show("time", f"{sent['forward_s']:.1f} s, {rate:,.0f} MB/s in {args.chunk_mib} MiB chunks")
        _show("peak RSS", f"{sent['rss_mb']:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
