"""Matching members with the civil registry (pemadanan Dukcapil, ``docs/registry.md`` §6).

The ministry returns a submission whose people the civil registry does not know, or knows
with another name, birth date or sex. The district matches its members with an extract of
the civil registry before the month's submission; each member gets the list of what
differs (the member field ``civil_flags``), shown to the verifier and on the box. Matching
never changes the data itself: people fix it, or the civil registry does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from rapidfuzz import fuzz

__all__ = ["NAME_SIMILARITY", "CivilEntry", "civil_flags", "civil_sex", "same_name"]

#: Two names at least this similar (rapidfuzz token-sort ratio, 0–100, after folding case,
#: accents and punctuation) are the same person's: spelling, spacing and word order vary.
NAME_SIMILARITY: Final = 85
_NOT_LETTERS = re.compile(r"[^a-z ]+")
_SEX: Final = {
    "l": "laki_laki", "laki-laki": "laki_laki", "laki laki": "laki_laki", "laki_laki": "laki_laki",
    "lk": "laki_laki", "pria": "laki_laki", "1": "laki_laki",
    "p": "perempuan", "pr": "perempuan", "perempuan": "perempuan", "wanita": "perempuan",
    "2": "perempuan",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CivilEntry:
    """One person as the civil registry lists them (dates ``YYYY-MM-DD``, sex as our code;
    empty when the extract does not say)."""

    nik: str
    name: str
    birth_date: str = ""
    sex: str = ""


def civil_sex(text: str) -> str:
    """Our code for a civil registry's sex (``L``, ``PEREMPUAN``, ``1``...), else ``""``."""
    return _SEX.get(text.strip().casefold(), "")


def _fold(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return " ".join(_NOT_LETTERS.sub(" ", plain.casefold()).split())


def same_name(ours: str, theirs: str) -> bool:
    """Whether two spellings are the same name (see :data:`NAME_SIMILARITY`): word order
    and where the spaces fall ("Nurhaliza" / "Nur Haliza") do not matter."""
    a, b = _fold(ours), _fold(theirs)
    joined = fuzz.ratio(a.replace(" ", ""), b.replace(" ", ""))
    return max(fuzz.token_sort_ratio(a, b), joined) >= NAME_SIMILARITY


def civil_flags(member: Mapping[str, object], entry: CivilEntry | None) -> list[str]:
    """What differs between a member's values and the civil registry's entry for its NIK
    (``None``: the NIK is not there), as codes of the member field ``civil_flags``."""
    if entry is None:
        return ["nik_unknown"]
    flags = []
    name = member.get("name")
    if isinstance(name, str) and entry.name and not same_name(name, entry.name):
        flags.append("name_differs")
    birth = member.get("birth_date")
    if entry.birth_date and isinstance(birth, str) and birth != entry.birth_date:
        flags.append("birth_date_differs")
    sex = member.get("sex")
    if entry.sex and isinstance(sex, str) and sex != entry.sex:
        flags.append("sex_differs")
    return flags
