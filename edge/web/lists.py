"""How long lists reach the browser: a page at a time on screen (``?page=N``, its filters
kept in the links), and whole but streamed when printed, so that no list of a village is
ever held in memory at once (``docs/edge.md``, "Lists and memory").
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from aiohttp import web
from yarl import URL

from edge.web.app import STORE, encoded, page_pieces
from puskesos.webpages import secure

__all__ = ["Paged", "page_number", "paged", "pager_base", "stream_page"]

T = TypeVar("T")

#: Encoded chunks of a streamed page waiting for the network: what a slow phone may keep
#: the box holding (a chunk is about 100 KB of HTML).
_QUEUED_CHUNKS = 4


def page_number(request: web.Request) -> int:
    """The 1-based ``?page=`` of a list (1 when missing or not a positive number)."""
    text = request.query.get("page", "1")
    # ASCII digits only ("²".isdigit() is true), and a page SQLite can still count to.
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return 1
    return max(int(text), 1)


def pager_base(request: web.Request, path: str | None = None) -> str:
    """This list's URL (``path`` when a form posted elsewhere shows the list) with its
    filters and without ``page``, ready for ``page=N``."""
    query = {k: v for k, v in request.query.items() if k != "page"}
    url = str(URL(path or request.path).with_query(query))
    return url + ("&" if query else "?")


@dataclass
class Paged(Generic[T]):
    """One page of a list: its items, how many the whole list holds, and where it is."""

    items: list[T]
    total: int
    page: int
    size: int

    @property
    def first(self) -> int:
        """How many items of the list come before this page's first."""
        return (self.page - 1) * self.size


def paged(items: Iterable[T], page: int, size: int) -> Paged[T]:
    """Page ``page`` (1-based, ``size`` items) of ``items``: all are counted, only that
    page's are kept."""
    start = (page - 1) * size
    kept: list[T] = []
    total = 0
    for item in items:
        if start <= total < start + size:
            kept.append(item)
        total += 1
    return Paged(kept, total, page, size)


class _Gone(Exception):
    """The browser went away while its page was being streamed."""


async def stream_page(
    request: web.Request, template: str, context: Callable[[sa.Connection], Mapping[str, Any]]
) -> web.StreamResponse:
    """A page rendered on a reader thread from ``context(conn)`` (whose lists may be
    generators reading ``conn``, all in one read transaction) and sent while it renders:
    the box holds a few chunks of it, never the whole page."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUED_CHUNKS)
    gone = threading.Event()

    def put(chunk: bytes | None) -> None:
        sent = asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop)
        while not gone.is_set():
            try:
                return sent.result(timeout=1)
            except TimeoutError:
                continue
        sent.cancel()
        raise _Gone

    def render(conn: sa.Connection) -> None:
        try:
            for chunk in encoded(page_pieces(request, template, **context(conn))):
                put(chunk)
        finally:
            if not gone.is_set():
                put(None)

    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    secure(request, response)
    rendering = asyncio.ensure_future(request.app[STORE].read(render))
    try:
        await response.prepare(request)
        while (chunk := await chunks.get()) is not None:
            await response.write(chunk)
    finally:
        gone.set()
        with contextlib.suppress(_Gone):
            await rendering
    await response.write_eof()
    return response
