"""Round-progress benchmark: what counting a district's verification round costs the hub
(``hub/progress.py``, ``docs/registry.md`` section 5), on SQLite and PostgreSQL.

Run: ``python bench/progress.py [--households N] [--villages V] [--rounds R]`` (from the
repository root, after ``pip install -e .``; PostgreSQL at 127.0.0.1). Prints figures,
asserts nothing. A fresh hub database of each kind is filled with N generated households
of four members (full DTSEN records, one in seven lacking a household variable, one in five
with a head lacking education) and a visit for every third household, written straight
into ``records`` with the columns the hub keeps (``status``, ``lacking``); then
``round_progress`` runs R times: min/median/max milliseconds, and the counts (the same on
both databases). Ringkasan and ``/metrics`` get this count from a background task at most
every 5 minutes; what a scrape or a page waits for is the first one only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import sqlalchemy as sa

from hub import db
from hub.posyandu import village_posyandu
from hub.progress import round_progress
from hub.store import HubStore
from protocol.entities import shown_status
from protocol.ids import uuid7
from protocol.registry import lacking
from tests.factories import make_household_with_members
from tests.hub.conftest import drop_postgres, fresh_postgres

TODAY = date(2026, 12, 4)


def rows(households: int, villages: int) -> list[dict[str, object]]:
    """The ``records`` rows of the generated district."""
    made: list[dict[str, object]] = []

    def row(entity: str, record_id: str, village: str, household: str, values: dict) -> None:
        made.append({
            "id": record_id, "entity": entity, "village": village, "household_id": household,
            "state": "{}", "data": json.dumps(values), "log_seq": len(made), "created_ms": 1,
            "updated_ms": 1, "status": shown_status(entity, values),
            "lacking": lacking(entity, values),
        })  # fmt: skip

    for number in range(households):
        village = f"3201022{number % villages:03d}"
        household, members = make_household_with_members(4, village=village, seed=number)
        household_id = str(household.pop("id"))
        if number % 7 == 0:
            household["floor_material"] = None
        row("household", household_id, village, household_id, household)
        for member in members:
            if number % 5 == 0 and member["relation_to_head"] == "kepala_keluarga":
                member["education"] = None
            row("member", str(member.pop("id")), village, household_id, member)
        if number % 3 == 0:
            visit = {"household_id": household_id, "visit_date": "2026-11-02",
                     "officer": "Petugas", "outcome": "ditemukan"}  # fmt: skip
            row("visit", uuid7(1_790_000_000_000 + number), village, household_id, visit)
    return made


async def measure(label: str, url: str, records: list[dict[str, object]], rounds: int) -> None:
    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            for start in range(0, len(records), 5000):
                await conn.execute(db.records.insert(), records[start : start + 5000])
            if url.startswith("postgresql"):
                await conn.execute(sa.text("ANALYZE records"))
        store = HubStore(engine, node="hub-1", max_clock_drift_ms=0)
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            _, villages = await round_progress(store, today=TODAY, round_months=3)
            times.append((time.perf_counter() - began) * 1000)
        total = {
            name: sum(getattr(p, name) for p in villages.values())
            for name in ("total", "visited", "incomplete", "not_found", "stale")
        }
        print(f"  {label:10s}: {min(times):,.0f} / {statistics.median(times):,.0f} / "
              f"{max(times):,.0f} ms (min/median/max of {rounds}); {total}")  # fmt: skip
        times, stalls = [], []
        for _ in range(rounds):
            began = time.perf_counter()
            stall = asyncio.create_task(longest_stall())
            posyandu = await village_posyandu(store, today=TODAY)
            times.append((time.perf_counter() - began) * 1000)
            stall.cancel()
            stalls.append(STALL[0] * 1000)
        people = sum(sum(v.registers.values()) for v in posyandu.values())
        began = time.perf_counter()
        await village_posyandu(store, today=TODAY, known=posyandu)
        unchanged = (time.perf_counter() - began) * 1000
        print(f"  {'':10s}  Posyandu registers: {min(times):,.0f} / "
              f"{statistics.median(times):,.0f} / {max(times):,.0f} ms; the event loop "
              f"stalled at most {max(stalls):,.0f} ms; {people:,} register entries; "
              f"again with no village changed: {unchanged:,.0f} ms")  # fmt: skip
    finally:
        await engine.dispose()


#: The longest gap :func:`longest_stall` saw between two of its ticks, in seconds.
STALL = [0.0]


async def longest_stall() -> None:
    """Tick every 10 ms and keep the longest gap: how long a page or a scrape waiting on
    the hub's event loop would have waited while the count ran."""
    STALL[0] = 0.0
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        STALL[0] = max(STALL[0], now - last - 0.01)
        last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=20_000)
    parser.add_argument("--villages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = rows(args.households, args.villages)
    print(f"round_progress over {args.households:,} households in {args.villages} villages "
          f"({len(records):,} records):")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="puskesos-bench-") as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'hub.sqlite'}"
        db.upgrade(url)
        asyncio.run(measure("SQLite", url, records, args.rounds))
    name, url = fresh_postgres()
    try:
        db.upgrade(url)
        asyncio.run(measure("PostgreSQL", url, records, args.rounds))
    finally:
        drop_postgres(name)


if __name__ == "__main__":
    main()
