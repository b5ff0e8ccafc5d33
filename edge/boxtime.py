"""The best time the box knows, and whether its own clock can be trusted for dates.

A box has no RTC: after a power cut its wall clock may say 1970. Dates people type (a
birth date "not after today", this month's proposal period) are judged against the best
time the box knows, the latest of:

- its wall clock;
- the physical part of its hybrid clock, which never goes back (it is persisted) and moves
  past every stamp heard from the hub, the time reference;
- a date an admin confirmed on the clock warning (``/jam``): the start of that day, moved
  on by the wall clock's run since the confirmation while the box has not restarted and
  its clock is still in the same wrong era (so a clock set right later, or a reboot back
  to 1970, cannot stretch the confirmed day);
- :data:`SOFTWARE_DATE`: no box runs this software before it was written.

The wall clock is *trusted* only when it is not before :data:`SOFTWARE_DATE` and not more
than ``max_clock_drift_ms`` behind the best time. Otherwise the box's "today" is a lower
bound rather than a fact, and validation warns about a date after it instead of refusing
the save (``clock_trusted`` in :mod:`protocol.validate`): a box must never refuse a save
because of its own clock.

:func:`best_time` is pure; :func:`confirm_today` writes an admin's confirmation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from edge import auditchain, db
from edge.records import AuditEntry, audit_row
from protocol.clock import COUNTER_BITS

if TYPE_CHECKING:
    from edge.store import Store

__all__ = [
    "CONFIRMATION_KEY",
    "SOFTWARE_DATE",
    "BoxTime",
    "Confirmation",
    "best_time",
    "confirm_today",
]

#: The first day this software existed: a wall clock before it is certainly wrong.
SOFTWARE_DATE = date(2026, 1, 1)
#: The ``meta`` key of the admin's latest confirmation of today's date (JSON).
CONFIRMATION_KEY = "clock_confirmed"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """An admin said that today is ``day``, when the box's wall clock read ``wall_ms``."""

    day: date
    wall_ms: int
    by: str

    def to_json(self) -> str:
        return json.dumps({"day": self.day.isoformat(), "wall_ms": self.wall_ms, "by": self.by})

    @classmethod
    def from_json(cls, text: str | None) -> Confirmation | None:
        """The stored confirmation; ``None`` for none or an unreadable one (it is only a
        hint: the box works without it)."""
        if not text:
            return None
        try:
            found = json.loads(text)
            return cls(date.fromisoformat(found["day"]), int(found["wall_ms"]), str(found["by"]))
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class BoxTime:
    """The best time the box knows (Unix ms), its date in the village, and whether the
    box's wall clock agrees with it (see the module docstring)."""

    ms: int
    today: date
    trusted: bool


def _start_of(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(), zone).timestamp() * 1000)


def best_time(
    wall_ms: int,
    clock_state: int,
    confirmation: Confirmation | None,
    *,
    max_drift_ms: int,
    timezone: str,
) -> BoxTime:
    """The best time the box knows from its wall clock, its hybrid clock's persisted state
    and an admin's confirmation, in the village's ``timezone``."""
    zone = ZoneInfo(timezone)
    floor_ms = _start_of(SOFTWARE_DATE, zone)
    known = [wall_ms, clock_state >> COUNTER_BITS, floor_ms]
    if confirmation is not None:
        confirmed = _start_of(confirmation.day, zone)
        # Same run in the same wrong era: the wall clock has counted the time since.
        if confirmation.wall_ms <= wall_ms < floor_ms:
            confirmed += wall_ms - confirmation.wall_ms
        known.append(confirmed)
    best = max(known)
    trusted = wall_ms >= floor_ms and best - wall_ms <= max_drift_ms
    return BoxTime(best, datetime.fromtimestamp(best / 1000, zone).date(), trusted)


async def confirm_today(store: Store, day: date, *, actor: str, address: str = "") -> None:
    """Record that an admin confirmed today's date: in ``meta`` with who and when, and in
    the audit trail, in one transaction. From then on the day is a floor of the box's
    best-known time (:meth:`edge.store.Store.box_time`)."""
    wall = store.now_ms()
    before = store.box_time()
    confirmation = Confirmation(day, wall, actor)
    detail = {"day": day.isoformat(), "box_date": before.today.isoformat(), "wall_ms": wall}
    row = audit_row(AuditEntry(actor, "clock_confirm", detail=detail, address=address), wall)

    def write(conn: sa.Connection) -> None:
        db.put_meta(conn, CONFIRMATION_KEY, confirmation.to_json())
        auditchain.append(conn, [row])

    await store.run_write(write)
    store.clock_confirmation = confirmation
