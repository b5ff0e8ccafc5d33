"""The stores' JSON writers: a record inserted in bulk is stored as merging it would store
it, and the text reads back as the values ``json`` would have written (msgspec writes it;
only a float in exponent form is spelt differently, ``1e16`` for ``1e+16``). The box's
compact forms give back exactly what they were given, and are much smaller."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from protocol.changes import Change, FieldVersion
from protocol.jsonform import (
    dump_change,
    dump_compact_state,
    dump_first_versions,
    dump_json,
    dump_state,
    load_change,
    load_compact_state,
)
from protocol.merge import merge, values
from tests.factories import make_household_with_members
from tests.protocol.strategies import changes, node_ids, times

field_values = st.dictionaries(
    st.text(max_size=20),
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)  # 1e+16, 1e-05, -0.0
    | st.text()  # any character: controls, quotes, U+2028, emoji
    | st.lists(st.text(max_size=10), max_size=3),
    max_size=8,
)


@given(field_values, times, node_ids)
def test_first_versions_are_written_as_the_state_they_are(fields, time, node):
    state = {name: (FieldVersion(value, time, node),) for name, value in fields.items()}
    assert dump_first_versions(fields, time, node) == dump_state(state)


@given(field_values)
def test_values_read_back_as_json_would_have_written_them(fields):
    text = dump_json(fields)
    assert json.loads(text) == json.loads(json.dumps(fields))
    if not any(isinstance(v, float) for v in fields.values()):
        assert text == json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


POOL = ["edge-a1", "edge-a2", "hub"]


@given(st.lists(changes(POOL, upward=False), min_size=1, max_size=6))
def test_a_compact_state_reads_back_as_the_state_it_was(received):
    state: dict = {}
    for change in received:
        state = merge(state, change).state
    shown = values(state)
    assert load_compact_state(dump_compact_state(state, shown), shown) == state


@given(st.lists(changes(POOL, upward=False), min_size=1, max_size=4), field_values)
def test_a_compact_state_reads_back_whatever_the_shown_values_hold(received, shown):
    """The row's ``data`` is written from the state; even when it were not, nothing of the
    state is lost: a value that is not the shown one is kept whole."""
    state: dict = {}
    for change in received:
        state = merge(state, change).state
    assert load_compact_state(dump_compact_state(state, shown), shown) == state


@given(changes(POOL, upward=False))
def test_a_change_reads_back_as_it_was(change):
    assert load_change(dump_change(change)) == change


def test_a_saved_household_is_stored_in_a_fraction_of_the_bytes():
    household, members = make_household_with_members(4, seed=3)
    for entity, record in [("household", household)] + [("member", m) for m in members]:
        record_id = record.pop("id")
        versions = {
            name: FieldVersion(value, 117732667526938625, "edge-3201022001-a")
            for name, value in record.items()
        }
        change = Change(entity, record_id, "3201022001", "edge-3201022001-a", versions)
        state = merge(None, change).state
        shown = values(state)
        compact = dump_compact_state(state, shown)
        assert len(compact) < 60
        assert len(compact) * 10 < len(dump_state(state))
        assert len(dump_change(change)) <= len(dump_json(shown)) + 150
