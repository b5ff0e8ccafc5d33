"""The hub's own audit trail is a hash chain (hub/audit.py): many writers at once keep it a
line, and whoever edits it behind the append-only triggers is found, by the command an
operator runs, by the hub's periodic check in /metrics, and against a head logged earlier
when the whole chain was rebuilt."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from hub import audit, db
from hub.config import HubConfig, render_toml
from hub.web import create_app
from protocol.auditchain import GENESIS, AuditEntry, seal
from puskesos import cli
from tests.metrics_text import value

#: A CLI command of another process writing the trail while the hub does.
_OTHER_PROCESS = """
import asyncio, sys
from hub import audit, db

async def main():
    engine = db.create_engine(sys.argv[1])
    for n in range(40):
        async with engine.begin() as conn:
            await audit.record(conn, at_ms=n, actor="cli", action="cycle.freeze")
    await engine.dispose()

asyncio.run(main())
"""


async def write(engine, rows: int, actor: str = "rina") -> None:
    for n in range(rows):
        async with engine.begin() as conn:
            await audit.record(
                conn, at_ms=1_000 + n, actor=actor, action="household.view", subject=f"h-{n}",
                detail={"village": "3201022001"},
            )  # fmt: skip


async def tamper(url: str, *statements: str) -> None:
    """What someone with the database owner's rights can do: set the triggers aside."""
    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.text("ALTER TABLE audit DISABLE TRIGGER USER"))
            else:
                await conn.execute(sa.text("DROP TRIGGER audit_no_update"))
                await conn.execute(sa.text("DROP TRIGGER audit_no_delete"))
            for statement in statements:
                await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


def verify_command(url: str, tmp_path: Path, *extra: str) -> int:
    config = tmp_path / "hub.toml"
    config.write_text(render_toml(HubConfig(data_dir=tmp_path, database_url=url)))
    return cli.main(["hub", "audit", "verify", "--config", str(config), *extra])


async def test_writers_in_several_processes_at_once_keep_the_chain_a_line(hub_url):
    """The UI, the API, two ingest workers and a CLI command in another process write audit
    rows at the same time: every row gets the next seq and links to the one before."""
    engines = [db.create_engine(hub_url) for _ in range(3)]
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_PROCESS, hub_url,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip

    async def writer(engine, actor: str) -> int:
        written = 0
        while other.returncode is None or written < 20:
            await write(engine, 1, actor)
            written += 1
        return written

    try:
        waited = asyncio.create_task(other.wait())
        counts = await asyncio.gather(*(writer(engines[n % 3], f"worker-{n}") for n in range(5)))
        assert await waited == 0
        verdict = await audit.verify(engines[0])
        async with engines[0].connect() as conn:
            actors = {row.actor for row in await conn.execute(sa.select(db.audit.c.actor))}
    finally:
        for engine in engines:
            await engine.dispose()
    total = sum(counts) + 40
    assert verdict.ok, verdict.problems
    assert verdict.rows == verdict.head.seq == total
    assert "cli" in actors and len(actors) == 6


def test_an_edit_behind_the_triggers_is_found_at_its_seq(hub_url, tmp_path, capsys):
    engine = db.create_engine(hub_url)

    async def before() -> None:
        await write(engine, 6)
        await engine.dispose()

    asyncio.run(before())
    assert verify_command(hub_url, tmp_path) == 0
    assert "audit chain ok: 6 rows, head 6:" in capsys.readouterr().out

    asyncio.run(
        tamper(
            hub_url,
            "UPDATE audit SET actor = 'someone else' WHERE seq = 3",
            "DELETE FROM audit WHERE seq = 5",
        )
    )
    assert verify_command(hub_url, tmp_path) == 1
    out, err = capsys.readouterr()
    assert "seq 3: break" in out and "seq 5: gap: the row was removed" in out
    assert "the audit chain is broken at seq 3 (break)" in err


def test_a_chain_rebuilt_from_the_start_passes_alone_but_not_against_a_logged_head(
    hub_url, tmp_path, capsys
):
    """Someone who rewrites every row and computes every hash afresh leaves a chain that
    links: only a head kept outside the database (the hub's log) shows it."""
    engine = db.create_engine(hub_url)

    async def before() -> audit.Head:
        await write(engine, 5)
        head = (await audit.verify(engine)).head
        await engine.dispose()
        return head

    logged = asyncio.run(before())
    assert verify_command(hub_url, tmp_path, "--expect-head", str(logged)) == 0
    capsys.readouterr()

    # The whole trail rebuilt without rina's third view, every hash recomputed.
    kept = [(1_000 + n, f"h-{n}") for n in range(5) if n != 2]
    rows, previous = [], GENESIS
    for seq, (at_ms, subject) in enumerate(kept, start=1):
        detail = '{"village": "3201022001"}'
        entry = seal(
            previous, AuditEntry(seq, at_ms, "rina", "household.view", None, subject, detail, "")
        )
        previous = entry.hash
        rows.append(
            f"INSERT INTO audit(seq, hash, at_ms, actor, action, subject, detail) VALUES "
            f"({seq}, {_blob(hub_url, entry.hash)}, {at_ms}, 'rina', 'household.view', "
            f"'{subject}', '{detail}')"
        )
    asyncio.run(tamper(hub_url, "DELETE FROM audit", *rows))

    assert verify_command(hub_url, tmp_path) == 0
    capsys.readouterr()
    assert verify_command(hub_url, tmp_path, "--expect-head", str(logged)) == 1
    out, err = capsys.readouterr()
    assert "seq 5: short" in out and "broken at seq 5 (short)" in err
    earlier = f"4:{logged.hash.hex()}"  # a head of another length: the same hash, seq 4
    assert verify_command(hub_url, tmp_path, "--expect-head", earlier) == 1
    assert "seq 4: rewritten" in capsys.readouterr().out


def test_a_head_that_is_not_seq_and_hash_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        verify_command("sqlite+aiosqlite:///unused", tmp_path, "--expect-head", "12:abc")
    assert exited.value.code == 2
    assert "is not SEQ:HASH" in capsys.readouterr().err


async def test_the_hub_checks_its_chain_and_logs_the_head_while_it_runs(
    hub_store, hub_url, tmp_path, caplog
):
    await write(hub_store.engine, 3)
    config = HubConfig(data_dir=tmp_path, audit_verify_s=1)
    app = create_app(config, hub_store, password=None, with_ingest=False)
    caplog.set_level(logging.INFO, logger="puskesos.hub.audit")
    async with TestClient(TestServer(app)) as client:

        async def chain_ok() -> float | None:
            return value(await (await client.get("/metrics")).text(), "puskesos_hub_audit_chain_ok")

        async with asyncio.timeout(10):
            while await chain_ok() is None:
                await asyncio.sleep(0.1)
        assert await chain_ok() == 1
        heads = [r.audit_head for r in caplog.records if hasattr(r, "audit_head")]
        assert heads and heads[0].startswith("3:")

        await tamper(hub_url, "UPDATE audit SET detail = '{}' WHERE seq = 2")
        async with asyncio.timeout(10):
            while await chain_ok() != 0:
                await asyncio.sleep(0.2)
    problems = [(r.audit_problem, r.audit_seq) for r in caplog.records if hasattr(r, "audit_seq")]
    assert ("break", 2) in problems


def _blob(url: str, value: bytes) -> str:
    return f"X'{value.hex()}'" if db.is_sqlite(url) else f"'\\x{value.hex()}'::bytea"
