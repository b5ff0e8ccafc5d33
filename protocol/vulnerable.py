"""Vulnerable-group registers (kelompok rentan), derived from the household data.

Each :class:`Register` names the fields it derives from and a rule that puts a person (or,
for a household register, a household) in one of three places: **in** the register,
**out** of it, or **belum lengkap** (incomplete): a field it needs is empty, so the person
might belong and the list says so instead of leaving them out. A person is out as soon as
the fields they have rule them out (a man is never "ibu hamil", whatever else is missing).

Only active members count (status ``aktif``, or none yet): a member who moved, died or is
recorded twice (``ganda``) is in no register.

Ages are completed years on the reference day (the box's today): a child turning 5 today
is no longer a balita; a person turning 60 today is lansia; someone born on 29 February
turns a year older on 1 March in a common year (:func:`protocol.validate.age_on`).

A register whose own field (schema 7: ``school_status``, ``breastfeeding``,
``health_insurance``) is empty for a person falls back to what the older fields show:
belum lengkap for the school register, the estimate from the household's ages for ibu
menyusui, the household's PBI-JK for the health-insurance register. The rules are pure,
so the hub counts the same registers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from protocol.entities import HOUSEHOLD, MEMBER
from protocol.schema import FieldSpec
from protocol.validate import PREGNANCY_AGE, age_on, as_date

__all__ = [
    "BABY_AGE",
    "ELDERLY_AGE",
    "LOW_DECILES",
    "REGISTERS",
    "SCHOOL_AGE",
    "UNDER_FIVE_AGE",
    "Entry",
    "Family",
    "Person",
    "Register",
    "Status",
    "Verdict",
    "family_of",
    "is_active",
    "tally",
]

#: Lansia from this age (completed years): UU 13/1998.
ELDERLY_AGE = 60
#: Balita below this age (completed years).
UNDER_FIVE_AGE = 5
#: Anak usia sekolah: from 7 through 18 completed years (the 12-year compulsory schooling).
SCHOOL_AGE = (7, 18)
#: A child below this age may still be breastfed (ASI until two years).
BABY_AGE = 2
#: Deciles whose households should receive a programme (desil 1–4).
LOW_DECILES = (1, 4)

_M = MEMBER.fields
_H = HOUSEHOLD.fields


class Status(StrEnum):
    """Where a rule puts a person or household."""

    IN = "termasuk"
    INCOMPLETE = "belum_lengkap"
    OUT = "tidak"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's answer; ``missing``: the empty fields that make it incomplete."""

    status: Status
    missing: tuple[FieldSpec, ...] = ()


_IN = Verdict(Status.IN)
_OUT = Verdict(Status.OUT)


@dataclass(frozen=True, slots=True)
class Person:
    """An active member's values and age (``None``: no valid birth date)."""

    values: Mapping[str, object]
    age: int | None


@dataclass(frozen=True, slots=True)
class Family:
    """A household's values and its active members, their ages taken on one day."""

    values: Mapping[str, object]
    people: tuple[Person, ...]

    @property
    def head(self) -> Person | None:
        """The active head of the household, if it has one."""
        return next(
            (p for p in self.people if p.values.get("relation_to_head") == "kepala_keluarga"),
            None,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a register: the person (a household register's row is its head, or
    ``None`` when it has none) and why they are listed."""

    person: Person | None
    verdict: Verdict


def is_active(member: Mapping[str, object]) -> bool:
    """Whether a member counts as living in the household (status ``aktif``, or none)."""
    return member.get("status") in (None, "aktif")


def family_of(
    household: Mapping[str, object], members: Iterable[Mapping[str, object]], today: date
) -> Family:
    """A household with its active members and their ages on ``today``."""
    people = []
    for member in members:
        if is_active(member):
            born = as_date(member.get("birth_date"))
            people.append(Person(member, None if born is None else age_on(born, today)))
    return Family(household, tuple(people))


def _empty(value: object) -> bool:
    return value is None or value == ""


def _age_rule(low: int | None, high: int | None) -> Callable[[Person, Family], Verdict]:
    """In when ``low <= age <= high`` (either bound may be open). A birth date after the
    reference day (a box whose clock is behind) counts as age 0 or less: still a balita."""

    def rule(person: Person, family: Family) -> Verdict:
        if person.age is None:
            return Verdict(Status.INCOMPLETE, (_M["birth_date"],))
        inside = (low is None or person.age >= low) and (high is None or person.age <= high)
        return _IN if inside else _OUT

    return rule


_school_age = _age_rule(*SCHOOL_AGE)


def _woman_of_childbearing_age(person: Person) -> Verdict:
    """In: a woman whose age allows a pregnancy (:data:`PREGNANCY_AGE`)."""
    sex = person.values.get("sex")
    if sex == "laki_laki":
        return _OUT
    if person.age is not None and not PREGNANCY_AGE[0] <= person.age <= PREGNANCY_AGE[1]:
        return _OUT
    missing = tuple(
        spec
        for spec, empty in ((_M["sex"], _empty(sex)), (_M["birth_date"], person.age is None))
        if empty
    )
    return Verdict(Status.INCOMPLETE, missing) if missing else _IN


def _pregnant(person: Person, family: Family) -> Verdict:
    pregnant = person.values.get("pregnant")
    if person.values.get("sex") == "laki_laki" or pregnant is False:
        return _OUT
    if pregnant is True:
        return _IN
    could = _woman_of_childbearing_age(person)
    if could.status is Status.OUT:
        return _OUT
    return Verdict(Status.INCOMPLETE, (_M["pregnant"], *could.missing))


def _out_of_school(person: Person, family: Family) -> Verdict:
    """In: a school-age child recorded as not (or no longer) in school."""
    school = person.values.get("school_status")
    if school == "sekolah":
        return _OUT
    by_age = _school_age(person, family)
    if by_age.status is Status.OUT:
        return _OUT
    if _empty(school):
        return Verdict(Status.INCOMPLETE, (_M["school_status"], *by_age.missing))
    return by_age


def _breastfeeding(person: Person, family: Family) -> Verdict:
    """In: recorded as breastfeeding; when the field is empty, the estimate: a woman of
    childbearing age living with a child under :data:`BABY_AGE`."""
    breastfeeding = person.values.get("breastfeeding")
    if breastfeeding is not None:
        return _IN if breastfeeding == "ya" else _OUT
    has_baby = any(
        p.age is not None and p.age < BABY_AGE and p is not person for p in family.people
    )
    return _woman_of_childbearing_age(person) if has_baby else _OUT


def _disabled(person: Person, family: Family) -> Verdict:
    disability = person.values.get("disability")
    if disability is None:
        return Verdict(Status.INCOMPLETE, (_M["disability"],))
    return _IN if disability else _OUT


def _without_health_insurance(person: Person, family: Family) -> Verdict:
    """In: recorded as having no health insurance; when the field is empty, a member of a
    household that does not receive PBI-JK."""
    insurance = person.values.get("health_insurance")
    if not _empty(insurance):
        return _IN if insurance == "tidak_ada" else _OUT
    programmes = family.values.get("programmes")
    if not isinstance(programmes, list):
        return Verdict(Status.INCOMPLETE, (_M["health_insurance"], _H["programmes"]))
    return _OUT if "pbi_jk" in programmes else _IN


def _low_decile_without_programme(family: Family) -> Verdict:
    decile, programmes = family.values.get("decile"), family.values.get("programmes")
    if isinstance(programmes, list) and programmes:
        return _OUT
    if isinstance(decile, int) and not LOW_DECILES[0] <= decile <= LOW_DECILES[1]:
        return _OUT
    missing = tuple(
        spec
        for spec, empty in (
            (_H["decile"], not isinstance(decile, int)),
            (_H["programmes"], not isinstance(programmes, list)),
        )
        if empty
    )
    return Verdict(Status.INCOMPLETE, missing) if missing else _IN


MemberRule = Callable[[Person, Family], Verdict]
HouseholdRule = Callable[[Family], Verdict]


@dataclass(frozen=True, slots=True)
class Register:
    """A register: ``code`` (its address), ``title`` and ``rule`` (Indonesian), the fields
    it derives from, and its rule over a person and their family (``of_member``) or, for a
    register of households, over the family alone (``of_household``). ``shows``: fields its
    list shows besides name and age."""

    code: str
    title: str
    rule: str
    fields: tuple[FieldSpec, ...]
    of_member: MemberRule | None = None
    of_household: HouseholdRule | None = None
    shows: tuple[FieldSpec, ...] = ()

    @property
    def per_household(self) -> bool:
        """Whether a row is a household (named by its head) rather than a person."""
        return self.of_household is not None

    @property
    def unit(self) -> str:
        """What a row counts, in Indonesian: "orang" or "keluarga"."""
        return "keluarga" if self.per_household else "orang"

    def entries(self, family: Family) -> list[Entry]:
        """The family's rows in this register: those in it and those it cannot tell."""
        if self.of_household is not None:
            verdict = self.of_household(family)
            return [] if verdict.status is Status.OUT else [Entry(family.head, verdict)]
        assert self.of_member is not None
        found = []
        for person in family.people:
            verdict = self.of_member(person, family)
            if verdict.status is not Status.OUT:
                found.append(Entry(person, verdict))
        return found


_REGISTERS = (
    Register(
        "lansia",
        "Lansia",
        f"Anggota berumur {ELDERLY_AGE} tahun ke atas (termasuk yang berulang tahun ke-"
        f"{ELDERLY_AGE} hari ini).",
        (_M["birth_date"],),
        of_member=_age_rule(ELDERLY_AGE, None),
    ),
    Register(
        "balita",
        "Balita",
        f"Anak di bawah {UNDER_FIVE_AGE} tahun. Anak yang berulang tahun ke-{UNDER_FIVE_AGE} "
        "hari ini tidak lagi termasuk.",
        (_M["birth_date"],),
        of_member=_age_rule(None, UNDER_FIVE_AGE - 1),
    ),
    Register(
        "anak-usia-sekolah",
        "Anak usia sekolah tidak bersekolah",
        f"Anak berumur {SCHOOL_AGE[0]} sampai {SCHOOL_AGE[1]} tahun yang tidak atau belum "
        "pernah sekolah, atau putus sekolah. Anak yang status sekolahnya masih kosong "
        "tercatat belum lengkap.",
        (_M["birth_date"], _M["school_status"]),
        of_member=_out_of_school,
        shows=(_M["school_status"], _M["education"]),
    ),
    Register(
        "ibu-hamil",
        "Ibu hamil",
        f"Perempuan yang tercatat sedang hamil. Perempuan berumur {PREGNANCY_AGE[0]}–"
        f"{PREGNANCY_AGE[1]} tahun yang isian hamilnya masih kosong tercatat belum lengkap.",
        (_M["sex"], _M["pregnant"], _M["birth_date"]),
        of_member=_pregnant,
    ),
    Register(
        "ibu-menyusui",
        "Ibu menyusui",
        "Perempuan yang tercatat sedang menyusui. Bila isian menyusuinya masih kosong: "
        f"perkiraan, perempuan berumur {PREGNANCY_AGE[0]}–{PREGNANCY_AGE[1]} tahun yang "
        f"serumah dengan anak di bawah {BABY_AGE} tahun.",
        (_M["breastfeeding"], _M["sex"], _M["birth_date"]),
        of_member=_breastfeeding,
    ),
    Register(
        "disabilitas",
        "Penyandang disabilitas",
        "Anggota dengan satu atau lebih jenis disabilitas tercatat.",
        (_M["disability"],),
        of_member=_disabled,
        shows=(_M["disability"],),
    ),
    Register(
        "tanpa-pbi-jk",
        "Tanpa jaminan kesehatan",
        "Anggota yang tercatat tidak punya jaminan kesehatan. Bila isian jaminan kesehatannya "
        "masih kosong: anggota keluarga yang tidak menerima PBI-JK (BPJS Kesehatan dibayar "
        "pemerintah).",
        (_M["health_insurance"], _H["programmes"]),
        of_member=_without_health_insurance,
        shows=(_M["health_insurance"],),
    ),
    Register(
        "desil-1-4-tanpa-bantuan",
        "Keluarga desil 1–4 tanpa bantuan",
        f"Keluarga pada desil {LOW_DECILES[0]}–{LOW_DECILES[1]} yang tidak menerima program "
        "bantuan apa pun (PKH, Sembako/BPNT, PBI-JK, BLT Dana Desa, PIP).",
        (_H["decile"], _H["programmes"]),
        of_household=_low_decile_without_programme,
        shows=(_H["decile"],),
    ),
)

#: Every register, by code, in the order the pages list them.
REGISTERS: Mapping[str, Register] = MappingProxyType({r.code: r for r in _REGISTERS})


def tally(register: Register, families: Iterable[Family]) -> tuple[int, int]:
    """How many rows of ``families`` are in ``register``, and how many belum lengkap."""
    inside = incomplete = 0
    for family in families:
        for entry in register.entries(family):
            if entry.verdict.status is Status.IN:
                inside += 1
            else:
                incomplete += 1
    return inside, incomplete
