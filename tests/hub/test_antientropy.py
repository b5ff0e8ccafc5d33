"""The hub's comparison of a box's digest: only when both sides are settled, a divergence
counted once per episode, and a divergence the repair cannot settle probed again only
every few minutes, not at every status (a 2G link pays for each probe)."""

from __future__ import annotations

from hub.antientropy import REPROBE_AFTER_MS, Verdict, compare
from protocol.entities import SCHEMA_VERSION
from protocol.status import Status
from tests.factories import new_id
from tests.hub.boxes import Box, enrol

WRONG_ROOT = "00000000000000ff"


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def test_a_divergence_is_counted_once_and_probed_again_only_after_a_while(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    clock = Clock(hub_store.wall())
    hub_store.wall = clock
    status = Status("online", digest=WRONG_ROOT, schema=SCHEMA_VERSION)

    first = await compare(hub_store, box.node, status)
    assert (first.verdict, first.tell) == (Verdict.DIVERGED, True)
    clock.now += 10_000  # the box reports again after the repair, still different
    again = await compare(hub_store, box.node, status)
    assert (again.verdict, again.tell) == (Verdict.DIVERGED, False)
    clock.now += REPROBE_AFTER_MS
    later = await compare(hub_store, box.node, status)
    assert (later.verdict, later.tell) == (Verdict.DIVERGED, True)
    device = await hub_store.device(box.node)
    assert (device.divergences, device.digest_state) == (1, "diverged")

    empty = Status("online", digest="0" * 16, schema=SCHEMA_VERSION)
    matched = await compare(hub_store, box.node, empty)
    assert (matched.verdict, matched.tell) == (Verdict.MATCH, True)


async def test_a_batch_applied_after_the_status_was_built_is_no_divergence(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    # The status counted up_seq 0 and an empty outbox; a save right after it was sealed
    # into batch 1, which the hub applied before it handled the status.
    await hub_store.apply(box.batch(box.edit(new_id(), hub_store.wall(), rt="001")), box.node)
    status = Status("online", up_seq=0, digest="0" * 16, schema=SCHEMA_VERSION)
    assert (await compare(hub_store, box.node, status)).verdict is Verdict.UNCHECKED
    assert (await hub_store.device(box.node)).divergences == 0
