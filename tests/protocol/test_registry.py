"""Rows of a registry extract as field values: spreadsheet cells of every usual shape come
out as the protocol's values, a mapping file is checked before use, and a row says
whether it is a household, a member or both."""

from __future__ import annotations

import tomllib
from datetime import date, datetime
from pathlib import Path

import pytest

from protocol.registry import DEFAULT_LAYOUT, LayoutError, layout_from_toml, parse_row

DATASET = Path(__file__).parents[2] / "hub" / "registry_maps" / "dataset.toml"


def one(row: dict, entity: str) -> dict:
    parts, issues = parse_row(row, DEFAULT_LAYOUT)
    assert issues == []
    [part] = [p for p in parts if p.entity == entity]
    return part.values


def test_cells_as_spreadsheets_write_them_become_protocol_values():
    values = one(
        {
            "id_keluarga": "K1", "kode_desa": 3201022001.0, "no_kk": "'3201022008159517",
            "program": "PKH; PBI-JK (BPJS Kesehatan dibayar pemerintah)", "desil": "3.0",
            "floor_area_m2": "12,5", "floor_material": "Keramik",
        },
        "household",
    )  # fmt: skip
    assert values == {
        "village_code": "3201022001", "kk_number": "3201022008159517",
        "programmes": ["pkh", "pbi_jk"], "decile": 3, "floor_area_m2": 12.5,
        "floor_material": "keramik",
    }  # fmt: skip
    for cell in (
        "29-08-1989",
        "29/08/1989",
        "1989-08-29",
        datetime(1989, 8, 29),
        date(1989, 8, 29),
    ):
        member = one({"id_art": "A1", "id_keluarga": "K1", "tanggal_lahir": cell}, "member")
        assert member["birth_date"] == "1989-08-29", cell
    member = one(
        {"id_art": "A1", "id_keluarga": "K1", "pregnant": "Ya", "nama": " Siti "}, "member"
    )
    assert (member["pregnant"], member["name"], member["status"]) == (True, "Siti", "aktif")
    # What is not a value stays text, for the checks to name.
    assert one({"id_keluarga": "K1", "desil": "tiga"}, "household")["decile"] == "tiga"


def test_a_row_is_a_household_a_member_or_both():
    both, _ = parse_row({"id_keluarga": "K1", "alamat": "Jl. A", "id_art": "A1", "nama": "B"},
                        DEFAULT_LAYOUT)  # fmt: skip
    assert [p.entity for p in both] == ["household", "member"]
    member_only, _ = parse_row(
        {"id_keluarga": "K1", "kode_desa": "3201022002", "id_art": "A1", "nama": "B"},
        DEFAULT_LAYOUT,
    )
    [member] = member_only
    assert (member.entity, member.household_registry_id, member.village) == (
        "member", "K1", "3201022002"
    )  # fmt: skip
    parts, [issue] = parse_row({"alamat": "Jl. A"}, DEFAULT_LAYOUT)
    assert parts == [] and issue.code == "registry_id_missing" and issue.message


def test_our_own_dataset_re_imports_with_its_record_ids():
    layout = layout_from_toml(tomllib.loads(DATASET.read_text(encoding="utf-8")))
    household_id = "01973804-8fff-797b-8858-d8da8b529b4a"
    [household], _ = parse_row(
        {"id": household_id, "village": "3201022001", "address": "Jl. A"}, layout
    )
    assert (household.entity, household.registry_id, household.record_id) == (
        "household", household_id, household_id
    )  # fmt: skip
    [member], _ = parse_row(
        {"id": "01973804-9000-7000-8000-000000000001", "household_id": household_id,
         "village": "3201022001", "nik": "3201022908890025", "name": "B"},
        layout,
    )  # fmt: skip
    assert (member.entity, member.household_registry_id) == ("member", household_id)


@pytest.mark.parametrize(
    "document",
    [
        {"household": {"no_such_field": "x"}},
        {"member": {"nik": ""}},
        {"member": {"registry_id": "id"}},  # set by the importer, not a column
        {"values": {"sex": {"1": 1}}},
        {"tables": {}},
    ],
)
def test_a_mapping_file_that_cannot_work_is_refused_with_a_reason(document):
    with pytest.raises(LayoutError):
        layout_from_toml(document)
