"""The device registry: enrolling, listing, revoking and re-keying boxes on both databases,
and the broker files it writes, enforced by a real Mosquitto."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine

from hub import db
from hub.devices import (
    DeviceError,
    add_device,
    list_devices,
    revoke_device,
    rotate_device,
    write_broker_config,
)
from hub.mosquitto import verify_mosquitto_hash
from protocol.topics import Topic, TopicKind, hub_filters
from puskesos import cli
from puskesos.mqtt import Message, MqttLink
from puskesos.tomlconfig import BrokerConfig
from tests.factories import DEFAULT_VILLAGE
from tests.mqtt_broker import MosquittoBroker

NOW = 1_750_000_000_000
OTHER_VILLAGE = "3201022002"
HUB_PASSWORD = "kata-sandi-hub-yang-panjang"


@pytest.fixture
async def engine(hub_url: str) -> AsyncIterator[AsyncEngine]:
    """A fresh hub database, on SQLite and on PostgreSQL."""
    engine = db.create_engine(hub_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A fresh SQLite hub database (for the broker tests: the dialect does not matter)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite'}"
    await asyncio.to_thread(db.upgrade, url)
    engine = db.create_engine(url)
    yield engine
    await engine.dispose()


async def test_an_enrolled_box_gets_a_password_once_and_the_hub_keeps_only_hashes(
    engine: AsyncEngine,
) -> None:
    password = await add_device(engine, village=DEFAULT_VILLAGE, node="edge-a", now_ms=NOW)
    await add_device(engine, village="32.01.02.2001", node="edge-b", now_ms=NOW + 1)
    await add_device(engine, village=OTHER_VILLAGE, node="edge-c", now_ms=NOW + 2)

    assert len(password) >= 24
    assert password.replace("-", "").replace("_", "").isalnum()
    devices = await list_devices(engine)
    assert [(d.node, d.village, d.status) for d in devices] == [
        ("edge-a", DEFAULT_VILLAGE, "active"),
        ("edge-b", DEFAULT_VILLAGE, "active"),
        ("edge-c", OTHER_VILLAGE, "active"),
    ]
    assert devices[0].created_ms == NOW
    assert devices[0].last_seen_ms is None and devices[0].outbox is None
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(db.devices).where(db.devices.c.node == "edge-a"))).one()
        villages = (await conn.execute(sa.select(db.villages.c.code))).scalars().all()
    assert password not in (row.password_hash, row.broker_hash)
    assert PasswordHasher().verify(row.password_hash, password)
    assert verify_mosquitto_hash(password, row.broker_hash)
    assert not verify_mosquitto_hash("tebakan", row.broker_hash)
    assert sorted(villages) == [DEFAULT_VILLAGE, OTHER_VILLAGE]


async def test_unknown_villages_bad_node_ids_and_reused_node_ids_are_refused(
    engine: AsyncEngine,
) -> None:
    for village in ("3201022999", "3201", "desa-ku"):
        with pytest.raises(DeviceError, match="not a village code"):
            await add_device(engine, village=village, node="edge-a", now_ms=NOW)
    for node in ("Edge A", "e", "edge_a"):
        with pytest.raises(DeviceError, match="not valid"):
            await add_device(engine, village=DEFAULT_VILLAGE, node=node, now_ms=NOW)

    await add_device(engine, village=DEFAULT_VILLAGE, node="edge-a", now_ms=NOW)
    with pytest.raises(DeviceError, match="never reused"):
        await add_device(engine, village=DEFAULT_VILLAGE, node="edge-a", now_ms=NOW)
    assert await revoke_device(engine, "edge-a", NOW + 10)
    # A wiped box cannot come back under its old id, not even after revocation.
    with pytest.raises(DeviceError, match="never reused"):
        await add_device(engine, village=DEFAULT_VILLAGE, node="edge-a", now_ms=NOW + 20)
    assert [d.node for d in await list_devices(engine)] == ["edge-a"]


async def test_revoking_marks_the_box_once_and_unknown_boxes_are_an_error(
    engine: AsyncEngine,
) -> None:
    await add_device(engine, village=DEFAULT_VILLAGE, node="edge-a", now_ms=NOW)
    await add_device(engine, village=DEFAULT_VILLAGE, node="edge-b", now_ms=NOW)

    assert await revoke_device(engine, "edge-a", NOW + 10) is True
    assert await revoke_device(engine, "edge-a", NOW + 99) is False
    with pytest.raises(DeviceError, match="no device"):
        await revoke_device(engine, "edge-z", NOW)
    by_node = {d.node: d for d in await list_devices(engine)}
    assert (by_node["edge-a"].status, by_node["edge-a"].revoked_ms) == ("revoked", NOW + 10)
    assert (by_node["edge-b"].status, by_node["edge-b"].revoked_ms) == ("active", None)


async def hashes(engine: AsyncEngine, node: str) -> tuple[str, str]:
    """The registry's argon2 and Mosquitto hashes of a node's password."""
    d = db.devices
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(d).where(d.c.node == node))).one()
    return row.password_hash, row.broker_hash


async def test_rotating_gives_an_active_box_a_new_password_and_forgets_the_old_one(
    engine: AsyncEngine,
) -> None:
    old = await add_device(engine, village=DEFAULT_VILLAGE, node="edge-a", now_ms=NOW)
    neighbour = await add_device(engine, village=DEFAULT_VILLAGE, node="edge-b", now_ms=NOW)
    neighbour_hashes = await hashes(engine, "edge-b")

    new = await rotate_device(engine, "edge-a")

    assert len(new) >= 24 and new != old
    password_hash, broker_hash = await hashes(engine, "edge-a")
    assert new not in (password_hash, broker_hash)
    assert PasswordHasher().verify(password_hash, new)
    assert verify_mosquitto_hash(new, broker_hash)
    assert not verify_mosquitto_hash(old, broker_hash)
    assert await hashes(engine, "edge-b") == neighbour_hashes
    assert verify_mosquitto_hash(neighbour, neighbour_hashes[1])
    by_node = {d.node: d for d in await list_devices(engine)}
    assert (by_node["edge-a"].status, by_node["edge-a"].created_ms) == ("active", NOW)


async def test_unknown_and_revoked_boxes_get_no_new_password(engine: AsyncEngine) -> None:
    await add_device(engine, village=DEFAULT_VILLAGE, node="edge-r", now_ms=NOW)
    await revoke_device(engine, "edge-r", NOW + 1)
    revoked_hashes = await hashes(engine, "edge-r")

    with pytest.raises(DeviceError, match="no device 'edge-z'"):
        await rotate_device(engine, "edge-z")
    with pytest.raises(DeviceError, match="edge-r is revoked"):
        await rotate_device(engine, "edge-r")
    assert await hashes(engine, "edge-r") == revoked_hashes
    assert [(d.node, d.status) for d in await list_devices(engine)] == [("edge-r", "revoked")]


async def test_broker_files_list_active_boxes_only_and_are_stable(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await add_device(sqlite_engine, village=DEFAULT_VILLAGE, node="edge-a", now_ms=NOW)
    await add_device(sqlite_engine, village=OTHER_VILLAGE, node="edge-r", now_ms=NOW)
    await revoke_device(sqlite_engine, "edge-r", NOW)

    out = tmp_path / "broker"
    passwd, acl = await write_broker_config(
        sqlite_engine, out, hub_users=["hub"], hub_password=HUB_PASSWORD
    )
    users = [line.split(":")[0] for line in passwd.read_text().splitlines()]
    assert users == ["hub", "edge-a"]
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    rules = acl.read_text()
    assert "edge-r" not in rules
    prefix = "puskesos/v1/3201/3201022001/edge-a"
    for kind in ("up", "down-ack", "telemetry", "status"):
        assert f"topic write {prefix}/{kind}\n" in rules
    for kind in ("ack", "error", "down"):
        assert f"topic read {prefix}/{kind}\n" in rules
    # No multi-level wildcard anywhere but the hub's read of the broker's statistics.
    assert "#" not in rules.replace("# ", "").replace("topic read $SYS/broker/#\n", "")

    before = (passwd.read_bytes(), acl.read_bytes())
    await write_broker_config(sqlite_engine, out, hub_users=["hub"], hub_password=HUB_PASSWORD)
    assert (passwd.read_bytes(), acl.read_bytes()) == before, "same registry, same files"
    with pytest.raises(DeviceError, match="a hub worker's broker user"):
        await write_broker_config(
            sqlite_engine, out, hub_users=["hub", "edge-a"], hub_password=HUB_PASSWORD
        )


# --- enforced by a real broker -------------------------------------------------------------

FAST = {"backoff_min_s": 0.05, "backoff_max_s": 0.2}


def topic(node: str, kind: TopicKind, village: str = DEFAULT_VILLAGE) -> str:
    return str(Topic(village, node, kind))


@asynccontextmanager
async def connected(link: MqttLink) -> AsyncIterator[MqttLink]:
    await link.start()
    try:
        assert await link.wait_connected(10), f"{link.client_id} did not connect"
        yield link
    finally:
        await link.stop()


async def next_message(link: MqttLink, timeout: float = 5) -> Message:
    return await asyncio.wait_for(anext(aiter(link.messages())), timeout)


async def silent(link: MqttLink, wait: float = 0.7) -> bool:
    try:
        await next_message(link, wait)
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize("version", [5, 4])
async def test_the_broker_keeps_each_box_to_its_own_topics(
    sqlite_engine: AsyncEngine, tmp_path: Path, version: int
) -> None:
    passwords = {
        node: await add_device(sqlite_engine, village=DEFAULT_VILLAGE, node=node, now_ms=NOW)
        for node in ("edge-a", "edge-b")
    }
    passwd, acl = await write_broker_config(
        sqlite_engine, tmp_path / "etc", hub_users=["hub"], hub_password=HUB_PASSWORD
    )
    broker = MosquittoBroker(tmp_path / "mosquitto", password_file=passwd, acl_file=acl)
    broker.start()
    try:

        def settings(user: str) -> BrokerConfig:
            return BrokerConfig(port=broker.port, username=user, mqtt_version=version)

        share = "hub" if version == 5 else None
        hub = MqttLink(
            settings("hub"),
            client_id="hub-1",
            password=HUB_PASSWORD,
            subscriptions=[(f, 1) for f in hub_filters(share_group=share)],
            clean_start=True,
            **FAST,
        )
        box_a = MqttLink(
            settings("edge-a"),
            client_id="edge-a",
            password=passwords["edge-a"],
            # Its own down, and (refused by the ACL) its neighbour's.
            subscriptions=[
                (topic("edge-a", TopicKind.DOWN), 1),
                (topic("edge-b", TopicKind.DOWN), 1),
            ],
            **FAST,
        )
        async with connected(hub), connected(box_a):
            assert await box_a.publish(topic("edge-a", TopicKind.UP), b"own batch")
            received = await next_message(hub)
            assert (received.topic, received.payload) == (
                topic("edge-a", TopicKind.UP),
                b"own batch",
            )
            received.ack()

            forged = await box_a.publish(topic("edge-b", TopicKind.UP), b"forged batch")
            # MQTT 5: Mosquitto answers "not authorised"; 3.1.1 has no way to say it.
            assert forged is (version == 4)
            assert await silent(hub), "a forged batch reached the hub"

            assert await hub.publish(topic("edge-b", TopicKind.DOWN), b"for b only")
            assert await hub.publish(topic("edge-a", TopicKind.DOWN), b"for a")
            mine = await next_message(box_a)
            assert (mine.topic, mine.payload) == (topic("edge-a", TopicKind.DOWN), b"for a")
            assert await silent(box_a), "edge-a read edge-b's downlink"
    finally:
        broker.kill()


async def test_a_revoked_box_is_shut_out_once_the_broker_reloads(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    passwords = {
        node: await add_device(sqlite_engine, village=DEFAULT_VILLAGE, node=node, now_ms=NOW)
        for node in ("edge-a", "edge-r")
    }
    etc = tmp_path / "etc"
    passwd, acl = await write_broker_config(
        sqlite_engine, etc, hub_users=["hub"], hub_password=HUB_PASSWORD
    )
    broker = MosquittoBroker(tmp_path / "mosquitto", password_file=passwd, acl_file=acl)
    broker.start()

    def box(node: str) -> MqttLink:
        return MqttLink(
            BrokerConfig(port=broker.port, username=node),
            client_id=node,
            password=passwords[node],
            **FAST,
        )

    try:
        async with connected(box("edge-r")) as revoked:
            await revoke_device(sqlite_engine, "edge-r", NOW + 1)
            await write_broker_config(
                sqlite_engine, etc, hub_users=["hub"], hub_password=HUB_PASSWORD
            )
            broker.reload()
            # Mosquitto drops the session at once and refuses every attempt after it.
            for _ in range(30):
                if not revoked.connected:
                    break
                await asyncio.sleep(0.1)
            assert not await revoked.wait_connected(1.5)
            assert not await revoked.publish(topic("edge-r", TopicKind.UP), b"too late")
        async with connected(box("edge-a")):
            pass
    finally:
        broker.kill()


async def test_after_a_rotation_and_a_reload_the_old_password_is_refused_and_the_new_one_works(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    passwords = {
        node: await add_device(sqlite_engine, village=DEFAULT_VILLAGE, node=node, now_ms=NOW)
        for node in ("edge-a", "edge-b")
    }
    etc = tmp_path / "etc"
    passwd, acl = await write_broker_config(
        sqlite_engine, etc, hub_users=["hub"], hub_password=HUB_PASSWORD
    )
    broker = MosquittoBroker(tmp_path / "mosquitto", password_file=passwd, acl_file=acl)
    broker.start()

    def box(node: str, password: str) -> MqttLink:
        return MqttLink(
            BrokerConfig(port=broker.port, username=node),
            client_id=node,
            password=password,
            **FAST,
        )

    try:
        async with connected(box("edge-a", passwords["edge-a"])):
            pass
        new = await rotate_device(sqlite_engine, "edge-a")
        # Until the broker has the new files, the old password is the one it knows.
        async with connected(box("edge-a", passwords["edge-a"])):
            pass
        await write_broker_config(sqlite_engine, etc, hub_users=["hub"], hub_password=HUB_PASSWORD)
        broker.reload()

        refused = box("edge-a", passwords["edge-a"])
        await refused.start()
        try:
            assert not await refused.wait_connected(1.5), "the old password still works"
        finally:
            await refused.stop()
        async with connected(box("edge-a", new)) as renewed:
            assert await renewed.publish(topic("edge-a", TopicKind.UP), b"after rotation")
        async with connected(box("edge-b", passwords["edge-b"])):
            pass  # the neighbour keeps its password
    finally:
        broker.kill()


# --- the commands ---------------------------------------------------------------------------


def test_an_operator_enrols_lists_revokes_and_writes_the_broker_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hub.toml"
    data = tmp_path / "data"
    assert cli.main(["hub", "init", "--config", str(config), "--data-dir", str(data)]) == 0
    capsys.readouterr()

    assert cli.main(["hub", "device", "add", "--config", str(config),
                     "--village", DEFAULT_VILLAGE, "--node", "edge-wanaherang-a",
                     "--broker-host", "mqtt.bogorkab.example"]) == 0  # fmt: skip
    shown = capsys.readouterr().out
    lines = shown.splitlines()
    password = lines[lines.index("broker password (shown only this once):") + 1]
    assert len(password) >= 24
    assert 'node = "edge-wanaherang-a"' in lines
    assert 'username = "edge-wanaherang-a"' in lines
    assert 'host = "mqtt.bogorkab.example"' in lines
    # The box reaches the broker over the internet: TLS on its TLS listener, whatever the
    # hub's own (local, plain) connection is.
    assert "tls = true" in lines and "port = 8883" in lines

    assert cli.main(["hub", "device", "add", "--config", str(config),
                     "--village", DEFAULT_VILLAGE, "--node", "edge-wanaherang-b",
                     "--broker-ca-file", "/etc/puskesos/district-ca.crt"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert 'ca_file = "/etc/puskesos/district-ca.crt"' in lines and "tls = true" in lines

    assert cli.main(["hub", "device", "add", "--config", str(config),
                     "--village", DEFAULT_VILLAGE, "--node", "edge-wanaherang-a"]) == 1  # fmt: skip
    assert "never reused" in capsys.readouterr().err

    assert cli.main(["hub", "device", "list", "--config", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["NODE", "VILLAGE", "STATUS"]
    assert table[1].split()[:4] == ["edge-wanaherang-a", DEFAULT_VILLAGE, "offline", "never"]

    out = tmp_path / "broker"
    assert cli.main(["hub", "broker-config", "--config", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    assert "edge-wanaherang-a:$7$101$" in (out / "passwd").read_text()

    assert cli.main(["hub", "device", "rotate", "--config", str(config), "edge-wanaherang-a"]) == 0
    rotated = capsys.readouterr()
    lines = rotated.out.splitlines()
    new_password = lines[lines.index("broker password (shown only this once):") + 1]
    assert len(new_password) >= 24 and new_password != password
    assert "broker-config" in rotated.err
    old_line = next(line for line in (out / "passwd").read_text().splitlines() if "edge-" in line)
    assert cli.main(["hub", "broker-config", "--config", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    new_line = next(line for line in (out / "passwd").read_text().splitlines() if "edge-" in line)
    assert verify_mosquitto_hash(password, old_line.split(":", 1)[1])
    assert verify_mosquitto_hash(new_password, new_line.split(":", 1)[1])
    assert not verify_mosquitto_hash(password, new_line.split(":", 1)[1])

    assert cli.main(["hub", "device", "revoke", "--config", str(config), "edge-wanaherang-a"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli.main(["hub", "device", "revoke", "--config", str(config), "edge-nobody"]) == 1
    assert "no device" in capsys.readouterr().err
    assert cli.main(["hub", "device", "rotate", "--config", str(config), "edge-wanaherang-a"]) == 1
    assert "revoked" in capsys.readouterr().err
    assert cli.main(["hub", "broker-config", "--config", str(config), "--out", str(out)]) == 0
    assert "edge-wanaherang-a" not in (out / "passwd").read_text()


def test_broker_config_without_a_hub_password_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "data"}"\n')
    status = cli.main(["hub", "broker-config", "--config", str(config), "--out", str(tmp_path)])
    assert status == 1
    assert "password_file" in capsys.readouterr().err
    assert not (tmp_path / "passwd").exists()
