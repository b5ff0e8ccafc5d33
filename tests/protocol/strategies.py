"""Hypothesis strategies for wire-valid values, versions, changes and batches of any entity."""

from __future__ import annotations

import uuid

from hypothesis import strategies as st

from protocol.changes import Batch, Change, Direction, FieldVersion
from protocol.entities import ENTITIES
from protocol.ids import NODE_ID_RE
from protocol.regions import LEVEL_DIGITS
from protocol.schema import FieldKind, FieldSpec

node_ids = st.from_regex(NODE_ID_RE, fullmatch=True)
villages = st.from_regex(r"[0-9]{10}", fullmatch=True)
record_ids = st.builds(
    lambda n: str(uuid.UUID(int=(n & ~(0xF << 76) & ~(0b11 << 62)) | (7 << 76) | (0b10 << 62))),
    st.integers(0, 2**128 - 1),
)
times = st.integers(1, 2**63)


def value_strategy(spec: FieldSpec) -> st.SearchStrategy[object]:
    """Values the codec must accept for ``spec`` (its wire shape, not business rules)."""
    kind = spec.kind
    if kind is FieldKind.BOOL:
        shaped: st.SearchStrategy[object] = st.booleans()
    elif kind is FieldKind.INT:
        low = int(spec.minimum) if spec.minimum is not None else -(2**31)
        high = int(spec.maximum) if spec.maximum is not None else 2**31
        shaped = st.integers(low, high)
    elif kind is FieldKind.DECIMAL:
        shaped = st.floats(
            spec.minimum if spec.minimum is not None else -1e9,
            spec.maximum if spec.maximum is not None else 1e9,
            allow_nan=False,
        )
    elif kind is FieldKind.ENUM:
        shaped = st.sampled_from(spec.choices)
    elif kind is FieldKind.ENUM_SET:
        shaped = st.lists(st.sampled_from(spec.choices), unique=True)
    elif kind is FieldKind.DATE:
        shaped = st.dates().map(lambda d: d.isoformat()).filter(lambda s: len(s) == 10)
    elif kind is FieldKind.PERIOD:
        shaped = st.tuples(st.integers(1000, 9999), st.integers(1, 12)).map(
            lambda ym: f"{ym[0]}-{ym[1]:02d}"
        )
    elif kind is FieldKind.REF:
        shaped = record_ids
    elif kind in (FieldKind.NIK, FieldKind.KK):
        shaped = st.from_regex(r"[0-9]{16}", fullmatch=True)
    elif kind is FieldKind.REGION:
        codes = ["32", "3201", "320101", "3201012001"]
        if spec.region_level is not None:
            codes = [c for c in codes if len(c) == LEVEL_DIGITS[spec.region_level]]
        shaped = st.sampled_from(codes)
    else:
        shaped = st.text(max_size=min(spec.max_length or 200, 200))
    return st.none() | shaped


@st.composite
def changes(draw: st.DrawFn, pool: list[str], *, upward: bool = True) -> Change:
    """A change of a random entity with random fields, by nodes from ``pool``. Uplink
    changes hold only the origin's (``pool[0]``) own writes and no hub-only field."""
    entity = ENTITIES[draw(st.sampled_from(sorted(ENTITIES)))]
    origin = pool[0]
    allowed = [s for s in entity.fields.values() if not (upward and s.readonly)]
    chosen = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=8, unique=True))
    fields = {}
    for spec in chosen:
        time = draw(times)
        writer = origin if upward else draw(st.sampled_from(pool))
        seen_nodes = draw(st.lists(st.sampled_from(pool), unique=True, max_size=3))
        seen = tuple(sorted((n, draw(st.integers(0, time - 1))) for n in seen_nodes))
        fields[spec.name] = FieldVersion(draw(value_strategy(spec)), time, writer, seen)
    return Change(entity.name, draw(record_ids), draw(villages), origin, fields)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    pool = draw(st.lists(node_ids, min_size=1, max_size=5, unique=True))
    direction = draw(st.sampled_from(Direction))
    upward = direction is Direction.UP
    items = draw(st.lists(changes(pool, upward=upward), max_size=6))
    return Batch(pool[0], draw(st.integers(1, 2**53 - 1)), tuple(items), direction)
