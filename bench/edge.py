"""Edge benchmark: save and search latency, memory and disk of a village box.

Run: ``python bench/edge.py`` (from the repository root, after ``pip install -e .``).
Prints figures; asserts nothing. A real box is set up with ``puskesos edge init`` in a
temporary folder and served by ``puskesos edge serve`` as a subprocess pinned to one CPU
(the load generator runs on another when there is one). Saves go through the real HTTP
API (``POST /api/v1/households`` with a bearer token). For the search figures the box is
filled to ``--households`` households by ``Store.write`` in batches (the server stopped),
then searched over HTTP, and the pages that read the whole village (Beranda, the
verification worklist, the completeness list, the vulnerable-group registers, the
Posyandu's hari-buka screen, MBG list and monthly report, with ``--service-months`` months
of Posyandu services: one a month per household) are timed.
Goals (issue 3): p99 < 30 ms at 10 concurrent clients on one core; search < 20 ms; RSS
< 100 MB. Issue 19: every register under 100 ms for 5,000 households; RSS still < 100 MB
with a year of services.

``--sync-rounds N`` measures instead what syncing costs the box (issue 18: save p99 <
30 ms at 10 concurrent clients while sync runs): per round, a fresh broker (Mosquitto),
hub (SQLite) and box set up as the tests' fleet does, the box pinned like above; ``--saves``
saves of a household with 4 members at 10 clients with the box's sync off, then the same
on a fresh set-up with sync on, each save's changes flowing to the hub while the others
are made. Prints p50/p99, saves/s and the box's CPU per save (its packing process
included) of each, their min/median/max over the rounds, and how many of the saved records
the hub had committed when the saves ended. With
``--baseline DIR`` the box and the hub of another checkout (e.g. the unchanged main) run
too, in the same rounds (the order reversed every other round), and the ratios of this
tree against it are printed.

``--encrypted-rounds N`` measures what encryption at rest costs (issue 16: saves at most
15 % slower): per round a fresh plain box and a fresh encrypted one (SQLCipher, unlocked by
a sign-in), ``--saves`` saves at 10 clients on each, the order swapped every other round;
prints p50/p99, saves/s and database bytes per household of each and the per-round ratio.

``--pages-rounds N --baseline DIR`` measures the village pages of this checkout against
another one (``DIR``, e.g. ``git archive eb7cef4 | tar -x -C /tmp/base``) on one box of
``--households`` households with ``--service-months`` of services: per round, each
checkout's ``puskesos edge serve`` (alternating which goes first) serves ``--rounds``
requests of each page; prints each page's p50 and max latency, the server's CPU ms per
request and its RSS after the page (min/median/max over the rounds) and the ratio of the
medians. Then the register computation alone, in a process pinned like the server
(``--register-runs`` runs per checkout, two processes each): the village scan, the families
(ages), each register's count, CPU ms and RSS. With ``--encrypted`` the box is encrypted
(SQLCipher, unlocked by a sign-in of each server), its page cache decrypted per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `edge` package; the repository root gives the test factories and the box helpers.
HERE = Path(__file__).resolve().parent
#: The checkout whose packages this process measures (``--registers-of`` runs it on another).
CODE = os.environ.get("BENCH_CODE", str(HERE.parent))
sys.path[:] = [CODE] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from edge.config import load_config, render_toml
from edge.records import Edit
from edge.store import Store
from puskesos.fleet import Fleet, Service, sign_in
from puskesos.keyslots import generate_recovery_key
from tests.edge.box_process import ServedBox, household_body, init_box, puskesos, query
from tests.factories import make_household_with_members, make_service

PASSWORD = "kata-sandi-uji-beban-7"
SERVER_CPU = 0


def percentiles(samples_ms: list[float]) -> str:
    # ``--rounds 1`` gives one sample: every percentile is that sample.
    samples = samples_ms if len(samples_ms) > 1 else samples_ms * 2
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49]:6.1f} ms  p95 {cuts[94]:6.1f} ms  p99 {cuts[98]:6.1f} ms"


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    """CPU time (user + system, s) of ``pid`` and its living children so far."""
    tree = [pid] + [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    ticks = 0
    for process in tree:
        fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of ``pid`` to ``cpu`` (threads made later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def start(config: Path, folder: Path, name: str) -> ServedBox:
    box = ServedBox(config, folder / f"{name}.log").start()
    assert box.process is not None
    if os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        pin(box.process.pid, SERVER_CPU)
    return box


async def timed(
    concurrency: int, jobs: list[Callable[[], Awaitable[None]]]
) -> tuple[list[float], float]:
    """Run ``jobs`` from ``concurrency`` clients; each job's latency (ms), and the wall time."""
    waiting = list(jobs)
    latencies: list[float] = []

    async def client() -> None:
        while waiting:
            job = waiting.pop()
            began = time.perf_counter()
            await job()
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


async def bench_saves(
    box: Service,
    token: str,
    levels: dict[int, int],
    first_seed: int = 0,
    taken: frozenset[str] = frozenset(),
) -> tuple[int, list[tuple[list[float], float]]]:
    """Save-household-with-4-members latency at each concurrency; returns the next seed
    and each level's latencies (ms) and saves per second."""
    headers = {"Authorization": f"Bearer {token}"}
    seed = first_seed
    levels_measured = []
    async with box.client(headers=headers) as session:

        def job(body: dict[str, object]) -> Callable[[], Awaitable[None]]:
            async def post() -> None:
                async with session.post(f"{box.url}/api/v1/households", json=body) as answer:
                    if answer.status != 201:
                        raise RuntimeError(f"{answer.status}: {await answer.text()}")
                    await answer.read()

            return post

        for concurrency, count in levels.items():
            warm_up = concurrency * 2
            bodies = []
            while len(bodies) < warm_up + count:  # NIKs already on the box need a confirmation
                body = household_body(seed)
                seed += 1
                if not {m["nik"] for m in body["members"]} & taken:
                    bodies.append(body)
            await timed(concurrency, [job(b) for b in bodies[:warm_up]])
            latencies, wall = await timed(concurrency, [job(b) for b in bodies[warm_up:]])
            levels_measured.append((latencies, len(latencies) / wall))
            print(
                f"  {concurrency:3d} clients: {percentiles(latencies)}  "
                f"({len(latencies) / wall:5.1f} saves/s, n={len(latencies)})"
            )
    return seed, levels_measured


async def fill(
    config_path: Path, households: int, key: bytes | None = None
) -> list[tuple[str, str, str]]:
    """Add ``households`` households of 4 members by ``Store.write``, 200 per transaction
    (``key``: the data key of an encrypted box).

    Returns (NIK, family-card number, member name) samples to search for.
    """
    store = Store(load_config(config_path), key=key)
    await store.open()
    samples: list[tuple[str, str, str]] = []
    try:
        for first in range(0, households, 200):
            edits = []
            for seed in range(first, min(first + 200, households)):
                household, members = make_household_with_members(4, seed=1_000_000 + seed)
                household_id = household.pop("id")
                edits.append(Edit("household", household_id, household))
                for member in members:
                    edits.append(Edit("member", member.pop("id"), member))
                if seed % 100 == 0:
                    samples.append((members[0]["nik"], household["kk_number"], members[1]["name"]))
            await store.write(edits, actor="bench")
    finally:
        await store.close()
    return samples


async def fill_services(config_path: Path, months: int, key: bytes | None = None) -> int:
    """Add ``months`` months of Posyandu services, ending this month: each month, for
    every household, a weighing of its youngest member (a year for 5,000 households is
    60,000 services, more than a post of that size records). Returns how many."""
    config = load_config(config_path)
    store = Store(config, key=key)
    await store.open()
    today = store.box_time().today
    rng = random.Random(19)
    youngest: dict[str, dict[str, str]] = {}
    for member_id, household_id, born in await store.read(
        lambda conn: conn.exec_driver_sql(
            "SELECT id, household_id, json_extract(data, '$.birth_date') FROM records "
            "WHERE entity = 'member'"
        ).all()
    ):
        if household_id not in youngest or str(born) > youngest[household_id]["born"]:
            youngest[household_id] = {"id": member_id, "household_id": household_id, "born": born}
    written = 0
    try:
        for back in range(months):
            month = (today.month - back - 1) % 12 + 1
            year = today.year + (today.month - back - 1) // 12
            day = min(today, today.replace(year=year, month=month, day=1) + timedelta(days=9))
            edits = []
            for member in youngest.values():
                service = make_service(
                    member, service_date=day.isoformat(), weight_kg=round(rng.uniform(8, 18), 1)
                )
                edits.append(Edit("layanan", service.pop("id"), service))
            for first in range(0, len(edits), 500):
                await store.write(edits[first : first + 500], actor="bench")
            written += len(edits)
    finally:
        await store.close()
    return written


async def bench_search(box: ServedBox, token: str, samples: list[tuple[str, str, str]]) -> None:
    """Search latency over HTTP, one client: by NIK, by family-card number, by the start
    of a name, by a part of a surname, and by address."""
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(7)
    async with box.client(headers=headers) as session:

        def job(text: str) -> Callable[[], Awaitable[None]]:
            async def get() -> None:
                async with session.get(f"{box.url}/api/v1/search", params={"q": text}) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"{answer.status}: {await answer.text()}")
                    await answer.read()

            return get

        kinds = {
            "NIK": [s[0] for s in samples],
            "family-card number": [s[1] for s in samples],
            "name prefix": [s[2].split()[0][: rng.randint(3, 6)] for s in samples],
            "part of a name": [s[2].split()[-1][1:] for s in samples],
            # Every sample household has this address: the worst case, all of them match.
            "address": ["babakan" for _ in samples],
        }
        await timed(1, [job(text) for text in kinds["NIK"][:10]])  # warm up
        everything: list[float] = []
        for kind, texts in kinds.items():
            latencies, _ = await timed(1, [job(text) for text in texts])
            everything += latencies
            print(f"  by {kind:18s}: {percentiles(latencies)}  (n={len(latencies)})")
        print(f"  all searches      : {percentiles(everything)}  (n={len(everything)})")


def database_bytes(database: Path) -> int:
    return sum(p.stat().st_size for p in database.parent.glob(database.name + "*"))


#: The pages that read the whole village at once.
VILLAGE_PAGES = (
    "/", "/verifikasi", "/kelengkapan", "/kelompok-rentan", "/kelompok-rentan/lansia",
    "/posyandu", "/posyandu?kelompok=lansia", "/posyandu/mbg", "/posyandu/laporan",
)  # fmt: skip


async def bench_village_pages(
    box: ServedBox, token: str, rounds: int = 20
) -> dict[str, tuple[float, float, float, float]]:
    """Latency of the pages that read the whole village at once (Beranda's round progress,
    the verification worklist, the completeness list, the vulnerable-group registers, the
    Posyandu pages), one client, with the server's CPU time per request and RSS after
    each: path → (p50 ms, max ms, RSS MB, CPU ms per request)."""
    headers = {"Authorization": f"Bearer {token}"}
    figures = {}
    async with box.client(headers=headers) as session:
        for path in VILLAGE_PAGES:

            def job(path: str = path) -> Callable[[], Awaitable[None]]:
                async def get() -> None:
                    async with session.get(box.url + path) as answer:
                        if answer.status != 200:
                            raise RuntimeError(f"{path}: {answer.status}")
                        await answer.read()

                return get

            await timed(1, [job()])  # warm up
            pid = box.process.pid  # type: ignore[union-attr]
            before = cpu_s(pid) * 1000
            latencies, _ = await timed(1, [job() for _ in range(rounds)])
            cpu = (cpu_s(pid) * 1000 - before) / rounds
            rss = rss_mb(pid)
            figures[path] = (statistics.median(latencies), max(latencies), rss, cpu)
            print(
                f"  GET {path:25s}: {percentiles(latencies)}  "
                f"(n={len(latencies)}, CPU {cpu:.0f} ms each, RSS {rss:.0f} MB)"
            )
    return figures


async def bench_sync(rounds: int, saves: int, baseline: Path | None) -> None:
    """Save latency at 10 clients with the box's sync off and on, interleaved rounds; with
    ``baseline``, the same from that checkout too, in the same rounds."""
    trees = [("ours", HERE.parent)] + ([("baseline", baseline.resolve())] if baseline else [])
    variants = [(tree, mode) for tree in trees for mode in ("off", "on")]
    figures: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {
        (label, mode): [] for (label, _), mode in variants
    }
    # PYTHONSAFEPATH: `python -m puskesos` would put the working folder first on sys.path,
    # and every variant would run the code of the folder we are in.
    os.environ["PYTHONSAFEPATH"] = "1"
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for number in range(rounds):
        # Every other round in reverse order: what a run leaves behind falls on each alike.
        for (label, tree), mode in variants if number % 2 == 0 else variants[::-1]:
            os.environ["PYTHONPATH"] = str(tree)  # the box and the hub run that tree
            with tempfile.TemporaryDirectory(prefix="puskesos-bench-") as tmp:
                # Only the keys set here: a baseline checkout refuses the keys added since.
                fleet = Fleet(Path(tmp), changed_keys_only=True)
                try:
                    hub = fleet.add_hub(start=False)
                    box = fleet.enrol("3201022001", "edge-bench")
                    if mode == "off":
                        box.service.env["PUSKESOS_SYNC_ENABLED"] = "false"
                    fleet.start()
                    assert box.service.process is not None
                    if os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
                        pin(box.service.process.pid, SERVER_CPU)
                    print(f"round {number + 1}, {label}, sync {mode}:")
                    before, cpu = time.perf_counter(), cpu_s(box.service.process.pid)
                    _, [(latencies, rate)] = await bench_saves(box.service, box.token, {10: saves})
                    took = time.perf_counter() - before
                    # Per save, the 20 warm-up saves included; the packing process too.
                    cpu_ms = (cpu_s(box.service.process.pid) - cpu) * 1000 / (saves + 20)
                    print(f"  box CPU per save: {cpu_ms:.2f} ms")
                    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
                    figures[label, mode].append((cuts[49], cuts[98], rate, cpu_ms))
                    if mode == "on":
                        with contextlib.closing(box.connect(readonly=True)) as connection:
                            made = connection.execute("SELECT count(*) FROM records").fetchone()[0]
                        committed = query(hub.folder / "hub.sqlite", "SELECT count(*) FROM records")
                        print(
                            f"  the hub had committed {committed[0][0]} of the box's {made} "
                            f"records when the saves ended ({took:.1f} s)"
                        )
                finally:
                    fleet.stop()
    print(f"save a household with 4 members, 10 clients, {rounds} rounds (min median max):")
    for (label, mode), runs in figures.items():
        line = spreads(("p50 ms", "p99 ms", "saves/s", "CPU ms/save"), runs)
        print(f"  {label:8s} sync {mode:3s}: {line}")
    if baseline:
        print("ours / baseline, median of the per-round ratios (p50, p99, saves/s, CPU/save):")
        for mode in ("off", "on"):
            ratios = [
                statistics.median(o[i] / b[i] for o, b in zip(
                    figures["ours", mode], figures["baseline", mode], strict=True
                ))
                for i in range(4)
            ]  # fmt: skip
            print(f"  sync {mode:3s}: " + "  ".join(f"{r:.2f}" for r in ratios))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


async def bench_encrypted(rounds: int, saves: int) -> None:
    """Saves at 10 clients on a plain box and on an encrypted one (SQLCipher with a data
    key, docs/storage.md; issue 16's goal: at most 15 % slower), a fresh box of each per
    round, the order swapped every other round."""
    figures: dict[str, list[tuple[float, float, float, float]]] = {"plain": [], "encrypted": []}
    with tempfile.TemporaryDirectory(prefix="puskesos-bench-") as tmp:
        recovery = generate_recovery_key(Path(tmp) / "recovery.key")
        for number in range(rounds):
            modes = list(figures) if number % 2 == 0 else list(reversed(figures))
            for mode in modes:
                encrypted = mode == "encrypted"
                folder = Path(tmp) / f"{mode}-{number}"
                folder.mkdir()
                config = init_box(
                    folder, users={"bench": ("operator", PASSWORD)},
                    recovery_key=recovery if encrypted else None,
                )  # fmt: skip
                token = puskesos(
                    "edge", "token", "add", "--config", str(config), "--username", "bench",
                    "--name", "bench", *(("--as", "bench") if encrypted else ()),
                    stdin=f"{PASSWORD}\n" if encrypted else "",
                ).stdout.strip()  # fmt: skip
                box = start(config, folder, "serve")
                print(f"round {number + 1}, {mode}:")
                try:
                    if encrypted:
                        sign_in(box, "bench", PASSWORD)
                    _, [(latencies, rate)] = await bench_saves(box, token, {10: saves})
                    assert box.stop() == 0
                finally:
                    box.kill()
                cuts = statistics.quantiles(latencies, n=100, method="inclusive")
                size = database_bytes(folder / "data" / "edge.sqlite") / (saves + 20)
                figures[mode].append((cuts[49], cuts[98], rate, size))
    print(f"save a household with 4 members, 10 clients, {rounds} rounds (min median max):")
    for mode, runs in figures.items():
        line = spreads(("p50 ms", "p99 ms", "saves/s", "bytes/household"), runs)
        print(f"  {mode:9s}: {line}")
    ratios = [e[2] / p[2] for p, e in zip(figures["plain"], figures["encrypted"], strict=True)]
    print(f"  saves/s encrypted / plain per round: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f}; goal ≥ 0.85)")  # fmt: skip


def spread(values: list[float], unit: str = "") -> str:
    """min/median/max of ``values``."""
    return f"{min(values):7.1f} {statistics.median(values):7.1f} {max(values):7.1f}{unit}"


def spreads(names: Sequence[str], runs: Sequence[Sequence[float]]) -> str:
    """min/median/max of each figure of ``runs`` (one tuple of figures per round), named."""
    return "  ".join(
        f"{name} {spread(list(values))}"
        for name, values in zip(names, zip(*runs, strict=True), strict=True)
    )


async def bench_registers(config_path: Path, runs: int) -> None:
    """The register computation in this process (pinned like the server): the village
    scan, the families with their ages, and each register's count, CPU ms per run; the
    process's RSS after the runs. Prints one line per figure: its name, a tab, the values."""
    from edge import keys
    from protocol.vulnerable import REGISTERS, family_of, tally

    try:
        from edge.web.ui_registry import walk_village

        async def village_households(store: Store) -> list[Any]:
            return await store.read(lambda conn: list(walk_village(conn)))
    except ImportError:  # a checkout from before the walk in batches (269fb5e)
        from edge.web.ui_registry import village_households  # type: ignore[attr-defined,no-redef]

    os.sched_setaffinity(0, {SERVER_CPU})
    config = load_config(config_path)
    key = keys.open_with_password(config, "bench", PASSWORD) if keys.encrypted(config) else None
    store = Store(config, key=key)
    await store.open()
    today = store.box_time().today
    figures: dict[str, list[float]] = {}

    def took(name: str, since: float) -> float:
        now = time.process_time()
        figures.setdefault(name, []).append((now - since) * 1000)
        return now

    try:
        for _ in range(runs):
            began = time.process_time()
            households = await village_households(store)
            mark = took("scan", began)
            families = [family_of(h.values, h.active, today) for h in households]
            mark = took("families", mark)
            for code, register in REGISTERS.items():
                tally(register, families)
                mark = took(code, mark)
            took("scan to counts", began)
            del households, families
    finally:
        await store.close()
    figures["RSS MB"] = [rss_mb(os.getpid())]
    for name, values in figures.items():
        print(name, " ".join(f"{v:.2f}" for v in values), sep="\t")


def registers_of(code: str, config: Path, runs: int) -> dict[str, list[float]]:
    """:func:`bench_registers` run by ``code``'s packages in a fresh process."""
    answer = subprocess.run(
        [sys.executable, __file__, "--registers-of", str(config), "--register-runs", str(runs)],
        env=os.environ | {"BENCH_CODE": code, "PYTHONPATH": code},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = {}
    for line in answer.stdout.splitlines():
        name, values = line.split("\t")
        figures[name] = [float(v) for v in values.split()]
    return figures


async def bench_pages_against(
    baseline: Path, households: int, months: int, rounds: int, requests: int, runs: int,
    encrypted: bool = False,
) -> None:  # fmt: skip
    """The village pages and the register computation of this checkout and ``baseline``
    on one box (``encrypted``: a SQLCipher box, unlocked by a sign-in), interleaved rounds
    (see the module's docstring)."""
    from edge import keys

    checkouts = {"this": str(HERE.parent), "baseline": str(baseline.resolve())}
    with tempfile.TemporaryDirectory(prefix="puskesos-bench-") as tmp:
        folder = Path(tmp)
        recovery = generate_recovery_key(folder / "recovery.key") if encrypted else None
        config = init_box(folder, users={"bench": ("operator", PASSWORD)}, recovery_key=recovery)
        # `edge init` wrote every key this checkout knows; the baseline refuses newer ones.
        config.write_text(render_toml(load_config(config), changed_only=True), encoding="utf-8")
        token = puskesos(
            "edge", "token", "add", "--config", str(config), "--username", "bench",
            "--name", "bench", *(("--as", "bench") if encrypted else ()),
            stdin=f"{PASSWORD}\n" if encrypted else "",
        ).stdout.strip()  # fmt: skip
        key = keys.open_with_password(load_config(config), "bench", PASSWORD) if encrypted else None
        await fill(config, households, key)
        services = await fill_services(config, months, key)
        print(f"{households} households, {services} Posyandu services ({months} months), "
              f"{'encrypted' if encrypted else 'plain'} box; "
              f"load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
        figures: dict[
            str, list[tuple[float, float, dict[str, tuple[float, float, float, float]]]]
        ] = {name: [] for name in checkouts}
        for number in range(rounds):
            order = list(checkouts) if number % 2 == 0 else list(reversed(checkouts))
            for name in order:
                box = ServedBox(config, folder / f"serve-{name}-{number}.log")
                # PYTHONSAFEPATH: ``-m`` would put the working folder first on sys.path.
                box.env |= {"PYTHONPATH": checkouts[name], "PYTHONSAFEPATH": "1"}
                box.start()
                try:
                    if encrypted:  # unlocked (Argon2id, the store opened) before pinning
                        sign_in(box, "bench", PASSWORD)
                    pin(box.process.pid, SERVER_CPU)  # type: ignore[union-attr]
                    time.sleep(1)
                    idle = rss_mb(box.process.pid)  # type: ignore[union-attr]
                    print(f"round {number + 1}, {name} ({checkouts[name]}), RSS idle "
                          f"{idle:.1f} MB, load average {os.getloadavg()[0]:.1f}:")  # fmt: skip
                    pages = await bench_village_pages(box, token, requests)
                    figures[name].append((idle, os.getloadavg()[0], pages))
                    assert box.stop() == 0
                finally:
                    box.kill()
        print(f"village pages, {rounds} rounds of {requests} requests "
              "(min median max over the rounds; ratio of the medians this/baseline):")  # fmt: skip
        idles = {name: [run[0] for run in runs] for name, runs in figures.items()}
        print(
            f"  RSS idle MB {'':14s} this {spread(idles['this'])}  baseline "
            f"{spread(idles['baseline'])}  ratio "
            f"{statistics.median(idles['this']) / statistics.median(idles['baseline']):.2f}"
        )
        for path in VILLAGE_PAGES:
            for index, what in enumerate(("p50 ms", "max ms", "RSS MB", "CPU ms")):
                of = {n: [run[2][path][index] for run in runs] for n, runs in figures.items()}
                ratio = statistics.median(of["this"]) / statistics.median(of["baseline"])
                print(f"  {path:25s} {what}: this {spread(of['this'])}  baseline "
                      f"{spread(of['baseline'])}  ratio {ratio:.2f}")  # fmt: skip
        print(
            f"register computation in-process, CPU ms, {runs} runs per checkout, "
            f"alternating (min median max; ratio of the medians this/baseline):"
        )
        measured: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
        for number in range(2):
            for name in checkouts if number == 0 else reversed(checkouts):
                for key, values in registers_of(checkouts[name], config, runs).items():
                    measured[name].setdefault(key, []).extend(values)
        for key in measured["this"]:
            this, base = measured["this"][key], measured["baseline"][key]
            ratio = statistics.median(this) / statistics.median(base)
            print(f"  {key:25s}: this {spread(this)}  baseline {spread(base)}  ratio {ratio:.2f}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=20_000)
    parser.add_argument("--saves", type=int, default=300, help="saves measured per level")
    parser.add_argument(
        "--service-months", type=int, default=12, help="months of Posyandu services to add"
    )
    parser.add_argument("--rounds", type=int, default=20, help="requests per village page")
    parser.add_argument("--sync-rounds", type=int, default=0, help="measure sync's cost instead")
    parser.add_argument(
        "--baseline", type=Path,
        help="another checkout to compare with (--sync-rounds: optional; --pages-rounds: needed)",
    )  # fmt: skip
    parser.add_argument(
        "--encrypted-rounds", type=int, default=0, help="measure encryption's cost instead"
    )
    parser.add_argument(
        "--pages-rounds", type=int, default=0,
        help="measure the village pages against --baseline instead",
    )  # fmt: skip
    parser.add_argument(
        "--register-runs", type=int, default=5, help="in-process register runs per checkout"
    )
    parser.add_argument(
        "--encrypted", action="store_true",
        help="--pages-rounds: on an encrypted box (SQLCipher) instead of a plain one",
    )  # fmt: skip
    parser.add_argument("--registers-of", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.registers_of:
        await bench_registers(args.registers_of, args.register_runs)
        return
    if os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {SERVER_CPU})
    if args.pages_rounds:
        if args.baseline is None:
            parser.error("--pages-rounds needs --baseline")
        await bench_pages_against(
            args.baseline, args.households, args.service_months, args.pages_rounds,
            args.rounds, args.register_runs, args.encrypted,
        )  # fmt: skip
        return
    if args.sync_rounds:
        await bench_sync(args.sync_rounds, args.saves, args.baseline)
        return
    if args.encrypted_rounds:
        await bench_encrypted(args.encrypted_rounds, args.saves)
        return
    with tempfile.TemporaryDirectory(prefix="puskesos-bench-") as tmp:
        folder = Path(tmp)
        config = init_box(folder, users={"bench": ("operator", PASSWORD)})
        database = folder / "data" / "edge.sqlite"
        token = puskesos(
            "edge", "token", "add", "--config", str(config), "--username", "bench",
            "--name", "bench",
        ).stdout.strip()  # fmt: skip
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; server pinned to CPU 0")
        print("saves through: the HTTP API of `puskesos edge serve` (POST /api/v1/households)")

        box = start(config, folder, "serve-1")
        try:
            time.sleep(1)
            print(f"RSS of the server, idle: {rss_mb(box.process.pid):.1f} MB")  # type: ignore[union-attr]
            print("save a household with 4 members:")
            saved, _ = await bench_saves(
                box, token, {1: args.saves, 10: args.saves, 50: args.saves}
            )
            print(f"RSS after {saved} saves: {rss_mb(box.process.pid):.1f} MB")  # type: ignore[union-attr]
            assert box.stop() == 0
        finally:
            box.kill()
        per_saved = database_bytes(database) / saved
        print(f"database bytes per household saved through the API: {per_saved:,.0f}")

        began = time.perf_counter()
        samples = await fill(config, args.households - saved)
        took = time.perf_counter() - began
        total = query(database, "SELECT count(*) FROM records WHERE entity = 'household'")[0][0]
        print(f"filled to {total} households by Store.write in {took:.1f} s")
        services = await fill_services(config, args.service_months)
        print(f"added {services} Posyandu services ({args.service_months} months)")

        box = start(config, folder, "serve-2")
        try:
            print(
                f"RSS of the server with {total} households, idle: {rss_mb(box.process.pid):.1f} MB"
            )  # type: ignore[union-attr]
            print(f"save a household with 4 members, {total} households on the box:")
            niks = frozenset(
                row[0] for row in query(database, "SELECT nik FROM records WHERE nik IS NOT NULL")
            )
            await bench_saves(box, token, {10: args.saves}, first_seed=saved, taken=niks)
            print(f"search with {total} households (GET /api/v1/search, 1 client, 25 per page):")
            await bench_search(box, token, samples)
            print(f"pages reading the whole village ({total} households, 1 client):")
            await bench_village_pages(box, token, args.rounds)
            print(f"RSS after the searches and pages: {rss_mb(box.process.pid):.1f} MB")  # type: ignore[union-attr]
            assert box.stop() == 0
        finally:
            box.kill()
        size = database_bytes(database)
        print(
            f"database: {size / 1e6:.1f} MB for {total} households, "
            f"{size / int(total):,.0f} bytes per household (4 members, outbox, audit included)"
        )


if __name__ == "__main__":
    asyncio.run(main())
