"""The hub's audit trail (Jejak audit): who did what to which subject, and when.

Written in the caller's transaction, so an action and its audit entry commit together.

The trail is a hash chain, as a box's is (``protocol/auditchain.py``, the same encoding):
each row carries its ``seq`` (gap-free from 1) and ``hash = SHA-256(previous hash ||
content)``, the row's ``subject`` in the place of a box row's ``record_id`` (a hub row has
no ``entity`` and no ``address``). Rows are append-only in SQL (migration 0008); the chain
is what still shows an edit made by someone who dropped those triggers (:func:`verify`).

Several processes write the trail at once (the UI, the API, the ingest workers, CLI
commands): the head is read and the row written under the chain's lock, held until the
transaction ends, so the chain stays a line. SQLite's write lock is it (every hub
transaction is ``BEGIN IMMEDIATE``); on PostgreSQL a transaction-scoped advisory lock. So
a transaction writes its audit rows after its other writes: it then holds that lock only
while it commits, and never waits for a row lock while others wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from hub import db
from protocol.auditchain import GENESIS, AuditEntry, follow, seal
from puskesos.commands import CommandError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from hub.cli import HubCommands
    from hub.metrics import AuditChainState

__all__ = ["Head", "Verdict", "add_commands", "parse_head", "record", "verify", "watch"]

log = logging.getLogger("puskesos.hub.audit")

#: The PostgreSQL advisory lock of the chain's head ("audit" in ASCII).
CHAIN_LOCK: Final = 0x6175646974
#: A head written out: ``SEQ:HASH``.
_HEAD: Final = re.compile(r"([1-9][0-9]*):([0-9a-fA-F]{64})")
#: Rows read at a time while verifying.
_PAGE: Final = 2_000


async def record(
    conn: AsyncConnection,
    *,
    at_ms: int,
    actor: str,
    action: str,
    subject: str = "",
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Add one entry, linked to the chain's head. ``action`` is a short dotted code
    (``review.decide``, ``cycle.sign``, ``household.view``); ``subject`` what it was done
    to (a record id, a period, a username)."""
    a = db.audit
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CHAIN_LOCK)))
    head = (
        await conn.execute(sa.select(a.c.seq, a.c.hash).order_by(a.c.seq.desc()).limit(1))
    ).first()
    seq, previous = (head.seq, bytes(head.hash)) if head is not None else (0, GENESIS)
    text = json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True)
    entry = seal(previous, AuditEntry(seq + 1, at_ms, actor, action, None, subject, text, ""))
    await conn.execute(
        a.insert().values(
            seq=entry.seq,
            hash=entry.hash,
            at_ms=at_ms,
            actor=actor,
            action=action,
            subject=subject,
            detail=text,
        )
    )


@dataclass(frozen=True, slots=True)
class Head:
    """A place in the chain: the ``seq`` of a row and its hash (``SEQ:HEX`` written out)."""

    seq: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash.hex()}"


def parse_head(text: str) -> Head:
    """``SEQ:HEX`` as :class:`Head` printed it (``ValueError`` when it is not)."""
    found = _HEAD.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not SEQ:HASH (a seq from 1, a colon, 64 hex digits)")
    return Head(int(found[1]), bytes.fromhex(found[2]))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`verify` found: the chain's head and its problems as ``(kind, seq)``:
    ``break`` (the row is not linked to the one before: it or its predecessor was changed),
    ``gap`` (no row has this seq: removed), ``rewritten`` (the row at an expected head has
    another hash: the chain was rebuilt up to there) and ``short`` (the chain ends before an
    expected head: rows at its end were removed)."""

    rows: int
    head: Head
    problems: tuple[tuple[str, int], ...]

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(engine: AsyncEngine, *, expect: Head | None = None) -> Verdict:
    """Walk the whole chain from the start, page by page, while others write (a seq is
    taken only once the one before it is committed, so a walk never sees a gap that is not
    one); with ``expect`` (a head recorded outside the database), also check that the
    chain still passes it."""
    a = db.audit
    columns = (a.c.seq, a.c.at_ms, a.c.actor, a.c.action, a.c.subject, a.c.detail, a.c.hash)
    seq, previous, rows = 0, GENESIS, 0
    problems: list[tuple[str, int]] = []
    async with db.reading(engine) as conn:
        while page := (
            await conn.execute(
                sa.select(*columns).where(a.c.seq > seq).order_by(a.c.seq).limit(_PAGE)
            )
        ).all():
            rows += len(page)
            for row in page:
                if row.seq == seq + 1:
                    seq, previous, broken = follow(seq, previous, [_entry(row)])
                    problems.extend(("break", at) for at in broken)
                else:
                    problems.append(("gap", seq + 1))
                    # Nothing links the first row after a gap: it is the base of the next.
                    seq, previous = row.seq, bytes(row.hash)
                if expect is not None and seq == expect.seq and previous != expect.hash:
                    problems.append(("rewritten", seq))
            await asyncio.sleep(0)  # let the loop serve requests between pages
    if expect is not None and seq < expect.seq:
        problems.append(("short", expect.seq))
    return Verdict(rows, Head(seq, previous), tuple(problems))


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        row.seq,
        row.at_ms,
        row.actor,
        row.action,
        None,
        row.subject,
        row.detail,
        "",
        bytes(row.hash),
    )


async def watch(engine: AsyncEngine, state: AuditChainState, *, interval_s: float) -> None:
    """Verify the chain now and every ``interval_s``: the verdict in ``state``
    (``puskesos_hub_audit_chain_ok``) and the head in the log, where it outlives a rewrite
    of the database (``puskesos hub audit verify --expect-head`` checks against it)."""
    while True:
        try:
            verdict = await verify(engine)
        except Exception:
            log.exception("audit chain check failed")
        else:
            state.ok = verdict.ok
            log.info(
                "audit chain head %s", verdict.head,
                extra={"audit_head": str(verdict.head), "audit_rows": verdict.rows},
            )  # fmt: skip
            for kind, seq in verdict.problems:
                log.error(
                    "the hub's audit chain has a %s at seq %d", kind, seq,
                    extra={"audit_problem": kind, "audit_seq": seq},
                )  # fmt: skip
        await asyncio.sleep(interval_s)


# --- puskesos hub audit verify -------------------------------------------------------------

#: What each problem of a :class:`Verdict` means, for the command's output.
_MEANING: Final = {
    "break": "the row, or the one before it, was changed after it was written",
    "gap": "the row was removed",
    "rewritten": "the chain up to this row is not the one recorded outside the database",
    "short": "the chain ends before the head recorded outside the database: rows were removed",
}


def add_commands(commands: HubCommands) -> None:
    """Register ``audit verify`` under ``puskesos hub``."""
    commands.group("audit", "the hub's own audit trail")
    check = commands.command(
        "audit verify", _verify, "check that the hub's audit trail is an unbroken hash chain"
    )
    check.add_argument(
        "--expect-head", type=_head_argument, metavar="SEQ:HASH",
        help="a head logged or printed earlier (audit_head): the chain must still pass it",
    )  # fmt: skip


def _head_argument(text: str) -> Head:
    try:
        return parse_head(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _verify(args: argparse.Namespace) -> int:
    from hub.config import load_config

    config = load_config(args.config)

    async def run() -> Verdict:
        engine = db.create_engine(config.url)
        try:
            return await verify(engine, expect=args.expect_head)
        finally:
            await engine.dispose()

    verdict = asyncio.run(run())
    for kind, seq in verdict.problems:
        print(f"seq {seq}: {kind}: {_MEANING[kind]}")
    if not verdict.ok:
        kind, seq = verdict.problems[0]
        raise CommandError(f"the audit chain is broken at seq {seq} ({kind})", 1)
    print(f"audit chain ok: {verdict.rows} rows, head {verdict.head}")
    return 0
