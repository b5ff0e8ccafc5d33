"""Benchmark of the monthly export: write and sign the dataset of a district, then forward
it over loopback to the reference national receiver.

    python bench/cycle.py                      # 1,600,000 households, 4 members each
    python bench/cycle.py --households 200000 --chunk-mib 8

Records come from a generator (varied but cheap: the point is the export, not the
factories). Prints the export's wall time, the process's peak RSS after the export and
after forwarding, the bytes written, and the forwarding throughput. Goals: export < 120 s,
peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.export import ExportRecord, export_dataset
from hub.forward import forward
from hub.keys import generate_key_pair, load_private_key, public_key_file
from puskesos.fleet import Service, free_port, puskesos
from puskesos.samples import make_household_with_members

DISTRICT = "3201"
VILLAGES = [f"3201{k:03d}{v:03d}" for k in range(10, 50) for v in range(1, 11)]


def records(households: int, members: int, seed: int = 1) -> Iterator[ExportRecord]:
    """``households`` households of ``members`` members each, from 50 sample families with
    fresh ids, villages and a few varied fields."""
    rng = random.Random(seed)
    templates = [make_household_with_members(members, seed=n) for n in range(50)]
    for n in range(households):
        household, people = templates[n % len(templates)]
        village = VILLAGES[n % len(VILLAGES)]
        household_id = f"0199{n:08x}-0000-7000-8000-{rng.getrandbits(48):012x}"
        values = {**household, "village_code": village, "floor_area_m2": rng.randint(12, 200)}
        del values["id"]
        yield ExportRecord("household", household_id, village, values)
        for m, person in enumerate(people):
            member = {**person, "household_id": household_id}
            del member["id"]
            yield ExportRecord("member", f"{household_id[:-4]}{m:04x}", village, member)


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(args: argparse.Namespace, root: Path) -> None:
    key_file = root / "signing.key"
    generate_key_pair(key_file)
    key = load_private_key(key_file)
    target = root / f"{DISTRICT}-{args.period}"
    started = time.perf_counter()
    manifest = await export_dataset(
        records(args.households, args.members),
        target,
        district=DISTRICT,
        period=args.period,
        key=key,
        now_ms=time.time_ns() // 1_000_000,
    )
    export_s = time.perf_counter() - started
    size = manifest.total_bytes
    print(f"households            {args.households:,} ({args.households * args.members:,} members)")
    rate = sum(manifest.counts.values()) / export_s
    print(f"export + sign         {export_s:.1f} s ({rate:,.0f} records/s)")
    print(f"bytes written         {size / 1e6:,.1f} MB in {len(manifest.files)} files")
    print(f"peak RSS after export {peak_rss_mb():.0f} MB")
    if args.no_forward:
        return
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
        "PUSKESOS_NATIONAL_MAX_CHUNK_BYTES": str(args.chunk_mib << 20),
    }
    receiver.start()
    try:
        started = time.perf_counter()
        done = await forward(
            target,
            receiver.url,
            token,
            public_key=key.public_key(),
            chunk_bytes=args.chunk_mib << 20,
        )
        forward_s = time.perf_counter() - started
    finally:
        receiver.stop()
    print(
        f"forward (loopback)    {forward_s:.1f} s, {done.bytes_sent / 1e6 / forward_s:,.0f} MB/s"
        f" in {args.chunk_mib} MiB chunks, receipt {done.receipt.receipt_id}"
    )
    print(f"peak RSS after forward {peak_rss_mb():.0f} MB")


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1_600_000)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--period", default="2026-11")
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--no-forward", action="store_true", help="export only")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-cycle-", dir=args.dir))
    try:
        asyncio.run(run(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
