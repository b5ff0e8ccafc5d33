"""The verifier's queue: a box's change waits with old → new, and each decision does what
docs/cycle.md says, down to the village's box (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from hub import db, downlink, review, review_queue, summary
from hub.review import ReviewError
from protocol.codec import decode
from protocol.entities import SCHEMA_VERSION
from protocol.status import Status
from tests.factories import DEFAULT_VILLAGE, new_id
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family

PERIOD = "2026-11"
OTHER_VILLAGE = "3201022002"


async def downlink_values(store, node: str, record_id: str) -> dict:
    """The values of ``record_id`` that the down batches to ``node`` carry."""
    await downlink.fill(store, node, window=50, max_changes=500, max_bytes=1 << 20)
    due = await downlink.due(store, older_than_ms=store.wall() + 1, node=node)
    found: dict = {}
    for batch in due:
        for item in decode(batch.payload).changes:
            if item.record_id == record_id:
                found.update({name: v.value for name, v in item.fields.items()})
    return found


async def row(store, record_id: str):
    async with store.engine.connect() as conn:
        return (await conn.execute(sa.select(db.records).where(db.records.c.id == record_id))).one()


async def test_a_new_household_waits_in_the_queue_of_its_village_with_every_field_new(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, (head, child) = await send_family(hub_store, box, Siti={"sex": "perempuan"})

    [item] = await review_queue.queue(hub_store.engine)
    assert (item.household_id, item.village, item.head_name) == (
        household,
        DEFAULT_VILLAGE,
        "Asep Saepudin",
    )
    assert item.pending_records == 3 and item.is_new and not item.flagged
    assert (
        await review_queue.queue(hub_store.engine, review_queue.QueueFilter(village=OTHER_VILLAGE))
        == []
    )
    assert await review_queue.queue_counts(hub_store.engine) == {DEFAULT_VILLAGE: 1}

    detail = await review.household_changes(hub_store.engine, household)
    assert [r.record_id for r in detail.records] == [household, head, child]
    names = {c.field: c for c in detail.records[2].changes}
    assert names["name"].old is None and names["name"].new == "Siti"
    assert names["name"].label == "Nama lengkap"
    assert names["name"].origin == "edge-a" and abs(names["name"].at_ms - hub_store.wall()) < 60_000


async def test_an_approved_change_shows_old_and_new_and_leaves_the_queue(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, (head,) = await send_family(hub_store, box)
    await review.decide(hub_store, household, "disetujui", "", "verif", period=PERIOD)
    assert await review_queue.queue(hub_store.engine) == []

    await change(hub_store, box, head, "member", occupation="Petani")
    [item] = await review_queue.queue(hub_store.engine)
    assert item.pending_records == 1 and not item.is_new
    detail = await review.household_changes(hub_store.engine, household)
    member = detail.records[1]
    assert member.pending and [(c.field, c.old, c.new) for c in member.changes] == [
        ("occupation", "Buruh harian lepas", "Petani")
    ]
    assert detail.records[0].changes == ()  # the household itself did not change

    decision_id = await review.decide(hub_store, household, "disetujui", "", "verif", period=PERIOD)
    stored = await row(hub_store, head)
    assert not stored.pending and json.loads(stored.approved)["occupation"] == "Petani"
    assert stored.approved_seq == 2 and stored.first_approved_seq == 1
    assert stored.approved_status == "aktif"
    detail = await review.household_changes(hub_store.engine, household)
    assert detail.decisions[0].id == decision_id
    assert detail.decisions[0].changes == {head: {"occupation": ["Buruh harian lepas", "Petani"]}}
    values = await downlink_values(hub_store, "edge-a", household)
    assert values["review_status"] == "disetujui" and values["review_date"]


async def test_a_rejection_needs_a_reason_keeps_the_approved_values_and_reaches_the_box(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    await review.decide(hub_store, household, "disetujui", "", "verif", period=PERIOD)
    await change(hub_store, box, household, "household", floor_area_m2=400.0)

    with pytest.raises(ReviewError) as refused:
        await review.decide(hub_store, household, "ditolak", "  ", "verif", period=PERIOD)
    assert refused.value.code == "reason_required" and "Alasan" in refused.value.message

    await review.decide(hub_store, household, "ditolak", "Luas tidak wajar", "verif", period=PERIOD)
    stored = await row(hub_store, household)
    assert not stored.pending and json.loads(stored.approved)["floor_area_m2"] == 36.0
    assert json.loads(stored.data)["floor_area_m2"] == 400.0
    assert await review_queue.queue(hub_store.engine) == []
    values = await downlink_values(hub_store, "edge-a", household)
    assert (values["review_status"], values["review_note"]) == ("ditolak", "Luas tidak wajar")
    with pytest.raises(ReviewError) as again:
        await review.decide(hub_store, household, "disetujui", "", "verif", period=PERIOD)
    assert again.value.code == "not_pending"
    async with hub_store.engine.connect() as conn:
        entries = (await conn.execute(sa.select(db.audit.c.action, db.audit.c.subject))).all()
    assert [tuple(e) for e in entries] == [("review.decide", household)] * 2


async def test_a_field_check_keeps_the_household_in_the_queue_flagged(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    await review.decide(
        hub_store, household, "periksa_lapangan", "Cek rumah", "verif", period=PERIOD
    )
    [item] = await review_queue.queue(hub_store.engine)
    assert item.flagged and item.is_new
    stored = await row(hub_store, household)
    assert stored.pending and stored.approved is None
    # The hub's own write did not make anything newly pending or change the box's data.
    assert json.loads(stored.data)["review_status"] == "periksa_lapangan"


@pytest.mark.parametrize(
    ("decision", "reason", "after"),
    [
        ("disetujui", "", "diverifikasi"),
        ("ditolak", "Bukan warga", "ditolak"),
        ("periksa_lapangan", "Cek rumah", "dikirim"),
    ],
)
async def test_agreed_proposals_follow_the_district_decision_down_to_the_box(
    hub_store, decision, reason, after
):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    proposals = {status: new_id() for status in ("draf", "disepakati_musdes", "ditolak")}
    now = hub_store.wall()
    edits = [
        box.edit(
            proposal,
            now,
            entity="proposal",
            household_id=household,
            kind="usulan_baru",
            period=PERIOD,
            status=status,
            agreement_ref="BA/01/2026" if status != "draf" else None,
        )
        for status, proposal in proposals.items()
    ]
    await hub_store.apply(box.batch(*edits), box.node)

    await review.decide(hub_store, household, decision, reason, "verif", period=PERIOD)

    assert (await row(hub_store, proposals["disepakati_musdes"])).status == after
    values = await downlink_values(hub_store, "edge-a", proposals["disepakati_musdes"])
    assert values["status"] == after, "the village sees the district's decision"
    # A draft was never sent, and a refused one stays refused.
    assert (await row(hub_store, proposals["draf"])).status == "draf"
    assert (await row(hub_store, proposals["ditolak"])).status == "ditolak"


async def test_a_box_of_schema_4_gets_a_departed_member_without_the_date_and_document(hub_store):
    """Member ``status_date`` and ``status_document`` (entity schema 5) stay away from a box
    of version 4, which would refuse the batch; the status itself reaches it."""
    here, old = Box("edge-a"), Box("edge-old")
    await enrol(hub_store, here)
    await enrol(hub_store, old, schema=4)
    _, (_, child) = await send_family(hub_store, here, Ujang={})
    await change(
        hub_store, here, child, "member", status="pindah", status_date="2026-11-02",
        status_document="SKPWNI/3201/88",
    )  # fmt: skip
    sent = await downlink_values(hub_store, old.node, child)
    assert sent["status"] == "pindah"
    assert "status_date" not in sent and "status_document" not in sent
    await hub_store.note_status(old.node, Status("online", schema=SCHEMA_VERSION))
    assert (await downlink_values(hub_store, old.node, child))["status_date"] == "2026-11-02"


async def test_unknown_households_and_decisions_are_refused(hub_store):
    with pytest.raises(ReviewError) as unknown:
        await review.decide(hub_store, "nope", "disetujui", "", "verif", period=PERIOD)
    assert unknown.value.code == "unknown_household"
    with pytest.raises(ReviewError) as wrong:
        await review.decide(hub_store, "nope", "terserah", "", "verif", period=PERIOD)
    assert wrong.value.code == "unknown_decision"


async def test_the_summary_counts_each_village(hub_store):
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = await send_family(hub_store, box)
    await send_family(hub_store, box)
    await review.decide(hub_store, household, "disetujui", "", "verif", period=PERIOD)
    now = hub_store.wall()

    [village] = await summary.village_summary(hub_store.engine, now_ms=now, period_start_ms=0)
    assert (village.village, village.households, village.pending_households) == (
        DEFAULT_VILLAGE,
        2,
        1,
    )
    assert village.changes == 4 and village.open_conflicts == 0
    assert village.data_age_days == 0 and not village.stale
    later = now + 91 * 86_400_000
    [old] = await summary.village_summary(hub_store.engine, now_ms=later, period_start_ms=later)
    assert old.stale and old.data_age_days == 91 and old.changes == 0
