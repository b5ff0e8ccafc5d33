"""The power goes out while staff are saving: what the box answered "saved" is still there,
complete, with its outbox entries, and nothing was half-written."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from edge.backup import integrity_problems
from tests.edge.box_process import ServedBox, household_body, init_box, puskesos, query
from tests.edge.conftest import PASSWORD

CREATIONS = 300
CLIENTS = 10
KILL_AFTER = 100


async def create_households(
    box: ServedBox,
    token: str,
    bodies: dict[int, dict[str, object]],
    acknowledged: dict[int, str],
    *,
    kill: bool = False,
) -> set[int]:
    """Post ``bodies`` from concurrent clients; ``acknowledged`` gets the id of every 2xx.

    With ``kill``, ``box`` is killed with SIGKILL once :data:`KILL_AFTER` creations were
    acknowledged, and the clients stop. Returns the creations sent but never answered.
    """
    waiting = list(bodies)
    unanswered: set[int] = set()
    killed = asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"}

    async def client(session: aiohttp.ClientSession) -> None:
        while waiting and not killed.is_set():
            index = waiting.pop(0)
            try:
                async with session.post(
                    f"{box.url}/api/v1/households", json=bodies[index], headers=headers
                ) as answer:
                    assert answer.status == 201, await answer.text()
                    acknowledged[index] = (await answer.json())["id"]
            except aiohttp.ClientError:
                assert kill and killed.is_set(), "the server failed before the kill"
                unanswered.add(index)
                continue
            if kill and len(acknowledged) >= KILL_AFTER and not killed.is_set():
                killed.set()
                box.kill()

    async with box.client() as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return unanswered


@pytest.mark.slow
async def test_every_acknowledged_creation_survives_kill_9(tmp_path: Path):
    config = init_box(tmp_path, users={"operator1": ("operator", PASSWORD)})
    made = puskesos("edge", "token", "add", "--config", str(config), "--username", "operator1",
                    "--name", "durability")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    database = tmp_path / "data" / "edge.sqlite"
    bodies = {index: household_body(seed=index) for index in range(CREATIONS)}
    acknowledged: dict[int, str] = {}

    box = ServedBox(config, tmp_path / "serve-1.log").start()
    try:
        unanswered = await create_households(box, token, bodies, acknowledged, kill=True)
    finally:
        box.kill()
    assert KILL_AFTER <= len(acknowledged) < CREATIONS
    assert box.process is not None and box.process.returncode == -9

    # Restarted, the box takes the creations that were never sent.
    box = ServedBox(config, tmp_path / "serve-2.log").start()
    try:
        rest = {i: b for i, b in bodies.items() if i not in acknowledged and i not in unanswered}
        assert await create_households(box, token, rest, acknowledged) == set()
        assert box.stop() == 0
    finally:
        box.kill()

    assert integrity_problems(database) == []
    rows = query(database, "SELECT id, entity, household_id, nik FROM records")
    households = {r[0] for r in rows if r[1] == "household"}
    # Every creation answered 2xx is there, with the members that were sent.
    assert set(acknowledged.values()) <= households
    for index, household_id in acknowledged.items():
        niks = {r[3] for r in rows if r[1] == "member" and r[2] == household_id}
        assert niks == {m["nik"] for m in bodies[index]["members"]}  # type: ignore[union-attr]
    # A creation cut off by the kill is either all there or not at all.
    assert len(households) - len(acknowledged) <= len(unanswered)
    members = Counter(r[2] for r in rows if r[1] == "member")
    proposals = Counter(r[2] for r in rows if r[1] == "proposal")
    assert all(members[h] == 4 and proposals[h] == 1 for h in households)
    assert len(rows) == 6 * len(households)  # household + 4 members + its usulan_baru
    # Every record has its outbox entry and its audit row; no outbox entry without a record.
    outboxed = {r[0] for r in query(database, "SELECT record_id FROM outbox")}
    audited = {r[0] for r in query(database, "SELECT record_id FROM audit WHERE action='create'")}
    records = {r[0] for r in rows}
    assert outboxed == records
    assert audited == records
