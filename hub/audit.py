"""The hub's audit trail (Jejak audit): who did what to which subject, and when.

Written in the caller's transaction, so an action and its audit entry commit together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub import db

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["record"]


async def record(
    conn: AsyncConnection,
    *,
    at_ms: int,
    actor: str,
    action: str,
    subject: str = "",
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Add one entry. ``action`` is a short dotted code (``review.decide``,
    ``cycle.sign``, ``household.view``); ``subject`` what it was done to (a record id, a
    period, a username)."""
    await conn.execute(
        db.audit.insert().values(
            at_ms=at_ms,
            actor=actor,
            action=action,
            subject=subject,
            detail=json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True),
        )
    )
