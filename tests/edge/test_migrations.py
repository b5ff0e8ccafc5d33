"""Boxes in the field upgrade in place: the migrations build exactly the schema the code
uses, running them again changes nothing, and the audit trail cannot be edited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from edge.db import HEAD_REVISION, MIGRATIONS, metadata, upgrade


def schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()


def head() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_the_head_a_start_compares_with_is_the_newest_migration():
    """A start loads Alembic only when the box's revision is not this constant: a
    migration added without moving it would never run on a box of the previous release."""
    assert head() == HEAD_REVISION


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
        assert connection.execute("SELECT value FROM meta WHERE key = 'village'").fetchall() == [
            ("3201022001",)
        ]
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


def test_a_box_of_the_previous_release_gets_digests_of_the_records_it_holds(tmp_path):
    from alembic import command

    from edge.db import _alembic_config
    from protocol.changes import Change, FieldVersion
    from protocol.digest import from_signed, record_digest
    from protocol.jsonform import dump_state, load_state
    from protocol.merge import merge
    from tests.factories import new_id

    path = tmp_path / "edge.sqlite"
    command.upgrade(_alembic_config(path), "0005")
    with sqlite3.connect(path) as connection:
        for number in range(3):
            record_id = new_id()
            fields = {"address": FieldVersion(f"Jl. Mawar {number}", 1 << 20, "edge-a1", ())}
            change = Change("household", record_id, "3201022001", "edge-a1", fields)
            connection.execute(
                "INSERT INTO records(id, entity, village, state, data, created_ms, updated_ms) "
                "VALUES (?, 'household', '3201022001', ?, '{}', 1, 1)",
                (record_id, dump_state(merge(None, change).state)),
            )
    command.upgrade(_alembic_config(path), "0006")
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT id, entity, state, digest FROM records").fetchall()
        root = connection.execute("SELECT value FROM meta WHERE key = 'digest'").fetchone()[0]
    expected = 0
    for record_id, entity, state, digest in rows:
        assert from_signed(digest) == record_digest(entity, record_id, load_state(state))
        expected ^= from_signed(digest)
    assert json.loads(root) == {"root": expected, "records": 3}


def test_a_box_of_the_previous_release_counts_what_its_records_lack(tmp_path):
    from alembic import command

    from edge.db import _alembic_config
    from protocol.registry import RANKING_FIELDS
    from tests.factories import make_household_with_members

    path = tmp_path / "edge.sqlite"
    command.upgrade(_alembic_config(path), "0006")
    household, (member,) = make_household_with_members(1, seed=5)
    member["education"] = None
    with sqlite3.connect(path) as connection:
        for entity, values in (("household", household), ("member", member), ("proposal", {})):
            connection.execute(
                "INSERT INTO records(id, entity, village, state, data, created_ms, updated_ms) "
                "VALUES (?, ?, '3201022001', '{}', ?, 1, 1)",
                (values.pop("id", f"{entity}-id"), entity, json.dumps(values)),
            )
    upgrade(path)
    with sqlite3.connect(path) as connection:
        found = dict(connection.execute("SELECT entity, lacking FROM records").fetchall())
    assert found == {"household": 0, "member": 1, "proposal": None}
    assert "education" in RANKING_FIELDS["member"]


def test_a_login_open_at_the_upgrade_counts_its_idle_time_from_its_start(tmp_path):
    from alembic import command

    from edge.db import _alembic_config

    path = tmp_path / "edge.sqlite"
    command.upgrade(_alembic_config(path), "0007")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO users(username, full_name, role, password_hash, created_ms) "
            "VALUES ('op', 'Op', 'operator', 'x', 1)"
        )
        connection.execute(
            "INSERT INTO sessions(token_hash, user_id, created_ms, expires_ms) "
            "VALUES ('h', 1, 1234, 99999)"
        )
    upgrade(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT last_seen_ms FROM sessions").fetchone() == (1234,)


async def test_an_account_locked_before_the_upgrade_signs_in_after_it(tmp_path):
    """The account lock goes (issue 16): a box upgraded while ``admin`` was locked by someone
    hammering it lets ``admin`` in, and counts failures in the throttle's table instead."""
    from alembic import command

    from edge import auth
    from edge.config import EdgeConfig
    from edge.db import _alembic_config
    from edge.store import Store
    from puskesos.webauth import hash_password
    from tests.factories import DEFAULT_VILLAGE

    config = EdgeConfig(village=DEFAULT_VILLAGE, node="edge-a", data_dir=tmp_path)
    command.upgrade(_alembic_config(config.database_path), "0008")
    password = "rahasia-desa-123"
    with sqlite3.connect(config.database_path) as connection:
        connection.execute(
            "INSERT INTO users(username, full_name, role, password_hash, failed_logins, "
            "locked_until_ms, created_ms) VALUES ('admin', 'Admin', 'admin', ?, 4, ?, 1)",
            (await hash_password(password), 99_999_999_999_999),
        )
    upgrade(config.database_path)
    with sqlite3.connect(config.database_path) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(users)")}
        assert not columns & {"failed_logins", "locked_until_ms"}
        assert connection.execute("SELECT count(*) FROM login_throttle").fetchone() == (0,)
    store = Store(config)
    await store.open()
    try:
        assert (await auth.authenticate(store, "admin", "salah-sandi", "10.0.0.9")).user is None
        result = await auth.authenticate(store, "admin", password, "10.0.0.9")
        assert result.user is not None and result.user.username == "admin"
    finally:
        await store.close()


async def test_a_box_of_the_previous_release_finds_its_households_by_address_and_any_name_part(
    tmp_path,
):
    """Issue 17: an upgraded box finds the households it already held by the surname, the
    address and the RT/RW, and still plans the fetch of a page by primary key."""
    from alembic import command

    from edge.config import EdgeConfig
    from edge.db import _alembic_config
    from edge.store import Store
    from puskesos.search import parse_query
    from tests.factories import DEFAULT_VILLAGE, make_household_with_members

    config = EdgeConfig(village=DEFAULT_VILLAGE, node="edge-a", data_dir=tmp_path)
    command.upgrade(_alembic_config(config.database_path), "0009")
    household, (member,) = make_household_with_members(1, seed=6)
    household |= {"address": "Kp. Babakan No. 12", "rt": "003", "rw": "005"}
    member["name"] = "Siti Aminah"
    with sqlite3.connect(config.database_path) as connection:
        for entity, values, name_key in (
            ("household", household, None),
            ("member", member, "siti aminah"),
        ):
            connection.execute(
                "INSERT INTO records(id, entity, village, household_id, state, data, name_key, "
                "created_ms, updated_ms) VALUES (?, ?, '3201022001', ?, '{}', ?, ?, 1, 1)",
                (values["id"], entity, household["id"], json.dumps(values), name_key),
            )
    upgrade(config.database_path)
    with sqlite3.connect(config.database_path) as connection:
        page = ", ".join(f"'{n}'" for n in range(25))
        plan = connection.execute(
            f"EXPLAIN QUERY PLAN SELECT * FROM records WHERE id IN ({page}) "
            "AND entity = 'household'"
        ).fetchall()
    assert "sqlite_autoindex_records_1" in str(plan)
    store = Store(config)
    await store.open()
    try:
        for text in ("aminah", "BABAKAN", "rt 3/rw 5"):
            found, total = await store.search_households(parse_query(text))
            assert [h.id for h in found] == [household["id"]] and total == 1, text
    finally:
        await store.close()


def test_a_box_of_the_previous_release_chains_its_audit_trail_in_the_order_it_was_written(
    tmp_path,
):
    """The trail a box wrote before the chain existed gets its links at the upgrade, and
    what it writes afterwards continues the same chain."""
    from alembic import command

    from edge import auditchain
    from edge.db import _alembic_config
    from protocol.auditchain import GENESIS, follow

    path = tmp_path / "edge.sqlite"
    command.upgrade(_alembic_config(path), "0010")
    with sqlite3.connect(path) as connection:
        for at_ms, actor in ((30, "operator1"), (10, "admin"), (20, "operator2")):
            connection.execute(
                "INSERT INTO audit(at_ms, actor, action) VALUES (?, ?, 'login')", (at_ms, actor)
            )
        # More than one page of the migration's (2,000 rows).
        connection.executemany(
            "INSERT INTO audit(at_ms, actor, action) VALUES (?, 'operator1', 'view')",
            [(50 + n,) for n in range(4_100)],
        )
    upgrade(path)
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        auditchain.append(connection, [{"at_ms": 40, "actor": "admin", "action": "view"}])
    with engine.connect() as connection:
        entries = auditchain.entries_after(connection, 0, 5_000)
    engine.dispose()
    assert [(e.seq, e.actor) for e in entries[:3]] == [
        (1, "operator1"),
        (2, "admin"),
        (3, "operator2"),
    ]
    assert (entries[-1].seq, entries[-1].actor, entries[-1].at_ms) == (4_104, "admin", 40)
    assert follow(0, GENESIS, entries) == (4_104, entries[-1].hash, [])
    with sqlite3.connect(path) as connection, pytest.raises(sqlite3.IntegrityError):
        connection.execute("UPDATE audit SET actor = 'someone else' WHERE seq = 2")


def test_a_box_of_the_previous_release_keeps_every_version_in_the_compact_state(tmp_path):
    """Revision 0012 rewrites every record's state and every waiting outbox change into
    the compact forms: each reads back as exactly what it was (concurrent versions, edits
    stamped apart from the record's creation, a field the shown values lack), the state
    shrinks by an order of magnitude, and a downgrade writes the old forms back."""
    from alembic import command

    from edge.db import _alembic_config
    from edge.records import stored_state
    from protocol.changes import Change, FieldVersion
    from protocol.jsonform import dump_json, dump_state, load_change
    from protocol.merge import merge, values
    from tests.factories import make_household_with_members

    path = tmp_path / "edge.sqlite"
    command.upgrade(_alembic_config(path), "0011")
    household, members = make_household_with_members(4, seed=9)
    records, waiting = {}, []
    for entity, record in [("household", household)] + [("member", m) for m in members]:
        record_id = record.pop("id")
        created = {n: FieldVersion(v, 5 << 20, "edge-a1") for n, v in record.items()}
        change = Change(entity, record_id, "3201022001", "edge-a1", created)
        state = merge(None, change).state
        waiting.append(change)
        if entity == "household":
            seen = (("edge-a1", 5 << 20),)
            edit = {"address": FieldVersion("Jl. Melati 3", 6 << 20, "edge-a1", seen)}
            rival = {"address": FieldVersion("Jl. Melati 4", 6 << 20, "hub", seen)}
            for fields, origin in ((edit, "edge-a1"), (rival, "hub")):
                later = Change(entity, record_id, "3201022001", origin, fields)
                state = merge(state, later).state
            waiting.append(Change(entity, record_id, "3201022001", "edge-a1", edit))
        records[record_id] = (entity, state)
    with sqlite3.connect(path) as connection:
        for record_id, (entity, state) in records.items():
            shown = values(state)
            if entity == "member":
                shown = {n: v for n, v in shown.items() if n != "occupation"}
            connection.execute(
                "INSERT INTO records(id, entity, village, state, data, created_ms, updated_ms) "
                "VALUES (?, ?, '3201022001', ?, ?, 1, 1)",
                (record_id, entity, dump_state(state), json.dumps(shown)),
            )
        for change in waiting:
            fields = {n: [v.value, v.time, v.node, v.seen] for n, v in change.fields.items()}
            text = json.dumps(
                {"entity": change.entity, "record_id": change.record_id,
                 "village": change.village, "origin": change.origin, "fields": fields},
                separators=(",", ":"), ensure_ascii=False,
            )  # fmt: skip
            connection.execute(
                "INSERT INTO outbox(record_id, entity, change, created_ms) VALUES (?, ?, ?, 1)",
                (change.record_id, change.entity, text),
            )
        before = connection.execute("SELECT id, state, data FROM records ORDER BY id").fetchall()
        queued = connection.execute("SELECT change FROM outbox ORDER BY id").fetchall()

    upgrade(path)
    with sqlite3.connect(path) as connection:
        after = connection.execute("SELECT id, state, data FROM records ORDER BY id").fetchall()
        changes = connection.execute("SELECT change FROM outbox ORDER BY id").fetchall()
    assert {i: stored_state(s, d) for i, s, d in after} == {i: st for i, (_, st) in records.items()}
    assert [load_change(text) for (text,) in changes] == waiting
    assert sum(len(s) for _, s, _ in after) * 8 < sum(len(s) for _, s, _ in before)
    assert all(len(s) < 200 for _, s, _ in after), [s for _, s, _ in after]
    assert len(dump_json([c for (c,) in changes])) < len(dump_json([c for (c,) in queued]))

    command.downgrade(_alembic_config(path), "0011")
    with sqlite3.connect(path) as connection:
        again = connection.execute("SELECT id, state, data FROM records ORDER BY id").fetchall()
        requeued = connection.execute("SELECT change FROM outbox ORDER BY id").fetchall()
    assert [(i, json.loads(s), d) for i, s, d in again] == [
        (i, json.loads(s), d) for i, s, d in before
    ]
    assert [json.loads(c) for (c,) in requeued] == [json.loads(c) for (c,) in queued]
