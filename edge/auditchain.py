"""The box's side of the audit chain (``protocol/auditchain.py``): every audit row is
appended here, with its ``seq`` and ``hash``, in the caller's transaction; and the sync
client reads from here what the hub has not stored yet.

``meta.audit_acked`` is the highest ``seq`` the hub said it stored: sending resumes after
it, batch by batch, so a box that was offline for weeks sends its trail in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa

from edge import db
from protocol.auditchain import GENESIS, AuditEntry, seal

__all__ = ["ACKED", "append", "entries_after", "hash_of", "waiting"]

#: ``meta`` key: the highest ``seq`` of the chain the hub acked.
ACKED = "audit_acked"


def append(conn: sa.Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert audit ``rows`` (``edge.records.audit_row`` dictionaries; ``entity``,
    ``record_id``, ``detail`` and ``address`` may be left out), each linked to the one
    before, in ``conn``'s transaction: the writer thread's one transaction at a time keeps
    the chain a line."""
    a = db.audit
    head = conn.execute(sa.select(a.c.seq, a.c.hash).order_by(a.c.seq.desc()).limit(1)).first()
    seq, previous = (head.seq, head.hash) if head is not None else (0, GENESIS)
    sealed = []
    for row in rows:
        seq += 1
        entry = seal(
            previous,
            AuditEntry(
                seq,
                row["at_ms"],
                row["actor"],
                row["action"],
                row.get("entity"),
                row.get("record_id"),
                row.get("detail", "{}"),
                row.get("address", ""),
            ),
        )
        previous = entry.hash
        sealed.append(asdict(entry))
    if sealed:
        conn.execute(a.insert(), sealed)


def entries_after(conn: sa.Connection, seq: int, limit: int) -> list[AuditEntry]:
    """At most ``limit`` entries of the chain after ``seq``, in order, as stored."""
    a = db.audit
    rows = conn.execute(sa.select(a).where(a.c.seq > seq).order_by(a.c.seq).limit(limit)).all()
    return [
        AuditEntry(
            r.seq, r.at_ms, r.actor, r.action, r.entity, r.record_id, r.detail, r.address, r.hash
        )
        for r in rows
    ]


def hash_of(conn: sa.Connection, seq: int) -> bytes | None:
    """The stored hash of entry ``seq`` (:data:`GENESIS` for 0, ``None`` when the box does
    not hold it): what the entries after it link to."""
    if seq == 0:
        return GENESIS
    a = db.audit
    row = conn.execute(sa.select(a.c.hash).where(a.c.seq == seq)).first()
    return None if row is None else bytes(row.hash)


def waiting(conn: sa.Connection, seq: int, limit: int) -> int:
    """How many entries follow ``seq``, counted up to ``limit``."""
    a = db.audit
    after = sa.select(a.c.seq).where(a.c.seq > seq).limit(limit).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(after)).scalar_one())
