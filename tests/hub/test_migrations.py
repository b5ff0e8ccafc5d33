"""The hub upgrades in place on both databases: its migrations build exactly the schema the
code declares, and running them again changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub import audit, db
from hub.db import MIGRATIONS, create_engine, metadata, upgrade
from hub.devices import add_device
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


def test_a_hub_in_the_field_gets_digests_of_the_records_it_holds(empty_url):
    """0005 computes the anti-entropy digests of the records a hub already holds, and each
    village's root and count, as the code would have kept them."""
    from protocol.changes import Change, FieldVersion
    from protocol.digest import from_signed, record_digest
    from protocol.jsonform import dump_state
    from protocol.merge import merge
    from tests.factories import new_id

    upgrade(empty_url, "0004")
    villages = {"3201022001": [new_id(), new_id()], "3201022002": [new_id()]}

    async def insert() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                for village, ids in villages.items():
                    await conn.execute(db.villages.insert().values(code=village, log_seq=9))
                    for number, record_id in enumerate(ids):
                        version = FieldVersion(f"Jl. {number}", 1 << 20, "edge-a", ())
                        change = Change("household", record_id, village, "edge-a",
                                        {"address": version})  # fmt: skip
                        await conn.execute(
                            sa.text(
                                "INSERT INTO records (id, entity, village, state, data, log_seq, "
                                "created_ms, updated_ms) VALUES (:i, 'household', :v, :s, '{}', "
                                ":n, 1, 1)"
                            ),
                            {"i": record_id, "v": village, "n": number + 1,
                             "s": dump_state(merge(None, change).state)},
                        )  # fmt: skip
        finally:
            await engine.dispose()

    async def read() -> tuple[list, list]:
        engine = create_engine(empty_url)
        try:
            async with engine.connect() as conn:
                records = (await conn.execute(
                    sa.select(db.records.c.id, db.records.c.village, db.records.c.state,
                              db.records.c.digest))).all()  # fmt: skip
                roots = (await conn.execute(
                    sa.select(db.villages.c.code, db.villages.c.digest, db.villages.c.records)
                )).all()  # fmt: skip
            return records, roots
        finally:
            await engine.dispose()

    asyncio.run(insert())
    upgrade(empty_url)
    records, roots = asyncio.run(read())
    from protocol.jsonform import load_state

    expected: dict[str, int] = {}
    for record_id, village, state, digest in records:
        assert from_signed(digest) == record_digest("household", record_id, load_state(state))
        expected[village] = expected.get(village, 0) ^ from_signed(digest)
    assert {code: (from_signed(root), count) for code, root, count in roots} == {
        village: (expected[village], len(ids)) for village, ids in villages.items()
    }


def test_a_token_made_before_scopes_keeps_what_it_could_do(empty_url):
    """A district's tools must not stop working on the upgrade: an old token writes, sees
    every village and does not expire (``token list`` shows it, to revoke)."""
    from hub.tokens import token_for

    upgrade(empty_url, "0006")

    async def insert() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO api_tokens(name, token_hash, created_ms) "
                        "VALUES ('lama', :h, 1)"
                    ),
                    {"h": hashlib.sha256(b"rahasia-lama").hexdigest()},
                )
        finally:
            await engine.dispose()

    async def found() -> object:
        engine = create_engine(empty_url)
        try:
            return await token_for(
                HubStore(engine, node="hub-1", max_clock_drift_ms=0), "rahasia-lama"
            )
        finally:
            await engine.dispose()

    asyncio.run(insert())
    upgrade(empty_url)
    token = asyncio.run(found())
    assert token is not None and token.may_write and not token.villages
    assert token.expires_ms is None


def test_the_hub_audit_trail_refuses_edits_and_deletions(hub_url):
    """Whatever code runs against the hub's database, the trail only grows."""

    async def attempt(statement: str) -> str:
        engine = create_engine(hub_url)
        try:
            async with engine.begin() as conn:
                await audit.record(conn, at_ms=1, actor="rina", action="review.decide")
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.text(statement))
            except sa.exc.DBAPIError as exc:
                return str(exc)
            return "allowed"
        finally:
            await engine.dispose()

    statements = ["UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"]
    if not hub_url.startswith("sqlite"):
        statements.append("TRUNCATE audit")
    for statement in statements:
        assert "append-only" in asyncio.run(attempt(statement)), statement


def test_a_hub_in_the_field_gets_the_status_and_lacking_of_its_records(empty_url):
    """The round's progress reads two columns; a hub that held records before has them
    counted by the migration."""
    from tests.factories import make_household_with_members

    upgrade(empty_url, "0008")
    household, (member,) = make_household_with_members(1, seed=8)
    household.update(presence_status="tidak_ditemukan", floor_material=None)

    async def insert() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                for entity, values in (("household", household), ("member", member)):
                    await conn.execute(
                        sa.text(
                            "INSERT INTO records(id, entity, village, state, data, log_seq, "
                            "created_ms, updated_ms) "
                            "VALUES (:i, :e, '3201022001', '{}', :d, 1, 1, 1)"
                        ),
                        {"i": values.pop("id"), "e": entity, "d": json.dumps(values)},
                    )
        finally:
            await engine.dispose()

    async def columns() -> dict:
        engine = create_engine(empty_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.text("SELECT entity, status, lacking FROM records"))
                return {row.entity: (row.status, row.lacking) for row in rows}
        finally:
            await engine.dispose()

    asyncio.run(insert())
    upgrade(empty_url)
    assert asyncio.run(columns()) == {
        "household": ("tidak_ditemukan", 1),
        "member": ("aktif", 0),
    }


def test_an_account_locked_before_the_upgrade_signs_in_after_it(empty_url):
    """The account lock goes (issue 16): a hub upgraded while ``admin`` was locked signs
    ``admin`` in, and counts failures in the throttle's table instead."""
    from hub import auth
    from puskesos.webauth import hash_password

    upgrade(empty_url, "0009")
    password = "rahasia-kabupaten-1"

    async def insert() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO users(username, full_name, role, password_hash, "
                        "failed_logins, locked_until_ms, created_ms) "
                        "VALUES ('admin', 'Admin', 'admin', :h, 4, :until, 1)"
                    ),
                    {"h": await hash_password(password), "until": 99_999_999_999_999},
                )
        finally:
            await engine.dispose()

    async def sign_in() -> tuple[set[str], int, bool]:
        engine = create_engine(empty_url)
        store = HubStore(engine, node="hub-1", max_clock_drift_ms=0)
        try:
            async with engine.connect() as conn:
                columns = await conn.run_sync(
                    lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("users")}
                )
            wrong = await auth.authenticate(
                store, "admin", "salah-sandi", "10.0.0.9", lockout_s=900
            )
            right = await auth.authenticate(store, "admin", password, "10.0.0.9", lockout_s=900)
            async with engine.connect() as conn:
                counted = (
                    await conn.execute(sa.text("SELECT count(*) FROM login_throttle"))
                ).scalar_one()
            return columns, counted, wrong.user is None and right.user is not None
        finally:
            await engine.dispose()

    asyncio.run(insert())
    upgrade(empty_url)
    columns, counted, signed_in = asyncio.run(sign_in())
    assert not columns & {"failed_logins", "locked_until_ms"}
    assert signed_in
    assert counted == 1  # the address's count stays; the pair went with the success


def test_a_hub_in_the_field_keeps_its_devices_and_gets_an_append_only_box_audit(empty_url):
    """Hub 0011 on a database of the previous release: its boxes stay enrolled, with no
    audit chain yet (what Perangkat says of a box that never sent one), and the copy of the
    boxes' trails it starts keeping refuses edits from the first row."""
    upgrade(empty_url, "0010")

    async def enrolled() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO devices(node, village, password_hash, broker_hash, "
                        "created_ms) VALUES ('edge-a', '3201022001', 'x', 'y', 1)"
                    )
                )
        finally:
            await engine.dispose()

    async def after() -> tuple[object, str]:
        engine = create_engine(empty_url)
        try:
            device = await HubStore(engine, node="hub-1", max_clock_drift_ms=0).device("edge-a")
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO box_audit(node, seq, at_ms, actor, action, detail, "
                        "address, hash, received_ms) "
                        "VALUES ('edge-a', 1, 1, 'admin', 'login', '{}', '', :h, 2)"
                    ),
                    {"h": b"\x00" * 32},
                )
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("DELETE FROM box_audit"))
            except sa.exc.DBAPIError as exc:
                return device, str(exc)
            return device, "allowed"
        finally:
            await engine.dispose()

    asyncio.run(enrolled())
    upgrade(empty_url)
    device, deleting = asyncio.run(after())
    assert device is not None and device.village == "3201022001"
    assert (device.audit_state, device.audit_seq, device.audit_breaks) == (None, 0, 0)
    assert "append-only" in deleting


def test_a_hub_in_the_field_chains_its_audit_trail_in_the_order_it_was_written(empty_url):
    """Hub 0012 on a database of the previous release: the trail it wrote before the chain
    existed gets its links, in the order it was written, over more than one page of the
    migration; what the hub writes afterwards continues the chain, and edits are still
    refused."""
    upgrade(empty_url, "0011")
    written = [(30, "rina"), (10, "admin"), (20, "budi")] + [(50 + n, "api") for n in range(4_100)]

    async def before() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO audit(at_ms, actor, action, subject, detail) "
                        "VALUES (:at_ms, :actor, 'household.view', 'h-1', '{}')"
                    ),
                    [{"at_ms": at_ms, "actor": actor} for at_ms, actor in written],
                )
        finally:
            await engine.dispose()

    async def after() -> tuple[list, audit.Verdict, str]:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await audit.record(conn, at_ms=40, actor="admin", action="login.ok")
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.select(db.audit.c.seq, db.audit.c.actor).order_by(db.audit.c.seq)
                    )
                ).all()
            verdict = await audit.verify(engine)
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("UPDATE audit SET actor = 'x' WHERE seq = 2"))
            except sa.exc.DBAPIError as exc:
                return rows, verdict, str(exc)
            return rows, verdict, "allowed"
        finally:
            await engine.dispose()

    asyncio.run(before())
    upgrade(empty_url)
    rows, verdict, editing = asyncio.run(after())
    assert [tuple(row) for row in rows[:3]] == [(1, "rina"), (2, "admin"), (3, "budi")]
    assert tuple(rows[-1]) == (4_104, "admin")
    assert verdict.ok and verdict.rows == 4_104 and verdict.head.seq == 4_104
    assert "append-only" in editing


def test_boxes_a_hub_served_before_0013_are_sent_by_field_and_new_ones_whole_first(empty_url):
    """Hub 0013 on a database of the previous release: the boxes it served (whole records,
    at their current log_seq) hold every record at or below their cursor, so they are sent
    only the fields they lack from now on; a box enrolled afterwards gets its village whole
    first; records already held start with every field at their own log_seq."""
    upgrade(empty_url, "0012")

    async def served() -> None:
        engine = create_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO devices(node, village, password_hash, broker_hash, "
                        "created_ms, down_cursor) VALUES ('edge-a', '3201022001', 'x', 'y', 1, 7)"
                    )
                )
                await conn.execute(
                    sa.text(
                        "INSERT INTO records(id, entity, village, state, data, log_seq, "
                        "created_ms, updated_ms) VALUES ('r-1', 'household', '3201022001', "
                        "'{}', '{}', 7, 1, 1)"
                    )
                )
        finally:
            await engine.dispose()

    async def after() -> tuple[object, object, object]:
        engine = create_engine(empty_url)
        try:
            await add_device(engine, village="3201022001", node="edge-b", now_ms=2)
            store = HubStore(engine, node="hub-1", max_clock_drift_ms=0)
            async with engine.connect() as conn:
                seqs = (await conn.execute(sa.text("SELECT field_seqs FROM records"))).scalar_one()
            return await store.device("edge-a"), await store.device("edge-b"), seqs
        finally:
            await engine.dispose()

    asyncio.run(served())
    upgrade(empty_url)
    old, new, seqs = asyncio.run(after())
    assert (old.down_cursor, old.down_by_field) == (7, True)
    assert (new.down_cursor, new.down_by_field) == (0, False)
    assert seqs is None
