"""The same person recorded in two villages: found by NIK, and the verifier's choice marks
the other record ``ganda`` on its own box (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import pytest

from hub import duplicates
from hub.review import ReviewError
from tests.factories import DEFAULT_VILLAGE
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family
from tests.hub.test_review import downlink_values, row

OTHER_VILLAGE = "3201022002"


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
