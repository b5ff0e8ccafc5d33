"""Household search: what a query asks for, the text each record is found by, and why a
household matched. Pure: the box's store runs the query (``Store.search_households``), and
the hub's verification queue (``hub.review.queue``) reads numbers and names the same way.

A record's *search key* (the ``records.search_key`` column) is its folded text: a member's
name; a household's address followed by its RT and RW between ``\\x1f`` separators, in
capitals with digits as letters (RT 003/RW 005: ``"kp. babakan no. 12\\x1fRTD\\x1fRWF\\x1f"``).
A query is a list of *needles*, and a record matches when its key contains every one of
them. Folded text holds neither ``\\x1f`` (it is whitespace) nor capitals, so typed text
(even "3") cannot match the RT/RW part, and the RT/RW needles (``"\\x1fRTD\\x1f"``) match
nothing but an RT or RW: the whole search is one pass over the
``(entity, search_key, household_id)`` index.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.changes import Value
from protocol.issues import Issue

__all__ = [
    "NUMBER_LENGTH",
    "NUMBER_LIKE",
    "Match",
    "Query",
    "SearchTokens",
    "fold",
    "matches",
    "number_digits",
    "number_issue",
    "parse_query",
    "search_key",
]

#: A NIK and a family-card (KK) number are this many digits.
NUMBER_LENGTH = 16
_SEPARATOR = "\x1f"
_CAPITAL_DIGITS = str.maketrans("0123456789", "ABCDEFGHIJ")
#: Combining marks of Latin letters (é = e + U+0301): dropped, so "Jose" finds "José".
_LATIN_MARKS = re.compile("[\u0300-\u036f]")
#: A number this long is a NIK or KK, maybe mistyped: no address or RT/RW has one.
NUMBER_LIKE = 10
_NUMBER_PUNCTUATION = re.compile(r"[\s.\-]")
_DIGITS = re.compile(r"[0-9]+")
#: "RT 3", "rt.003", "RW:5".
_AREA = re.compile(r"\b(rt|rw)\s*[.:]?\s*(\d{1,3})\b")
#: "RT/RW 3/5", or the whole query "003/005".
_AREA_PAIR = re.compile(
    r"\brt\s*/\s*rw\s*[.:]?\s*(\d{1,3})\s*/\s*(\d{1,3})\b|^(\d{1,3})\s*/\s*(\d{1,3})$"
)


def fold(text: str) -> str:
    """Text as a search compares it: case-folded, without the accents of Latin letters,
    whitespace (control characters included) collapsed to single spaces."""
    plain = _LATIN_MARKS.sub("", unicodedata.normalize("NFKD", text))
    return " ".join(unicodedata.normalize("NFC", plain).casefold().split())


def _area(value: Value) -> str:
    """An RT or RW as keys hold it: "003" and "3" are the same RT, written in capitals
    (digits as A to J) so that no typed text matches it."""
    text = value.strip() if isinstance(value, str) else ""
    text = str(int(text)) if text.isascii() and text.isdigit() else fold(text)
    return text.translate(_CAPITAL_DIGITS).upper()


def _area_needle(kind: str, value: Value) -> str:
    return f"{_SEPARATOR}{kind}{_area(value)}{_SEPARATOR}"


def search_key(entity: str, shown: Mapping[str, Value]) -> str | None:
    """The text a search finds a record by (see the module's docstring); ``None`` for the
    entities a household search does not read."""
    if entity == "member":
        name = shown.get("name")
        return fold(name) if isinstance(name, str) and name else None
    if entity == "household":
        address = shown.get("address")
        text = fold(address) if isinstance(address, str) else ""
        rt, rw = _area_needle("RT", shown.get("rt")), _area_needle("RW", shown.get("rw"))
        return text + rt + rw[1:]
    return None


@dataclass(frozen=True, slots=True)
class Query:
    """What a search box's text asks for.

    ``number``: a 16-digit NIK or KK (then nothing else is asked). ``text``: folded text
    found in a member's name or the address. ``rt``/``rw``: the household's RT and RW.
    """

    number: str = ""
    text: str = ""
    rt: str = ""
    rw: str = ""

    def __bool__(self) -> bool:
        return bool(self.number or self.text or self.rt or self.rw)

    @property
    def area(self) -> str:
        """The needle of the RT and RW asked for ("" when neither is)."""
        rt = _area_needle("RT", self.rt) if self.rt else ""
        rw = _area_needle("RW", self.rw) if self.rw else ""
        return rt + rw[1:] if rt and rw else rt or rw


def _longest_number(text: str) -> str:
    runs = _DIGITS.findall(_NUMBER_PUNCTUATION.sub("", text))
    return max(runs, key=len, default="")


def number_digits(text: str) -> int:
    """How many digits the longest number in ``text`` has (spaces, dots and dashes between
    digits ignored). From :data:`NUMBER_LIKE` on, the text is taken for a NIK or KK number,
    typed in full or not: it is never put in a URL (addresses and browser histories are
    read by many)."""
    return len(_longest_number(text))


def holds_number(text: str) -> bool:
    """Whether ``text`` is taken for a NIK or KK number (:func:`number_digits`): such a
    search goes by POST, never into a URL."""
    return number_digits(text) >= NUMBER_LIKE


def number_issue(field: str, text: str) -> Issue | None:
    """The error of a search box (``field``) holding a NIK or KK number of the wrong length,
    else ``None``."""
    length = number_digits(text)
    if NUMBER_LIKE <= length != NUMBER_LENGTH:
        return Issue.error(field, "search_number_length", {"length": str(length)})
    return None


def parse_query(text: str) -> Query:
    """The query a search box's text asks for: a NIK or KK number (spaces, dots and
    dashes between its digits allowed, words around it ignored: "KK 3201-..."), else an RT
    and/or RW ("RT 3", "rw 05", "RT/RW 3/5", "003/005") and the rest as text."""
    number = _longest_number(text)
    if len(number) == NUMBER_LENGTH and number.isascii():
        return Query(number=number)
    folded = fold(text)
    area: dict[str, str] = {}
    pair = _AREA_PAIR.search(folded)
    if pair:
        rt, rw = pair.group(1, 2) if pair.group(1) else pair.group(3, 4)
        area = {"rt": rt, "rw": rw}
        folded = folded[: pair.start()] + " " + folded[pair.end() :]
    for kind, value in _AREA.findall(folded):
        area.setdefault(kind, value)
    rest = _AREA.sub(" ", folded) if area else folded
    return Query(text=fold(rest.strip(" /,.-")), **area)


@dataclass(frozen=True, slots=True)
class Match:
    """Why a household is in a search's answer. ``what``: ``name`` or ``nik`` (of the
    member ``member``), ``kk``, ``address`` or ``area`` (its RT/RW)."""

    what: str
    member: str = ""


def matches(
    query: Query, household: Mapping[str, Value], members: Sequence[Mapping[str, Value]]
) -> list[Match]:
    """Why ``household`` (with ``members``) answers ``query``: members first."""
    found: list[Match] = []
    if query.number:
        found += [
            Match("nik", str(m.get("name") or "")) for m in members if m.get("nik") == query.number
        ]
        if household.get("kk_number") == query.number:
            found.append(Match("kk"))
        return found
    if query.text:
        for member in members:
            if query.text in (search_key("member", member) or ""):
                found.append(Match("name", str(member.get("name"))))
        address = household.get("address")
        if query.text in fold(address if isinstance(address, str) else ""):
            found.append(Match("address"))
    if query.area:
        found.append(Match("area"))
    return found


@dataclass(frozen=True, slots=True)
class _Held:
    username: str
    number: str
    expires_ms: int


class SearchTokens:
    """Searches by NIK or KK number, held on the server under a random token: the page of
    the answer has the token in its URL, never the number. A token answers only the user
    who searched, for ``lifetime_ms`` (so the back button and reload still work), and the
    box or hub keeps at most ``capacity`` of them (the oldest go first)."""

    def __init__(self, *, lifetime_ms: int = 30 * 60_000, capacity: int = 1000) -> None:
        self._held: dict[str, _Held] = {}
        self._lifetime_ms = lifetime_ms
        self._capacity = capacity

    def hold(self, username: str, number: str, now_ms: int) -> str:
        """A new token for ``username``'s search of ``number``."""
        self._held = {t: h for t, h in self._held.items() if h.expires_ms > now_ms}
        while len(self._held) >= self._capacity:
            del self._held[next(iter(self._held))]
        token = secrets.token_urlsafe(16)
        self._held[token] = _Held(username, number, now_ms + self._lifetime_ms)
        return token

    def number(self, token: str, username: str, now_ms: int) -> str | None:
        """The number searched under ``token`` by ``username``, or ``None`` when the token
        is unknown, expired or another user's."""
        held = self._held.get(token)
        if held is None or held.expires_ms <= now_ms or held.username != username:
            return None
        return held.number
