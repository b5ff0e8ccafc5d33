"""End-to-end fixtures: a district on this machine (real Mosquitto with the password file
and ACL from ``broker-config``, hub workers and boxes as processes; see puskesos/fleet.py)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from edge.config import SyncConfig
from edge.records import stored_state
from puskesos import fleet as fleets
from puskesos.fleet import Box, Fleet, Hub, wait_for
from tests.edge.box_process import household_body
from tests.hub.conftest import drop_postgres, fresh_postgres

#: Two villages of Kecamatan Gunung Putri, Kabupaten Bogor.
VILLAGE_A = "3201022001"
VILLAGE_B = "3201022002"
#: Short timeouts so that a lost message is sent again within the test's patience, and
#: audit entries that wait a second for company, not half a minute.
QUICK = SyncConfig(
    ack_timeout_s=3, audit_delay_s=1, status_interval_s=5, backoff_min_s=1, backoff_max_s=2
)


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Build a started district: a broker and hub workers (``hubs``, with more
    ``hub_settings``), no boxes yet (``fleet.enrol`` them, then ``fleet.start()``). Keyword
    arguments go to :class:`Fleet`."""
    made: list[Fleet] = []

    def make(
        hubs: Sequence[str] = ("hub-1",), hub_settings: dict[str, Any] | None = None, **options: Any
    ) -> Fleet:
        district = Fleet(tmp_path / f"district-{len(made)}", **{"sync": QUICK, **options})
        made.append(district)
        for node in hubs:
            district.add_hub(node, start=False, **(hub_settings or {}))
        district.start()
        return district

    yield make
    for district in made:
        district.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the hub, dropped after the test (and its fleet)."""
    name, url = fresh_postgres()
    yield url
    drop_postgres(name)


@pytest.fixture
def fleet(make_fleet: Callable[..., Fleet]) -> Fleet:
    """A broker and one hub worker on SQLite, no boxes yet."""
    return make_fleet()


def meta(box: Box, key: str) -> str | None:
    """A value of the box's ``meta`` table (read-only; the box may be serving)."""
    with contextlib.closing(box.connect(readonly=True)) as connection:
        row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def changes_made(box: Box) -> int:
    """How many changes people made on the box: one audit row each (create or update)."""
    with contextlib.closing(box.connect(readonly=True)) as connection:
        query = "SELECT count(*) FROM audit WHERE action IN ('create', 'update')"
        return int(connection.execute(query).fetchone()[0])


def fill_offline(box: Box, households: int, *, seed: int = 1_000_000) -> int:
    """Save ``households`` households with 4 members each on a box that is not serving,
    straight through its store (as if people had worked for weeks without a link);
    returns the number of changes waiting to be sent."""
    from edge.config import load_config
    from edge.records import Edit
    from edge.store import Store
    from tests.factories import make_household_with_members

    async def fill() -> None:
        store = Store(load_config(box.config), key=box.data_key())
        await store.open()
        try:
            for start in range(0, households, 50):
                edits = []
                for number in range(start, min(households, start + 50)):
                    household, members = make_household_with_members(4, seed=seed + number + 1)
                    household["village_code"] = box.village
                    for record in (household, *members):
                        entity = "household" if record is household else "member"
                        values = {k: v for k, v in record.items() if k != "id"}
                        edits.append(Edit(entity, record["id"], values))
                await store.write(edits, actor="bench")
        finally:
            await store.close()

    asyncio.run(fill())
    return households * 5


def box_states(box: Box) -> dict[str, Any]:
    """Every record's merge state on a box, from its database (read-only)."""
    with contextlib.closing(box.connect(readonly=True)) as connection:
        rows = connection.execute("SELECT id, state, data FROM records").fetchall()
    return {record_id: stored_state(state, data) for record_id, state, data in rows}


def hub_states(hub: Hub, village: str) -> dict[str, Any]:
    """Every record's merge state of a village at the hub, through its API."""
    states: dict[str, Any] = {}
    after = ""
    while True:
        page = hub.api(f"/api/v1/records?village={village}&limit=1000&after={after}")
        for row in page["records"]:
            detail = hub.api(f"/api/v1/records/{row['id']}")
            states[row["id"]] = {
                name: tuple((v["value"], v["stamp"]) for v in versions)
                for name, versions in detail["fields"].items()
            }
        if not page["records"]:
            return states
        after = page["next"]


def comparable(states: dict[str, Any]) -> dict[str, Any]:
    """Box states in the hub API's shape: field → ((value, stamp), ...)."""
    return {
        record_id: {
            name: tuple((v.value, f"{v.time:016x}@{v.node}") for v in frontier)
            for name, frontier in state.items()
        }
        for record_id, state in states.items()
    }


def converged(hub: Hub, village: str, boxes: list[Box]) -> bool:
    """Whether the hub and every box of ``village`` hold the same records, version for
    version, and nothing waits in any outbox."""
    if any(box.api("/api/v1/sync/status")["outbox_pending"] for box in boxes):
        return False
    at_hub = hub_states(hub, village)
    return all(comparable(box_states(box)) == at_hub for box in boxes)


def sign_in(box: Box, username: str, password: str) -> urllib.request.OpenerDirector:
    """Sign in on the box's web UI as a person would (``puskesos.fleet.sign_in``)."""
    return fleets.sign_in(box.service, username, password)


def register(box: Box, seed: int) -> str:
    """Register a new household through the box's API; returns its id."""
    body = household_body(seed)
    body["household"].pop("village_code", None)  # the box fills in its own village
    result = box.api("/api/v1/households", body)
    return str(result["id"])


def edit(box: Box, household: str, **values: Any) -> None:
    """Change a household's fields through the box's API."""
    box.api(f"/api/v1/households/{household}", {"household": values}, method="PATCH")


__all__ = [
    "QUICK",
    "VILLAGE_A",
    "VILLAGE_B",
    "box_states",
    "changes_made",
    "comparable",
    "converged",
    "edit",
    "fill_offline",
    "hub_states",
    "meta",
    "register",
    "sign_in",
    "wait_for",
]
