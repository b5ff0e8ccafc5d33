"""Boxes in the field upgrade in place: the migrations build exactly the schema the code
uses, running them again changes nothing, and the audit trail cannot be edited."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from edge.db import MIGRATIONS, metadata, upgrade


def schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()


def head() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_the_migrated_schema_is_the_one_the_code_declares(tmp_path):
    path = tmp_path / "edge.sqlite"
    upgrade(path)
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == head()
    engine.dispose()


def test_upgrading_again_changes_nothing_and_keeps_the_data(tmp_path):
    path = tmp_path / "edge.sqlite"
    upgrade(path)
    before = schema(path)
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO meta(key, value) VALUES ('village', '3201022001')")
    upgrade(path)
    assert schema(path) == before
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM meta").fetchall() == [("3201022001",)]
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head(),)
        ]


def test_the_audit_trail_refuses_update_and_delete(tmp_path):
    path = tmp_path / "edge.sqlite"
    upgrade(path)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO audit(at_ms, actor, action, record_id) "
            "VALUES (1, 'operator1', 'view', 'r1')"
        )
    for statement in ("UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"):
        with (
            sqlite3.connect(path) as connection,
            pytest.raises(sqlite3.IntegrityError, match="append-only"),
        ):
            connection.execute(statement)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT actor, action FROM audit").fetchall() == [
            ("operator1", "view")
        ]
