"""Signing in to a locked box (``docs/storage.md`` §3).

An encrypted box starts with no store open: its data key is only in the key slots. A staff
member's sign-in unwraps their slot with Argon2id of the password; with the key, the store
is opened and the box stays unlocked until it stops. While locked, the sign-in throttle of
:mod:`puskesos.throttle` applies as on an open box (same rule, same answers, about the
same time for an unknown name, a wrong password or a refusal) but counts in memory: the
database that keeps its counts is what is locked. A restart forgets those counts; each
guess still costs an Argon2id of 64 MiB.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from edge import db, keys
from edge.auth import throttle_of
from edge.config import EdgeConfig
from edge.store import wall_ms

__all__ = ["LockedSignIn"]

log = logging.getLogger("puskesos.edge.unlock")


class LockedSignIn:
    """The sign-in of a locked box: the throttle in memory, the slots on disk."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self._gate = throttle_of(config)
        self._engine = sa.create_engine("sqlite://", poolclass=StaticPool)
        db.login_throttle.create(self._engine)
        #: One unlock at a time: a second sign-in waits, then finds the box open.
        self.lock = asyncio.Lock()

    async def data_key(
        self, username: str, password: str, address: str
    ) -> tuple[bytes | None, int]:
        """The data key when ``password`` opens ``username``'s slot; else ``None`` and how
        long (ms) this name from ``address`` is now refused (0: just a wrong password)."""
        now = wall_ms()
        with self._engine.begin() as conn:
            refused = self._gate.refused_ms(conn, username, address, now)
        if refused:
            await asyncio.to_thread(keys.spend, self.config, password)
            return None, refused
        key = await asyncio.to_thread(keys.open_with_password, self.config, username, password)
        with self._engine.begin() as conn:
            if key is not None:
                self._gate.forget_pair(conn, username, address, now)
                return key, 0
            failure = self._gate.record_failure(conn, username, address, now)
        # Not in the audit trail: it is in the locked database.
        log.warning("sign-in to the locked box failed from %s", address)
        return None, failure.refused_ms
