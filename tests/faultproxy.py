"""A fault-injecting TCP proxy for tests: what a village's 2G link does to MQTT.

One proxy stands between one box and the broker (loopback only). It forwards both ways
with a bandwidth cap and a latency per chunk (2G shaping), and can, on demand, cut every
connection (a flapping link) or refuse new ones for a while (a partition). It counts the
bytes it forwarded each way (``bytes_up``: box → broker, ``bytes_down``: broker → box) and
keeps them (``seen``: what a sniffer on the link reads; ``seen_up``: what the box sent,
alone). It runs its own asyncio loop in a
thread so that tests written as plain functions can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass

__all__ = ["FaultProxy", "Shaping"]


@dataclass(frozen=True, slots=True)
class Shaping:
    """Per direction: bytes per second (0: unlimited) and seconds of latency per chunk."""

    rate_bps: int = 0
    latency_s: float = 0.0


class FaultProxy:
    """``127.0.0.1:port`` → ``127.0.0.1:upstream``; :meth:`stop` once done."""

    def __init__(self, upstream: int, shaping: Shaping = Shaping()) -> None:
        self.upstream = upstream
        self.shaping = shaping
        self.port = 0
        self.cuts = 0
        #: Bytes forwarded box → broker and broker → box, over every connection so far.
        self.bytes_up = 0
        self.bytes_down = 0
        #: Every byte forwarded either way, as a sniffer on the link would see it.
        self.seen = bytearray()
        self.seen_up = bytearray()
        self._down_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    # --- control, from the test's thread ---------------------------------------------------

    def cut(self) -> None:
        """Drop every open connection at once (the modem lost its carrier)."""
        self._call(self._cut_all)

    def partition(self, seconds: float) -> None:
        """Cut everything and refuse new connections for ``seconds``."""
        self._down_until = time.monotonic() + seconds
        self.cut()

    def heal(self, shaping: Shaping = Shaping()) -> None:
        """End any partition and shape from now on as ``shaping`` (unlimited by default)."""
        self._down_until = 0.0
        self.shaping = shaping

    def stop(self) -> None:
        """Close everything and end the proxy's thread."""

        async def shutdown() -> None:
            self._close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, function) -> None:  # type: ignore[no-untyped-def]
        done = threading.Event()

        def run() -> None:
            try:
                function()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    # --- the loop's side -------------------------------------------------------------------

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()
        self._loop.close()

    def _cut_all(self) -> None:
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _close(self) -> None:
        self._cut_all()
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._down_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, up=True)),
            asyncio.create_task(self._pump(up_reader, writer, up=False)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for end in (writer, up_writer):
            self._writers.discard(end)
            end.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(4096):
                shaping = self.shaping
                delay = shaping.latency_s
                if shaping.rate_bps:
                    delay += len(chunk) / shaping.rate_bps
                if delay:
                    await asyncio.sleep(delay)
                writer.write(chunk)
                self.seen += chunk
                if up:
                    self.bytes_up += len(chunk)
                    self.seen_up += chunk
                else:
                    self.bytes_down += len(chunk)
                await writer.drain()
