"""On an encrypted box the SD card gives away neither the box's broker password nor the key
its CSRF tokens come from: provisioning seals the password to the box, the unlocked box
opens it at every connect (so a rotation needs no restart), and a box that had them in
plain files moves them at its first sign-in (docs/security.md, "Secrets on the box")."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from edge import auth, boxsecrets, db, keys
from edge.config import BrokerConfig, EdgeConfig, SyncConfig, load_config
from edge.store import Store
from edge.web.app import SYNC, create_app
from puskesos.fleet import MosquittoBroker
from tests.edge.box_process import NODE, VILLAGE, ServedBox, init_box, puskesos
from tests.edge.conftest import PASSWORD, login
from tests.edge.hub_peer import eventually
from tests.edge.test_cli import log_in
from tests.edge.test_encrypted_box import recovery_key
from tests.edge.test_securing import with_recovery_key

FIRST, SECOND = "sandi-broker-pertama-8f3a1c", "sandi-broker-kedua-71d0e9"


def broker_with(folder: Path, passwords: dict[str, str]) -> MosquittoBroker:
    """A Mosquitto that lets in only these accounts (user name → password)."""
    folder.mkdir(parents=True)
    passwd = folder / "passwd"
    passwd.write_text("")
    for user, password in passwords.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    broker = MosquittoBroker(folder / "broker", password_file=passwd)
    broker.start()
    return broker


def new_password(broker: MosquittoBroker, user: str, password: str) -> None:
    assert broker.password_file is not None
    subprocess.run(
        ["mosquitto_passwd", "-b", str(broker.password_file), user, password], check=True
    )


def traces(secret: str | bytes) -> list[bytes]:
    """The ways a secret could sit in a file: raw, UTF-16, hex, base64 (standard and URL)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    forms += [base64.urlsafe_b64encode(raw).rstrip(b"=")]
    if isinstance(secret, str):
        forms += [secret.encode("utf-16-le"), secret.encode("utf-16-be")]
    return forms


def files_holding(secrets: dict[str, str | bytes], *folders: Path) -> list[str]:
    """``name in file`` for every secret found in a file under ``folders``."""
    files = [path for folder in folders for path in folder.rglob("*") if path.is_file()]
    return [
        f"{name} in {path}"
        for path in files
        for name, secret in secrets.items()
        if any(trace in path.read_bytes() for trace in traces(secret))
    ]


def connected(client: TestClient) -> bool:
    """Whether the in-process box's sync is connected to the broker."""
    sync = client.server.app[SYNC]
    return sync is not None and sync.connected


def broker_connects(broker: MosquittoBroker, since: int) -> int:
    """How often the box connected to ``broker`` since log offset ``since``."""
    return broker.log_text()[since:].count(f"u'{NODE}'")


async def test_an_encrypted_box_gets_its_broker_password_sealed_and_takes_a_new_one_running(
    tmp_path,
):
    broker = broker_with(tmp_path / "mosquitto", {NODE: FIRST})
    try:
        data = tmp_path / "data"
        data.mkdir(mode=0o700)
        # Provisioning puts the password the hub made on a new box before anything else.
        (data / "broker.password").write_text(FIRST + "\n")
        made = puskesos(
            "edge", "init", "--config", str(tmp_path / "edge.toml"), "--village", VILLAGE,
            "--node", NODE, "--data-dir", str(data), "--broker-host", "127.0.0.1",
            "--broker-port", str(broker.port), "--broker-password-file", "broker.password",
            "--recovery-key", str(recovery_key(tmp_path)),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert not (data / "broker.password").exists()
        assert (data / "broker-password.sealed").exists()
        config = init_box(tmp_path, users={"admin": ("admin", PASSWORD)})
        token = puskesos("edge", "token", "add", "--config", str(config), "--username", "admin",
                         "--name", "uji", "--as", "admin", stdin=PASSWORD + "\n")  # fmt: skip
        bearer = {"Authorization": f"Bearer {token.stdout.split()[0]}"}

        settings = {"PUSKESOS_SYNC_ENABLED": "true", "PUSKESOS_SYNC_BACKOFF_MIN_S": "1",
                    "PUSKESOS_SYNC_BACKOFF_MAX_S": "1"}  # fmt: skip
        box = ServedBox(config, tmp_path / "serve.log", env=settings).start()
        try:
            async with box.client(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:

                async def connected() -> bool:
                    async with session.get(f"{box.url}/api/v1/sync/status", headers=bearer) as s:
                        return s.status == 200 and (await s.json())["connected"]

                assert broker_connects(broker, 0) == 0  # locked: it cannot open the password
                await log_in(session, box.url, "admin")
                await eventually(connected, 30, "the box to connect with the sealed password")

                # A rotation: the hub gives the broker and the box a new password; the box
                # is not restarted, the broker is (a new certificate).
                new_password(broker, NODE, SECOND)
                sealed = puskesos("edge", "secret", "set", "broker-password", "--config",
                                  str(config), stdin=SECOND + "\n")  # fmt: skip
                assert sealed.returncode == 0, sealed.stderr
                since = len(broker.log_text())
                broker.restart()
                await eventually(lambda: broker_connects(broker, since), 30, "a reconnect")
                await eventually(connected, 30, "the box to connect with the new password")
            assert box.stop() == 0
        finally:
            box.kill()
    finally:
        broker.kill()

    edge = load_config(config)
    key = keys.open_with_password(edge, "admin", PASSWORD)
    assert key is not None
    secrets = {"first password": FIRST, "second password": SECOND,
               "session key": boxsecrets.session_secret(key, NODE)}  # fmt: skip
    assert files_holding(secrets, data, tmp_path / "edge.toml") == []
    assert not (data / edge.session_secret_file).exists()


def test_a_secret_cannot_be_sealed_to_a_plain_box(tmp_path):
    config = init_box(tmp_path)
    refused = puskesos("edge", "secret", "set", "broker-password", "--config", str(config),
                       stdin=FIRST + "\n")  # fmt: skip
    assert refused.returncode == 2
    assert "not encrypted" in refused.stderr and "password_file" in refused.stderr
    unknown = puskesos("edge", "secret", "set", "wifi", "--config", str(config), stdin="x\n")
    assert unknown.returncode == 2 and "broker-password" in unknown.stderr


def syncing_config(data_dir: Path, port: int) -> EdgeConfig:
    """A box that syncs with the broker on ``port``, its password in the plain file an older
    release (or a box not yet encrypted) reads."""
    return EdgeConfig(
        village=VILLAGE, node=NODE, data_dir=data_dir,
        broker=BrokerConfig(host="127.0.0.1", port=port, password_file="broker.password"),
        sync=SyncConfig(enabled=True, backoff_min_s=1, backoff_max_s=1),
    )  # fmt: skip


async def plain_box(config: EdgeConfig) -> None:
    """A box of an older release: plain database with an admin, its broker password and
    session key in plain files."""
    db.upgrade(config.database_path)
    store = Store(config)
    await store.open()
    try:
        for key in ("village", "node"):
            await store.set_meta(key, getattr(config, key))
        await auth.create_user(store, username="admin", full_name="Admin", role=auth.Role.ADMIN,
                               password=PASSWORD, actor="test")  # fmt: skip
    finally:
        await store.close()
    (config.data_dir / "broker.password").write_text(FIRST + "\n")
    auth.load_secret(config.data_dir / config.session_secret_file)


async def test_a_plain_box_secured_at_its_first_sign_in_seals_its_secrets_and_keeps_syncing(
    tmp_path,
):
    broker = broker_with(tmp_path / "mosquitto", {NODE: FIRST})
    config = syncing_config(tmp_path / "box", broker.port)
    try:
        await plain_box(config)
        old_session_key = (config.data_dir / config.session_secret_file).read_bytes()
        async with TestClient(TestServer(create_app(config))) as client:
            await eventually(lambda: connected(client), 30, "the plain box to connect")
        config = with_recovery_key(config, tmp_path)  # the district's next provisioning run
        for attempt in ("secures", "unlocks"):
            async with TestClient(TestServer(create_app(config))) as client:
                csrf = await login(client, "admin")
                assert keys.encrypted(config), attempt
                await eventually(lambda: connected(client), 30, f"a connect after it {attempt}")
                answer = await client.post("/pengguna/kunci", data={"csrf_token": csrf})
                assert answer.url.path == "/masuk"  # the CSRF key the box now derives works
    finally:
        broker.kill()
    assert sorted(path.name for path in config.data_dir.iterdir() if "pass" in path.name) == [
        "broker-password.sealed"
    ]
    key = keys.open_with_password(config, "admin", PASSWORD)
    assert key is not None
    secrets = {"password": FIRST, "old session key": old_session_key,
               "session key": boxsecrets.session_secret(key, NODE)}  # fmt: skip
    assert files_holding(secrets, config.data_dir) == []


async def test_a_plain_password_newer_than_the_sealed_one_wins_and_goes(tmp_path):
    """A box killed after provisioning wrote a plain password (it could not seal yet) and
    before the box sealed it: the plain file is the newer, and is never lost."""
    broker = broker_with(tmp_path / "mosquitto", {NODE: SECOND})
    config = syncing_config(tmp_path / "box", broker.port)
    try:
        await plain_box(config)
        config = with_recovery_key(config, tmp_path)
        async with TestClient(TestServer(create_app(config))) as client:
            await login(client, "admin")  # secures it; FIRST is sealed
        (config.data_dir / "broker.password").write_text(SECOND + "\n")
        async with TestClient(TestServer(create_app(config))) as client:
            await login(client, "admin")
            await eventually(lambda: connected(client), 30, "a connect with the newer password")
        assert not (config.data_dir / "broker.password").exists()
    finally:
        broker.kill()
