"""The password rule of box and hub accounts, applied whenever a password is set.

A password has at least :data:`MIN_LENGTH` characters, is not a common password (the list
in ``puskesos/data/common_passwords.txt``, also with digits and signs around it or the
usual letter swaps: ``Bismillah2026!``, ``p@ssw0rd``), does not contain the user name, and
does not contain the name or code of the box's village, its kecamatan or its regency (the
hub's regency). Accounts whose password was set before keep signing in with it.

Messages come in Bahasa Indonesia for the pages and in English for the command line.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable
from importlib import resources

from protocol.regions import RegionCodeError, region_name

__all__ = ["MESSAGES", "MIN_LENGTH", "WeakPassword", "check_password", "place_words", "weakness"]

MIN_LENGTH = 10

#: code → (Bahasa Indonesia, English).
MESSAGES = {
    "too_short": (
        f"Kata sandi minimal {MIN_LENGTH} karakter.",
        f"a password needs at least {MIN_LENGTH} characters",
    ),
    "common": (
        "Kata sandi ini terlalu umum dan mudah ditebak. Pilih yang lain.",
        "this password is too common and easy to guess",
    ),
    "has_username": (
        "Kata sandi tidak boleh memuat nama pengguna.",
        "a password must not contain the user name",
    ),
    "has_place": (
        "Kata sandi tidak boleh memuat nama atau kode desa, kecamatan atau kabupaten.",
        "a password must not contain the name or code of the village, kecamatan or regency",
    ),
}

#: Letters people swap for digits and signs.
_UNLEET = str.maketrans("0134578@$!", "oieastbasi")
#: What a stem is stripped of: "Bismillah2026!" is "bismillah".
_AROUND = string.digits + string.punctuation + string.whitespace
#: Place names and user names shorter than this are not looked for inside a password.
_SHORTEST_WORD = 4
_SHORTEST_USERNAME = 3


class WeakPassword(ValueError):
    """A password the rule refuses: ``code``, ``message`` (Bahasa Indonesia) and
    ``english``; ``str()`` gives both, for the command line."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.message, self.english = MESSAGES[code]
        super().__init__(f"{self.english} ({self.message})")


@functools.cache
def _common() -> frozenset[str]:
    text = resources.files("puskesos").joinpath("data/common_passwords.txt").read_text("utf-8")
    words = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(word for word in words if word)


def _squash(text: str) -> str:
    """Letters and digits only, lower case: ``Gunung Putri`` is ``gunungputri``."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _is_common(password: str) -> bool:
    lower = password.lower()
    core = lower.strip(_AROUND)
    candidates = {lower, core, _squash(lower), _squash(core)}
    candidates |= {candidate.translate(_UNLEET) for candidate in set(candidates)}
    candidates |= {_squash(candidate) for candidate in set(candidates)}
    if len(set(lower)) < 4 or not candidates.isdisjoint(_common()):
        return True
    # Digits only, around a run from the list: "12345678910", "20261234567".
    digits = _squash(lower)
    return digits.isdigit() and any(
        digits.startswith(run) or digits.endswith(run) for run in _common_runs()
    )


@functools.cache
def _common_runs() -> tuple[str, ...]:
    return tuple(word for word in _common() if word.isdigit() and len(word) >= 6)


def weakness(
    password: str, *, username: str = "", places: Iterable[str] = ()
) -> WeakPassword | None:
    """Why ``password`` may not be set for ``username`` (``None``: it may).

    ``places`` are words the password must not contain (:func:`place_words`)."""
    if len(password) < MIN_LENGTH:
        return WeakPassword("too_short")
    if _is_common(password):
        return WeakPassword("common")
    squashed = _squash(password)
    name = _squash(username)
    if len(name) >= _SHORTEST_USERNAME and (
        name in squashed or name in squashed.translate(_UNLEET)
    ):
        return WeakPassword("has_username")
    if any(word in squashed for word in places):
        return WeakPassword("has_place")
    return None


def check_password(password: str, *, username: str = "", places: Iterable[str] = ()) -> None:
    """Raise :class:`WeakPassword` if ``password`` may not be set (see :func:`weakness`)."""
    problem = weakness(password, username=username, places=places)
    if problem is not None:
        raise problem


@functools.cache
def place_words(code: str) -> tuple[str, ...]:
    """What a password for a box of village ``code`` (or a hub of regency ``code``) must not
    contain: the names of the region and of its parents up to the regency, squashed, with
    and without "Kabupaten"/"Kota", and the code of a kecamatan or village. Nothing for an
    empty or unknown code."""
    plain = code.strip()
    if not plain:
        return ()
    words: set[str] = set()
    for digits in (10, 6, 4):
        if len(plain) < digits:
            continue
        part = plain[:digits]
        try:
            name = region_name(part)
        except (RegionCodeError, KeyError, ValueError):
            name = None
        if name is None:
            continue
        words.add(_squash(name))
        for prefix in ("kabupaten ", "kota "):
            if name.lower().startswith(prefix):
                words.add(_squash(name[len(prefix) :]))
        if digits >= 6:
            words.add(part)
    return tuple(sorted(word for word in words if len(word) >= _SHORTEST_WORD))
