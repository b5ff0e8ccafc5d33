"""Matching with the civil registry (pemadanan Dukcapil): members whose NIK the registry
does not know, or knows with another name, birth date or sex, are flagged before the
month's submission; spelling variants are not; nothing else changes, and matching again
with the same extract writes nothing."""

from __future__ import annotations

import csv
from pathlib import Path

from hub.civil import match_civil
from hub.review import household_changes
from protocol.civil import civil_flags, civil_sex, same_name
from tests.hub.test_registry import (
    district_rows,
    record_of,
    run_import,
    village_state,
    write_csv,
)


def civil_file(path: Path, entries: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, ["nik", "nama", "tanggal_lahir", "jenis_kelamin"])
        writer.writeheader()
        writer.writerows(entries)
    return path


async def flags_of(hub_store, member: str) -> list[str]:
    state = await hub_store.record_state(await record_of(hub_store, "member", member))
    return state["civil_flags"][0].value if "civil_flags" in state else []


async def test_members_that_differ_from_the_civil_registry_are_flagged_and_nothing_else(
    hub_store, tmp_path
):
    rows = district_rows(3)
    await run_import(hub_store, write_csv(tmp_path / "dtsen.csv", rows))
    members = {r["id_art"]: r for r in rows if r.get("id_art")}

    def entry(member: str, **changes: str) -> dict[str, str]:
        row = members[member]
        sex = "L" if row["jenis_kelamin"] == "Laki-laki" else "P"
        civil = {"nik": row["nik"], "nama": row["nama"].upper(), "jenis_kelamin": sex}
        return {**civil, "tanggal_lahir": row["tanggal_lahir"], **changes}

    spaced = members["ART-000001-1"]["nama"].replace(" ", "  ").lower()
    flipped = "P" if members["ART-000003-1"]["jenis_kelamin"] == "Laki-laki" else "L"
    civil = [
        entry("ART-000001-0"),
        entry("ART-000001-1", nama=spaced),  # spelling and spacing vary: the same person
        entry("ART-000002-1", nama="Bambang Sutrisno Wibowo"),
        entry("ART-000003-0", tanggal_lahir="01-01-1950"),
        entry("ART-000003-1", jenis_kelamin=flipped),
        {"nik": "123", "nama": "Tanpa NIK sah"},  # skipped, not an error
    ]  # ART-000002-0 is not in the civil registry at all
    before_states = (await village_state(hub_store))[1]
    summary = await match_civil(hub_store, civil_file(tmp_path / "dukcapil.csv", civil))

    assert (summary.civil_rows, summary.skipped_rows, summary.members) == (5, 1, 6)
    assert await flags_of(hub_store, "ART-000001-0") == []
    assert await flags_of(hub_store, "ART-000001-1") == []
    assert await flags_of(hub_store, "ART-000002-0") == ["nik_unknown"]
    assert await flags_of(hub_store, "ART-000002-1") == ["name_differs"]
    assert await flags_of(hub_store, "ART-000003-0") == ["birth_date_differs"]
    assert await flags_of(hub_store, "ART-000003-1") == ["sex_differs"]
    assert summary.changed == 4
    # The verifier sees them on the household's review page.
    view = await household_changes(
        hub_store.engine, await record_of(hub_store, "household", "DTSEN-000002")
    )
    assert [r.civil for r in view.records if r.entity == "member"] == [
        ("NIK tidak ditemukan di Dukcapil",),
        ("Nama berbeda dengan Dukcapil",),
    ]
    # Only the flags changed: every other field is as imported.
    after_states = (await village_state(hub_store))[1]
    for record_id, state in after_states.items():
        assert state.count("civil_flags") <= 1
        if "civil_flags" not in state:
            assert state == before_states[record_id]

    head, _ = await village_state(hub_store)
    again = await match_civil(hub_store, tmp_path / "dukcapil.csv")
    assert again.changed == 0 and (await village_state(hub_store))[0] == head

    civil[2] = entry("ART-000002-1")  # the civil registry corrected the name
    fixed = await match_civil(hub_store, civil_file(tmp_path / "dukcapil.csv", civil))
    assert fixed.changed == 1 and await flags_of(hub_store, "ART-000002-1") == []


def test_the_matching_rules():
    assert same_name("Siti Nurhaliza", "SITI NUR HALIZA")
    assert same_name("Muhammad Rizky", "Rizky Muhammad") and same_name(
        "Dewi Lestari", "Dewi Lestary"
    )
    assert not same_name("Budi Santoso", "Andi Santoso")
    assert (civil_sex("PEREMPUAN"), civil_sex("l"), civil_sex("?")) == (
        "perempuan",
        "laki_laki",
        "",
    )
    assert civil_flags({"name": "A", "birth_date": "2000-01-01"}, None) == ["nik_unknown"]
