"""The hub's side of anti-entropy (``protocol/digest.py``): comparing a box's root with its
village's, and repairing what differs.

:func:`compare` runs on a box's online status. It compares only when neither side has
anything in flight: the box reports an empty outbox and the hub has applied every batch it
numbered; the hub has packed the village's whole log for the box and the box has applied
every down batch (its status's ``down_watermark``); and both know the same entity schema.
Then the roots must agree. A difference is a *divergence*: counted once per episode on the
device row (``divergences``), shown on the device pages and at ``/metrics``, and answered
with a :class:`~protocol.digest.DigestProbe` carrying the village's bucket hashes.

:func:`repair` takes the box's :class:`~protocol.digest.DigestReply`: every record of the
differing buckets whose digest differs, or that the box lacks, goes down whole in the box's
down stream (stored, numbered and resent until acked, like any down batch, and without the
downlink's skip of records only the box wrote: a forged or lost version under its name is
exactly what may differ); the records the box holds differently, or the hub lacks, are
named in a probe's ``wanted`` so the box sends its own versions again. Both are merged by
the normal rules, so a repair can never lose a version.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import db
from hub.downlink import store_records
from hub.store import HubStore, known_schema
from protocol.delivery import AppliedSeqs
from protocol.digest import (
    DigestProbe,
    DigestReply,
    bucket_hashes,
    bucket_of,
    from_signed,
    root_hex,
)
from protocol.entities import SCHEMA_VERSION
from protocol.status import Status

__all__ = ["Comparison", "Verdict", "compare", "probe", "repair"]

#: A box whose root matched is told so again at most this often (it shows it).
TELL_MATCH_EVERY_MS = 3_600_000
#: A box still diverged after a repair is probed again at most this often.
REPROBE_AFTER_MS = 300_000


class Verdict(enum.Enum):
    """The outcome of :func:`compare`."""

    UNCHECKED = "unchecked"  # something is in flight, or the box has no digest
    MATCH = "match"
    DIVERGED = "diverged"


@dataclass(frozen=True, slots=True)
class Comparison:
    """What :func:`compare` found, and whether the box should hear of it now."""

    verdict: Verdict
    tell: bool = False


async def compare(store: HubStore, node: str, status: Status) -> Comparison:
    """Compare a box's online ``status`` with its village at the hub (see the module
    docstring) and record the outcome on its device row."""
    if status.state != "online" or not status.digest or status.schema != SCHEMA_VERSION:
        return Comparison(Verdict.UNCHECKED)
    device = await store.device(node)
    if device is None or device.status != "active":
        return Comparison(Verdict.UNCHECKED)
    async with store.writing() as conn:
        head = await store.lock_village(conn, device.village)
        device = await store.device(node, conn)
        up = AppliedSeqs.from_state(device.up_watermark, json.loads(device.up_above))
        settled = (
            status.outbox == 0
            # Exactly what the status counted: a batch sealed after it and applied before
            # this check would put a write in the hub's root that the box's root lacks.
            and up.watermark == status.up_seq
            and not up.above
            and device.down_cursor == head
            and device.down_watermark == device.down_seq == status.down_watermark
            and known_schema(device.reported) == SCHEMA_VERSION
            and (device.epoch or "") == status.epoch
        )
        if not settled:
            return Comparison(Verdict.UNCHECKED)
        v = db.villages
        root = (
            await conn.execute(sa.select(v.c.digest).where(v.c.code == device.village))
        ).scalar_one()
        now = store.wall()
        if root_hex(from_signed(root)) == status.digest:
            tell = device.digest_state != Verdict.MATCH.value or (
                now - (device.digest_told_ms or 0) >= TELL_MATCH_EVERY_MS
            )
            values: dict[str, Any] = {"digest_state": Verdict.MATCH.value, "digest_ms": now}
            if tell:
                values["digest_told_ms"] = now
            await _update_device(conn, node, values)
            return Comparison(Verdict.MATCH, tell)
        values = {"digest_state": Verdict.DIVERGED.value, "digest_ms": now}
        new_episode = device.digest_state != Verdict.DIVERGED.value
        # A divergence the repair cannot settle must not make a probe every few seconds on
        # a 2G link: probe again only after REPROBE_AFTER_MS (the alert reports it).
        tell = new_episode or now - (device.digest_told_ms or 0) >= REPROBE_AFTER_MS
        if new_episode:
            values["divergences"] = db.devices.c.divergences + 1
        if tell:
            values["digest_told_ms"] = now
        await _update_device(conn, node, values)
        return Comparison(Verdict.DIVERGED, tell)


async def _update_device(conn: AsyncConnection, node: str, values: dict[str, Any]) -> None:
    await conn.execute(db.devices.update().where(db.devices.c.node == node).values(values))


async def probe(store: HubStore, node: str, verdict: Verdict) -> DigestProbe:
    """The probe telling ``node`` its root matched, or carrying its village's bucket hashes."""
    if verdict is Verdict.MATCH:
        return DigestProbe(node)
    device = await store.device(node)
    r = db.records
    async with db.reading(store.engine) as conn:
        rows = await conn.execute(
            sa.select(r.c.id, r.c.digest).where(r.c.village == device.village)
        )
        buckets = bucket_hashes((row.id, from_signed(row.digest)) for row in rows)
    return DigestProbe(node, tuple(buckets))


async def repair(
    store: HubStore, reply: DigestReply, *, max_changes: int, max_bytes: int
) -> DigestProbe | None:
    """Send ``reply.node`` the hub's records that differ in the reply's buckets (stored
    down batches, which the caller publishes) and return the probe naming what the hub
    wants back (``None`` when it wants nothing)."""
    device = await store.device(reply.node)
    if device is None or device.status != "active":
        return None
    buckets = set(reply.buckets)
    theirs = dict(reply.records)
    r = db.records
    async with db.reading(store.engine) as conn:
        rows = await conn.execute(
            sa.select(r.c.id, r.c.digest).where(r.c.village == device.village)
        )
        ours = {row.id: from_signed(row.digest) for row in rows if bucket_of(row.id) in buckets}
    send = sorted(i for i, digest in ours.items() if theirs.get(i) != digest)
    wanted = sorted(i for i, digest in theirs.items() if ours.get(i) != digest)
    if send:
        sent = await store_records(
            store, reply.node, send, max_changes=max_changes, max_bytes=max_bytes
        )
        async with store.writing() as conn:
            await _update_device(conn, reply.node, {"repaired": db.devices.c.repaired + sent})
    return DigestProbe(reply.node, wanted=tuple(wanted)) if wanted else None
