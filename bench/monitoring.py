"""Monitoring benchmark: what one scrape of a hub worker's /metrics costs for a district.

Run: ``python bench/monitoring.py [--boxes 500] [--households 3200] [--postgres]`` (from the
repository root, after ``pip install -e .``; ``--postgres`` needs PostgreSQL at 127.0.0.1).
Builds a hub database with ``--boxes`` registered boxes (one village each) that have all
reported a status and a health report, and ``--households`` households with four members
per village; then times :meth:`HubMetrics.refresh` plus the exposition, and prints the
latency percentiles, the series and bytes of one scrape, and the series per box. Prints
figures, asserts nothing.

The records are counted at every scrape (``puskesos_hub_village_records``): that count is
what grows with the district, so run it at a district's real size (500 villages x 3,200
households = 1.6 million households, 8 million records) before trusting a scrape interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder would come first on sys.path; the repository root
# gives the packages and the test helpers.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from uuid import uuid4

import sqlalchemy as sa
from prometheus_client import generate_latest

from hub import db
from hub.metrics import HubMetrics
from hub.store import HubStore
from protocol.status import Status
from protocol.telemetry import Telemetry
from tests.hub.conftest import drop_postgres, fresh_postgres

#: Villages of Kabupaten Bogor get made-up codes in the right shape.
DISTRICT = "3201"


def village(number: int) -> str:
    return f"{DISTRICT}{number // 1000 + 10:02d}{number % 1000 + 2001:04d}"


async def build(url: str, boxes: int, households: int) -> HubStore:
    await asyncio.to_thread(db.upgrade, url)
    store = HubStore(db.create_engine(url), node="hub-1", max_clock_drift_ms=300_000)
    now = store.wall()
    async with store.engine.begin() as conn:
        await conn.execute(
            db.devices.insert(),
            [
                {
                    "node": f"edge-{n:04d}",
                    "village": village(n),
                    "password_hash": "-",
                    "broker_hash": "-",
                    "created_ms": now,
                }
                for n in range(boxes)
            ],
        )
        rows = []
        for n in range(boxes):
            for _ in range(households):
                household = str(uuid4())
                rows.append((household, "household", village(n), household))
                rows += [(str(uuid4()), "member", village(n), household) for _ in range(4)]
                if len(rows) >= 20_000:
                    await _insert_records(conn, rows, now)
                    rows = []
        await _insert_records(conn, rows, now)
    for n in range(boxes):
        node = f"edge-{n:04d}"
        await store.note_status(node, Status("online", outbox=n % 7, wall_ms=now, software="0.1"))
        report = Telemetry(
            wall_ms=now,
            software="0.1",
            uptime_s=86_400,
            outbox=n % 7,
            oldest_age_s=30,
            last_ack_age_s=20,
            disk_free_bytes=20 * 10**9,
            disk_size_bytes=32 * 10**9,
            db_bytes=200 * 10**6,
            cpu_temp_c=55.5,
            login_failures=n % 3,
        )
        await store.note_telemetry(node, village(n), report)
    return store


async def _insert_records(
    conn: sa.engine.Connection, rows: list[tuple[str, ...]], now: int
) -> None:
    if not rows:
        return
    await conn.execute(
        db.records.insert(),
        [
            {
                "id": record_id,
                "entity": entity,
                "village": code,
                "household_id": household,
                "state": "{}",
                "data": json.dumps({}),
                "log_seq": 1,
                "created_ms": now,
                "updated_ms": now,
            }
            for record_id, entity, code, household in rows
        ],
    )


async def measure(name: str, url: str, boxes: int, households: int, scrapes: int) -> None:
    started = time.perf_counter()
    store = await build(url, boxes, households)
    built = time.perf_counter() - started
    metrics = HubMetrics(stale_after_s=900)
    samples, body = [], b""
    for _ in range(scrapes):
        begin = time.perf_counter()
        await metrics.refresh(store)
        body = generate_latest(metrics.registry)
        samples.append((time.perf_counter() - begin) * 1000)
    await store.engine.dispose()
    series = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    per_box = sum(1 for line in series if 'node="edge-0000"' in line)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    records = boxes * households * 5
    print(
        f"{name:10} {boxes} boxes, {records:,} records (built in {built:.0f} s): "
        f"scrape p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms; "
        f"{len(series):,} series, {len(body):,} bytes; {per_box} series per box"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=500)
    parser.add_argument("--households", type=int, default=200, help="per village")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'hub.sqlite'}"
        asyncio.run(measure("SQLite", url, args.boxes, args.households, args.scrapes))
    if args.postgres:
        name, url = fresh_postgres()
        try:
            asyncio.run(measure("PostgreSQL", url, args.boxes, args.households, args.scrapes))
        finally:
            drop_postgres(name)


if __name__ == "__main__":
    main()
