"""The district's key and the signed dataset folder: the key is made once and kept private,
the export writes every record once in JSON Lines and CSV with a manifest whose sizes and
checksums match the bytes on disk, and a failed export leaves nothing behind."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json

import pytest

from hub.export import ExportError, ExportRecord, export_dataset, hub_records
from hub.keys import (
    KeyFileError,
    generate_key_pair,
    load_private_key,
    load_public_key,
    public_key_file,
    sign,
    verify,
)
from hub.store import Outcome
from protocol.dataset import MANIFEST_FILE, SIGNATURE_FILE, canonical_bytes, parse_manifest
from protocol.entities import ENTITIES
from tests.factories import DEFAULT_VILLAGE, new_id
from tests.hub.boxes import Box, enrol
from tests.national.receiver import district_key, sample_records

WALL = 1_790_000_000_000


def test_a_key_is_made_once_kept_private_and_signs_what_only_it_signed(tmp_path):
    path = tmp_path / "keys" / "signing.key"
    pem = generate_key_pair(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_key_file(path).read_bytes() == pem
    with pytest.raises(KeyFileError, match="never overwritten"):
        generate_key_pair(path)
    key = load_private_key(path)
    signature = sign(key, b"manifest")
    assert verify(load_public_key(pem), b"manifest", signature)
    assert not verify(load_public_key(pem), b"manifest!", signature)
    other = load_public_key(generate_key_pair(tmp_path / "other.key"))
    assert not verify(other, b"manifest", signature)
    assert not verify(load_public_key(pem), b"manifest", "garbage")


async def test_an_export_writes_every_record_once_with_matching_checksums_and_a_signature(
    tmp_path,
):
    key = district_key(tmp_path)
    target = tmp_path / "out" / "3201-2026-11"
    odd = ExportRecord(
        "household",
        new_id(),
        DEFAULT_VILLAGE,
        {
            "village_code": DEFAULT_VILLAGE,
            "address": '=HYPERLINK("x")',
            "programmes": ["pkh", "pbi_jk"],
        },
    )
    manifest = await export_dataset(
        [*sample_records(30), odd], target, district="3201", period="2026-11", key=key,
        now_ms=WALL,
    )  # fmt: skip

    assert manifest.counts == {
        "household": 31,
        "member": 120,
        "proposal": 0,
        "complaint": 0,
        "referral": 0,
        "visit": 0,
        "layanan": 0,
    }
    written = (target / MANIFEST_FILE).read_bytes()
    assert parse_manifest(written, district="3201", period="2026-11") == manifest
    assert written == canonical_bytes(manifest)
    signature = (target / SIGNATURE_FILE).read_text(encoding="ascii")
    assert verify(key.public_key(), written, signature)
    for f in manifest.files:
        data = (target / f.name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f.bytes, f.sha256)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["3201-2026-11"]

    lines = (target / "household.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 31
    assert json.loads(lines[-1]) == {
        "id": odd.id,
        "village": odd.village,
        "values": dict(odd.values),
    }
    rows = list(csv.reader(io.StringIO((target / "household.csv").read_text(encoding="utf-8"))))
    assert rows[0] == ["id", "village", *ENTITIES["household"].fields]
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert last["programmes"] == "pkh;pbi_jk"
    assert last["address"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert len(rows) == 32

    with pytest.raises(ExportError, match="never overwritten"):
        await export_dataset([], target, district="3201", period="2026-11", key=key, now_ms=WALL)


async def test_a_failed_export_leaves_nothing_behind(tmp_path):
    key = district_key(tmp_path)
    out = tmp_path / "out"
    records = [*sample_records(2), ExportRecord("cat", new_id(), DEFAULT_VILLAGE, {})]
    with pytest.raises(ExportError, match="unknown entity"):
        await export_dataset(
            records, out / "ds", district="3201", period="2026-11", key=key, now_ms=WALL
        )
    assert list(out.iterdir()) == []
    with pytest.raises(ExportError, match="not valid"):
        await export_dataset(
            [], out / "ds", district="3201", period="2026-13", key=key, now_ms=WALL
        )


async def test_the_hubs_records_export_with_their_shown_values(hub_store, tmp_path):
    box = Box("edge-3201022001-a")
    await enrol(hub_store, box)
    ids = [new_id() for _ in range(3)]
    first = [
        box.edit(i, WALL, village_code=DEFAULT_VILLAGE, address=f"Jalan {n}")
        for n, i in enumerate(ids)
    ]
    await hub_store.apply(box.batch(*first), box.node)
    await hub_store.apply(box.batch(box.edit(ids[0], WALL + 1, address="Jalan baru")), box.node)

    async def records():
        async for record in hub_records(hub_store.engine, batch=2):
            yield record

    key = district_key(tmp_path)
    target = tmp_path / "ds"
    manifest = await export_dataset(
        records(), target, district="3201", period="2026-11", key=key, now_ms=WALL
    )
    assert manifest.counts["household"] == 3
    lines = [json.loads(line) for line in (target / "household.jsonl").read_text().splitlines()]
    shown = {line["id"]: line["values"]["address"] for line in lines}
    assert shown == {ids[0]: "Jalan baru", ids[1]: "Jalan 1", ids[2]: "Jalan 2"}


async def test_boxes_keep_syncing_while_an_export_reads_its_snapshot(hub_store):
    """An export of 1.6 million households reads for a minute or two; on SQLite a reading
    transaction that held the write lock would make every box's batch wait and fail."""
    box = Box("edge-3201022001-a")
    await enrol(hub_store, box)
    before = [new_id() for _ in range(4)]
    edits = [box.edit(i, WALL, village_code=DEFAULT_VILLAGE, address="Jalan") for i in before]
    await hub_store.apply(box.batch(*edits), box.node)

    reading = hub_records(hub_store.engine, batch=2)
    seen = [(await anext(reading)).id]
    late = new_id()
    late_edit = box.edit(late, WALL + 1, village_code=DEFAULT_VILLAGE, address="Jalan")
    applied = await asyncio.wait_for(hub_store.apply(box.batch(late_edit), box.node), 10)
    assert applied.outcome is Outcome.APPLIED
    seen += [record.id async for record in reading]
    assert sorted(seen) == sorted(before)
