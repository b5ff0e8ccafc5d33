"""What a village operator does, through the service functions the UI and the API share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest

from edge import services
from edge.config import EdgeConfig
from edge.services import Actor, NotFound, PermissionDenied
from edge.store import Store
from tests.factories import make_household_with_members

TODAY = date(2026, 11, 24)
OPERATOR = Actor("operator1", "operator", "10.0.0.5")
KADES = Actor("kades", "kepala_desa", "10.0.0.6")


@pytest.fixture
async def store(edge_config: EdgeConfig) -> AsyncIterator[Store]:
    box = Store(edge_config)
    await box.open()
    yield box
    await box.close()


def form(seed: int, n: int = 3) -> tuple[dict, list[dict]]:
    household, members = make_household_with_members(n, seed=seed)
    household.pop("id")
    for member in members:
        member.pop("id")
        member.pop("household_id", None)
    return household, members


async def register(store: Store, seed: int, n: int = 3) -> services.Outcome:
    household, members = form(seed, n)
    outcome = await services.save_household(
        store, OPERATOR, household_id=None, household=household, members=members, today=TODAY
    )
    assert outcome.saved, outcome.issues
    return outcome


async def proposal_kinds(store: Store, household_id: str) -> list[str]:
    return sorted(str(p.get("kind")) for p in await store.related("proposal", household_id))


async def test_a_new_household_becomes_a_new_proposal_for_the_month(store):
    outcome = await register(store, seed=10)
    proposals = await store.related("proposal", outcome.record_id)
    assert [(p.get("kind"), p.get("period"), p.get("status")) for p in proposals] == [
        ("usulan_baru", "2026-11", "draf")
    ]
    assert len(await store.related("member", outcome.record_id)) == 3


async def test_an_error_blocks_the_save_and_names_the_submitted_member(store):
    household, members = form(seed=11)
    members[2]["nik"] = "320101"
    outcome = await services.save_household(
        store, OPERATOR, household_id=None, household=household, members=members, today=TODAY
    )
    assert not outcome.saved and not outcome.needs_confirmation
    assert [(i.field, i.code) for i in outcome.issues] == [("members[2].nik", "nik_length")]
    assert await store.counts() == {}


async def test_a_warning_needs_confirmation_and_is_then_saved_and_audited(store):
    household, members = form(seed=12)
    members[1]["birth_date"] = "1990-01-01"  # the NIK says another date
    args = dict(household_id=None, household=household, members=members, today=TODAY)
    first = await services.save_household(store, OPERATOR, **args)
    assert first.needs_confirmation
    assert {i.code for i in first.issues} == {"nik_birth_date_mismatch"}
    confirmed = await services.save_household(store, OPERATOR, confirm_warnings=True, **args)
    assert confirmed.saved
    audit, _ = await store.audit_log(record_id=confirmed.record_id)
    assert "confirm_warnings" in {row.action for row in audit}


async def test_a_nik_already_held_in_another_household_of_the_village_is_refused(store):
    first = await register(store, seed=13)
    taken = (await store.related("member", first.record_id))[1].get("nik")
    household, members = form(seed=14)
    members[1]["nik"] = taken
    members[1]["birth_date"] = (await store.related("member", first.record_id))[1].get("birth_date")
    members[1]["sex"] = (await store.related("member", first.record_id))[1].get("sex")
    outcome = await services.save_household(
        store, OPERATOR, household_id=None, household=household, members=members, today=TODAY
    )
    assert ("members[1].nik", "nik_duplicate_village") in {
        (i.field, i.code) for i in outcome.issues
    }


async def test_a_member_who_died_keeps_the_record_and_makes_a_proposal(store):
    outcome = await register(store, seed=15, n=4)
    members = await store.related("member", outcome.record_id)
    not_head = next(m for m in members if m.get("relation_to_head") != "kepala_keluarga")
    update = await services.save_household(
        store,
        OPERATOR,
        household_id=outcome.record_id,
        household={},
        members=[{"id": not_head.id, "status": "meninggal"}],
        today=TODAY,
    )
    assert not update.saved, "when and on which document is asked first"
    assert {(i.field, i.code) for i in update.issues} == {
        ("members[0].status_date", "departure_missing"),
        ("members[0].status_document", "departure_missing"),
    }
    update = await services.save_household(
        store,
        OPERATOR,
        household_id=outcome.record_id,
        household={},
        members=[{"id": not_head.id, "status": "meninggal"}],
        today=TODAY,
        confirm_warnings=True,
    )
    assert update.saved, update.issues
    assert len(await store.related("member", outcome.record_id)) == 4
    assert (await store.get(not_head.id)).get("status") == "meninggal"
    assert await proposal_kinds(store, outcome.record_id) == ["meninggal", "usulan_baru"]


async def test_corrections_in_one_month_share_one_draft_proposal(store):
    outcome = await register(store, seed=16)
    for rt in ("007", "008"):
        saved = await services.save_household(
            store,
            OPERATOR,
            household_id=outcome.record_id,
            household={"rt": rt},
            members=[],
            today=TODAY,
        )
        assert saved.saved
    assert await proposal_kinds(store, outcome.record_id) == ["perbaikan_data", "usulan_baru"]


async def test_only_the_kepala_desa_marks_proposals_agreed(store):
    outcome = await register(store, seed=17)
    proposal = (await store.related("proposal", outcome.record_id))[0]
    with pytest.raises(PermissionDenied):
        await services.agree_proposals(
            store,
            OPERATOR,
            [proposal.id],
            how="disepakati_musdes",
            reference="BA/01/2026",
            today=TODAY,
        )
    agreed = await services.agree_proposals(
        store, KADES, [proposal.id], how="disepakati_musdes", reference="BA/01/2026", today=TODAY
    )
    assert agreed.saved, agreed.issues
    stored = await store.get(proposal.id)
    assert (stored.get("status"), stored.get("agreement_ref")) == (
        "disepakati_musdes",
        "BA/01/2026",
    )


async def test_a_complaint_is_referred_and_follows_its_workflow(store):
    complaint = await services.create_record(
        store,
        OPERATOR,
        "complaint",
        {"channel": "langsung", "category": "bantuan_belum_cair", "chronology": "PKH belum cair"},
        today=TODAY,
    )
    assert complaint.saved, complaint.issues
    stored = await store.get(complaint.record_id)
    assert (stored.get("status"), stored.get("due_date")) == ("baru", "2026-12-08")
    referral = await services.create_record(
        store,
        OPERATOR,
        "referral",
        {
            "complaint_id": complaint.record_id,
            "need": "Cek data PKH",
            "destination": "dinas_sosial",
        },
        today=TODAY,
    )
    assert referral.saved, referral.issues
    assert (await store.get(complaint.record_id)).get("status") == "dirujuk"
    refused = await services.update_record(
        store, OPERATOR, "complaint", complaint.record_id, {"status": "ditolak"}, today=TODAY
    )
    assert not refused.saved
    assert "reason_required" in {i.code for i in refused.issues}
    done = await services.update_record(
        store, OPERATOR, "complaint", complaint.record_id, {"status": "selesai"}, today=TODAY
    )
    assert done.saved, done.issues


async def test_a_reference_to_a_record_that_does_not_exist_is_an_error(store):
    outcome = await services.create_record(
        store,
        OPERATOR,
        "referral",
        {
            "member_id": "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
            "need": "x",
            "destination": "sekolah",
        },
        today=TODAY,
    )
    assert not outcome.saved
    assert ("member_id", "invalid_ref") in {(i.field, i.code) for i in outcome.issues}
    with pytest.raises(NotFound):
        await services.update_record(
            store, OPERATOR, "complaint", "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", {}, today=TODAY
        )


async def test_the_published_decile_cannot_be_set_from_the_box(store):
    household, members = form(seed=18)
    outcome = await services.save_household(
        store,
        OPERATOR,
        household_id=None,
        household={**household, "decile": 1},
        members=members,
        today=TODAY,
    )
    assert not outcome.saved
    assert ("decile", "readonly") in {(i.field, i.code) for i in outcome.issues}


async def test_one_member_twice_in_a_form_is_refused(store):
    outcome = await register(store, seed=19)
    member = (await store.related("member", outcome.record_id))[1]
    again = await services.save_household(
        store,
        OPERATOR,
        household_id=outcome.record_id,
        household={},
        members=[{"id": member.id, "nik": "12345"}, {"id": member.id}],
        today=TODAY,
    )
    assert not again.saved
    assert [(i.field, i.code) for i in again.issues] == [("members[1].id", "invalid_value")]
    assert (await store.get(member.id)).get("nik") == member.get("nik")


async def test_an_issue_of_a_member_not_in_the_request_is_named_by_id(store):
    outcome = await register(store, seed=20)
    head = next(
        m
        for m in await store.related("member", outcome.record_id)
        if m.get("relation_to_head") == "kepala_keluarga"
    )
    _, extra = form(seed=21, n=1)  # a second head, added
    saved = await services.save_household(
        store, OPERATOR, household_id=outcome.record_id, household={}, members=extra, today=TODAY
    )
    fields = {i.field for i in saved.issues if i.code == "head_multiple"}
    assert fields == {"members[0].relation_to_head", f"members[id={head.id}].relation_to_head"}
