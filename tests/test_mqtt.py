"""The async MQTT link against a real Mosquitto (the ``mosquitto`` fixture): what a box and
a hub worker rely on."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from puskesos.mqtt import Message, MqttLink, Will
from puskesos.tomlconfig import BrokerConfig
from tests.mqtt_broker import MosquittoBroker, make_certificates

FAST = {"backoff_min_s": 0.05, "backoff_max_s": 0.2}


def config(broker: MosquittoBroker, version: int = 5, **kwargs: Any) -> BrokerConfig:
    return BrokerConfig(host=broker.host, port=broker.port, mqtt_version=version, **kwargs)


@asynccontextmanager
async def running(link: MqttLink, *, connect: bool = True) -> AsyncIterator[MqttLink]:
    await link.start()
    try:
        if connect:
            assert await link.wait_connected(10), "link did not connect"
        yield link
    finally:
        await link.stop()


async def receive(link: MqttLink, count: int, timeout: float = 10) -> list[Message]:
    got: list[Message] = []

    async def read() -> None:
        async for message in link.messages():
            got.append(message)
            if len(got) == count:
                return

    await asyncio.wait_for(read(), timeout)
    return got


async def nothing_arrives(link: MqttLink, wait: float = 0.5) -> bool:
    try:
        await receive(link, 1, wait)
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize("version", [5, 4])
async def test_a_published_batch_reaches_the_subscriber_once_acked(
    mosquitto: MosquittoBroker, version: int
) -> None:
    hub = MqttLink(
        config(mosquitto, version),
        client_id="hub-1",
        subscriptions=[("puskesos/v1/+/+/+/up", 1)],
        clean_start=True,
        **FAST,
    )
    box = MqttLink(config(mosquitto, version), client_id="box-a", **FAST)
    async with running(hub), running(box):
        assert await box.publish("puskesos/v1/3201/3201010001/box-a/up", b"batch-1")
        [message] = await receive(hub, 1)
    assert message.topic == "puskesos/v1/3201/3201010001/box-a/up"
    assert message.payload == b"batch-1"
    assert message.qos == 1
    assert not message.retain


async def test_the_box_starts_offline_and_connects_when_the_broker_appears(
    tmp_path: Path,
) -> None:
    broker = MosquittoBroker(tmp_path / "late")
    hellos: list[bool] = []

    async def on_connect() -> None:
        hellos.append(await box.publish("status/box-a", b"online", retain=True))

    box = MqttLink(config(broker), client_id="box-a", on_connect=on_connect, **FAST)
    async with running(box, connect=False):
        assert not box.connected
        assert not await box.publish("status/box-a", b"while offline")
        assert not await box.wait_connected(0.3)
        broker.start()
        try:
            assert await box.wait_connected(10)
            await asyncio.sleep(0.2)
            assert hellos == [True]
        finally:
            broker.kill()


async def test_after_a_broker_restart_the_link_resubscribes_and_greets_again(
    mosquitto: MosquittoBroker,
) -> None:
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1

    # A clean session: only the resubscription brings the messages back.
    hub = MqttLink(
        config(mosquitto),
        client_id="hub-1",
        subscriptions=[("t/up", 1)],
        clean_start=True,
        on_connect=on_connect,
        **FAST,
    )
    box = MqttLink(config(mosquitto), client_id="box-a", **FAST)
    async with running(hub), running(box):
        mosquitto.restart()
        assert await _eventually(lambda: hub.connected and box.connected and connects == 2)
        assert await box.publish("t/up", b"after restart")
        [message] = await receive(hub, 1)
    assert message.payload == b"after restart"


async def _eventually(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.parametrize("version", [5, 4])
async def test_messages_sent_while_the_box_is_away_wait_in_its_persistent_session(
    mosquitto: MosquittoBroker, version: int
) -> None:
    box_config = config(mosquitto, version)
    subscriptions = [("box-a/down", 1)]
    async with running(MqttLink(box_config, client_id="box-a", subscriptions=subscriptions)):
        pass
    hub = MqttLink(config(mosquitto, version), client_id="hub-1", clean_start=True, **FAST)
    async with running(hub):
        for n in range(3):
            assert await hub.publish("box-a/down", f"down-{n}".encode())
    box = MqttLink(box_config, client_id="box-a", subscriptions=subscriptions, **FAST)
    async with running(box):
        got = await receive(box, 3)
    assert [m.payload for m in got] == [b"down-0", b"down-1", b"down-2"]


async def test_a_message_the_hub_never_acked_is_delivered_again(
    mosquitto: MosquittoBroker,
) -> None:
    """manual_ack: a worker that dies between receiving and committing loses nothing."""
    worker = {
        "client_id": "hub-1",
        "subscriptions": [("t/up", 1)],
        "manual_ack": True,
        **FAST,
    }
    box = MqttLink(config(mosquitto), client_id="box-a", **FAST)
    async with running(box):
        async with running(MqttLink(config(mosquitto), **worker)) as first:
            assert await box.publish("t/up", b"batch-7")
            [unacked] = await receive(first, 1)
            assert unacked.payload == b"batch-7"
        async with running(MqttLink(config(mosquitto), **worker)) as second:
            [again] = await receive(second, 1)
            assert again.payload == b"batch-7"
            again.ack()
        async with running(MqttLink(config(mosquitto), **worker)) as third:
            assert await nothing_arrives(third)


async def test_a_slow_reader_holds_the_broker_back_and_loses_nothing(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5: our Receive Maximum makes the broker wait; no stall, no reconnect."""
    hub = MqttLink(
        config(mosquitto),
        client_id="hub-1",
        subscriptions=[("t/up", 1)],
        clean_start=True,
        max_pending=2,
        **FAST,
    )
    box = MqttLink(config(mosquitto), client_id="box-a", **FAST)
    async with running(hub), running(box):
        for n in range(20):
            assert await box.publish("t/up", str(n).encode())
        await asyncio.sleep(0.3)
        got = await receive(hub, 20)
        assert hub.connected
    assert [int(m.payload) for m in got] == list(range(20))
    assert not [r for r in caplog.records if r.getMessage().startswith("mqtt queue full")]


async def test_hub_workers_on_a_shared_subscription_split_the_batches(
    mosquitto: MosquittoBroker,
) -> None:
    def worker(name: str) -> MqttLink:
        return MqttLink(
            config(mosquitto),
            client_id=name,
            subscriptions=[("$share/hub/puskesos/v1/+/+/+/up", 1)],
            clean_start=True,
            **FAST,
        )

    box = MqttLink(config(mosquitto), client_id="box-a", **FAST)
    first, second = worker("hub-1"), worker("hub-2")
    seen: dict[str, list[bytes]] = {"hub-1": [], "hub-2": []}

    async def collect(link: MqttLink) -> None:
        async for message in link.messages():
            seen[link.client_id].append(message.payload)

    async with running(first), running(second), running(box):
        readers = [asyncio.create_task(collect(first)), asyncio.create_task(collect(second))]
        for n in range(20):
            assert await box.publish("puskesos/v1/3201/3201010001/box-a/up", b"%d" % n)
        assert await _eventually(lambda: len(seen["hub-1"]) + len(seen["hub-2"]) == 20)
        await asyncio.sleep(0.2)
    await asyncio.gather(*readers)
    assert seen["hub-1"] and seen["hub-2"], "both workers get a share"
    assert sorted(seen["hub-1"] + seen["hub-2"]) == sorted(b"%d" % n for n in range(20))


async def test_a_clean_stop_leaves_the_final_status_not_the_will(
    mosquitto: MosquittoBroker,
) -> None:
    will = Will("status/box-a", b"offline-will")
    box = MqttLink(config(mosquitto), client_id="box-a", will=will, **FAST)
    await box.start()
    assert await box.wait_connected(10)
    await box.stop(final=("status/box-a", b"offline-clean", True))
    await box.stop(final=("status/box-a", b"offline-again", True))  # idempotent: no effect
    watcher = MqttLink(
        config(mosquitto), client_id="watcher", subscriptions=[("status/+", 1)], **FAST
    )
    async with running(watcher):
        [status] = await receive(watcher, 1)
    assert status.retain
    assert status.payload == b"offline-clean"


BOX_SCRIPT = """
import asyncio, sys
from puskesos.mqtt import MqttLink, Will
from puskesos.tomlconfig import BrokerConfig

async def main():
    link = MqttLink(
        BrokerConfig(port={port}), client_id="box-a",
        will=Will("status/box-a", b"offline-will"),
    )
    await link.start()
    await link.wait_connected(10)
    print("connected", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_box_that_loses_power_is_reported_offline_by_its_will(
    mosquitto: MosquittoBroker,
) -> None:
    script = textwrap.dedent(BOX_SCRIPT).format(port=mosquitto.port)
    box = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert box.stdout is not None
        line = await asyncio.to_thread(box.stdout.readline)
        assert line.strip() == b"connected"
    finally:
        box.kill()
        box.wait()
        if box.stdout is not None:
            box.stdout.close()
    watcher = MqttLink(
        config(mosquitto), client_id="watcher", subscriptions=[("status/+", 1)], **FAST
    )
    async with running(watcher):
        [status] = await receive(watcher, 1)
    assert status.retain
    assert status.payload == b"offline-will"


@pytest.mark.parametrize("version", [5, 4])
async def test_a_refused_password_backs_off_instead_of_hammering_the_broker(
    tmp_path: Path, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    password_file = tmp_path / "passwd"
    password_file.write_text("")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(password_file), "box-a", "benar-sekali"], check=True
    )
    broker = MosquittoBroker(tmp_path / "auth", password_file=password_file)
    broker.start()
    try:
        wrong = MqttLink(
            config(broker, version, username="box-a"),
            client_id="box-a",
            password="salah",
            backoff_min_s=0.1,
            backoff_max_s=0.4,
        )
        with caplog.at_level(logging.INFO, logger="puskesos.mqtt"):
            async with running(wrong, connect=False):
                await asyncio.sleep(2)
                assert not wrong.connected
        refusals = [r for r in caplog.records if r.getMessage() == "mqtt connect refused"]
        # Backoff 0.1, ≤0.2, ≤0.4, ≤0.4, ... within 2 s: a handful, not hundreds.
        assert 3 <= len(refusals) <= 12
        right = MqttLink(
            config(broker, version, username="box-a"),
            client_id="box-a",
            password="benar-sekali",
            **FAST,
        )
        async with running(right):
            assert right.connected
    finally:
        broker.kill()


@pytest.mark.parametrize("version", [5, 4])
async def test_a_client_that_takes_our_client_id_kicks_us_off_and_it_is_counted(
    mosquitto: MosquittoBroker, version: int
) -> None:
    """The broker drops a client when another connects with the same id; the link comes
    back at once, so only its counts show that it keeps being kicked off (issue 14)."""
    hub = MqttLink(config(mosquitto, version), client_id="hub-1", clean_start=True, **FAST)
    async with running(hub):
        assert (hub.connects, hub.disconnects, hub.last_disconnect_reason) == (1, 0, None)
        intruder = MqttLink(config(mosquitto, version), client_id="hub-1", clean_start=True, **FAST)
        async with running(intruder):
            assert await _eventually(lambda: hub.disconnects >= 2 and hub.connects >= 3)
        assert hub.last_disconnect_reason  # the broker's reason code, or paho's
        assert await _eventually(lambda: hub.connected)
    assert hub.connects == hub.disconnects + 1, "a clean stop is not a lost connection"


async def test_after_stop_the_stream_ends_and_publish_says_no(
    mosquitto: MosquittoBroker,
) -> None:
    link = MqttLink(config(mosquitto), client_id="box-a", subscriptions=[("t", 1)], **FAST)
    await link.start()
    assert await link.wait_connected(10)
    reader = asyncio.create_task(receive(link, 1))
    await asyncio.sleep(0.1)
    await link.stop()
    await link.stop()
    assert await reader == []  # the stream ended
    assert not link.connected
    assert not await link.publish("t", b"too late")


async def test_a_stop_at_any_moment_of_the_handshake_ends_the_link(
    mosquitto: MosquittoBroker,
) -> None:
    """A hub worker stopped while it connects must not hang (CI once waited 300 s for a
    link whose connect had swallowed stop()'s cancellation)."""
    started = asyncio.get_running_loop().time()
    async with running(MqttLink(config(mosquitto), client_id="probe", subscriptions=[("t", 1)])):
        handshake = asyncio.get_running_loop().time() - started
    for step in range(40):
        link = MqttLink(
            config(mosquitto), client_id=f"hub-{step}", subscriptions=[("t", 1)], **FAST
        )
        await link.start()
        await asyncio.sleep(handshake * 1.5 * step / 40)
        async with asyncio.timeout(10):
            await link.stop()
        assert not link.connected
        assert not await link.publish("t", b"after stop")


async def test_after_closing_intake_a_full_queue_does_not_hold_up_a_publish(
    mosquitto: MosquittoBroker,
) -> None:
    """A hub shutting down stops reading but lets its running handlers publish their acks:
    paho's thread, waiting for room in a queue nobody reads, would not read the PUBACKs."""
    box = MqttLink(
        config(mosquitto, 4, keepalive_s=60),
        client_id="box-a",
        subscriptions=[("box-a/down", 1)],
        max_pending=2,
        **FAST,
    )
    hub = MqttLink(config(mosquitto, 4), client_id="hub-1", clean_start=True, **FAST)
    async with running(box), running(hub):
        for n in range(5):
            assert await hub.publish("box-a/down", b"%d" % n)
        await asyncio.sleep(0.3)  # two fill the queue; paho's thread waits with the third
        box.close_intake()
        assert await receive(box, 1) == [], "the stream ended"
        assert await box.publish("box-a/up", b"ack", timeout=5), "the PUBACK was read"
        assert box.connected


@pytest.mark.slow
async def test_without_a_receive_window_a_full_queue_costs_a_reconnect_not_a_message(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 3.1.1 has no Receive Maximum: Mosquitto sends up to 20 at once, we hold 2."""
    box = MqttLink(
        config(mosquitto, 4, keepalive_s=2),
        client_id="box-a",
        subscriptions=[("box-a/down", 1)],
        max_pending=2,
        **FAST,
    )
    hub = MqttLink(config(mosquitto, 4), client_id="hub-1", clean_start=True, **FAST)
    with caplog.at_level(logging.WARNING, logger="puskesos.mqtt"):
        async with running(box), running(hub):
            for n in range(5):
                assert await hub.publish("box-a/down", b"%d" % n)
            await asyncio.sleep(2.5)  # the box is busy; paho gives up waiting after 1 s
            got: set[bytes] = set()

            async def read() -> None:
                async for message in box.messages():
                    got.add(message.payload)
                    if len(got) == 5:
                        return

            await asyncio.wait_for(read(), 15)
    assert got == {b"%d" % n for n in range(5)}
    assert any(r.getMessage().startswith("mqtt queue full") for r in caplog.records)


async def test_with_tls_the_link_trusts_only_the_configured_ca(tmp_path: Path) -> None:
    ca, certificate, key = make_certificates(tmp_path / "pki")
    broker = MosquittoBroker(tmp_path / "tls", tls=(certificate, key))
    broker.start()
    try:
        trusting = MqttLink(config(broker, tls=True, ca_file=str(ca)), client_id="box-a", **FAST)
        async with running(trusting):
            assert await trusting.publish("t", b"over tls")
        # The system CAs do not know this one: no connection, and no plain-text fallback.
        doubting = MqttLink(config(broker, tls=True), client_id="box-b", **FAST)
        async with running(doubting, connect=False):
            assert not await doubting.wait_connected(1)
    finally:
        broker.kill()


@pytest.mark.parametrize("version", [5, 4])
async def test_a_box_names_each_topic_once_per_connection_then_its_alias(
    mosquitto: MosquittoBroker, version: int
) -> None:
    """MQTT 5 topic aliases (Mosquitto allows 10 a client): after the first acknowledged
    publish of a topic, the box sends its 3-byte alias instead; every message still arrives
    under its topic, after a reconnect too (aliases start over). MQTT 3.1.1: topics."""
    from tests.faultproxy import FaultProxy

    up, status = "puskesos/v1/3201/3201010001/box-a/up", "puskesos/v1/3201/3201010001/box-a/status"
    proxy = FaultProxy(mosquitto.port)
    hub = MqttLink(
        config(mosquitto, version),
        client_id="hub-1",
        subscriptions=[("puskesos/v1/+/+/+/+", 1)],
        clean_start=True,
        **FAST,
    )
    box_config = BrokerConfig(host="127.0.0.1", port=proxy.port, mqtt_version=version)
    box = MqttLink(box_config, client_id="box-a", topic_aliases=True, **FAST)
    try:
        async with running(hub), running(box):
            for round_ in range(2):
                sent = [(up, b"batch-%d" % n) for n in range(4)] + [(status, b"{}")] * 2
                results = [await box.publish(t, p, retain=t == status) for t, p in sent]
                assert all(results)
                got = await receive(hub, len(sent))
                assert [(m.topic, m.payload) for m in got] == sent
                if round_ == 0:
                    proxy.cut()  # a new connection: the aliases start over
                    assert await box.wait_connected(10)
                    await asyncio.sleep(0.3)
                    while box.connects < 2:
                        await asyncio.sleep(0.1)
    finally:
        proxy.stop()
    named = bytes(proxy.seen_up).count(up.encode())
    assert named == (2 if version == 5 else 8)  # once per connection, or every time
