"""The stores' JSON writers: a record inserted in bulk is stored as merging it would store
it, and the text reads back as the values ``json`` would have written (msgspec writes it;
only a float in exponent form is spelt differently, ``1e16`` for ``1e+16``)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from protocol.changes import FieldVersion
from protocol.jsonform import dump_first_versions, dump_json, dump_state
from tests.protocol.strategies import node_ids, times

values = st.dictionaries(
    st.text(max_size=20),
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)  # 1e+16, 1e-05, -0.0
    | st.text()  # any character: controls, quotes, U+2028, emoji
    | st.lists(st.text(max_size=10), max_size=3),
    max_size=8,
)


@given(values, times, node_ids)
def test_first_versions_are_written_as_the_state_they_are(fields, time, node):
    state = {name: (FieldVersion(value, time, node),) for name, value in fields.items()}
    assert dump_first_versions(fields, time, node) == dump_state(state)


@given(values)
def test_values_read_back_as_json_would_have_written_them(fields):
    text = dump_json(fields)
    assert json.loads(text) == json.loads(json.dumps(fields))
    if not any(isinstance(v, float) for v in fields.values()):
        assert text == json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
