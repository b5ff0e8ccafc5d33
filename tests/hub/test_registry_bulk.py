"""The first import of a district inserts its records in bulk instead of merging them one by
one: the hub must hold exactly what the one-by-one way gives, every derived column (shown
values, digest and the village's root, ``nik``, ``status``, ``lacking``, the downlink's
``log_seq``) included, and a newer extract that mixes new and known records after it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub import db, registry
from hub.record_rows import COLUMNS, NewRecord, new_record_rows, record_row
from hub.store import HubStore
from protocol.changes import FieldVersion
from protocol.ids import UuidV7Generator
from tests.factories import DEFAULT_VILLAGE
from tests.hub.conftest import drop_postgres, fresh_postgres
from tests.hub.test_registry import (
    OTHER_VILLAGE,
    household_row,
    member_rows,
    run_import,
    write_csv,
)

#: Every table an import writes, with the columns to order its rows by.
TABLES = {
    "records": "id",
    "villages": "code",
    "registry_rows": "entity, registry_id",
    "registry_imports": "id",
    "clocks": "node",
    "conflicts": "id",
    "audit": "id",
}
NOW_MS = 1_796_000_000_000


@pytest.fixture
def other_url(hub_url: str, tmp_path: Path) -> Iterator[str]:
    """A second fresh hub database on the dialect of ``hub_url``."""
    if hub_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite'}"
        db.upgrade(url)
        yield url
        return
    name, url = fresh_postgres()
    try:
        db.upgrade(url)
        yield url
    finally:
        drop_postgres(name)


@pytest.fixture
async def two_hubs(hub_url: str, other_url: str) -> AsyncIterator[tuple[HubStore, HubStore]]:
    """Two fresh hubs with the same standing clock."""
    engines = [db.create_engine(hub_url), db.create_engine(other_url)]
    yield tuple(  # type: ignore[misc]
        HubStore(e, node="hub-1", max_clock_drift_ms=300_000, clock=lambda: NOW_MS) for e in engines
    )
    for engine in engines:
        await engine.dispose()


async def tables(store: HubStore) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    async with store.engine.connect() as conn:
        for table, order in TABLES.items():
            rows = await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}"))
            found[table] = [tuple(row) for row in rows]
    # When the import ran is the only difference allowed.
    found["registry_imports"] = [row[:1] + row[2:3] + row[4:] for row in found["registry_imports"]]
    return found


def same_ids() -> UuidV7Generator:
    """Record ids that repeat from one generator to the next (a counted, not random, tail)."""
    ticks = itertools.count()
    return UuidV7Generator(lambda n: next(ticks).to_bytes(n, "big"))


async def import_both(
    stores: tuple[HubStore, HubStore],
    ids: tuple[UuidV7Generator, UuidV7Generator],
    path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Import ``path`` in bulk into the first hub and one by one into the second, with the
    same record ids."""
    for store, generator, bulk in zip(stores, ids, (True, False), strict=True):
        monkeypatch.setattr(registry, "uuid7", generator)
        monkeypatch.setattr(registry, "BULK_NEW", bulk)
        await run_import(store, path)


def extract(households: range) -> list[dict[str, str]]:
    rows = []
    for number in households:
        village = OTHER_VILLAGE if number % 3 == 0 else DEFAULT_VILLAGE
        rows += [household_row(number, village), *member_rows(number, 3, kode_desa=village)]
    return rows


async def test_a_bulk_import_writes_what_merging_each_record_writes(
    two_hubs, tmp_path, monkeypatch
):
    monkeypatch.setattr(registry, "CHUNK", 9)  # many chunks, each of both villages
    ids = same_ids(), same_ids()
    first = write_csv(tmp_path / "first.csv", extract(range(1, 13)))
    await import_both(two_hubs, ids, first, monkeypatch)
    bulk, merged = [await tables(store) for store in two_hubs]
    assert len(bulk["records"]) == 12 * 4
    assert bulk == merged

    # A newer extract: a changed household, one gone, new ones in the same chunks, and a
    # new household on the row of a member listed in the other village (refused whole).
    rows = [row for row in extract(range(1, 17)) if row["id_keluarga"] != "DTSEN-000002"]
    rows[0]["alamat"] = "Jl. Baru 7"
    moved = {**household_row(40, OTHER_VILLAGE), **member_rows(1, 1, kode_desa=OTHER_VILLAGE)[0]}
    rows.insert(5, {**moved, "id_keluarga": "DTSEN-000040"})
    newer = write_csv(tmp_path / "newer.csv", rows)
    await import_both(two_hubs, ids, newer, monkeypatch)
    bulk, merged = [await tables(store) for store in two_hubs]
    assert len(bulk["records"]) == 16 * 4
    assert bulk == merged


def test_a_new_records_row_is_the_row_of_its_merge_state():
    stamp, node = NOW_MS << 16, "registry"
    member = {
        "household_id": "0190a0b0-0000-7000-8000-000000000001", "nik": "3201014506900001",
        "name": "Siti", "status": "aktif", "birth_date": "1990-06-05", "sex": "perempuan",
        "programmes": ["pkh"], "registry_id": "ART-1",
    }  # fmt: skip
    records = [
        NewRecord("member", "0190a0b0-0000-7000-8000-000000000002", member),
        NewRecord("member", "0190a0b0-0000-7000-8000-000000000003", {**member, "deleted": True}),
        NewRecord("household", "0190a0b0-0000-7000-8000-000000000001", {"rt": "001"}),
    ]
    rows, last, delta = new_record_rows(
        records, DEFAULT_VILLAGE, 40, stamp=stamp, node=node, now=NOW_MS
    )
    assert last == 43
    expected_delta = 0
    for log_seq, (record, row) in enumerate(zip(records, rows, strict=True), start=41):
        state = {n: (FieldVersion(v, stamp, node),) for n, v in record.values.items()}
        full, digest = record_row(
            record.entity, record.record_id, DEFAULT_VILLAGE, state,
            log_seq=log_seq, now=NOW_MS, pending=False,
        )  # fmt: skip
        assert dict(zip(COLUMNS, row, strict=True)) == {
            "id": record.record_id, "created_ms": NOW_MS, **full
        }  # fmt: skip
        expected_delta ^= digest
    assert delta == expected_delta
