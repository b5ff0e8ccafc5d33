"""The Posyandu's services: what a kader may record, and what the measurements raise."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.entities import LAYANAN, SERVICE_TYPES, SPM_FIELDS, known_state
from protocol.posyandu import Flag, age_in_months, flags_in, is_kek, monthly_report, two_t
from protocol.validate import has_errors, validate_fields

TODAY = date(2026, 12, 5)
HOUSEHOLD = "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
CHILD = "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c"
MOTHER = "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2d"


def service(kind: str = "penimbangan_balita", **values: Any) -> dict[str, Any]:
    return {
        "household_id": HOUSEHOLD,
        "member_id": CHILD,
        "service_date": "2026-12-02",
        "spm_field": SERVICE_TYPES[kind].spm,
        "service_type": kind,
        "officer": "Bu Lilis",
        "officer_role": "kader",
    } | values


def errors(values: dict[str, Any]) -> dict[str, str]:
    found = validate_fields(LAYANAN, values, is_new=True, today=TODAY)
    return {i.field: i.message() for i in found if i.level == "error"}


def test_every_service_type_belongs_to_one_of_the_six_spm_fields():
    assert len(SPM_FIELDS) == 6
    assert {t.spm for t in SERVICE_TYPES.values()} == set(SPM_FIELDS)


def test_a_weighing_with_its_measurements_is_saved():
    assert errors(service(weight_kg=9.4, height_cm=74.5, muac_cm=13.5)) == {}


def test_bad_measurements_say_what_is_wrong_next_to_the_field():
    found = errors(service(weight_kg=94, muac_cm=0.2))
    assert found["weight_kg"] == "Berat badan (kg) untuk Penimbangan balita harus antara 1 dan 30."
    assert found["muac_cm"] == "Lingkar lengan atas/LiLA (cm) harus antara 5 dan 60."
    adminduk = errors(service("pengurusan_adminduk", weight_kg=60))
    assert adminduk["weight_kg"].startswith("Berat badan (kg) tidak dicatat untuk Pengurusan")


def test_the_type_belongs_to_the_spm_field_and_the_date_is_not_ahead():
    found = errors(service(spm_field="pendidikan", service_date="2026-12-06"))
    assert found["spm_field"] == "Penimbangan balita termasuk bidang SPM Kesehatan."
    assert "service_date" in found
    assert has_errors(
        validate_fields(LAYANAN, service(officer_role="bidan"), is_new=True, today=TODAY)
    )


def weighing(day: str, kg: float) -> dict[str, Any]:
    return service(service_date=day, weight_kg=kg)


def test_2t_needs_two_consecutive_months_without_a_gain():
    october, november = weighing("2026-10-03", 9.0), weighing("2026-11-04", 9.0)
    assert not two_t([october, november], "2026-11")  # one month without a gain: 1T only
    flat = [october, november, weighing("2026-12-02", 8.9)]
    assert two_t(flat, "2026-12")
    assert flags_in(flat, "2026-12") == (Flag.TWO_T,)
    gained = [october, november, weighing("2026-12-02", 9.1)]
    assert not two_t(gained, "2026-12")


def test_2t_takes_each_months_last_weighing_and_a_missing_month_breaks_the_chain():
    corrected = [
        weighing("2026-10-03", 9.0),
        weighing("2026-11-20", 9.2),
        weighing("2026-11-04", 8.0),  # earlier the same month: the 20th counts
        weighing("2026-12-02", 9.3),
    ]
    assert not two_t(corrected, "2026-12")
    gap = [weighing("2026-09-03", 9.5), weighing("2026-10-03", 9.4), weighing("2026-12-02", 9.0)]
    assert not two_t(gap, "2026-12")
    january = [
        weighing("2026-11-03", 9.5),
        weighing("2026-12-03", 9.4),
        weighing("2027-01-05", 9.4),
    ]
    assert two_t(january, "2027-01")


@pytest.mark.parametrize(("muac", "at_risk"), [(23.4, True), (23.5, False), (23.6, False)])
def test_kek_below_23_5_cm_for_a_pregnant_woman(muac, at_risk):
    check = service("pemeriksaan_ibu_hamil", member_id=MOTHER, muac_cm=muac, weight_kg=50)
    assert is_kek(check) is at_risk
    assert (Flag.KEK in flags_in([check], "2026-12")) is at_risk
    assert Flag.KEK not in flags_in([check], "2027-01")  # raised in its own month


def test_the_monthly_report_counts_the_month_only():
    services = [
        weighing("2026-12-02", 9.0),
        service("imunisasi"),
        service("pemeriksaan_ibu_hamil", member_id=MOTHER, muac_cm=22.0, referred=True),
        service("rujukan_sekolah", member_id=MOTHER),
        weighing("2026-11-02", 9.0),
        service("penyaluran_bansos", deleted=True),
    ]
    report = monthly_report(
        services, "2026-12", {"balita": [CHILD, "other"], "ibu-hamil": [MOTHER]}
    )
    assert report.services == 4
    assert report.by_spm == {"kesehatan": 3, "pendidikan": 1}
    assert report.by_type["penimbangan_balita"] == 1
    assert report.groups == {"balita": (1, 2), "ibu-hamil": (1, 1)}
    assert report.flags == {Flag.KEK: 1}
    assert report.referrals == 2


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([CHILD, MOTHER, HOUSEHOLD]),
            st.sampled_from(["penimbangan_balita", "pemeriksaan_ibu_hamil", "imunisasi"]),
            st.sampled_from(["2026-09-30", "2026-10-01", "2026-10-15", "2026-11-02", "2026-12-02"]),
            st.sampled_from([None, 8.5, 9.0, 9.5]),
            st.sampled_from([None, 22.0, 24.0]),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_the_monthly_reports_flags_are_each_persons_flags(drawn):
    # The report keeps only what the flags need of each person while it counts; it must
    # raise what each person's own services raise.
    services = [
        service(kind, member_id=member, service_date=day, weight_kg=kg, muac_cm=muac,
                deleted=deleted)
        for member, kind, day, kg, muac, deleted in drawn
    ]  # fmt: skip
    kept = [s for s in services if not s["deleted"]]
    expected = Counter(
        flag
        for member in (CHILD, MOTHER, HOUSEHOLD)
        for flag in flags_in([s for s in kept if s["member_id"] == member], "2026-12")
    )
    assert monthly_report(services, "2026-12", {}).flags == expected


def test_a_box_of_schema_5_is_sent_no_service():
    state = {"service_type": ()}
    assert known_state("layanan", state, 5) == {}
    assert known_state("layanan", state, 6) == state


def test_a_balitas_age_in_completed_months():
    assert age_in_months(date(2024, 12, 5), TODAY) == 24
    assert age_in_months(date(2024, 12, 6), TODAY) == 23
    assert age_in_months(date(2026, 11, 30), TODAY) == 0
