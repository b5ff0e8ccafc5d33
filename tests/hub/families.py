"""Households as a box sends them to the hub in the review and cycle tests."""

from __future__ import annotations

from hub.store import HubStore, Outcome
from tests.factories import make_household, make_member
from tests.hub.boxes import Box

__all__ = ["change", "send_family"]


async def change(store: HubStore, box: Box, record_id: str, entity: str, **values: object) -> None:
    """``box`` edits one record and its batch is applied."""
    edit = box.edit(record_id, store.wall(), entity=entity, **values)
    assert (await store.apply(box.batch(edit), box.node)).outcome is Outcome.APPLIED


async def send_family(
    store: HubStore, box: Box, *, head: str = "Asep Saepudin", **members: dict
) -> tuple[str, list[str]]:
    """``box`` records a new household headed by ``head`` (plus ``members``: name →
    overrides) in one batch; returns (household id, member ids, the head first)."""
    household = make_household(village_code=box.village)
    household_id = household.pop("id")
    people = [make_member(household_id, name=head)] + [
        make_member(household_id, name=name, relation_to_head="anak", **overrides)
        for name, overrides in members.items()
    ]
    ids = [person.pop("id") for person in people]
    now = store.wall()
    edits = [box.edit(household_id, now, entity="household", **household)]
    edits += [
        box.edit(member_id, now, entity="member", **person)
        for member_id, person in zip(ids, people, strict=True)
    ]
    assert (await store.apply(box.batch(*edits), box.node)).outcome is Outcome.APPLIED
    return household_id, ids
