"""What a village operator sees when saving: errors that block, warnings to confirm."""

from __future__ import annotations

import ast
import string
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge.services
import protocol.identity
import protocol.posyandu
import protocol.registry
import protocol.schema
import protocol.validate
import puskesos.search
from protocol.entities import (
    COMPLAINT,
    ENTITIES,
    HOUSEHOLD,
    MEMBER,
    PROPOSAL,
    REFERRAL,
    WORKFLOWS,
)
from protocol.messages import MESSAGES, render
from protocol.schema import FieldKind
from protocol.validate import (
    Issue,
    has_errors,
    validate_fields,
    validate_household,
    validate_kk,
    validate_nik,
    validate_region,
    warnings_only,
)
from tests.factories import (
    DEFAULT_VILLAGE,
    make_household,
    make_household_with_members,
    make_member,
    make_nik,
    new_id,
)

TODAY = date(2025, 6, 1)
OLD_KECAMATAN = "910101"  # Merauke, Papua: 93.01.01 since the 2022 split
UNKNOWN_KECAMATAN = "320199"  # Kabupaten Bogor has no kecamatan 99


def codes(issues: Iterable[Issue]) -> set[tuple[str, str]]:
    return {(issue.code, issue.level) for issue in issues}


def by_field(issues: Iterable[Issue]) -> set[tuple[str, str]]:
    return {(issue.field, issue.code) for issue in issues}


# --- NIK ------------------------------------------------------------------------------------

E, W = "error", "warning"


@pytest.mark.parametrize(
    ("nik", "expected"),
    [
        pytest.param("3201011708850001", set(), id="man-17-08-85"),
        pytest.param("3201015708850002", set(), id="woman-day-plus-40"),
        pytest.param("3201012902000001", set(), id="leap-day-2000"),
        pytest.param("3201016902000001", set(), id="leap-day-2000-woman"),
        pytest.param("3201013101990001", set(), id="31-jan"),
        pytest.param("3201017112990001", set(), id="woman-31-dec"),
        pytest.param("3201012902230001", {("nik_date", E)}, id="29-feb-23-no-leap"),
        pytest.param("3201016902230001", {("nik_date", E)}, id="29-feb-23-woman"),
        pytest.param("3201013104120001", {("nik_date", E)}, id="31-april"),
        pytest.param("3201013201010001", {("nik_day", E)}, id="day-32"),
        pytest.param("3201010012010001", {("nik_day", E)}, id="day-00"),
        pytest.param("3201014012010001", {("nik_day", E)}, id="day-40"),
        pytest.param("3201017212010001", {("nik_day", E)}, id="day-72"),
        pytest.param("3201011713850001", {("nik_month", E)}, id="month-13"),
        pytest.param("3201011700850001", {("nik_month", E)}, id="month-00"),
        pytest.param("3201011708850000", {("nik_serial_zero", E)}, id="serial-0000"),
        pytest.param("320101170885001", {("nik_length", E)}, id="15-digits"),
        pytest.param("32010117088500011", {("nik_length", E)}, id="17-digits"),
        pytest.param("", {("nik_length", E)}, id="empty"),
        pytest.param("32010117O8850001", {("nik_digits", E)}, id="letter-O"),
        pytest.param("3201 0117 0885 01", {("nik_digits", E)}, id="spaces"),
        pytest.param("٣٢٠١٠١١٧٠٨٨٥٠٠٠١", {("nik_digits", E)}, id="arabic-indic-digits"),
        pytest.param(3201011708850001, {("not_text", E)}, id="a-number-not-text"),
        pytest.param(None, {("not_text", E)}, id="none"),
        pytest.param(OLD_KECAMATAN + "1708850001", {("nik_prefix_old", W)}, id="old-prefix"),
        pytest.param(
            UNKNOWN_KECAMATAN + "1708850001", {("nik_prefix_unknown", W)}, id="unknown-prefix"
        ),
        pytest.param(
            UNKNOWN_KECAMATAN + "3104120000",
            {("nik_date", E), ("nik_serial_zero", E), ("nik_prefix_unknown", W)},
            id="several-at-once",
        ),
    ],
)
def test_nik_shape_and_date(nik: object, expected: set[tuple[str, str]]) -> None:
    assert codes(validate_nik(nik)) == expected


def test_old_prefix_is_really_old() -> None:
    """The test data behind "old-prefix": in the 2016–2023 editions, not in 2025."""
    from protocol.regions import is_current_kecamatan, is_old_kecamatan, old_region_name

    assert is_old_kecamatan(OLD_KECAMATAN) and not is_current_kecamatan(OLD_KECAMATAN)
    assert old_region_name(OLD_KECAMATAN) == "Merauke"
    [issue] = validate_nik(OLD_KECAMATAN + "1708850001")
    assert issue.message() == (
        "Kode kecamatan pada NIK (91.01.01, Merauke) adalah kode lama sebelum 2025. "
        "NIK tetap berlaku."
    )


@pytest.mark.parametrize(
    ("nik", "birth_date", "sex", "expected"),
    [
        pytest.param("3201011708850001", date(1985, 8, 17), "laki_laki", set(), id="match"),
        pytest.param("3201015708850001", date(1985, 8, 17), "perempuan", set(), id="woman"),
        pytest.param("3201012902000001", date(1900, 2, 28), None, {("nik_birth_date_mismatch", W)}),
        pytest.param("3201010101000001", date(1900, 1, 1), None, set(), id="century-unknown"),
        pytest.param("3201010101000001", date(2000, 1, 1), None, set(), id="century-2000"),
        pytest.param(
            "3201011708850001", date(1985, 8, 18), None, {("nik_birth_date_mismatch", W)}, id="day"
        ),
        pytest.param(
            "3201011708850001", date(1986, 8, 17), None, {("nik_birth_date_mismatch", W)}, id="year"
        ),
        pytest.param(
            "3201011708850001", date(1985, 7, 17), None, {("nik_birth_date_mismatch", W)}, id="mon"
        ),
        pytest.param("3201015708850001", None, "laki_laki", {("nik_sex_mismatch", W)}, id="sex"),
        pytest.param("3201011708850001", None, "perempuan", {("nik_sex_mismatch", W)}, id="sex2"),
        pytest.param(
            "3201015708850001",
            date(1990, 1, 1),
            "laki_laki",
            {("nik_sex_mismatch", W), ("nik_birth_date_mismatch", W)},
            id="both",
        ),
    ],
)
def test_nik_against_the_person(
    nik: str, birth_date: date | None, sex: str | None, expected: set[tuple[str, str]]
) -> None:
    """A NIK is never corrected: disagreeing with the person is a warning, never an error."""
    assert codes(validate_nik(nik, birth_date=birth_date, sex=sex)) == expected


def test_nik_mismatch_message_shows_both_dates() -> None:
    [issue] = validate_nik("3201011708850001", birth_date=date(1985, 8, 18))
    assert issue.message() == (
        "Tanggal lahir pada NIK (17-08-85) berbeda dengan tanggal lahir (18-08-1985). "
        "NIK tidak diubah; periksa tanggal lahir."
    )
    assert "differs from the birth date (18-08-1985)" in issue.message("en")


@pytest.mark.parametrize(
    ("birth_date", "sex", "kecamatan"),
    [
        (date(1985, 8, 17), "laki_laki", "320101"),
        (date(2000, 2, 29), "perempuan", "320102"),
        (date(1999, 12, 31), "perempuan", "110101"),
        (date(2024, 1, 1), "laki_laki", "960101"),
    ],
)
def test_factory_niks_are_valid_for_their_owner(birth_date: date, sex: str, kecamatan: str) -> None:
    nik = make_nik(birth_date, sex, kecamatan, serial=42)
    assert validate_nik(nik, birth_date=birth_date, sex=sex) == []


# --- family card (KK) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        pytest.param("3201021203190007", set(), id="valid"),
        pytest.param("320102120319000", {("kk_length", E)}, id="15-digits"),
        pytest.param("32010212031900071", {("kk_length", E)}, id="17-digits"),
        pytest.param("3201021203l90007", {("kk_digits", E)}, id="letter-l"),
        pytest.param(3201021203190007, {("not_text", E)}, id="number"),
        pytest.param(OLD_KECAMATAN + "1203190007", {("kk_prefix_old", W)}, id="old-prefix"),
        pytest.param(UNKNOWN_KECAMATAN + "1203190007", {("kk_prefix_unknown", W)}, id="unknown"),
    ],
)
def test_family_card_number(number: object, expected: set[tuple[str, str]]) -> None:
    assert codes(validate_kk(number)) == expected


# --- region codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "level", "expected"),
    [
        pytest.param("32.01.02.2001", "desa", set(), id="dotted-village"),
        pytest.param("3201022001", "desa", set(), id="plain-village"),
        pytest.param(" 32.01.02.2001 ", None, set(), id="blanks-around"),
        pytest.param("32", "provinsi", set(), id="province"),
        pytest.param("32.01", "kabupaten", set(), id="regency-dotted"),
        pytest.param("320102", "kecamatan", set(), id="kecamatan-plain"),
        pytest.param("32.01.01.2001", None, {"region_unknown"}, id="cibinong-has-no-desa-2001"),
        pytest.param("99", None, {"region_unknown"}, id="no-province-99"),
        pytest.param("3201", "desa", {"region_level"}, id="regency-for-a-village"),
        pytest.param("3201022001", "kecamatan", {"region_level"}, id="village-for-kecamatan"),
        pytest.param("91.01", None, {"region_outdated"}, id="pre-2025-regency"),
        pytest.param("32.1", None, {"region_shape"}, id="short-part"),
        pytest.param("320", None, {"region_shape"}, id="three-digits"),
        pytest.param("32-01", None, {"region_shape"}, id="dash"),
        pytest.param("32.0102", None, {"region_shape"}, id="half-dotted"),
        pytest.param("", None, {"region_shape"}, id="empty"),
        pytest.param(3201, None, {"region_shape"}, id="number"),
    ],
)
def test_region_code(code: object, level: Any, expected: set[str]) -> None:
    issues = validate_region(code, "village_code", level)
    assert {issue.code for issue in issues} == expected
    assert all(issue.level == "error" for issue in issues)


def test_region_names_come_from_the_2025_list() -> None:
    from protocol.regions import (
        RegionCodeError,
        format_dotted,
        is_current_kecamatan,
        lookup,
        normalize_region_code,
        region_level,
        region_name,
    )

    region = lookup("32.01.02.2001")
    assert region is not None
    assert (region.name, region.kecamatan, region.regency, region.province) == (
        "Wanaherang",
        "Gunungputri",
        "Kabupaten Bogor",
        "Jawa Barat",
    )
    assert (region.code, region.dotted, region.level) == ("3201022001", "32.01.02.2001", "desa")
    assert region_name("3201011001") == "Pondok Rajeg"
    assert region_name("32.01.01.2001") is None
    assert region_name("31.72") == "Kota Administrasi Jakarta Utara"  # trailing blank in CSV
    assert region_name("53.07.01.2021") == "Regapu’u"
    assert region_level("3201022001") == "desa" and region_level("32.01") == "kabupaten"
    assert format_dotted("3201022001") == "32.01.02.2001" and format_dotted("32") == "32"
    assert normalize_region_code("32.01.02") == "320102"
    assert is_current_kecamatan("320101") and not is_current_kecamatan("3201")
    with pytest.raises(ValueError):
        normalize_region_code("32.01.02.201")
    with pytest.raises(RegionCodeError):
        region_name("Bogor")
    [issue] = validate_region("3201", "village_code", "desa")
    assert issue.message() == (
        "Kode 32.01 (Kabupaten Bogor) adalah kode kabupaten/kota, seharusnya kode desa/kelurahan."
    )


# --- one record -----------------------------------------------------------------------------


def member_issues(**overrides: Any) -> list[Issue]:
    member = make_member(overrides.pop("household_id", new_id()), **overrides)
    return validate_fields(MEMBER, member, is_new=True, today=TODAY)


def test_factory_records_are_clean() -> None:
    household, members = make_household_with_members(6, seed=7)
    assert validate_fields(HOUSEHOLD, household, is_new=True, today=TODAY) == []
    for member in members:
        assert validate_fields(MEMBER, member, is_new=True, today=TODAY) == []
    assert validate_household(household, members, today=TODAY) == []


def test_seeded_households_are_reproducible_and_distinct() -> None:
    assert make_household_with_members(seed=3) == make_household_with_members(seed=3)
    niks = [m["nik"] for s in range(200) for m in make_household_with_members(seed=s)[1]]
    assert len(set(niks)) == len(niks)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"pregnant": True, "sex": "laki_laki"}, {("pregnant", "pregnant_male")}),
        pytest.param(
            {"pregnant": True, "sex": "perempuan", "birth_date": "1955-03-01"},
            {("pregnant", "pregnant_age")},
            id="pregnant-70-year-old",
        ),
        pytest.param(
            {"pregnant": True, "sex": "perempuan", "birth_date": "2016-03-01"},
            {("pregnant", "pregnant_age")},
            id="pregnant-9-year-old",
        ),
        pytest.param(
            {"pregnant": True, "sex": "perempuan", "birth_date": "1995-03-01"}, set(), id="ok"
        ),
        pytest.param(
            {"pregnant": True, "sex": "perempuan", "birth_date": "1970-06-01"},
            set(),
            id="exactly-55",
        ),
        pytest.param(
            {
                "pregnant": True,
                "sex": "perempuan",
                "birth_date": "1995-03-01",
                "status": "meninggal",
                "status_date": "2025-01-03",
                "status_document": "3201-KM-03012025-0001",
            },
            {("pregnant", "pregnant_inactive")},
            id="died-while-pregnant-is-only-a-warning",
        ),
        pytest.param(
            {"breastfeeding": "ya", "sex": "laki_laki"},
            {("breastfeeding", "breastfeeding_male")},
        ),
        pytest.param(
            {"breastfeeding": "ya", "sex": "perempuan", "birth_date": "1955-03-01"},
            {("breastfeeding", "breastfeeding_age")},
            id="breastfeeding-70-year-old",
        ),
        pytest.param(
            {"breastfeeding": "ya", "sex": "perempuan", "birth_date": "1995-03-01"},
            set(),
            id="breastfeeding-ok",
        ),
        pytest.param(
            {
                "breastfeeding": "ya",
                "sex": "perempuan",
                "birth_date": "1995-03-01",
                "status": "pindah",
                "status_date": "2025-01-03",
                "status_document": "SKPWNI/88",
            },
            {("breastfeeding", "breastfeeding_inactive")},
            id="moved-while-breastfeeding-is-only-a-warning",
        ),
        pytest.param(
            {"status": "pindah"},
            {("status_date", "departure_missing"), ("status_document", "departure_missing")},
            id="moved-without-date-and-document-is-asked",
        ),
        pytest.param(
            {
                "status": "meninggal",
                "birth_date": "1990-01-01",
                "status_date": "1989-12-31",
                "status_document": "SK/01",
            },
            {("status_date", "departure_date")},
            id="died-before-birth",
        ),
        pytest.param(
            {"status": "meninggal", "status_date": "2999-01-01", "status_document": "SK/01"},
            {("status_date", "date_in_future")},
            id="died-in-the-future",
        ),
        pytest.param({"birth_date": "2025-06-02"}, {("birth_date", "date_in_future")}),
        pytest.param({"birth_date": "2023-02-29"}, {("birth_date", "invalid_date")}),
        pytest.param({"birth_date": "17-08-1985"}, {("birth_date", "invalid_date")}),
        pytest.param({"birth_date": "1910-01-01"}, {("birth_date", "age_implausible")}),
        pytest.param({"name": ""}, {("name", "required")}),
        pytest.param({"name": "   "}, {("name", "required")}),
        pytest.param({"name": "x" * 101}, {("name", "too_long")}),
        pytest.param({"sex": "pria"}, {("sex", "unknown_choice")}),
        pytest.param({"disability": ["fisik", "fisik"]}, {("disability", "repeated_choice")}),
        pytest.param({"disability": "fisik"}, {("disability", "not_list")}),
        pytest.param({"pregnant": "ya"}, {("pregnant", "not_boolean")}),
        pytest.param({"household_id": "HH-1"}, {("household_id", "invalid_ref")}),
        pytest.param({"colour": "red"}, {("colour", "unknown_field")}),
        pytest.param({"id": "not-a-uuid"}, {("id", "invalid_value")}),
    ],
)
def test_member_rules(overrides: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    assert by_field(member_issues(**overrides)) == expected


def test_nik_disagreeing_with_the_member_is_a_warning() -> None:
    nik = make_nik(date(1985, 8, 17), "perempuan")
    issues = member_issues(nik=nik, sex="laki_laki", birth_date="1986-08-17")
    assert codes(issues) == {("nik_sex_mismatch", W), ("nik_birth_date_mismatch", W)}
    assert not has_errors(issues)
    assert warnings_only(issues) == issues


def test_a_device_whose_clock_is_wrong_warns_about_a_later_date_and_refuses_nothing() -> None:
    """``today`` is then only the best date the device knows: a birth date or a complaint
    received after it must be confirmed, not refused; with a right clock it is refused."""
    later = {"birth_date": "2025-06-02"}
    assert codes(validate_fields(MEMBER, later, is_new=False, today=TODAY)) == {
        ("date_in_future", E)
    }
    doubtful = validate_fields(MEMBER, later, is_new=False, today=TODAY, clock_trusted=False)
    assert codes(doubtful) == {("date_after_box_clock", W)}
    assert doubtful[0].message() == (
        "Tanggal lahir setelah tanggal hari ini menurut perangkat ini (01-06-2025). Jam "
        "perangkat ini mungkin salah: periksa tanggalnya, lalu simpan bila sudah benar."
    )
    assert_renders(doubtful[0])
    received = {"received_date": "2025-07-01"}
    issues = validate_fields(COMPLAINT, received, is_new=False, today=TODAY, clock_trusted=False)
    assert codes(issues) == {("date_after_box_clock", W)}

    # A pregnant mother born after the device's today: her age is as wrong as its date.
    mother = person("kepala_keluarga", sex="perempuan", birth_date="2001-03-01", pregnant=True)
    household, members = household_of(mother, person(birth_date="2026-02-01"))
    early = date(2000, 1, 1)
    assert has_errors(validate_household(household, members, today=early))
    issues = validate_household(household, members, today=early, clock_trusted=False)
    assert not has_errors(issues)
    assert by_field(issues) == {
        ("members[0].birth_date", "date_after_box_clock"),
        ("members[0].pregnant", "pregnant_age"),
        ("members[1].birth_date", "date_after_box_clock"),
    }


def test_missing_required_fields_on_create() -> None:
    issues = validate_fields(MEMBER, {}, is_new=True, today=TODAY)
    assert by_field(issues) == {(name, "required") for name in MEMBER.required}
    assert {i.message() for i in issues} >= {"Nama lengkap wajib diisi.", "NIK wajib diisi."}


def test_an_update_needs_only_what_it_changes_but_cannot_clear_a_required_field() -> None:
    assert validate_fields(MEMBER, {"occupation": "Petani"}, is_new=False, today=TODAY) == []
    issues = validate_fields(MEMBER, {"name": None}, is_new=False, today=TODAY)
    assert by_field(issues) == {("name", "required")}


def test_the_published_decile_is_the_hubs() -> None:
    stored = make_household(decile=3)
    issues = validate_fields(HOUSEHOLD, {"decile": 1}, is_new=False, today=TODAY, current=stored)
    assert by_field(issues) == {("decile", "readonly")}
    # The full form sent back with the decile unchanged is fine.
    assert validate_fields(HOUSEHOLD, stored, is_new=False, today=TODAY, current=stored) == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({"floor_area_m2": 10001}, {("floor_area_m2", "out_of_range")}),
        pytest.param({"floor_area_m2": -1.5}, {("floor_area_m2", "out_of_range")}),
        pytest.param({"floor_area_m2": float("nan")}, {("floor_area_m2", "not_number")}),
        pytest.param({"floor_area_m2": 10**400}, {("floor_area_m2", "out_of_range")}),
        pytest.param({"floor_area_m2": True}, {("floor_area_m2", "not_number")}),
        pytest.param({"floor_area_m2": "36"}, {("floor_area_m2", "not_number")}),
        pytest.param({"rt": "1234"}, {("rt", "too_long")}),
        pytest.param({"village_code": "32.01.02.2001"}, {("village_code", "region_shape")}),
        pytest.param({"village_code": "3201012001"}, {("village_code", "region_unknown")}),
        pytest.param({"village_code": "320102"}, {("village_code", "region_shape")}),
        pytest.param({"kk_number": "123"}, {("kk_number", "kk_length")}),
        pytest.param({"kk_number": OLD_KECAMATAN + "1203190007"}, {("kk_number", "kk_prefix_old")}),
        pytest.param({"programmes": ["pkh", "bansos"]}, {("programmes", "unknown_choice")}),
        pytest.param({"decile": 2}, {("decile", "readonly")}),
    ],
)
def test_household_fields(values: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    household = make_household(**values)
    assert by_field(validate_fields(HOUSEHOLD, household, is_new=True, today=TODAY)) == expected


# --- status workflows -----------------------------------------------------------------------


def make_complaint(**overrides: Any) -> dict[str, Any]:
    complaint = {
        "id": new_id(),
        "channel": "langsung",
        "category": "bantuan_belum_cair",
        "reporter_name": "Ibu Euis",
        "anonymous": False,
        "chronology": "Terdaftar PKH sejak 2023 tetapi bantuan tahap 2 belum diterima.",
        "status": "baru",
        "received_date": "2025-05-28",
        "due_date": "2025-06-11",
    }
    complaint.update(overrides)
    return complaint


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        ("baru", "diproses", True),
        ("diproses", "dirujuk", True),
        ("dirujuk", "selesai", True),
        ("dirujuk", "diproses", True),
        ("baru", "selesai", False),
        ("selesai", "diproses", False),
        ("ditolak", "baru", False),
    ],
)
def test_complaint_status_moves(old: str, new: str, allowed: bool) -> None:
    stored = make_complaint(status=old)
    change = {"status": new, "rejection_reason": "Bukan kewenangan desa"}
    issues = validate_fields(COMPLAINT, change, is_new=False, today=TODAY, current=stored)
    assert (("status", "transition_not_allowed") not in by_field(issues)) is allowed


def test_refusing_a_complaint_needs_a_reason() -> None:
    stored = make_complaint(status="diproses")
    issues = validate_fields(
        COMPLAINT, {"status": "ditolak"}, is_new=False, today=TODAY, current=stored
    )
    assert by_field(issues) == {("rejection_reason", "reason_required")}
    assert issues[0].message() == "Alasan ditolak wajib diisi untuk status Ditolak."


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, set(), id="fine"),
        pytest.param({"status": "selesai"}, {("status", "status_initial")}),
        pytest.param({"due_date": "2025-05-01"}, {("due_date", "due_before_received")}),
        pytest.param(
            {"received_date": "2025-07-01", "due_date": None}, {("received_date", "date_in_future")}
        ),
        pytest.param({"anonymous": True}, {("reporter_name", "anonymous_with_name")}),
        pytest.param({"anonymous": True, "reporter_name": ""}, set(), id="anonymous"),
        pytest.param({"chronology": "x" * 4001}, {("chronology", "too_long")}),
        pytest.param({"channel": "telegram"}, {("channel", "unknown_choice")}),
    ],
)
def test_new_complaint(overrides: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    complaint = make_complaint(**overrides)
    assert by_field(validate_fields(COMPLAINT, complaint, is_new=True, today=TODAY)) == expected


@pytest.mark.parametrize(
    ("old", "new", "extra", "expected"),
    [
        ("draf", "disepakati_musdes", {"agreement_ref": "BA/12/2025"}, set()),
        ("draf", "disepakati_sptjm", {}, {("agreement_ref", "reason_required")}),
        ("draf", "dikirim", {"agreement_ref": "BA/3"}, {("status", "transition_not_allowed")}),
        ("dikirim", "dikembalikan", {"return_reason": "NIK tidak padan Dukcapil"}, set()),
        ("dikembalikan", "draf", {}, set()),
        ("diverifikasi", "ditetapkan", {}, set()),
        ("ditetapkan", "draf", {}, {("status", "transition_not_allowed")}),
    ],
)
def test_proposal_status_moves(
    old: str, new: str, extra: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    stored = {
        "household_id": new_id(),
        "kind": "usulan_baru",
        "period": "2025-06",
        "status": old,
        "agreement_ref": "BA/12/2025" if old != "draf" else None,
    }
    change = {"status": new, **extra}
    issues = validate_fields(PROPOSAL, change, is_new=False, today=TODAY, current=stored)
    assert by_field(issues) == expected


def test_a_referral_is_about_someone() -> None:
    referral = {
        "need": "Biaya transport ke RSUD",
        "destination": "dinas_sosial",
        "status": "dirujuk",
    }
    issues = validate_fields(REFERRAL, referral, is_new=True, today=TODAY)
    assert by_field(issues) == {("complaint_id", "referral_subject_missing")}
    referral["member_id"] = new_id()
    assert validate_fields(REFERRAL, referral, is_new=True, today=TODAY) == []


def test_workflows_are_consistent_with_the_entities() -> None:
    for name, workflow in WORKFLOWS.items():
        spec = ENTITIES[name].fields[workflow.field]
        assert set(workflow.transitions) == set(spec.choices)
        for targets in workflow.transitions.values():
            assert set(targets) <= set(spec.choices)
        assert set(workflow.initial) <= set(spec.choices)
        for status, reason in workflow.reasons.items():
            assert status in spec.choices
            assert ENTITIES[name].fields[reason].kind is FieldKind.TEXT


# --- a household as a whole -----------------------------------------------------------------


def household_of(*members: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    household = make_household()
    return household, [{**m, "household_id": household["id"]} for m in members]


def person(relation: str = "anak", **overrides: Any) -> dict[str, Any]:
    return make_member(new_id(), relation_to_head=relation, **overrides)


def test_two_heads_of_household() -> None:
    household, members = household_of(person("kepala_keluarga"), person("kepala_keluarga"))
    issues = validate_household(household, members, today=TODAY)
    assert by_field(issues) == {
        ("members[0].relation_to_head", "head_multiple"),
        ("members[1].relation_to_head", "head_multiple"),
    }
    assert issues[0].message() == (
        "Ada 2 kepala keluarga; hanya boleh satu di antara anggota aktif."
    )


#: When and on what document a member who moved or died left.
LEFT = {"status_date": "2024-05-01", "status_document": "SK/2024/17"}


def test_no_head_of_household() -> None:
    household, members = household_of(person("istri_suami"), person("anak"))
    assert by_field(validate_household(household, members, today=TODAY)) == {
        ("members", "head_missing")
    }


def test_a_head_who_moved_away_and_a_new_head() -> None:
    household, members = household_of(
        person("kepala_keluarga", status="pindah", **LEFT),
        person("kepala_keluarga", sex="perempuan", birth_date="1982-02-02"),
        person("kepala_keluarga", status="meninggal", birth_date="1950-01-01", **LEFT),
    )
    assert validate_household(household, members, today=TODAY) == []


def test_a_household_whose_members_all_moved() -> None:
    household, members = household_of(person("kepala_keluarga", status="pindah", **LEFT))
    issues = validate_household(household, members, today=TODAY)
    assert codes(issues) == {("no_active_members", W)}


def test_same_nik_twice_in_a_household() -> None:
    head = person("kepala_keluarga", name="Asep Saepudin")
    twin = person("anak", name="Ujang Hidayat", nik=head["nik"])
    household, members = household_of(head, twin)
    issues = validate_household(household, members, today=TODAY)
    assert by_field(issues) == {
        ("members[0].nik", "nik_duplicate_household"),
        ("members[1].nik", "nik_duplicate_household"),
    }
    assert "(Ujang Hidayat)" in issues[0].message()


def test_a_moved_members_nik_does_not_count_twice() -> None:
    head = person("kepala_keluarga")
    gone = person("anak", nik=head["nik"], status="pindah", **LEFT)
    household, members = household_of(head, gone)
    assert validate_household(household, members, today=TODAY) == []


def test_nik_registered_elsewhere_in_the_village() -> None:
    household, members = make_household_with_members(3, seed=11)
    elsewhere = {members[1]["nik"]: new_id()}
    issues = validate_household(household, members, today=TODAY, village_niks=elsewhere)
    assert by_field(issues) == {("members[1].nik", "nik_duplicate_village")}
    assert issues[0].message("en") == (
        "This NIK is already registered for another resident of this village."
    )


def test_the_village_index_may_name_the_member_itself() -> None:
    household, members = make_household_with_members(3, seed=12)
    index = {m["nik"]: m["id"] for m in members}
    # and a member of the same household who held the NIK before an edit
    index[members[2]["nik"]] = members[0]["id"]
    assert validate_household(household, members, today=TODAY, village_niks=index) == []


def test_member_issues_are_named_by_position() -> None:
    household, members = make_household_with_members(3, seed=5)
    members[2]["nik"] = members[2]["nik"][:15]
    members[1]["pregnant"] = True
    members[1]["sex"] = "laki_laki"
    issues = validate_household(household, members, today=TODAY)
    assert ("members[2].nik", "nik_length") in by_field(issues)
    assert ("members[1].pregnant", "pregnant_male") in by_field(issues)


def test_a_member_of_another_household() -> None:
    household, members = make_household_with_members(2, seed=6)
    members[1]["household_id"] = new_id()
    assert by_field(validate_household(household, members, today=TODAY)) == {
        ("members[1].household_id", "household_mismatch")
    }


def test_the_default_village_exists() -> None:
    assert validate_region(DEFAULT_VILLAGE, "village_code", "desa") == []


# --- messages -------------------------------------------------------------------------------

_VALIDATION_MODULES = (
    protocol.validate,
    protocol.identity,
    protocol.posyandu,
    protocol.schema,
    protocol.registry,
    edge.services,
    puskesos.search,
)


def _codes_in_source() -> set[str]:
    """Codes written in the validation modules (and the registry import's, the box's search
    box and services): the code argument of ``Issue.error``, ``Issue.warning``,
    ``WireProblem`` and ``RowIssue``, and ``*_code=`` keyword arguments."""
    found: set[str] = set()

    def literals(node: ast.expr) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.IfExp):
            return literals(node.body) + literals(node.orelse)
        return []

    for module in _VALIDATION_MODULES:
        tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("error", "warning", "RowIssue") and len(node.args) >= 2:
                found.update(literals(node.args[1]))
            if name == "WireProblem" and node.args:
                found.update(literals(node.args[0]))
            for keyword in node.keywords:
                if keyword.arg and keyword.arg.endswith("_code"):
                    found.update(literals(keyword.value))
    return found


def test_every_code_in_the_source_has_both_messages() -> None:
    used = _codes_in_source()
    assert len(used) > 40  # the scan found the codes, not nothing
    missing = used - set(MESSAGES)
    assert not missing
    for code in used:
        indonesian, english = MESSAGES[code]
        assert indonesian.strip() and english.strip() and indonesian != english


def test_every_message_in_the_catalogue_is_used() -> None:
    assert set(MESSAGES) - _codes_in_source() == set()


def assert_renders(issue: Issue) -> None:
    """The issue's code is in the catalogue and its params fill both templates."""
    assert issue.code in MESSAGES
    for template in MESSAGES[issue.code]:
        wanted = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        assert wanted <= set(issue.params), (issue, wanted)


def test_render_never_fails() -> None:
    assert render("no_such_code") == "no_such_code"
    assert render("too_long", "en", label="Nama") == "Nama must be at most {limit} characters."
    assert render("too_long", "jv", label="Nama", limit="100") == "Nama paling banyak 100 karakter."


# --- never raises ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "aktif", "kepala_keluarga", "perempuan", "2000-02-29", "3201022001"])
    | st.builds(
        make_nik,
        st.dates(date(1900, 1, 1), date(2099, 12, 31)),
        st.sampled_from(["laki_laki", "perempuan"]),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(sorted({n for e in ENTITIES.values() for n in e.fields} | {"id"}))
records = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=12)


@settings(max_examples=300)
@given(
    entity=st.sampled_from(sorted(ENTITIES)),
    values=records,
    current=st.none() | records,
    is_new=st.booleans(),
    today=st.dates(),
)
def test_validate_fields_never_raises(
    entity: str, values: dict[str, Any], current: dict[str, Any] | None, is_new: bool, today: date
) -> None:
    issues = validate_fields(ENTITIES[entity], values, is_new=is_new, today=today, current=current)
    for issue in issues:
        assert_renders(issue)


@settings(max_examples=200)
@given(
    household=records,
    members=st.lists(records | json_values, max_size=5),
    village_niks=st.none() | st.dictionaries(st.text(max_size=16), json_values, max_size=3),
    today=st.dates(),
)
def test_validate_household_never_raises(
    household: dict[str, Any], members: list[Any], village_niks: Any, today: date
) -> None:
    issues = validate_household(household, members, today=today, village_niks=village_niks)
    for issue in issues:
        assert_renders(issue)
        assert issue.as_dict("en")["message"] == issue.message("en")
