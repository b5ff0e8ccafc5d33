"""Identity numbers and region codes: NIK, family card (KK), Kemendagri region codes.

A NIK is 16 digits: the 6-digit kecamatan of first registration, the birth date as DDMMYY
(40 added to the day for women) and a 4-digit serial. A NIK is for life and is never
corrected, so anything odd about a real-looking one (an old or unknown kecamatan, a birth
date or sex that disagrees with the person's) is a warning, never an error. A family-card
number has the same shape (kecamatan, issue date, serial) but changes when a family
splits, moves or loses its head.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from datetime import date

from protocol.issues import Issue
from protocol.regions import (
    LEVEL_LABELS,
    RegionCodeError,
    RegionLevel,
    format_dotted,
    is_current_kecamatan,
    is_old_kecamatan,
    lookup,
    normalize_region_code,
    old_region_name,
)

__all__ = [
    "NikInfo",
    "mask_number",
    "nik_mismatches",
    "parse_nik",
    "validate_kk",
    "validate_nik",
    "validate_region",
]

_SEX_LABELS = {"laki_laki": ("laki-laki", "male"), "perempuan": ("perempuan", "female")}


@dataclasses.dataclass(frozen=True, slots=True)
class NikInfo:
    """What a structurally valid NIK says: kecamatan code of first registration, birth day,
    month and two-digit year (the century is not in the NIK), sex and serial."""

    kecamatan: str
    day: int
    month: int
    yy: int
    sex: str
    serial: str


def parse_nik(nik: object) -> NikInfo | None:
    """Read a NIK, or ``None`` if it has any error (see :func:`validate_nik`)."""
    issues, parsed = _nik_structure(nik, "nik", "NIK")
    return parsed if parsed is not None and not any(i.level == "error" for i in issues) else None


def validate_nik(
    nik: object,
    *,
    field: str = "nik",
    birth_date: date | None = None,
    sex: str | None = None,
    label: str = "NIK",
) -> list[Issue]:
    """Check a NIK: 6-digit kecamatan of first registration, DDMMYY (day + 40 for women),
    4-digit serial.

    Errors: not 16 digits, serial 0000, a day outside 01–31/41–71, a month outside 01–12,
    a date that exists in neither 19YY nor 20YY. Warnings: an unknown or pre-2025 kecamatan
    prefix, a date or sex that disagrees with ``birth_date`` / ``sex`` (``"laki_laki"`` or
    ``"perempuan"``). ``label`` names the field in messages.
    """
    issues, parsed = _nik_structure(nik, field, label)
    if parsed is not None:
        issues += _nik_mismatches(parsed, field, label, birth_date, sex)
    return issues


def validate_kk(
    number: object, field: str = "kk_number", *, label: str = "Nomor KK"
) -> list[Issue]:
    """Check a family-card number: 16 digits (error); its kecamatan prefix (warning)."""
    base = {"field": field, "label": label}
    if not isinstance(number, str):
        return [Issue.error(field, "not_text", base)]
    shape = _sixteen_digits(number, field, base, digits_code="kk_digits", length_code="kk_length")
    if shape:
        return shape
    return _prefix_issues(
        number[:6], field, base, old_code="kk_prefix_old", unknown_code="kk_prefix_unknown"
    )


def validate_region(
    code: object, field: str, level: RegionLevel | None = None, *, label: str = "Kode wilayah"
) -> list[Issue]:
    """Check a region code given plain or dotted: its shape, that it exists in the 2025
    edition and, if ``level`` is given, that it is a code of that level. All errors."""
    base = {"field": field, "label": label}
    if not isinstance(code, str):
        return [Issue.error(field, "region_shape", {**base, "value": type(code).__name__})]
    try:
        plain = normalize_region_code(code)
    except RegionCodeError:
        return [Issue.error(field, "region_shape", {**base, "value": code[:40]})]
    dotted = format_dotted(plain)
    region = lookup(plain)
    if region is None:
        old = old_region_name(plain)
        if old is not None:
            return [Issue.error(field, "region_outdated", {**base, "code": dotted, "name": old})]
        return [Issue.error(field, "region_unknown", {**base, "code": dotted})]
    if level is not None and region.level != level:
        params = {
            **base,
            "code": dotted,
            "name": region.name,
            "actual": LEVEL_LABELS[region.level][0],
            "actual_en": LEVEL_LABELS[region.level][1],
            "expected": LEVEL_LABELS[level][0],
            "expected_en": LEVEL_LABELS[level][1],
        }
        return [Issue.error(field, "region_level", params)]
    return []


def _nik_structure(nik: object, field: str, label: str) -> tuple[list[Issue], NikInfo | None]:
    base = {"field": field, "label": label}
    if not isinstance(nik, str):
        return [Issue.error(field, "not_text", base)], None
    shape = _sixteen_digits(nik, field, base, digits_code="nik_digits", length_code="nik_length")
    if shape:
        return shape, None
    issues: list[Issue] = []
    parsed = None
    if nik[12:] == "0000":
        issues.append(Issue.error(field, "nik_serial_zero", base))
    day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    real_day = day - 40 if day > 40 else day
    day_ok = 1 <= day <= 31 or 41 <= day <= 71
    if not day_ok:
        issues.append(Issue.error(field, "nik_day", {**base, "day": nik[6:8]}))
    if not 1 <= month <= 12:
        issues.append(Issue.error(field, "nik_month", {**base, "month": nik[8:10]}))
    elif day_ok:
        parsed = _nik_info(nik, day, month, yy)
        if parsed is None:
            nik_date = f"{real_day:02d}-{month:02d}-{yy:02d}"
            issues.append(Issue.error(field, "nik_date", {**base, "nik_date": nik_date}))
    issues += _prefix_issues(
        nik[:6], field, base, old_code="nik_prefix_old", unknown_code="nik_prefix_unknown"
    )
    return issues, parsed


def nik_mismatches(
    nik: object, *, field: str = "nik", birth_date: date | None, sex: str | None, label: str
) -> list[Issue]:
    """The issues of :func:`validate_nik` that compare the NIK with ``birth_date`` and
    ``sex`` (``nik_birth_date_mismatch``, ``nik_sex_mismatch``), without the NIK's own:
    a record's cross-field rule, when the field's own check has already run."""
    if not isinstance(nik, str) or len(nik) != 16 or not (nik.isascii() and nik.isdigit()):
        return []
    day, month = int(nik[6:8]), int(nik[8:10])
    if not (1 <= day <= 31 or 41 <= day <= 71) or not 1 <= month <= 12:
        return []
    parsed = _nik_info(nik, day, month, int(nik[10:12]))
    if parsed is None:
        return []
    return _nik_mismatches(parsed, field, label, birth_date, sex)


def _nik_info(nik: str, day: int, month: int, yy: int) -> NikInfo | None:
    """What a NIK of 16 digits says, given its day (women: plus 40, 01–31 or 41–71) and
    month (01–12); ``None`` when that date exists in neither 19YY nor 20YY."""
    real_day = day - 40 if day > 40 else day
    # 29-02-00 is a real date in 2000 though not in 1900: either century will do.
    if _real_date(1900 + yy, month, real_day) or _real_date(2000 + yy, month, real_day):
        sex = "perempuan" if day > 40 else "laki_laki"
        return NikInfo(nik[:6], real_day, month, yy, sex, nik[12:])
    return None


def _nik_mismatches(
    parsed: NikInfo, field: str, label: str, birth_date: object, sex: object
) -> list[Issue]:
    issues = []
    base = {"field": field, "label": label}
    if isinstance(birth_date, date) and (parsed.day, parsed.month, parsed.yy) != (
        birth_date.day,
        birth_date.month,
        birth_date.year % 100,
    ):
        params = {
            **base,
            "nik_date": f"{parsed.day:02d}-{parsed.month:02d}-{parsed.yy:02d}",
            "birth_date": f"{birth_date.day:02d}-{birth_date.month:02d}-{birth_date.year:04d}",
        }
        issues.append(Issue.warning(field, "nik_birth_date_mismatch", params))
    if isinstance(sex, str) and sex in _SEX_LABELS and sex != parsed.sex:
        params = {
            **base,
            "nik_sex": _SEX_LABELS[parsed.sex][0],
            "nik_sex_en": _SEX_LABELS[parsed.sex][1],
            "sex": _SEX_LABELS[sex][0],
            "sex_en": _SEX_LABELS[sex][1],
        }
        issues.append(Issue.warning(field, "nik_sex_mismatch", params))
    return issues


def _sixteen_digits(
    text: str, field: str, base: Mapping[str, str], *, digits_code: str, length_code: str
) -> list[Issue]:
    if text and not (text.isascii() and text.isdigit()):
        return [Issue.error(field, digits_code, base)]
    if len(text) != 16:
        return [Issue.error(field, length_code, {**base, "length": str(len(text))})]
    return []


def _prefix_issues(
    prefix: str, field: str, base: Mapping[str, str], *, old_code: str, unknown_code: str
) -> list[Issue]:
    # A NIK or KK keeps the kecamatan where it was first issued, so an old code is real.
    if _is_current_kecamatan(prefix):
        return []
    dotted = format_dotted(prefix)
    if is_old_kecamatan(prefix):
        name = old_region_name(prefix) or ""
        return [Issue.warning(field, old_code, {**base, "prefix": dotted, "name": name})]
    return [Issue.warning(field, unknown_code, {**base, "prefix": dotted})]


#: :func:`is_current_kecamatan` of the prefixes met lately: a district's NIKs and family
#: cards share a few dozen (the answer depends on the code alone).
_is_current_kecamatan = functools.lru_cache(maxsize=4096)(is_current_kecamatan)


def _real_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def mask_number(value: object) -> str:
    """A NIK or family-card number as lists, printouts and logs show it: ``3201********0003``.

    Only the detail page of a household shows the full number (and that view is audited).
    """
    if not isinstance(value, str):
        return ""
    if len(value) < 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]
