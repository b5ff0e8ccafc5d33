"""Chaos: a district whose boxes reach the broker through a 2G link that flaps and
partitions, with writers on every box and kill -9 of the broker, the hub and a box at
random (seeded) moments. Afterwards every acknowledged write is at the hub and on every
box of its village, nothing is doubled, the digests agree, no down stream has a hole, and
the hub's counters equal the boxes'."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
from dataclasses import dataclass, field, replace

import pytest

from puskesos.fleet import Box, Fleet, Hub
from tests.e2e.conftest import (
    QUICK,
    VILLAGE_A,
    VILLAGE_B,
    changes_made,
    converged,
    meta,
    wait_for,
)
from tests.edge.box_process import household_body
from tests.faultproxy import FaultProxy, Shaping

pytestmark = pytest.mark.slow

#: 2G/EDGE: about 100 kbit/s and a few hundred milliseconds each way.
TWO_G = Shaping(rate_bps=12_000, latency_s=0.15)
CHAOS_S = 45.0


@dataclass
class Writer:
    """Saves households and edits them on one box, keeping what the box acknowledged."""

    box: Box
    seed: int
    #: record id → the last ``notes`` the box acknowledged (``""``: just created).
    acked: dict[str, str] = field(default_factory=dict)
    #: record id → every ``notes`` value tried, acknowledged or not.
    tried: dict[str, set[str]] = field(default_factory=dict)
    failures: int = 0

    def run(self, until: float, rng: random.Random) -> None:
        number = 0
        while time.monotonic() < until:
            number += 1
            try:
                if not self.acked or rng.random() < 0.4:
                    body = household_body(self.seed + number)
                    body["household"].pop("village_code", None)
                    created = self.box.api("/api/v1/households", body)
                    self.acked[created["id"]] = ""
                    self.tried[created["id"]] = {""}
                else:
                    record = rng.choice(sorted(self.acked))
                    notes = f"kunjungan {number}"
                    self.tried[record].add(notes)
                    self.box.api(
                        f"/api/v1/households/{record}", {"household": {"notes": notes}}, "PATCH"
                    )
                    self.acked[record] = notes
            except (urllib.error.URLError, OSError, json.JSONDecodeError):
                self.failures += 1  # the box is down: nothing acknowledged
            time.sleep(rng.uniform(0.05, 0.3))


def _chaos(fleet: Fleet, proxies: dict[str, FaultProxy], rng: random.Random) -> list[str]:
    """Faults at seeded moments for CHAOS_S seconds; returns what was done, for the log."""
    hub = fleet.hubs[0]
    victim = fleet.boxes[rng.randrange(len(fleet.boxes))]
    kills = {"broker": rng.uniform(5, 15), "hub": rng.uniform(15, 28), "box": rng.uniform(28, 38)}
    done: list[str] = []
    started = time.monotonic()
    while (now := time.monotonic() - started) < CHAOS_S:
        for what, at in list(kills.items()):
            if now >= at:
                del kills[what]
                if what == "broker":
                    fleet.broker.kill()
                    time.sleep(rng.uniform(0.5, 2))
                    fleet.broker.start()
                elif what == "hub":
                    hub.service.kill()
                    time.sleep(rng.uniform(0.5, 2))
                    hub.service.start()
                else:
                    victim.service.kill()
                    time.sleep(rng.uniform(0.5, 2))
                    victim.service.start()
                done.append(f"{now:5.1f} s kill -9 {what}")
        node = rng.choice(sorted(proxies))
        roll = rng.random()
        if roll < 0.25:
            proxies[node].cut()
            done.append(f"{now:5.1f} s link of {node} cut")
        elif roll < 0.35:
            seconds = rng.uniform(1, 5)
            proxies[node].partition(seconds)
            done.append(f"{now:5.1f} s {node} partitioned for {seconds:.1f} s")
        time.sleep(rng.uniform(0.5, 2.0))
    return done


@pytest.mark.parametrize(
    ("seed", "database"), [(20261204, "sqlite"), (20261205, "postgresql")], ids=["sqlite", "pg"]
)
def test_a_district_under_faults_loses_nothing_doubles_nothing_and_agrees(
    make_fleet, request, seed, database
):
    rng = random.Random(seed)
    sync = replace(QUICK, ack_timeout_s=5, batch_changes=50, window=4)
    if database == "postgresql":  # two workers sharing the work, as in production
        url = request.getfixturevalue("postgres_url")
        fleet = make_fleet(hubs=("hub-1", "hub-2"), database_url=url, sync=sync)
    else:
        fleet = make_fleet(sync=sync)
    hub = fleet.hubs[0]
    proxies: dict[str, FaultProxy] = {}
    try:
        for village, node in (
            (VILLAGE_A, "edge-a1"),
            (VILLAGE_A, "edge-a2"),
            (VILLAGE_B, "edge-b"),
        ):
            proxies[node] = FaultProxy(fleet.broker.port, TWO_G)
            fleet.enrol(village, node, broker_port=proxies[node].port)
        fleet.start()
        writers = [Writer(box, seed=seed + 10_000 * n) for n, box in enumerate(fleet.boxes)]
        until = time.monotonic() + CHAOS_S
        threads = [
            threading.Thread(target=w.run, args=(until, random.Random(seed + n)), daemon=True)
            for n, w in enumerate(writers)
        ]
        for thread in threads:
            thread.start()
        log = _chaos(fleet, proxies, rng)
        for thread in threads:
            thread.join(60)
        for proxy in proxies.values():
            proxy.heal()  # the links come back, at full speed
        boxes = {
            village: [b for b in fleet.boxes if b.village == village]
            for village in (VILLAGE_A, VILLAGE_B)
        }
        for village, members in boxes.items():
            wait_for(
                lambda v=village, m=members: converged(hub, v, m), 240, f"village {village} in step"
            )

        acked = sum(len(w.acked) for w in writers)
        print(
            f"{acked} records written, {sum(w.failures for w in writers)} writes refused; faults:"
        )
        print("\n".join(log))
        assert acked > 30, f"too few writes got through to test anything: {log}"
        for writer in writers:
            for box in boxes[writer.box.village]:
                for record, notes in writer.acked.items():
                    shown = box.api(f"/api/v1/households/{record}")["household"]["values"]
                    final = shown.get("notes") or ""
                    # The last acknowledged edit, or a later one whose answer was lost.
                    assert final in writer.tried[record], (record, final)
                    assert final == notes or _later(final, notes), (box.node, record, final, notes)
            households = _households_at_hub(hub, writer.box.village)
            assert set(writer.acked) <= households

        def settled() -> bool:
            devices = {d["node"]: d for d in hub.api("/api/v1/devices")["devices"]}
            return all(
                devices[b.node]["digest_state"] == "match"
                and devices[b.node]["down_watermark"] == devices[b.node]["down_seq"]
                for b in fleet.boxes
            )

        wait_for(settled, 120, "every box compared and its down stream complete")
        devices = {d["node"]: d for d in hub.api("/api/v1/devices")["devices"]}
        for box in fleet.boxes:
            device = devices[box.node]
            status = box.api("/api/v1/sync/status")
            # Nothing doubled: each change people made was applied at the hub exactly once.
            assert device["changes_applied"] == changes_made(box), box.node
            assert device["up_watermark"] == int(meta(box, "up_seq") or 0)
            assert device["up_above"] == [] and device["divergences"] == 0
            # No hole in the down stream, and the box says the same.
            assert device["down_watermark"] == device["down_seq"] == status["down_watermark"]
            assert status["digest_check"]["state"] == "match"
            assert status["records"] == device["reported"]["records"]
    finally:
        for proxy in proxies.values():
            proxy.stop()


def _later(final: str, acked: str) -> bool:
    """``kunjungan N`` values grow with N; an edit after the acknowledged one may have been
    saved although its answer never came."""
    number = lambda text: int(text.split()[-1]) if text else -1  # noqa: E731
    return number(final) > number(acked)


def _households_at_hub(hub: Hub, village: str) -> set[str]:
    found: set[str] = set()
    after = ""
    while True:
        page = hub.api(f"/api/v1/records?village={village}&entity=household&after={after}")
        found |= {row["id"] for row in page["records"]}
        if not page["records"]:
            return found
        after = page["next"]
