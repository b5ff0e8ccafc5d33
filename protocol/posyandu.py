"""The Posyandu's services (entity ``layanan``): the measurement rules of each service
type, the flags a measurement raises, and the post's monthly report, all pure.

The service types themselves (their SPM field, the register they serve, the measurements
they record) are declared with the entity in :mod:`protocol.entities`.

Flags (``docs/posyandu.md``):

- **2T** (*tidak naik dua kali*): a balita's weight did not increase in two consecutive
  monthly weighings: for month M there are weighings in M, M−1 and M−2 and
  w(M) ≤ w(M−1) ≤ w(M−2) (each month's last weighing counts). A month without a weighing
  breaks the chain: the KMS cannot say.
- **KEK** (*kurang energi kronis*, risk): a pregnant woman's upper-arm circumference (LiLA)
  below :data:`KEK_MUAC_CM` (23.5 cm is not at risk).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from protocol.entities import LAYANAN, SERVICE_TYPES, SPM_FIELDS
from protocol.issues import Issue
from protocol.schema import wire_value_problem

__all__ = [
    "KEK_MUAC_CM",
    "MEASURE_RANGES",
    "WEIGHING",
    "Flag",
    "MonthlyReport",
    "age_in_months",
    "flags_in",
    "is_kek",
    "is_referral",
    "month_of",
    "monthly_report",
    "previous_month",
    "service_issues",
    "two_t",
]

#: Below this LiLA (cm) a pregnant woman is at risk of chronic energy deficiency (KEK).
KEK_MUAC_CM = 23.5
#: The service whose weights make the 2T flag.
WEIGHING = "penimbangan_balita"
#: The pregnancy check whose LiLA makes the KEK flag.
PREGNANCY_CHECK = "pemeriksaan_ibu_hamil"

#: Plausible measurements per service type: type → field → (minimum, maximum), inclusive.
#: Outside them a value is almost surely mistyped (kg for g, a digit too many).
MEASURE_RANGES: Mapping[str, Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "penimbangan_balita": MappingProxyType(
            {"weight_kg": (1.0, 30.0), "height_cm": (40.0, 130.0), "muac_cm": (7.0, 25.0)}
        ),
        "pemeriksaan_ibu_hamil": MappingProxyType(
            {"weight_kg": (30.0, 150.0), "muac_cm": (15.0, 50.0)}
        ),
        "pemeriksaan_lansia": MappingProxyType(
            {"weight_kg": (25.0, 150.0), "height_cm": (120.0, 200.0)}
        ),
    }
)

_MEASURES = ("weight_kg", "height_cm", "muac_cm")


class Flag(StrEnum):
    """What a service's measurements raise; the value is how pages name it."""

    TWO_T = "2T"
    KEK = "KEK"

    @property
    def label(self) -> str:
        """What the flag means, in Indonesian."""
        return _FLAG_LABELS[self]


_FLAG_LABELS = {
    Flag.TWO_T: "Berat badan tidak naik dua kali berturut-turut",
    Flag.KEK: f"LiLA di bawah {KEK_MUAC_CM:g} cm: risiko kurang energi kronis",
}


def service_issues(record: Mapping[object, object], touched: Iterable[str]) -> list[Issue]:
    """The rules of a service beyond each field's shape, on the record as it will be
    after an edit touching ``touched``: the service type belongs to the SPM field chosen;
    a measurement only for a type that records it, within that type's range (errors)."""
    issues: list[Issue] = []
    kind = SERVICE_TYPES.get(str(record.get("service_type")))
    if kind is None:
        return issues  # a missing or unknown type is reported by the field checks
    names = set(touched)
    spm = record.get("spm_field")
    if spm in SPM_FIELDS and spm != kind.spm and names & {"spm_field", "service_type"}:
        params = {"type": kind.label, "spm": SPM_FIELDS[kind.spm]}
        issues.append(Issue.error("spm_field", "service_spm_mismatch", params))
    for name in _MEASURES:
        value = record.get(name)
        spec = LAYANAN.fields[name]
        # A value the field itself refuses already has its message.
        if value is None or not names & {name, "service_type"} or wire_value_problem(spec, value):
            continue
        label = spec.label
        if name not in kind.measures:
            params = {"field": name, "label": label, "type": kind.label}
            issues.append(Issue.error(name, "measure_not_for_type", params))
            continue
        low, high = MEASURE_RANGES[kind.code][name]
        if isinstance(value, int | float) and not low <= value <= high:
            params = {
                "field": name,
                "label": label,
                "type": kind.label,
                "minimum": f"{low:g}",
                "maximum": f"{high:g}",
            }
            issues.append(Issue.error(name, "measure_range", params))
    return issues


def age_in_months(birth: date, today: date) -> int:
    """Completed months on ``today`` (a balita's age as the KMS reads it)."""
    months = (today.year - birth.year) * 12 + today.month - birth.month
    return months - (today.day < birth.day)


def month_of(day: object) -> str:
    """The month (``YYYY-MM``) of a wire date, or ``""``."""
    return day[:7] if isinstance(day, str) and len(day) >= 7 else ""


def previous_month(period: str) -> str:
    """The month before ``YYYY-MM``."""
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def is_kek(service: Mapping[str, object]) -> bool:
    """Whether a pregnancy check measured a LiLA below :data:`KEK_MUAC_CM`."""
    muac = _number(service.get("muac_cm"))
    return (
        service.get("service_type") == PREGNANCY_CHECK and muac is not None and muac < KEK_MUAC_CM
    )


def is_referral(service: Mapping[str, object]) -> bool:
    """Whether a service is a referral: a referral type, or marked as referred."""
    kind = SERVICE_TYPES.get(str(service.get("service_type")))
    return service.get("referred") is True or (kind is not None and kind.referral)


def _weigh(found: dict[str, tuple[str, float]], service: Mapping[str, object]) -> None:
    """Keep in ``found`` (month → (date, kg)) ``service``'s weight when it is its month's
    last weighing so far (by date, then by order given)."""
    weight = _number(service.get("weight_kg"))
    day = service.get("service_date")
    if service.get("service_type") != WEIGHING or weight is None or not isinstance(day, str):
        return
    month = month_of(day)
    if month not in found or day >= found[month][0]:
        found[month] = (day, weight)


def _falling(weighed: Mapping[str, tuple[str, float]], period: str) -> bool:
    """Whether the monthly weights ``weighed`` (month → (date, kg)) raise 2T in ``period``:
    a weight in it and in each of the two months before, none of them higher than the
    month before."""
    before = previous_month(period)
    months = (period, before, previous_month(before))
    now, last, first = (weighed[m][1] if m in weighed else None for m in months)
    if now is None or last is None or first is None:
        return False
    return now <= last <= first


def two_t(services: Iterable[Mapping[str, object]], period: str) -> bool:
    """Whether one balita's services (any order) raise 2T in month ``period`` (the
    module docstring)."""
    weighed: dict[str, tuple[str, float]] = {}
    for service in services:
        _weigh(weighed, service)
    return _falling(weighed, period)


def flags_in(services: Sequence[Mapping[str, object]], period: str) -> tuple[Flag, ...]:
    """The flags one member's services raise in month ``period``."""
    flags = []
    if two_t(services, period):
        flags.append(Flag.TWO_T)
    if any(is_kek(s) and month_of(s.get("service_date")) == period for s in services):
        flags.append(Flag.KEK)
    return tuple(flags)


@dataclass
class MonthlyReport:
    """The post's month: services per SPM field and per type, people served and expected
    per register group, flags raised (people), referrals made (services)."""

    period: str
    services: int = 0
    by_spm: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    #: Register code → (people served in the month, people expected).
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)
    flags: Counter[Flag] = field(default_factory=Counter)
    referrals: int = 0


def monthly_report(
    services: Iterable[Mapping[str, object]],
    period: str,
    expected: Mapping[str, Iterable[str]],
) -> MonthlyReport:
    """Count month ``period`` from a village's services (any months; withdrawn ones are
    skipped) and ``expected``: register code → the member ids its register lists. A
    member is served in a group when they are expected there and had a service of a type
    for that group in the month."""
    report = MonthlyReport(period)
    # Of each member only what the flags need, counted as the services come: their
    # monthly weights (2T) and whether a pregnancy check found KEK in the month.
    weighed: dict[str, dict[str, tuple[str, float]]] = {}
    kek: set[str] = set()
    served: dict[str, set[str]] = {}
    for service in services:
        if service.get("deleted") is True:
            continue
        member = str(service.get("member_id"))
        if service.get("service_type") == WEIGHING:
            _weigh(weighed.setdefault(member, {}), service)
        if month_of(service.get("service_date")) != period:
            continue
        if is_kek(service):
            kek.add(member)
        report.services += 1
        report.by_spm[str(service.get("spm_field"))] += 1
        report.by_type[str(service.get("service_type"))] += 1
        report.referrals += is_referral(service)
        kind = SERVICE_TYPES.get(str(service.get("service_type")))
        if kind is not None and kind.group:
            served.setdefault(kind.group, set()).add(member)
    for group, members in expected.items():
        listed = set(members)
        report.groups[group] = (len(listed & served.get(group, set())), len(listed))
    two_t_people = sum(_falling(months, period) for months in weighed.values())
    report.flags = +Counter({Flag.TWO_T: two_t_people, Flag.KEK: len(kek)})
    return report
