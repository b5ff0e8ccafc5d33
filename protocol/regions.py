"""Kemendagri region codes: provinces, regencies/cities, kecamatan and villages.

The codes come from the package data in ``protocol/data`` (see its README): the 2025 edition
(Kepmendagri 300.2.2-2138/2025) and the province, regency and kecamatan codes of the
2016–2023 editions that no longer exist (the Papua provinces split in 2022). A NIK keeps the
kecamatan of its first registration for life, so an old code is still a real code.

The tables are read on first use and kept for the life of the process. An edge box is a
Raspberry Pi, so the 91,600 current codes are held in a compact form (per level, a sorted
``array`` of codes and one UTF-8 ``bytes`` of names) rather than as a dict of strings: about
2 MB instead of about 15 MB.

Codes on the wire and in the database are plain digits (``3201012001``); the dotted form
(``32.01.01.2001``) is for people.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Literal

from protocol.errors import MalformedError

__all__ = [
    "LEVEL_DIGITS",
    "LEVEL_LABELS",
    "Region",
    "RegionCodeError",
    "RegionLevel",
    "district_label",
    "format_dotted",
    "is_current_kecamatan",
    "is_old_kecamatan",
    "lookup",
    "normalize_region_code",
    "old_region_name",
    "region_level",
    "region_name",
    "village_label",
]

RegionLevel = Literal["provinsi", "kabupaten", "kecamatan", "desa"]

#: How many digits a plain code of each level has.
LEVEL_DIGITS: Mapping[RegionLevel, int] = MappingProxyType(
    {"provinsi": 2, "kabupaten": 4, "kecamatan": 6, "desa": 10}
)

#: Indonesian and English names of the levels, for messages.
LEVEL_LABELS: Mapping[RegionLevel, tuple[str, str]] = MappingProxyType(
    {
        "provinsi": ("provinsi", "province"),
        "kabupaten": ("kabupaten/kota", "regency/city"),
        "kecamatan": ("kecamatan", "district (kecamatan)"),
        "desa": ("desa/kelurahan", "village"),
    }
)

_LEVEL_BY_DIGITS: dict[int, RegionLevel] = {digits: level for level, digits in LEVEL_DIGITS.items()}
_PLAIN_RE = re.compile(r"[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{4})?)?)?")
_DOTTED_RE = re.compile(r"[0-9]{2}(?:\.[0-9]{2}(?:\.[0-9]{2}(?:\.[0-9]{4})?)?)?")
_CURRENT_FILE = "wilayah_kemendagri_2025.csv"
_OLD_FILE = "wilayah_kode_lama_2016_2023.csv"


class RegionCodeError(MalformedError, ValueError):
    """A region code that is not 2, 4, 6 or 10 digits (plain or dotted)."""

    #: Validation code of this error in :mod:`protocol.messages`.
    code = "region_shape"


@dataclass(frozen=True, slots=True)
class Region:
    """One region of the current edition.

    ``province``, ``regency`` and ``kecamatan`` name the regions that contain this one,
    itself included (a kecamatan's ``kecamatan`` is its own name); levels below this
    region's own are ``None``.
    """

    code: str
    dotted: str
    name: str
    level: RegionLevel
    province: str
    regency: str | None
    kecamatan: str | None


def normalize_region_code(text: str) -> str:
    """Return the plain-digit form of a region code given plain or dotted.

    ``"32.01.01.2001"`` and ``"3201012001"`` both give ``"3201012001"``; surrounding blanks
    are ignored. Raises :class:`RegionCodeError` (a ``ValueError``) for any other shape.
    This checks the shape only; see :func:`lookup` for whether the code exists.
    """
    if not isinstance(text, str):
        raise RegionCodeError(f"expected a string, got {type(text).__name__}")
    candidate = text.strip()
    if _PLAIN_RE.fullmatch(candidate):
        return candidate
    if _DOTTED_RE.fullmatch(candidate):
        return candidate.replace(".", "")
    raise RegionCodeError(f"not a 2, 4, 6 or 10 digit region code: {text[:40]!r}")


def format_dotted(code: str) -> str:
    """Return the dotted form of a code: ``"3201012001"`` gives ``"32.01.01.2001"``."""
    plain = normalize_region_code(code)
    parts = [plain[0:2], plain[2:4], plain[4:6], plain[6:10]]
    return ".".join(part for part in parts if part)


def region_level(code: str) -> RegionLevel:
    """Return the level a code's shape stands for (it need not exist)."""
    return _LEVEL_BY_DIGITS[len(normalize_region_code(code))]


def region_name(code: str) -> str | None:
    """Return the 2025-edition name of a region, or ``None`` if the code does not exist."""
    plain = normalize_region_code(code)
    return _current().name(plain)


def lookup(code: str) -> Region | None:
    """Return a region of the 2025 edition with the names of its parents, or ``None``."""
    plain = normalize_region_code(code)
    table = _current()
    name = table.name(plain)
    if name is None:
        return None
    level = _LEVEL_BY_DIGITS[len(plain)]
    # A current code's parents are current too: the edition is one consistent tree.
    province = table.name(plain[:2]) or ""
    regency = table.name(plain[:4]) if len(plain) >= 4 else None
    kecamatan = table.name(plain[:6]) if len(plain) >= 6 else None
    return Region(plain, format_dotted(plain), name, level, province, regency, kecamatan)


def village_label(code: str) -> str:
    """How people name a village: ``"Desa Wanaherang, Kec. Gunung Putri"`` (``Kel.`` for a
    kelurahan, whose 4-digit part starts with 1); the code itself if the 2025 edition
    does not have it."""
    region = lookup(code) if _PLAIN_RE.fullmatch(code) and len(code) == 10 else None
    if region is None:
        return code
    kind = "Kel." if code[6] == "1" else "Desa"
    return f"{kind} {region.name}, Kec. {region.kecamatan}"


def district_label(code: str) -> str:
    """How people name a district: ``"Kabupaten Bogor"`` (or ``"Kota …"``), as the 2025
    edition writes it; ``"Kabupaten 3201"`` if it does not have the code."""
    name = region_name(code) if _PLAIN_RE.fullmatch(code) and len(code) == 4 else None
    return name or f"Kabupaten {code}"


def old_region_name(code: str) -> str | None:
    """Return the name a province, regency or kecamatan code had in the 2016–2023 editions.

    Only codes that no longer exist in 2025 are listed; for any other code this is ``None``.
    """
    return _old().get(normalize_region_code(code))


def is_current_kecamatan(code6: str) -> bool:
    """Whether a code is a kecamatan of the 2025 edition."""
    plain = normalize_region_code(code6)
    return len(plain) == 6 and _current().name(plain) is not None


def is_old_kecamatan(code6: str) -> bool:
    """Whether a code is a kecamatan that existed in 2016–2023 but not in 2025."""
    plain = normalize_region_code(code6)
    return len(plain) == 6 and plain in _old()


class _Level:
    """The codes of one level, sorted, with their names packed into one bytes object."""

    __slots__ = ("codes", "names", "offsets")

    def __init__(self) -> None:
        self.codes = array("q")
        self.offsets = array("I", [0])
        self.names = bytearray()

    def add(self, code: int, name: str) -> None:
        self.codes.append(code)
        self.names += name.encode()
        self.offsets.append(len(self.names))

    def name(self, code: int) -> str | None:
        index = bisect_left(self.codes, code)
        if index == len(self.codes) or self.codes[index] != code:
            return None
        return self.names[self.offsets[index] : self.offsets[index + 1]].decode()

    def is_sorted(self) -> bool:
        return all(a < b for a, b in zip(self.codes, self.codes[1:], strict=False))

    def sorted_copy(self) -> _Level:
        entries = sorted(
            (self.codes[i], bytes(self.names[self.offsets[i] : self.offsets[i + 1]]))
            for i in range(len(self.codes))
        )
        copy = _Level()
        for code, name in entries:
            copy.add(code, name.decode())
        return copy


class _Table:
    __slots__ = ("levels",)

    def __init__(self, rows: Iterator[tuple[str, str]]) -> None:
        self.levels = {digits: _Level() for digits in _LEVEL_BY_DIGITS}
        for plain, name in rows:
            self.levels[len(plain)].add(int(plain), name)
        for digits, level in self.levels.items():
            # The file is in dotted order, which is numeric order within a level.
            if not level.is_sorted():
                self.levels[digits] = level.sorted_copy()

    def name(self, plain: str) -> str | None:
        return self.levels[len(plain)].name(int(plain))


def _rows(filename: str) -> Iterator[tuple[str, str]]:
    source = resources.files("protocol").joinpath("data").joinpath(filename)
    # Streamed row by row (no whole-file string): the peak matters on a Pi.
    with source.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader)
        if [column.strip().lower() for column in header] != ["kode", "nama"]:
            raise RuntimeError(f"{filename}: unexpected header {header!r}")
        for row in reader:
            if len(row) != 2:
                raise RuntimeError(f"{filename}: bad row {row!r}")
            yield normalize_region_code(row[0]), row[1].strip()


@functools.cache
def _current() -> _Table:
    return _Table(_rows(_CURRENT_FILE))


@functools.cache
def _old() -> Mapping[str, str]:
    return MappingProxyType({code: _tidy_old_name(name) for code, name in _rows(_OLD_FILE)})


def _tidy_old_name(name: str) -> str:
    # The older editions spell regencies in capitals ("KAB. MERAUKE").
    if not name.isupper():
        return name
    if name.startswith("KAB. "):
        name = "KABUPATEN " + name[len("KAB. ") :]
    return name.title()
