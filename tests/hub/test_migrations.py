"""The hub upgrades in place on both databases: its migrations build exactly the schema the
code declares, and running them again changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub import db
from hub.db import MIGRATIONS, create_engine, metadata, upgrade
from hub.store import HubStore
from tests.hub.conftest import drop_postgres, fresh_postgres


def differences(url: str) -> tuple[list, str | None]:
    """What the migrated database lacks or has beyond ``metadata``, and its revision."""

    def compare(connection: sa.Connection) -> tuple[list, str | None]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata), context.get_current_revision()

    async def run() -> tuple[list, str | None]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_migrated_schema_is_the_one_the_code_declares_and_upgrading_again_is_safe(hub_url):
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert differences(hub_url) == ([], head)
    upgrade(hub_url)
    assert differences(hub_url) == ([], head)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty hub database, for a test that migrates it step by step."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite'}"
        return
    name, url = fresh_postgres()
    try:
        yield url
    finally:
        drop_postgres(name)


def test_a_hub_in_the_field_gets_its_box_settled_conflicts_readable(empty_url):
    """Before 0004 a conflict settled by a later save on a box was stored as the bare word
    ``superseded`` and made the list of resolved conflicts fail."""
    upgrade(empty_url, "0003")
    conflict = {
        "record_id": "r-1", "entity": "household", "village": "3201022001",
        "field": "address", "versions": "[]", "detected_ms": 1, "resolved_ms": 2,
    }  # fmt: skip

    async def listed() -> list[dict]:
        engine = create_engine(empty_url)
        try:
            return await HubStore(engine, node="hub-1", max_clock_drift_ms=0).conflicts(
                resolved=True
            )
        finally:
            await engine.dispose()

    async def insert() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    db.conflicts.insert(),
                    [
                        {**conflict, "resolved_by": "edge-a", "resolution": "superseded"},
                        {**conflict, "resolved_by": "rina", "resolution": '{"value": "Jl. A"}'},
                    ],
                )
        finally:
            await engine.dispose()

    asyncio.run(insert())
    upgrade(empty_url)
    by_person, by_box = asyncio.run(listed())
    assert (by_box["resolved_by"], by_box["resolution"]) == ("edge-a", {"superseded": True})
    assert (by_person["resolved_by"], by_person["resolution"]) == ("rina", {"value": "Jl. A"})
    assert differences(empty_url) == ([], ScriptDirectory(str(MIGRATIONS)).get_current_head())
