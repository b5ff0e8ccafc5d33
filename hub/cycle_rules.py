"""The monthly cycle's rules, pure: periods, cut-off instants, states, who may do what.

No I/O here: :mod:`hub.cycle` applies these rules in transactions, the review UI uses the
same ones to decide which buttons to show. The plan is ``docs/cycle.md``.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo

from hub.roles import Role
from protocol.dataset import is_period

__all__ = [
    "STATE_LABELS",
    "Action",
    "CycleError",
    "State",
    "allowed",
    "cutoff_ms",
    "following",
    "next_state",
    "period_of",
    "previous",
]


class CycleError(Exception):
    """A step of the cycle that cannot be taken; ``code`` for machines, ``message`` in
    Bahasa Indonesia for the page."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class State(StrEnum):
    """Where a period stands; stored as its value."""

    OPEN = "terbuka"
    FROZEN = "dibekukan"
    LEADER_REVIEW = "ditinjau_pimpinan"
    SIGNED = "ditandatangani"
    FORWARDED = "diteruskan"
    PUBLISHED = "diterbitkan"

    @property
    def label(self) -> str:
        """The state's name on the page."""
        return STATE_LABELS[self]


STATE_LABELS: Mapping[State, str] = MappingProxyType(
    {
        State.OPEN: "Terbuka",
        State.FROZEN: "Dibekukan",
        State.LEADER_REVIEW: "Ditinjau pimpinan",
        State.SIGNED: "Ditandatangani",
        State.FORWARDED: "Diteruskan ke pusat",
        State.PUBLISHED: "Diterbitkan",
    }
)


class Action(StrEnum):
    """A step that moves a period."""

    FREEZE = "freeze"
    SUBMIT = "submit"
    RETURN_VILLAGES = "return_villages"
    SIGN = "sign"
    FORWARD = "forward"
    PUBLISH = "publish"


#: action → (the state it starts from, the state it leads to).
_STEPS: Mapping[Action, tuple[State, State]] = MappingProxyType(
    {
        Action.FREEZE: (State.OPEN, State.FROZEN),
        Action.SUBMIT: (State.FROZEN, State.LEADER_REVIEW),
        Action.RETURN_VILLAGES: (State.LEADER_REVIEW, State.FROZEN),
        Action.SIGN: (State.LEADER_REVIEW, State.SIGNED),
        Action.FORWARD: (State.SIGNED, State.FORWARDED),
        Action.PUBLISH: (State.FORWARDED, State.PUBLISHED),
    }
)

#: Who may take each step by hand (the sweep freezes and forwards on its own).
_ROLES: Mapping[Action, frozenset[Role]] = MappingProxyType(
    {
        Action.FREEZE: frozenset({Role.VERIFIER}),
        Action.SUBMIT: frozenset({Role.VERIFIER}),
        Action.RETURN_VILLAGES: frozenset({Role.LEADER}),
        Action.SIGN: frozenset({Role.LEADER}),
        Action.FORWARD: frozenset({Role.ADMIN}),
        Action.PUBLISH: frozenset({Role.ADMIN}),
    }
)

_REFUSALS: Mapping[Action, str] = MappingProxyType(
    {
        Action.FREEZE: "Periode hanya dapat dibekukan selagi terbuka.",
        Action.SUBMIT: "Periode hanya dapat diajukan ke pimpinan setelah dibekukan.",
        Action.RETURN_VILLAGES: "Desa hanya dapat dikembalikan selagi periode ditinjau pimpinan.",
        Action.SIGN: "Periode hanya dapat ditandatangani selagi ditinjau pimpinan.",
        Action.FORWARD: "Periode hanya dapat diteruskan setelah ditandatangani.",
        Action.PUBLISH: "Hasil hanya dapat diimpor setelah periode diteruskan ke pusat.",
    }
)


def allowed(action: Action, role: Role | str) -> bool:
    """Whether an account of ``role`` may take ``action`` by hand."""
    try:
        return Role(role) in _ROLES[action]
    except ValueError:
        return False


def next_state(state: State | str, action: Action) -> State:
    """The state after ``action``; :class:`CycleError` ``wrong_state`` if it does not start
    from ``state`` (a second click, or another worker, already moved the period)."""
    start, end = _STEPS[action]
    if State(state) is not start:
        raise CycleError(
            "wrong_state", f"{_REFUSALS[action]} Status sekarang: {State(state).label}."
        )
    return end


def _split(period: str) -> tuple[int, int]:
    if not is_period(period):
        raise ValueError(f"{period!r} is not a period (YYYY-MM)")
    year, month = period.split("-")
    return int(year), int(month)


def previous(period: str) -> str:
    """The month before ``period``."""
    year, month = _split(period)
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def following(period: str) -> str:
    """The month after ``period``."""
    year, month = _split(period)
    return f"{year + 1}-01" if month == 12 else f"{year}-{month + 1:02d}"


def cutoff_ms(period: str, day: int, time: str, tz: str) -> int:
    """The cut-off instant of ``period`` in Unix ms: ``day`` at ``time`` ("HH:MM") in the
    time zone ``tz``; a day past the month's end means its last day (31 in February)."""
    year, month = _split(period)
    hour, minute = (int(part) for part in time.split(":"))
    last = calendar.monthrange(year, month)[1]
    local = datetime(year, month, max(1, min(day, last)), hour, minute, tzinfo=ZoneInfo(tz))
    return int(local.timestamp() * 1000)


def period_of(now_ms: int, day: int, time: str, tz: str) -> str:
    """The open period at ``now_ms``: the first whose cut-off is after it (on the 18th,
    after the 17th's cut-off, this month's data already counts for next month)."""
    local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(tz))
    period = f"{local.year}-{local.month:02d}"
    while cutoff_ms(period, day, time, tz) <= now_ms:
        period = following(period)
    return period
