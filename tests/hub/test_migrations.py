"""The hub upgrades in place on both databases: its migrations build exactly the schema the
code declares, and running them again changes nothing."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub.db import MIGRATIONS, create_engine, metadata, upgrade


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
