"""A small, honest async MQTT link over paho-mqtt 2.x, shared by the edge and the hub.

paho does the protocol in its own network thread; everything it reports (connack, suback,
puback, messages, disconnects) is handed to the event loop with
``loop.call_soon_threadsafe``, so callers only ever see coroutines and an async iterator,
never a thread or a paho callback.

Connecting is ours, not paho's: each attempt uses a fresh paho client (no stale packet ids,
no half-remembered in-flight messages: the edge's outbox and the hub's acks are the truth),
and between attempts we wait with exponential backoff and full jitter. A refused connect
(bad password, not authorised) counts as a failed attempt like any other, so a revoked box
does not hammer the broker.

Flow control (how a slow consumer slows the broker down without losing messages): a
message is acknowledged to the broker only when the caller acks it (``manual_ack=True``) or,
otherwise, when the caller takes it from :meth:`MqttLink.messages`. The broker sends at most
its in-flight window of unacknowledged QoS 1 messages (MQTT 5: our Receive Maximum, set to
``max_pending``; MQTT 3.1.1: Mosquitto's ``max_inflight_messages``, 20 by default) and keeps
the rest queued, so the bounded queue does not overflow and paho's thread never waits. If it
would (MQTT 3.1.1 with ``max_pending`` below the broker's window, or QoS 0), paho's thread
waits for room at most half a keepalive, so the connection stays alive meanwhile; if there
is still no room the message is left unacknowledged and the connection is closed, and the
broker delivers it again on the next session (with a clean session, the sender's own retry
covers it). Nothing is dropped, but each such stall costs a reconnect: with MQTT 3.1.1 keep
``max_pending`` at least the broker's ``max_inflight_messages``.

Topic aliases (MQTT 5, ``topic_aliases=True``, when the broker's CONNACK allows some): each
connection gives its first topics an alias; a publish names topic and alias until one such
publish was acknowledged (QoS 1) or written (QoS 0), and then the alias alone, so the broker
has always learnt an alias before it sees it without its topic, whatever paho queues. A new
connection starts without aliases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from puskesos.tomlconfig import BrokerConfig

__all__ = ["Message", "MqttLink", "Will"]

log = logging.getLogger("puskesos.mqtt")

#: A connection that stayed up this long resets the backoff; a shorter one (the broker
#: accepts and then drops us, e.g. another client took over our client id) keeps growing it.
_STABLE_S = 30.0
#: How long we wait for the broker's CONNACK / SUBACK before calling the attempt failed.
_HANDSHAKE_TIMEOUT_S = 30.0
#: How long ``stop()`` waits for the last message and the clean disconnect.
_STOP_TIMEOUT_S = 5.0

# Timeouts here are ``asyncio.timeout``, never ``asyncio.wait_for``: Python 3.11's wait_for
# swallows a cancellation that arrives as the awaited future completes (CPython gh-86296),
# and a connect that swallowed stop()'s cancel would wait for a disconnect that never comes.


@dataclass(frozen=True)
class Will:
    """The last will: published by the broker when the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass
class Message:
    """One received message. With ``manual_ack``, call :meth:`ack` once it is processed."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    _ack: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def ack(self) -> None:
        """Acknowledge to the broker (``manual_ack`` only; otherwise already done).

        A message from an earlier connection is not acked: its packet id may now belong to
        another message, and the broker delivers it again anyway (persistent session) or
        has forgotten it (clean session).
        """
        if self._ack is not None:
            ack, self._ack = self._ack, None
            ack()


class _Connection:
    """One attempt's paho client and what its network thread reports to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: paho.Client) -> None:
        self.client = client
        self.connack: asyncio.Future[tuple[ReasonCode, bool]] = loop.create_future()
        self.closed = asyncio.Event()
        self.close_reason = "connection lost"
        self.subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self.pubacks: dict[int, asyncio.Future[bool]] = {}
        self.up = False
        #: MQTT 5 topic aliases of this connection (``topic_aliases``): how many the broker
        #: takes (its CONNACK's Topic Alias Maximum), the one given to each topic, and the
        #: topics whose alias the broker has surely learnt (a publish naming topic and
        #: alias was acknowledged, or written for QoS 0): only those go without the topic.
        self.alias_max = 0
        self.aliases: dict[str, int] = {}
        self.known: set[str] = set()

    def fail_pending(self) -> None:
        """Nobody will answer these any more: a publish not acked now counts as not sent."""
        for puback in self.pubacks.values():
            if not puback.done():
                puback.set_result(False)
        for suback in self.subacks.values():
            if not suback.done():
                suback.set_exception(ConnectionError(self.close_reason))
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(self.close_reason))
        self.pubacks.clear()
        self.subacks.clear()


class MqttLink:
    """A connection to the broker that keeps itself up. Use ``async with`` or start/stop.

    ``password`` may be a function, called (in a thread) before each connect attempt.
    ``subscriptions`` are (filter, qos) pairs made again after every connect; then
    ``on_connect`` runs (keep it short: publish a status, wake a sender task).
    ``clean_start=False`` asks for a persistent session that outlives ``session_expiry_s``
    of absence (MQTT 5) or forever (MQTT 3.1.1). Received messages are read with
    :meth:`messages`; flow control is described in the module docstring.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        client_id: str,
        password: str | Callable[[], str | None] | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        will: Will | None = None,
        clean_start: bool = False,
        session_expiry_s: int = 7 * 24 * 3600,
        manual_ack: bool = False,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 120.0,
        max_pending: int = 100,
        topic_aliases: bool = False,
    ) -> None:
        if broker.mqtt_version not in (4, 5):
            raise ValueError(f"mqtt_version must be 4 or 5, not {broker.mqtt_version}")
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_min_s <= backoff_max_s")
        if not 0 < max_pending <= 65535:
            raise ValueError("max_pending must be within 1..65535 (MQTT Receive Maximum)")
        self.broker = broker
        self.client_id = client_id
        self._password = password
        self._subscriptions = list(subscriptions)
        self._will = will
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._manual_ack = manual_ack
        self._on_connect = on_connect
        self._backoff = (backoff_min_s, backoff_max_s)
        self._max_pending = max_pending
        self._topic_aliases = topic_aliases and broker.mqtt_version == 5
        # One extra slot for the end-of-stream marker put by stop().
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(max_pending + 1)
        # Free places in the queue, taken by paho's thread before it hands a message over.
        self._room = threading.Semaphore(max_pending)
        self._connected = asyncio.Event()
        self._conn: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop
        self._connects = 0
        self._disconnects = 0
        self._last_disconnect_reason: str | None = None

    # -- public API ---------------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting in the background and return at once (the box works offline)."""
        if self._task is not None or self._stopping:
            raise RuntimeError("an MqttLink is started once")
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.client_id}")

    async def stop(self, final: tuple[str, bytes, bool] | None = None) -> None:
        """Publish ``final`` (topic, payload, retain) if connected, then disconnect cleanly.

        A clean disconnect keeps the session (MQTT 5: for ``session_expiry_s``) and tells
        the broker not to publish the will, hence ``final`` for an "offline" status.
        Idempotent; afterwards :meth:`messages` ends and :meth:`publish` returns False.
        """
        if self._stopping:
            if self._task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._task)
            return
        self._stopping = True
        # First, so that paho's thread is not left waiting for room in the queue.
        self._close_messages()
        conn = self._conn
        if conn is not None and conn.up:
            if final is not None:
                topic, payload, retain = final
                await self.publish(topic, payload, retain=retain, timeout=_STOP_TIMEOUT_S)
            conn.close_reason = "stopped"
            conn.client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await conn.closed.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> MqttLink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def clean_start(self) -> bool:
        """Whether each connect asks for a new session (else it resumes the stored one)."""
        return self._clean_start

    @property
    def connected(self) -> bool:
        """Connected, subscribed, and able to publish."""
        return self._connected.is_set()

    @property
    def connects(self) -> int:
        """Connections that got as far as connected and subscribed, since :meth:`start`."""
        return self._connects

    @property
    def disconnects(self) -> int:
        """Of those, the ones lost (not ended by :meth:`stop`). ``connected`` alone hides a
        connection that drops and comes back between two looks at it: a broker kicking us
        off because another client took our client id, every few seconds."""
        return self._disconnects

    @property
    def last_disconnect_reason(self) -> str | None:
        """Why the last connection was lost, as paho reported it: the broker's reason code
        when it sent an MQTT 5 DISCONNECT (``Session taken over``, ``Keep alive timeout``),
        else ``Unspecified error`` for a closed socket (what Mosquitto 2.0 does to a client
        whose id another one took)."""
        return self._last_disconnect_reason

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected; False if ``timeout`` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 30,
    ) -> bool:
        """Publish; True once the broker accepted it (QoS 1: PUBACK; QoS 0: written out).

        False when not connected, when the connection drops first, on timeout, or when
        the broker refuses it (MQTT 5 reason code, e.g. 0x87 not authorised). Never raises
        for a network problem: the caller keeps the message and tries again later.
        """
        conn = self._conn
        if conn is None or not conn.up:
            return False
        name, properties = topic, None
        alias = conn.aliases.get(topic)
        if alias is None and len(conn.aliases) < conn.alias_max:
            alias = conn.aliases[topic] = len(conn.aliases) + 1
        if alias is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.TopicAlias = alias
            if topic in conn.known:
                name = ""  # 3 bytes of alias instead of the topic (about 45 on a box's)
        info = conn.client.publish(name, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        # Registered before any await: the puback callback only runs on this loop, later.
        future: asyncio.Future[bool] = self._loop.create_future()
        conn.pubacks[info.mid] = future
        try:
            async with asyncio.timeout(timeout):
                done = await future
        except TimeoutError:
            return False
        finally:
            conn.pubacks.pop(info.mid, None)
        if done and alias is not None:
            conn.known.add(topic)
        return done

    def close_intake(self) -> None:
        """Stop taking messages, leaving the connection up for what is still to publish.

        :meth:`messages` ends; what arrives from now on is left unacknowledged, so the
        broker delivers it again on the next session. For a shutdown that lets the
        handlers already running finish (and publish their acks): nobody reads the queue
        any more, and paho's thread must not wait for room in it meanwhile, because it
        is also the thread that reads our PUBACKs.
        """
        self._close_messages()

    def messages(self) -> AsyncIterator[Message]:
        """The received messages, in arrival order, until :meth:`stop`.

        Several readers share one stream (each message goes to one of them).
        """
        return self._iterate()

    # -- the message stream -------------------------------------------------------------

    async def _iterate(self) -> AsyncIterator[Message]:
        while not self._closed:
            message = await self._queue.get()
            if message is None:
                # Wake the next reader too; there is room, we just took one out.
                self._queue.put_nowait(None)
                return
            self._room.release()
            if not self._manual_ack:
                message.ack()
            yield message

    def _close_messages(self) -> None:
        self._closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        # A paho thread waiting for room must not wait out its timeout.
        self._room.release(self._max_pending)

    # -- connecting, in a loop ----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                ok = await self._session()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mqtt session failed", extra=self._log_extra())
                ok = False
            if self._stopping:
                return
            lasted = time.monotonic() - started
            attempt = 0 if ok and lasted >= _STABLE_S else attempt + 1
            low, high = self._backoff
            delay = random.uniform(low, min(high, low * 2 ** max(attempt - 1, 0)))
            log.info(
                "mqtt retry scheduled",
                extra={**self._log_extra(), "attempt": attempt, "retry_in_s": round(delay, 2)},
            )
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One connection from TCP connect to its end; True if it got as far as connected."""
        password = self._password
        if callable(password):  # read afresh for each attempt (a rotated password)
            password = await asyncio.to_thread(password)
        client = self._new_client(password)
        conn = _Connection(self._loop, client)
        attempt = asyncio.ensure_future(asyncio.to_thread(self._connect_blocking, client))
        try:
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The thread finishes its connect regardless; drop that socket when it does.
            attempt.add_done_callback(lambda _: _discard(client))
            raise
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.info("mqtt connect failed", extra={**self._log_extra(), "error": str(exc)})
            return False
        self._conn = conn
        client.loop_start()
        try:
            return await self._connected_phase(conn)
        finally:
            self._connected.clear()
            conn.up = False
            conn.fail_pending()
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            if self._conn is conn:
                self._conn = None

    async def _connected_phase(self, conn: _Connection) -> bool:
        try:
            async with asyncio.timeout(_HANDSHAKE_TIMEOUT_S):
                reason, session_present = await conn.connack
        except TimeoutError:
            log.warning("mqtt no connack", extra=self._log_extra())
            return False
        except ConnectionError as exc:
            log.info("mqtt connect failed", extra={**self._log_extra(), "error": str(exc)})
            return False
        if reason.is_failure:
            # Bad credentials or a revoked device: an operator has to act; retrying fast
            # would only fill the broker's log.
            log.warning(
                "mqtt connect refused",
                extra={**self._log_extra(), "reason": str(reason), "code": reason.value},
            )
            return False
        if not await self._subscribe(conn):
            return False
        conn.up = True
        self._connects += 1
        self._connected.set()
        log.info(
            "mqtt connected",
            extra={**self._log_extra(), "session_present": session_present},
        )
        if self._on_connect is not None and not conn.closed.is_set():
            try:
                await self._on_connect()
            except Exception:
                log.exception("mqtt on_connect failed", extra=self._log_extra())
        await conn.closed.wait()
        if conn.close_reason != "stopped":
            self._disconnects += 1
            self._last_disconnect_reason = conn.close_reason
        log.info(
            "mqtt disconnected",
            extra={
                **self._log_extra(),
                "reason": conn.close_reason,
                "disconnects": self._disconnects,
            },
        )
        return True

    async def _subscribe(self, conn: _Connection) -> bool:
        if not self._subscriptions:
            return True
        result, mid = conn.client.subscribe(self._subscriptions)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return False
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        conn.subacks[mid] = future
        try:
            async with asyncio.timeout(_HANDSHAKE_TIMEOUT_S):
                codes = await future
        except (TimeoutError, ConnectionError):
            log.warning("mqtt subscribe failed", extra=self._log_extra())
            return False
        for (topic, _qos), code in zip(self._subscriptions, codes, strict=False):
            if code.is_failure:
                # The connection is still useful (publishing); the ACL decides, say so.
                log.warning(
                    "mqtt subscription refused",
                    extra={**self._log_extra(), "filter": topic, "reason": str(code)},
                )
        return True

    def _log_extra(self) -> dict[str, Any]:
        return {
            "broker": f"{self.broker.host}:{self.broker.port}",
            "client_id": self.client_id,
        }

    # -- the paho client and its callbacks (these run in paho's thread) -----------------

    def _new_client(self, password: str | None) -> paho.Client:
        v5 = self.broker.mqtt_version == 5
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else self._clean_start,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if self.broker.username:
            client.username_pw_set(self.broker.username, password)
        if self._will is not None:
            client.will_set(
                self._will.topic, self._will.payload, qos=self._will.qos, retain=self._will.retain
            )
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_subscribe = self._paho_subscribe
        client.on_publish = self._paho_publish
        client.on_message = self._paho_message
        return client

    def _connect_blocking(self, client: paho.Client) -> None:
        if self.broker.tls:
            client.tls_set(ca_certs=self.broker.ca_file or None)
        if self.broker.mqtt_version == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.ReceiveMaximum = self._max_pending
            if not self._clean_start:
                properties.SessionExpiryInterval = self._session_expiry_s
            client.connect(
                self.broker.host,
                self.broker.port,
                self.broker.keepalive_s,
                clean_start=self._clean_start,
                properties=properties,
            )
        else:
            # MQTT 3.1.1: the clean-session flag was given to the client itself.
            client.connect(self.broker.host, self.broker.port, self.broker.keepalive_s)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    def _conn_of(self, client: paho.Client) -> _Connection | None:
        conn = self._conn
        return conn if conn is not None and conn.client is client else None

    def _paho_connect(
        self, client: paho.Client, _u: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        aliases = getattr(properties, "TopicAliasMaximum", 0) if self._topic_aliases else 0

        def deliver() -> None:
            conn = self._conn_of(client)
            if conn is not None and not conn.connack.done():
                conn.alias_max = aliases
                conn.connack.set_result((reason, bool(flags.session_present)))

        self._call(deliver)

    def _paho_disconnect(
        self, client: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        def deliver() -> None:
            conn = self._conn_of(client)
            if conn is None:
                return
            if conn.close_reason == "connection lost":
                conn.close_reason = str(reason)
            self._connected.clear()
            conn.up = False
            conn.closed.set()
            conn.fail_pending()

        self._call(deliver)

    def _paho_subscribe(
        self, client: paho.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        def deliver() -> None:
            conn = self._conn_of(client)
            future = conn.subacks.pop(mid, None) if conn is not None else None
            if future is not None and not future.done():
                future.set_result(list(codes))

        self._call(deliver)

    def _paho_publish(
        self, client: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any
    ) -> None:
        def deliver() -> None:
            conn = self._conn_of(client)
            future = conn.pubacks.pop(mid, None) if conn is not None else None
            if future is None or future.done():
                return
            if reason.is_failure:
                log.warning(
                    "mqtt publish refused",
                    extra={**self._log_extra(), "mid": mid, "reason": str(reason)},
                )
            future.set_result(not reason.is_failure)

        self._call(deliver)

    def _paho_message(self, client: paho.Client, _u: Any, raw: paho.MQTTMessage) -> None:
        if self._closed:
            return  # unacknowledged: the broker delivers it again next session
        half_keepalive = max(self.broker.keepalive_s / 2, 1.0)
        if not self._room.acquire(timeout=half_keepalive) or self._closed:
            if not self._closed:
                log.warning(
                    "mqtt queue full, reconnecting for redelivery",
                    extra={**self._log_extra(), "topic": raw.topic},
                )
                client.disconnect()
            return
        qos, mid = raw.qos, raw.mid
        message = Message(
            topic=raw.topic,
            payload=bytes(raw.payload),
            qos=qos,
            retain=bool(raw.retain),
            mid=mid,
            _ack=(lambda: self._ack(client, mid, qos)) if qos > 0 else None,
        )
        self._call(self._queue.put_nowait, message)

    def _ack(self, client: paho.Client, mid: int, qos: int) -> None:
        # Not ``conn.up``: a persistent session delivers queued messages before our SUBACK.
        conn = self._conn_of(client)
        if conn is not None and not conn.closed.is_set():
            client.ack(mid, qos)


def _discard(client: paho.Client) -> None:
    """Close the socket of a connect nobody waits for any more."""
    with contextlib.suppress(Exception):
        client.disconnect()
