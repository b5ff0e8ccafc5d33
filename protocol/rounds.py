"""The verification round: the period in which every household of a village should be
visited once (``docs/registry.md`` section 3). The ministry asks for data updated at least
every three months, so by default the year is cut into quarters.

Pure and shared: the box lists who is still to be visited this round, the hub reports each
village's progress, and both must agree on where a round starts and ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

__all__ = ["ROUND_MONTHS", "Round", "round_of"]

#: The lengths a round may have, in months: each divides the year.
ROUND_MONTHS: Final = (1, 2, 3, 4, 6, 12)

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun",
                  "Jul", "Agu", "Sep", "Okt", "Nov", "Des")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Round:
    """One round: ``start`` and ``end`` are its first and last day."""

    start: date
    end: date

    @property
    def code(self) -> str:
        """``YYYY-MM`` of its first month."""
        return f"{self.start.year:04d}-{self.start.month:02d}"

    @property
    def label(self) -> str:
        """How the UI names it: ``Okt–Des 2026``, ``Des 2026`` for a one-month round."""
        first, last = _MONTHS[self.start.month - 1], _MONTHS[self.end.month - 1]
        months = first if first == last else f"{first}–{last}"
        return f"{months} {self.start.year}"

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end


def round_of(day: date, months: int = 3) -> Round:
    """The round ``day`` falls in, for rounds of ``months`` months from January."""
    if months not in ROUND_MONTHS:
        raise ValueError(f"round_months must be one of {ROUND_MONTHS}")
    first = (day.month - 1) // months * months + 1
    start = date(day.year, first, 1)
    after = first + months
    end = (date(day.year + 1, 1, 1) if after > 12 else date(day.year, after, 1)) - timedelta(1)
    return Round(start, end)
