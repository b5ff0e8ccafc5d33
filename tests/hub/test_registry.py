"""The district's registry extract comes into the hub: good rows become records (with the
extract's ids), bad rows are named in the report and nothing of them is written, a
re-import changes nothing, a newer extract changes only what changed, and a field a box
edited in between becomes a conflict instead of being overwritten."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub import db, registry_checks
from hub.registry import REGISTRY_NODE, Report, import_files
from hub.registry_checks import CheckedRows
from hub.registry_files import FileError, open_rows
from protocol.clock import HybridClock
from protocol.registry import DEFAULT_LAYOUT
from tests.factories import DEFAULT_VILLAGE, make_household_with_members, new_id
from tests.hub.boxes import Box, enrol

TODAY = date(2026, 12, 4)
OTHER_VILLAGE = "3201022002"
HOUSEHOLD_COLUMNS = ["id_keluarga", "kode_desa", "alamat", "rt", "rw", "no_kk", "program", "desil"]
MEMBER_COLUMNS = ["id_art", "nik", "nama", "hubungan", "jenis_kelamin", "tanggal_lahir", "status"]


def household_row(number: int, village: str = DEFAULT_VILLAGE, **changes: str) -> dict[str, str]:
    household, _ = make_household_with_members(2, seed=number)
    row = {
        "id_keluarga": f"DTSEN-{number:06d}",
        "kode_desa": village,
        "alamat": household["address"],
        "rt": household["rt"],
        "rw": household["rw"],
        "no_kk": household["kk_number"],
        "program": "PKH; pbi_jk",  # a label and a code, as spreadsheets mix them
        "desil": "3",
    }
    return {**row, **changes}


def member_rows(number: int, count: int = 2, **changes: str) -> list[dict[str, str]]:
    _, members = make_household_with_members(count, seed=number)
    rows = []
    for index, member in enumerate(members):
        year, month, day = member["birth_date"].split("-")
        rows.append(
            {
                "id_keluarga": f"DTSEN-{number:06d}",
                "id_art": f"ART-{number:06d}-{index}",
                "nik": member["nik"],
                "nama": member["name"],
                "hubungan": member["relation_to_head"],
                "jenis_kelamin": "Laki-laki" if member["sex"] == "laki_laki" else "Perempuan",
                "tanggal_lahir": f"{day}-{month}-{year}",  # DD-MM-YYYY, as the extract has it
                "status": "",
                **changes,
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], *, delimiter: str = ",", encoding="utf-8"):
    columns = HOUSEHOLD_COLUMNS + MEMBER_COLUMNS
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.DictWriter(out, columns, delimiter=delimiter, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def district_rows(households: int = 4) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for number in range(1, households + 1):
        rows.append(household_row(number))
        rows += member_rows(number)
    return rows


async def run_import(hub_store, *paths: Path, workers: int = 0):
    out = io.StringIO()
    summary = await import_files(
        hub_store, list(paths), DEFAULT_LAYOUT, Report(out), today=TODAY, workers=workers
    )
    report = list(csv.DictReader(io.StringIO(out.getvalue())))
    return summary, report


async def village_state(hub_store, village: str = DEFAULT_VILLAGE) -> tuple[int, dict[str, str]]:
    async with hub_store.engine.connect() as conn:
        head = (
            await conn.execute(
                sa.select(db.villages.c.log_seq).where(db.villages.c.code == village)
            )
        ).scalar_one_or_none()
        rows = (await conn.execute(sa.select(db.records.c.id, db.records.c.state))).all()
    return head or 0, {row.id: row.state for row in rows}


async def record_of(hub_store, entity: str, registry_id: str) -> str:
    rr = db.registry_rows
    async with hub_store.engine.connect() as conn:
        query = sa.select(rr.c.record_id).where(
            rr.c.entity == entity, rr.c.registry_id == registry_id
        )
        return (await conn.execute(query)).scalar_one()


# Large extracts are checked in worker processes (many small chunks here): the same import.
@pytest.mark.parametrize("workers", [0, 2])
async def test_good_rows_become_records_and_bad_rows_are_reported_and_not_written(
    hub_store, tmp_path, monkeypatch, workers
):
    monkeypatch.setattr(registry_checks, "ROWS_PER_TASK", 2)
    rows = district_rows(3)
    bad = [
        household_row(10, kode_desa="9999999999"),  # no such village
        *member_rows(10, 1),  # its member: the household was refused
        household_row(11, rt="12345"),  # too long
        *member_rows(3, 1, id_art="ART-X", nik="12345"),  # a short NIK
        *member_rows(2, 1, id_art="ART-Y", nama=""),  # no name
        *member_rows(1, 1, id_art="ART-Z", hubungan="tetangga"),  # no such relation
        *member_rows(99, 1, id_keluarga="DTSEN-NOPE"),  # no such household
        {**member_rows(1, 1, id_art="ART-W")[0], "kode_desa": OTHER_VILLAGE},  # other village
        {**household_row(1), "alamat": "Jl. Lain 1"},  # the same id again, other values
        {"alamat": "Jl. Tanpa ID"},  # no id at all
    ]
    path = write_csv(tmp_path / "dtsen.csv", rows + bad)
    summary, report = await run_import(hub_store, path, workers=workers)

    assert (
        summary.rows
        == len(rows) + len(bad)
        == summary.written + summary.unchanged + summary.refused
    )
    assert summary.refused == len(bad) and summary.written == len(rows)
    assert summary.created == 3 + 6
    refused = {(r["baris"], r["kolom"], r["kode"]) for r in report if r["tingkat"] == "kesalahan"}
    first_bad = len(rows) + 2  # the header is line 1
    expected = [
        ("kode_desa", "region_unknown"),
        ("id_keluarga", "registry_household_missing"),
        ("rt", "too_long"),
        ("nik", "nik_length"),
        ("nama", "required"),
        ("hubungan", "unknown_choice"),
        ("id_keluarga", "registry_household_missing"),
        ("kode_desa", "registry_other_village"),
        ("id_keluarga", "registry_id_twice"),
        ("id_keluarga", "registry_id_missing"),
    ]
    for offset, (column, code) in enumerate(expected):
        assert (str(first_bad + offset), column, code) in refused, (offset, column, code, refused)
    assert all(r["berkas"] == "dtsen.csv" and r["pesan"] for r in report)
    # Nothing of a bad row was written.
    _, states = await village_state(hub_store)
    assert len(states) == 9
    text = json.dumps(list(states.values()))
    for marker in ("Jl. Lain 1", "tetangga", "12345", "ART-X"):
        assert marker not in text
    # Values arrive typed, with the extract's ids, as versions of the registry writer.
    household = await hub_store.record_state(
        await record_of(hub_store, "household", "DTSEN-000001")
    )
    assert household["registry_id"][0].value == "DTSEN-000001"
    assert household["programmes"][0].value == ["pkh", "pbi_jk"]
    assert household["decile"][0].value == 3
    assert {v.node for f in household.values() for v in f} == {REGISTRY_NODE}
    member = await hub_store.record_state(await record_of(hub_store, "member", "ART-000001-0"))
    assert member["household_id"][0].value == await record_of(
        hub_store, "household", "DTSEN-000001"
    )
    assert member["status"][0].value == "aktif"
    assert len(member["birth_date"][0].value) == 10


async def test_re_importing_the_same_extract_writes_nothing(hub_store, tmp_path):
    path = write_csv(tmp_path / "dtsen.csv", district_rows(3))
    await run_import(hub_store, path)
    before = await village_state(hub_store)
    summary, report = await run_import(hub_store, path)
    assert (summary.written, summary.unchanged, summary.refused) == (0, summary.rows, 0)
    assert await village_state(hub_store) == before  # no version, no new log_seq: no downlink
    assert report == []


async def test_a_newer_extract_changes_only_what_changed_and_flags_what_is_gone(
    hub_store, tmp_path
):
    await run_import(hub_store, write_csv(tmp_path / "old.csv", district_rows(3)))
    head, states = await village_state(hub_store)
    rows = district_rows(3)
    rows[0]["alamat"] = "Jl. Baru 7"
    newer = [row for row in rows if row["id_keluarga"] != "DTSEN-000003"]
    summary, _ = await run_import(hub_store, write_csv(tmp_path / "new.csv", newer))
    assert (summary.written, summary.updated, summary.created) == (1, 1, 0)
    assert summary.missing == 3  # household 3 and its two members: flagged, not deleted
    new_head, new_states = await village_state(hub_store)
    assert new_head == head + 1
    changed = [rid for rid in states if states[rid] != new_states[rid]]
    assert changed == [await record_of(hub_store, "household", "DTSEN-000001")]
    address = (await hub_store.record_state(changed[0]))["address"]
    assert [v.value for v in address] == ["Jl. Baru 7"]  # the import's own update: no conflict
    assert len(new_states) == len(states)


async def test_a_newer_extract_goes_down_as_the_changed_fields_alone(hub_store, tmp_path):
    await run_import(hub_store, write_csv(tmp_path / "old.csv", district_rows(3)))
    box = Box("edge-a")
    await enrol(hub_store, box)
    whole = await box.drain(hub_store)
    assert len(whole) == 9 and all(len(change.fields) > 3 for change in whole)
    rows = district_rows(3)
    rows[0]["alamat"] = "Jl. Baru 7"
    rows[4]["nama"] = "Siti Rahayu Baru"  # the first member of household 2
    await run_import(hub_store, write_csv(tmp_path / "new.csv", rows))
    sent = await box.drain(hub_store)
    assert sorted((change.entity, sorted(change.fields)) for change in sent) == [
        ("household", ["address"]),
        ("member", ["name"]),
    ]
    assert [change.fields["address"].value for change in sent if change.entity == "household"] == [
        "Jl. Baru 7"
    ]


async def test_a_field_a_box_changed_since_becomes_a_conflict_not_an_overwrite(hub_store, tmp_path):
    await run_import(hub_store, write_csv(tmp_path / "old.csv", district_rows(2)))
    record = await record_of(hub_store, "household", "DTSEN-000001")
    box = Box("edge-a")
    await enrol(hub_store, box)
    box.states[record] = await hub_store.record_state(record)  # the box got it down
    newest = max(v.time for f in box.states[record].values() for v in f)
    box.clock = HybridClock(box.node, state=newest)
    edit = box.edit(record, hub_store.wall(), rt="099", rw="009")
    await hub_store.apply(box.batch(edit), box.node)
    rows = district_rows(2)
    rows[0]["rt"] = "077"  # the district's newer extract changes rt too, differently
    rows[0]["rw"] = "009"  # ... and rw to what the box has: no conflict
    rows[0]["alamat"] = "Jl. Baru 8"  # ... and a field the box never touched
    summary, _ = await run_import(hub_store, write_csv(tmp_path / "new.csv", rows))
    assert summary.conflicts == 1
    [conflict] = await hub_store.conflicts()
    assert (conflict["record_id"], conflict["field"]) == (record, "rt")
    assert {v["value"] for v in conflict["versions"]} == {"099", "077"}
    state = await hub_store.record_state(record)
    assert [v.value for v in state["address"]] == ["Jl. Baru 8"]
    assert [v.value for v in state["rw"]] == ["009"]


@pytest.mark.parametrize(
    ("suffix", "delimiter", "encoding"),
    [(".csv", ";", "cp1252"), (".csv", ",", "utf-8-sig"), (".jsonl", "", ""), (".xlsx", "", "")],
)
def test_files_of_every_kind_read_the_same_rows(tmp_path, suffix, delimiter, encoding):
    rows = [household_row(1, alamat="Jl. Kebon Jeruk, Gg. Sukamaju No. 3 (belakang masjid)")]
    rows[0]["nama"] = "Siti Nur’aini"  # a typographic apostrophe, as Excel writes it
    path = tmp_path / f"dtsen{suffix}"
    if suffix == ".csv":
        write_csv(path, rows, delimiter=delimiter, encoding=encoding)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    else:
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet()
        columns = HOUSEHOLD_COLUMNS + MEMBER_COLUMNS
        sheet.append([c.upper() for c in columns])  # header names in any case
        for row in rows:
            sheet.append([row.get(c) for c in columns])
        workbook.save(path)
    [(number, read)] = list(open_rows(path))
    assert number == (1 if suffix == ".jsonl" else 2)
    assert read["alamat"] == rows[0]["alamat"] and read["nama"] == "Siti Nur’aini"
    assert str(read["kode_desa"]) == DEFAULT_VILLAGE


async def test_worker_processes_check_the_rows_read_before_a_broken_line_in_file_order(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(registry_checks, "ROWS_PER_TASK", 3)
    rows = [*district_rows(4), {"alamat": "Jl. Tanpa ID"}, *member_rows(9, 1, nik="12345")]
    lines = [json.dumps(row) for row in rows]
    path = tmp_path / "dtsen.jsonl"
    path.write_text("\n".join([*lines, "{not json", *lines]) + "\n", encoding="utf-8")

    async def read(workers: int) -> list[registry_checks.CheckedRow]:
        checked = CheckedRows([path], DEFAULT_LAYOUT, today=TODAY, workers=workers)
        seen: list[registry_checks.CheckedRow] = []
        with pytest.raises(FileError, match="line 15: not JSON"):
            async for chunk in checked.chunks():
                seen += chunk
        return seen

    inline = await read(0)
    assert [row.where for row in inline] == [("dtsen.jsonl", n) for n in range(1, 15)]
    codes = [[i.code for i in row.issues + [i for _, f in row.parts for i in f]] for row in inline]
    assert codes[-2:] == [["registry_id_missing"], ["nik_length"]]
    assert await read(2) == inline


async def test_a_row_with_an_error_in_any_part_is_written_in_no_part(hub_store, tmp_path):
    # A valid new household on the same row as a member with a short NIK.
    row = {**household_row(12), **member_rows(12, 1, nik="12345")[0]}
    summary, report = await run_import(hub_store, write_csv(tmp_path / "dtsen.csv", [row]))
    assert (summary.refused, summary.written, summary.created) == (1, 0, 0)
    assert [r["kode"] for r in report] == ["nik_length"]
    assert (await village_state(hub_store))[1] == {}


async def test_a_row_whose_member_is_refused_when_linked_writes_no_household_either(
    hub_store, tmp_path
):
    await run_import(hub_store, write_csv(tmp_path / "old.csv", district_rows(2)))
    # A family moved to another village under a new household id, its member keeping hers
    # (a move is proposed by the village); a new household whose member's id is already
    # taken in this extract with other values; a household listed on both its members'
    # rows, one of them refused: the other row still brings it.
    moved = {**household_row(20, OTHER_VILLAGE), **member_rows(1, 1, kode_desa=OTHER_VILLAGE)[0]}
    moved["id_keluarga"] = "DTSEN-000020"
    first, second = member_rows(21, 2)
    twice = {**household_row(22), **first, "id_keluarga": "DTSEN-000022"}
    shared = [{**household_row(23), **row} for row in member_rows(23, 2)]
    shared[0]["id_art"] = first["id_art"]
    rows = [{**household_row(21), **first}, {**household_row(21), **second}, twice, moved]
    summary, report = await run_import(hub_store, write_csv(tmp_path / "new.csv", rows + shared))

    assert sorted((r["baris"], r["kode"]) for r in report) == [
        ("4", "registry_id_twice"),
        ("5", "registry_moved"),
        ("6", "registry_id_twice"),
    ]
    assert (summary.refused, summary.written, summary.created) == (3, 3, 5)
    rr = db.registry_rows
    async with hub_store.engine.connect() as conn:
        query = sa.select(rr.c.registry_id).where(rr.c.entity == "household")
        households = set((await conn.execute(query)).scalars())
    assert households == {"DTSEN-000001", "DTSEN-000002", "DTSEN-000021", "DTSEN-000023"}
    assert len((await village_state(hub_store))[1]) == 6 + 5  # no record of the refused rows


async def test_a_warning_is_written_with_the_record_reported_and_audited(hub_store, tmp_path):
    [member] = member_rows(1, 1)
    other = "Perempuan" if member["jenis_kelamin"] == "Laki-laki" else "Laki-laki"
    row = {**household_row(1), **member, "jenis_kelamin": other}  # the NIK says otherwise
    summary, report = await run_import(hub_store, write_csv(tmp_path / "dtsen.csv", [row]))
    assert (summary.written, summary.created, summary.warnings) == (1, 2, 1)
    assert [(r["kode"], r["tingkat"]) for r in report] == [("nik_sex_mismatch", "peringatan")]
    async with hub_store.engine.connect() as conn:
        query = sa.select(db.audit.c.subject, db.audit.c.detail).where(
            db.audit.c.action == "registry.warning"
        )
        [(subject, detail)] = (await conn.execute(query)).all()
    assert subject == await record_of(hub_store, "member", "ART-000001-0")
    assert json.loads(detail) == {"codes": ["nik_sex_mismatch"]}


async def test_our_own_dataset_keeps_its_record_ids_and_refuses_ids_that_are_not_ours(
    hub_store, tmp_path
):
    from protocol.registry import layout_from_toml

    dataset = Path(__file__).parents[2] / "hub" / "registry_maps" / "dataset.toml"
    layout = layout_from_toml(tomllib.loads(dataset.read_text(encoding="utf-8")))
    box = Box("edge-a")
    await enrol(hub_store, box)
    household, _ = make_household_with_members(1, seed=31)
    record = household.pop("id")
    await hub_store.apply(box.batch(box.edit(record, hub_store.wall(), **household)), box.node)
    member_of_box = new_id()
    await hub_store.apply(
        box.batch(box.edit(member_of_box, hub_store.wall(), entity="member", name="X")), box.node
    )
    path = tmp_path / "household.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "village", "address", "rt"])
        writer.writerow([record.upper(), DEFAULT_VILLAGE, household["address"], household["rt"]])
        writer.writerow(["not-a-uuid", DEFAULT_VILLAGE, "Jl. A", "001"])
        writer.writerow([member_of_box, DEFAULT_VILLAGE, "Jl. B", "002"])  # a member's id
    out = io.StringIO()
    summary = await import_files(hub_store, [path], layout, Report(out), today=TODAY)
    report = list(csv.DictReader(io.StringIO(out.getvalue())))

    assert [(r["baris"], r["kode"]) for r in report] == [
        ("3", "invalid_ref"),
        ("4", "registry_record_taken"),
    ]
    # The household the box registered is the same record, not a copy; its values are
    # the dataset's already, so nothing new was written.
    _, states = await village_state(hub_store)
    assert len(states) == 2 and record in states
    assert (summary.created, summary.conflicts) == (0, 0)
    assert await record_of(hub_store, "household", record) == record
