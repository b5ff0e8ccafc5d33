"""Registry import benchmark: the district's extract into the hub, and what it costs the
downlink (``docs/registry.md``).

Run: ``python bench/registry.py [--households N] [--villages V] [--postgres]`` (from the
repository root, after ``pip install -e .``; PostgreSQL at 127.0.0.1 for ``--postgres``).
Prints figures, asserts nothing. For each database:

a. import of a generated CSV extract (N households of 4 members, in V villages, one
   combined file) with ``puskesos hub registry import``: wall time, rows/s, records/s and
   the peak RSS of the importing process;
b. the downlink of one village to a new box: down batches packed by the hub for a box of
   that village, bytes per record and in total (what a 2G modem would carry);
c. re-import of the unchanged extract: wall time, and the downlink bytes it causes (goal 0).

The issue's full size is 1,600,000 households (``--households 1600000 --villages 400``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from hub import db, downlink
from hub.config import HubConfig, load_config, render_toml
from hub.devices import add_device
from hub.store import HubStore
from protocol.entities import SCHEMA_VERSION
from protocol.regions import normalize_region_code
from protocol.status import Status
from tests.factories import make_household_with_members
from tests.hub.conftest import drop_postgres, fresh_postgres

COLUMNS = [
    "id_keluarga", "kode_desa", "alamat", "rt", "rw", "no_kk", "program", "desil",
    "floor_material", "wall_material", "roof_material", "cooking_fuel",
    "id_art", "nik", "nama", "hubungan", "jenis_kelamin", "tanggal_lahir", "pendidikan",
]  # fmt: skip


def write_extract(path: Path, households: int, villages: list[str]) -> int:
    """A combined CSV extract; returns its rows."""
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for number in range(households):
            village = villages[number % len(villages)]
            household, members = make_household_with_members(4, village=village, seed=number)
            base = [
                f"DTSEN-{number:08d}", village, household["address"], household["rt"],
                household["rw"], household["kk_number"], ";".join(household["programmes"]),
                str(1 + number % 10), household["floor_material"], household["wall_material"],
                household["roof_material"], household["cooking_fuel"],
            ]  # fmt: skip
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


def run_import(config: Path, extract: Path) -> tuple[float, float, str]:
    """Seconds, peak RSS (MB) of the import process, and its summary line."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "puskesos", "hub", "registry", "import", str(extract),
         "--config", str(config)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.monotonic() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, rss, result.stdout.splitlines()[0]


async def downlink_bytes(url: str, village: str, node: str, *, enrol: bool) -> tuple[int, int]:
    """Pack everything a box of ``village`` has not got yet; returns (batches, bytes)."""
    engine = db.create_engine(url)
    store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
    try:
        if enrol:
            await add_device(engine, village=village, node=node, now_ms=store.wall())
            await store.note_status(node, Status("online", schema=SCHEMA_VERSION), retained=True)
        batches = size = 0
        while True:
            made = await downlink.fill(store, node, window=64, max_changes=500, max_bytes=65536)
            due = await downlink.due(store, older_than_ms=store.wall() + 1, node=node, limit=100)
            if not made and not due:
                return batches, size
            for batch in due:
                batches += 1
                size += len(batch.payload)
                async with engine.begin() as conn:
                    await conn.execute(
                        db.down_batches.delete().where(
                            db.down_batches.c.node == node, db.down_batches.c.seq == batch.seq
                        )
                    )
    finally:
        await engine.dispose()


def measure(label: str, url: str, folder: Path, extract: Path, rows: int, village: str) -> None:
    config = folder / f"hub-{label}.toml"
    config.write_text(
        render_toml(HubConfig(data_dir=folder / label, database_url=url)), encoding="utf-8"
    )
    subprocess.run(
        [sys.executable, "-m", "puskesos", "hub", "init", "--config", str(config)],
        capture_output=True, check=True,
    )  # fmt: skip
    seconds, rss, line = run_import(config, extract)
    records = rows + rows // 4
    print(f"  [{label}] a. import: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, "
          f"{records / seconds:,.0f} records/s, peak RSS {rss:.0f} MB")  # fmt: skip
    print(f"           {line}")
    real = load_config(config).url
    batches, size = asyncio.run(downlink_bytes(real, village, "edge-bench-a", enrol=True))
    in_village = records // max(1, len(VILLAGES))
    print(f"  [{label}] b. one village to a new box: {batches} down batches, {size:,} B, "
          f"{size / max(1, in_village):.0f} B per record (~{in_village} records)")  # fmt: skip
    seconds, _, line = run_import(config, extract)
    batches, size = asyncio.run(downlink_bytes(real, village, "edge-bench-a", enrol=False))
    print(f"  [{label}] c. re-import unchanged: {seconds:.1f} s; downlink {size} B in "
          f"{batches} batches; {line}")  # fmt: skip


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
    args = parser.parse_args()
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
        measure("sqlite", "", folder, extract, rows, VILLAGES[0])
        if args.postgres:
            database, url = fresh_postgres()
            try:
                measure("postgresql", url, folder, extract, rows, VILLAGES[0])
            finally:
                drop_postgres(database)


if __name__ == "__main__":
    main()
