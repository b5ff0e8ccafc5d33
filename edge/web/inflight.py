"""The requests inside the box's open store, so that closing it (Kunci perangkat, the
securing of a plain box) waits for them instead of pulling the store from under them
(``docs/storage.md`` §3)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["StoreUsers"]


class StoreUsers:
    """The tasks of the requests that passed the guard into the open store. A request is
    one task in aiohttp, so its task names it, also deep inside a handler."""

    def __init__(self) -> None:
        self._inside: set[asyncio.Task[Any]] = set()
        self._none = asyncio.Event()
        self._none.set()

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """The current request is using the store until the block ends."""
        task = asyncio.current_task()
        assert task is not None
        self._inside.add(task)
        self._none.clear()
        try:
            yield
        finally:
            self._left(task)

    def step_out(self) -> None:
        """The current request (if it is one) is about to open, secure or close the store
        itself: closing must not wait for it."""
        task = asyncio.current_task()
        if task is not None:
            self._left(task)

    async def gone(self, timeout: float) -> bool:
        """Wait until no request is inside, at most ``timeout`` seconds; whether none is."""
        try:
            await asyncio.wait_for(self._none.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _left(self, task: asyncio.Task[Any]) -> None:
        self._inside.discard(task)
        if not self._inside:
            self._none.set()
