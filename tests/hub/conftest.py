"""Hub fixtures: a fresh hub database on SQLite and on PostgreSQL, and its store."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from hub import db
from hub.store import HubStore

#: The PostgreSQL server of the tests: tests/run.sh names its own when none answers on 5432.
POSTGRES = os.environ.get("PUSKESOS_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432")
_SERVER = make_url(POSTGRES)


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", str(_SERVER.host), "-p", str(_SERVER.port or 5432),
         "-U", str(_SERVER.username), "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )  # fmt: skip


def fresh_postgres() -> tuple[str, str]:
    """A new, empty PostgreSQL database: (its name, its URL)."""
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    return name, f"{POSTGRES}/{name}"


def drop_postgres(name: str) -> None:
    """Drop a database made by :func:`fresh_postgres`."""
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new hub database at the newest schema, on each dialect."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite'}"
        db.upgrade(url)
        yield url
        return
    name, url = fresh_postgres()
    try:
        db.upgrade(url)
        yield url
    finally:
        drop_postgres(name)


@pytest.fixture
async def hub_store(hub_url: str) -> AsyncIterator[HubStore]:
    """A hub store on a fresh database (node ``hub-1``, 5 minutes of allowed drift)."""
    engine = db.create_engine(hub_url)
    yield HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
    await engine.dispose()
