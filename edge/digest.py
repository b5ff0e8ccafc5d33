"""The box's side of anti-entropy (``protocol/digest.py``): its root, kept as records are
written, and its answers to the hub's probes.

The root and record count live in ``meta`` (:data:`DIGEST`) and change in the transaction
that writes the records (:func:`fold_digests`, called by ``edge.store.save_records``), so
they always describe what the database holds. What the last probe found is kept in
:data:`CHECK` for the Sinkronisasi page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from edge import db
from edge.records import stored_state
from protocol.changes import Change
from protocol.digest import (
    BUCKETS,
    DigestProbe,
    DigestReply,
    bucket_hashes,
    bucket_of,
    differing_buckets,
    from_signed,
)
from protocol.entities import ENTITIES
from protocol.jsonform import dump_change

if TYPE_CHECKING:
    from edge.records import Record
    from edge.store import Store

__all__ = ["CHECK", "DIGEST", "Check", "answer_probe", "fold_digests", "read_check", "read_root"]

#: ``meta`` key: ``{"root": int, "records": int}``.
DIGEST = "digest"
#: ``meta`` key: what the hub's probes said (see :class:`Check`).
CHECK = "digest_check"
#: At most this many records in one reply (a reply stays far below the frame limit); the
#: buckets left out are compared again at the next probe.
REPLY_RECORDS = 4000


@dataclass(frozen=True, slots=True)
class Check:
    """What the hub's probes told this box: ``state`` is ``"match"`` (the roots agreed) or
    ``"diverged"`` (the hub found a difference and the two are repairing it)."""

    state: str
    at_ms: int
    divergences: int
    records_sent: int


def read_root(conn: sa.Connection) -> tuple[int, int]:
    """The box's root and record count."""
    raw = db.read_meta(conn, DIGEST)
    if raw is None:
        return 0, 0
    document = json.loads(raw)
    return int(document["root"]), int(document["records"])


def fold_digests(conn: sa.Connection, written: Iterable[tuple[Record | None, Record]]) -> None:
    """Replace each written record's old digest (``None``: a new record) by its new one in
    the root, inside the caller's transaction."""
    delta, added = 0, 0
    for before, after in written:
        delta ^= after.digest ^ (before.digest if before is not None else 0)
        added += before is None
    if delta or added:
        root, records = read_root(conn)
        document = {"root": root ^ delta, "records": records + added}
        db.put_meta(conn, DIGEST, json.dumps(document))


def read_check(conn: sa.Connection) -> Check | None:
    """What the last probe said, ``None`` before the first."""
    raw = db.read_meta(conn, CHECK)
    return Check(**json.loads(raw)) if raw else None


async def answer_probe(store: Store, probe: DigestProbe) -> DigestReply | None:
    """Note what ``probe`` says, queue this box's own versions of the records it wants,
    and return the reply to its bucket hashes (``None`` when it carries none)."""
    now = store.now_ms()
    return await store.run_write(lambda conn: _answer(conn, store.node, probe, now))


def _answer(conn: sa.Connection, node: str, probe: DigestProbe, now: int) -> DigestReply | None:
    r = db.records
    check = read_check(conn)
    divergences = check.divergences if check else 0
    sent = check.records_sent if check else 0
    if probe.wanted:
        rows = conn.execute(
            sa.select(r.c.id, r.c.entity, r.c.village, r.c.state, r.c.data).where(
                r.c.id.in_(probe.wanted)
            )
        ).all()
        queued = [row for row in (_own_change(node, row) for row in rows) if row is not None]
        if queued:
            conn.execute(db.outbox.insert(), [{**row, "created_ms": now} for row in queued])
        sent += len(queued)
    reply = None
    if probe.buckets:
        if check is None or check.state != "diverged":
            divergences += 1
        mine = bucket_hashes(
            (row.id, from_signed(row.digest)) for row in conn.execute(sa.select(r.c.id, r.c.digest))
        )
        reply = _reply(conn, node, differing_buckets(mine, probe.buckets))
    state = "match" if probe.matched else "diverged"
    document = {"state": state, "at_ms": now, "divergences": divergences, "records_sent": sent}
    db.put_meta(conn, CHECK, json.dumps(document))
    return reply


def _reply(conn: sa.Connection, node: str, buckets: list[int]) -> DigestReply:
    """The box's records in ``buckets`` (as many buckets as fit in one reply)."""
    r = db.records
    by_bucket: dict[int, list[tuple[str, int]]] = {index: [] for index in buckets}
    for row in conn.execute(sa.select(r.c.id, r.c.digest)):
        found = by_bucket.get(bucket_of(row.id))
        if found is not None:
            found.append((row.id, from_signed(row.digest)))
    taken: list[int] = []
    records: list[tuple[str, int]] = []
    for index in buckets:
        if taken and len(records) + len(by_bucket[index]) > REPLY_RECORDS:
            break
        taken.append(index)
        records += by_bucket[index]
    assert len(taken) <= BUCKETS
    return DigestReply(node, tuple(taken), tuple(records))


def _own_change(node: str, row: Any) -> dict[str, Any] | None:
    """An outbox row with this box's own versions of a record (what the hub may lack);
    ``None`` when it holds none (fields set by the hub only are never sent up)."""
    fields = ENTITIES[row.entity].fields
    own = {
        name: version
        for name, frontier in stored_state(row.state, row.data).items()
        for version in frontier
        if version.node == node and name in fields and not fields[name].readonly
    }
    if not own:
        return None
    change = Change(row.entity, row.id, row.village, node, own)
    return {"record_id": row.id, "entity": row.entity, "change": dump_change(change)}
