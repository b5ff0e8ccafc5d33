"""The same person recorded in two villages: found by NIK, and the verifier's choice marks
the other record ``ganda`` on its own box (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import pytest

from hub import downlink, duplicates, review
from hub.review import ReviewError
from protocol.codec import decode
from protocol.entities import ENTITIES, SCHEMA_VERSION
from protocol.status import Status
from tests.factories import DEFAULT_VILLAGE
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family
from tests.hub.test_review import downlink_values, row

OTHER_VILLAGE = "3201022002"
PERIOD = "2026-11"


async def test_a_nik_in_two_villages_is_a_duplicate_until_one_record_keeps_the_person(hub_store):
    here, there = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, here, there)
    _, (head,) = await send_family(hub_store, here, head="Asep")
    nik = (await row(hub_store, head)).nik
    _, (copy,) = await send_family(hub_store, there, head="Budi")
    await change(hub_store, there, copy, "member", nik=nik, name="Asep S.")

    [group] = await duplicates.duplicates(hub_store.engine)
    assert group.nik == nik
    assert [(m.record_id, m.village, m.name, m.head_name) for m in group.members] == [
        (head, DEFAULT_VILLAGE, "Asep", "Asep"),
        (copy, OTHER_VILLAGE, "Asep S.", "Asep S."),
    ]
    assert group.members[0].birth_date == "1980-05-17"

    with pytest.raises(ReviewError) as stranger:
        await duplicates.keep(hub_store, nik, "not-a-member", "verif")
    assert stranger.value.code == "not_in_group"

    assert await duplicates.keep(hub_store, nik, head, "verif") == 1
    assert await duplicates.duplicates(hub_store.engine) == []
    marked = await row(hub_store, copy)
    assert marked.nik is None and not marked.deleted
    assert (await downlink_values(hub_store, "edge-b", copy))["status"] == "ganda"
    assert (await row(hub_store, head)).nik == nik


async def test_a_box_from_before_the_review_is_sent_only_what_it_can_read_until_it_upgrades(
    hub_store,
):
    """Boxes in the field run old versions and refuse a batch with a field or an enum code
    they do not know: the hub leaves those out for them, and sends them after the upgrade."""
    here, old = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, here)
    await enrol(hub_store, old, schema=1)
    _, (head,) = await send_family(hub_store, here, head="Asep")
    household, (copy,) = await send_family(hub_store, old, head="Budi")
    await change(hub_store, old, copy, "member", nik=(await row(hub_store, head)).nik)
    await duplicates.keep(hub_store, (await row(hub_store, head)).nik, head, "verif")
    await review.decide(hub_store, household, "ditolak", "KK tidak terbaca", "verif", period=PERIOD)

    await downlink.fill(hub_store, old.node, window=50, max_changes=500, max_bytes=1 << 20)
    for batch in await downlink.due(hub_store, older_than_ms=hub_store.wall() + 1, node=old.node):
        for item in decode(batch.payload).changes:
            specs = ENTITIES[item.entity].fields
            assert all(specs[n].known_in(1, v.value) for n, v in item.fields.items()), item
    member = await downlink_values(hub_store, old.node, copy)
    assert "status" not in member and member["name"] == "Budi"  # "ganda" is not a v1 code
    assert "review_status" not in await downlink_values(hub_store, old.node, household)

    await hub_store.note_status(old.node, Status("online", schema=SCHEMA_VERSION))
    assert (await downlink_values(hub_store, old.node, copy))["status"] == "ganda"
    decided = await downlink_values(hub_store, old.node, household)
    assert decided["review_status"] == "ditolak" and decided["review_note"] == "KK tidak terbaca"
