"""The vulnerable-group registers' rules: who a Posyandu cadre finds on each list, on the
day of the list, and who shows as "belum lengkap" instead of silently missing."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from protocol.vulnerable import REGISTERS, Entry, Status, family_of, tally

TODAY = date(2026, 12, 4)


def _member(**values: Any) -> dict[str, Any]:
    return {"name": "Anggota", "sex": "perempuan", "status": "aktif", **values}


def _entries(code: str, members: list[dict[str, Any]], today: date = TODAY, **household: Any):
    family = family_of({"programmes": [], **household}, members, today)
    return REGISTERS[code].entries(family)


def _status(code: str, member: dict[str, Any], today: date = TODAY, **household: Any) -> Status:
    found = _entries(code, [member], today, **household)
    return found[0].verdict.status if found else Status.OUT


def _years_ago(years: int, days: int = 0, today: date = TODAY) -> str:
    return (today.replace(year=today.year - years) + timedelta(days=days)).isoformat()


def test_a_child_turning_five_today_is_no_longer_a_balita():
    assert _status("balita", _member(birth_date=_years_ago(5))) is Status.OUT
    # Turning five later this month, or tomorrow: still weighed at this month's Posyandu.
    assert _status("balita", _member(birth_date=_years_ago(5, days=1))) is Status.IN
    assert _status("balita", _member(birth_date=_years_ago(5, days=20))) is Status.IN
    assert _status("balita", _member(birth_date=_years_ago(0, days=-3))) is Status.IN


def test_a_person_turning_sixty_today_is_lansia():
    assert _status("lansia", _member(birth_date=_years_ago(60))) is Status.IN
    assert _status("lansia", _member(birth_date=_years_ago(60, days=1))) is Status.OUT
    assert _status("lansia", _member(birth_date="1931-07-01")) is Status.IN


def test_a_leap_day_birthday_counts_on_the_first_of_march_in_a_common_year():
    born = _member(birth_date="2020-02-29")
    assert _status("balita", born, date(2025, 2, 28)) is Status.IN
    assert _status("balita", born, date(2025, 3, 1)) is Status.OUT
    elder = _member(birth_date="1964-02-29")
    assert _status("lansia", elder, date(2024, 2, 28)) is Status.OUT
    assert _status("lansia", elder, date(2024, 2, 29)) is Status.IN  # a leap year: on the day


def test_school_age_runs_from_the_seventh_to_the_nineteenth_birthday():
    def child(years: int, days: int = 0) -> dict[str, Any]:
        return _member(birth_date=_years_ago(years, days), school_status="putus_sekolah")

    assert _status("anak-usia-sekolah", child(7)) is Status.IN
    assert _status("anak-usia-sekolah", child(7, days=1)) is Status.OUT
    assert _status("anak-usia-sekolah", child(19, days=1)) is Status.IN
    assert _status("anak-usia-sekolah", child(19)) is Status.OUT
    register = REGISTERS["anak-usia-sekolah"]
    assert [spec.name for spec in register.fields] == ["birth_date", "school_status"]
    assert [spec.name for spec in register.shows] == ["school_status", "education"]


def test_a_school_age_child_is_listed_when_not_in_school_and_unknown_when_empty():
    born = _years_ago(12)
    for status in ("tidak_sekolah", "putus_sekolah"):
        assert _status("anak-usia-sekolah", _member(birth_date=born, school_status=status)) is (
            Status.IN
        )
    in_school = _member(birth_date=born, school_status="sekolah")
    assert _status("anak-usia-sekolah", in_school) is Status.OUT
    [unknown] = _entries("anak-usia-sekolah", [_member(birth_date=born)])
    assert unknown.verdict.status is Status.INCOMPLETE
    assert [s.name for s in unknown.verdict.missing] == ["school_status"]
    # Outside the school age the empty field does not matter; in school, the age does not.
    assert _status("anak-usia-sekolah", _member(birth_date=_years_ago(30))) is Status.OUT
    no_date = _member(birth_date=None, school_status="sekolah")
    assert _status("anak-usia-sekolah", no_date) is Status.OUT
    [neither] = _entries("anak-usia-sekolah", [_member(birth_date=None)])
    assert [s.name for s in neither.verdict.missing] == ["school_status", "birth_date"]


def test_a_member_without_a_birth_date_is_belum_lengkap_not_absent():
    unknown = _member(birth_date=None)
    left_school = _member(birth_date=None, school_status="tidak_sekolah")
    for code, member in (
        ("lansia", unknown),
        ("balita", unknown),
        ("anak-usia-sekolah", left_school),
    ):
        [entry] = _entries(code, [member])
        assert entry.verdict.status is Status.INCOMPLETE, code
        assert [spec.label for spec in entry.verdict.missing] == ["Tanggal lahir"], code
    assert _status("lansia", _member(birth_date="17-05-1950")) is Status.INCOMPLETE
    # Not a woman who could be pregnant or nursing, whatever the age: out, not incomplete.
    man = _member(birth_date=None, sex="laki_laki", pregnant=None)
    assert _status("ibu-hamil", man) is Status.OUT


def test_members_who_moved_died_or_are_recorded_twice_are_in_no_register():
    for status in ("pindah", "meninggal", "ganda"):
        gone = _member(
            birth_date=_years_ago(80), status=status, pregnant=True, disability=["fisik"]
        )
        for code, register in REGISTERS.items():
            if not register.per_household:
                assert _entries(code, [gone], decile=1) == [], code
        [household] = _entries("desil-1-4-tanpa-bantuan", [gone], decile=1)
        assert household.person is None  # the household is listed, without its departed head
    assert _status("lansia", _member(birth_date=_years_ago(80), status=None)) is Status.IN


def test_pregnancy_is_known_unknown_or_ruled_out():
    assert _status("ibu-hamil", _member(birth_date=_years_ago(28), pregnant=True)) is Status.IN
    assert _status("ibu-hamil", _member(birth_date=_years_ago(28), pregnant=False)) is Status.OUT
    [unknown] = _entries("ibu-hamil", [_member(birth_date=_years_ago(28))])
    assert unknown.verdict.status is Status.INCOMPLETE
    assert [s.name for s in unknown.verdict.missing] == ["pregnant"]
    assert _status("ibu-hamil", _member(birth_date=_years_ago(70))) is Status.OUT
    [no_date] = _entries("ibu-hamil", [_member(birth_date=None)])
    assert [s.name for s in no_date.verdict.missing] == ["pregnant", "birth_date"]


def test_nursing_mothers_are_estimated_from_a_baby_in_the_household():
    mother = _member(name="Ibu", birth_date=_years_ago(26))
    father = _member(name="Bapak", birth_date=_years_ago(30), sex="laki_laki")
    baby = _member(name="Bayi", birth_date=_years_ago(1))
    found = _entries("ibu-menyusui", [mother, father, baby])
    assert [(e.person.values["name"], e.verdict.status) for e in found] == [("Ibu", Status.IN)]
    toddler = _member(name="Balita", birth_date=_years_ago(2))  # two today
    assert _entries("ibu-menyusui", [mother, father, toddler]) == []


def test_a_recorded_breastfeeding_answer_replaces_the_estimate():
    baby = _member(name="Bayi", birth_date=_years_ago(1))
    toddler = _member(name="Balita", birth_date=_years_ago(3))
    nursing = _member(name="Ibu", birth_date=_years_ago(26), breastfeeding="ya")
    # Recorded as breastfeeding: listed even with no child under two in the household.
    assert _status("ibu-menyusui", nursing) is Status.IN
    assert [e.verdict.status for e in _entries("ibu-menyusui", [nursing, toddler])] == [Status.IN]
    weaned = _member(name="Ibu", birth_date=_years_ago(26), breastfeeding="tidak")
    assert _entries("ibu-menyusui", [weaned, baby]) == []
    empty = _member(name="Ibu", birth_date=_years_ago(26), breastfeeding=None)
    [estimated] = _entries("ibu-menyusui", [empty, baby])
    assert estimated.verdict.status is Status.IN  # today's estimate, as the MBG list needs
    assert _entries("ibu-menyusui", [empty, toddler]) == []
    assert REGISTERS["ibu-menyusui"].fields[0].name == "breastfeeding"


def test_disability_none_recorded_is_an_answer_an_empty_field_is_not():
    assert _status("disabilitas", _member(disability=["sensorik_netra"])) is Status.IN
    assert _status("disabilitas", _member(disability=[])) is Status.OUT
    assert _status("disabilitas", _member(disability=None)) is Status.INCOMPLETE


def test_every_member_of_a_household_without_pbi_jk_is_listed():
    members = [_member(name="A"), _member(name="B")]
    assert len(_entries("tanpa-pbi-jk", members)) == 2
    assert _entries("tanpa-pbi-jk", members, programmes=["pkh", "pbi_jk"]) == []
    [first, _] = _entries("tanpa-pbi-jk", members, programmes=None)
    assert [s.name for s in first.verdict.missing] == ["health_insurance", "programmes"]


def test_a_recorded_health_insurance_replaces_the_households_pbi_jk():
    none = _member(health_insurance="tidak_ada")
    assert _status("tanpa-pbi-jk", none, programmes=["pbi_jk"]) is Status.IN
    assert _status("tanpa-pbi-jk", none, programmes=None) is Status.IN
    own = _member(health_insurance="bpjs_mandiri")
    assert _status("tanpa-pbi-jk", own) is Status.OUT  # a household without PBI-JK
    assert _status("tanpa-pbi-jk", own, programmes=None) is Status.OUT
    empty = _member(health_insurance=None)
    assert _status("tanpa-pbi-jk", empty) is Status.IN
    assert _status("tanpa-pbi-jk", empty, programmes=["pbi_jk"]) is Status.OUT
    assert _status("tanpa-pbi-jk", empty, programmes=None) is Status.INCOMPLETE
    register = REGISTERS["tanpa-pbi-jk"]
    assert [spec.name for spec in register.fields] == ["health_insurance", "programmes"]


def test_low_decile_households_without_any_programme():
    head = _member(name="Kepala", relation_to_head="kepala_keluarga", birth_date=_years_ago(40))
    child = _member(name="Anak", relation_to_head="anak", birth_date=_years_ago(9))
    code = "desil-1-4-tanpa-bantuan"
    [row] = _entries(code, [child, head], decile=4)
    assert (row.person.values["name"], row.verdict.status) == ("Kepala", Status.IN)
    assert _entries(code, [head], decile=5) == []
    assert _entries(code, [head], decile=2, programmes=["pip"]) == []
    assert _entries(code, [head], decile=None, programmes=["pkh"]) == []  # decided anyway
    [unranked] = _entries(code, [head], decile=None)
    assert [s.name for s in unranked.verdict.missing] == ["decile"]
    [unknown] = _entries(code, [head], decile=1, programmes=None)
    assert [s.name for s in unknown.verdict.missing] == ["programmes"]


def test_tally_counts_in_and_belum_lengkap_per_row():
    families = [
        family_of({}, [_member(birth_date=_years_ago(70)), _member(birth_date=None)], TODAY),
        family_of(
            {}, [_member(birth_date=_years_ago(61)), _member(birth_date="2001-01-01")], TODAY
        ),
    ]
    assert tally(REGISTERS["lansia"], families) == (2, 1)
    assert tally(REGISTERS["desil-1-4-tanpa-bantuan"], families) == (0, 2)


def test_every_register_names_the_fields_it_derives_from():
    for register in REGISTERS.values():
        assert register.fields and register.title and register.rule, register.code
        assert register.unit in ("orang", "keluarga")


def _birthday(born: date, years: int) -> date:
    try:
        return born.replace(year=born.year + years)
    except ValueError:  # 29 February in a common year
        return date(born.year + years, 3, 1)


days = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@given(born=days, today=days)
def test_age_registers_agree_with_the_calendar(born, today):
    member = _member(birth_date=born.isoformat(), school_status="tidak_sekolah")

    def listed(code: str) -> bool:
        found: list[Entry] = _entries(code, [member], today)
        assert all(e.verdict.status is Status.IN for e in found)  # a birth date decides
        return bool(found)

    assert listed("balita") == (today < _birthday(born, 5))
    assert listed("lansia") == (today >= _birthday(born, 60))
    assert listed("anak-usia-sekolah") == (_birthday(born, 7) <= today < _birthday(born, 19))
    assert not (listed("balita") and listed("lansia"))
