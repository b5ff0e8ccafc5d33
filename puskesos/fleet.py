"""A whole district on one machine: a Mosquitto broker, hub workers, the reference national
receiver and village boxes, each a child process set up with the same commands an operator
runs.

Used by ``puskesos demo``, the end-to-end tests and ``bench/sync.py``. Every process gets
a complete TOML configuration in its own folder under ``root`` (so it can be restarted by
hand), listens on 127.0.0.1 on a free port (or on the next of ``port_base``, ``port_base``
+ 1, ... in the order they are set up), and logs to ``<folder>/<name>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from edge.config import EdgeConfig, SyncConfig
from edge.config import render_toml as render_edge
from hub.config import HubConfig
from hub.config import load_config as load_hub_config
from hub.config import render_toml as render_hub
from hub.keys import public_key_file
from national.config import NationalConfig
from national.config import render_toml as render_national
from puskesos.tomlconfig import BrokerConfig

__all__ = [
    "MOSQUITTO",
    "AmqttBroker",
    "Box",
    "BoxService",
    "Fleet",
    "Hub",
    "MosquittoBroker",
    "NationalReceiver",
    "Service",
    "environment",
    "free_port",
    "puskesos",
    "run_puskesos",
    "sign_in",
    "wait_for",
]

#: The broker binary (Debian's ``mosquitto`` package).
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def environment(**overrides: str) -> dict[str, str]:
    """This process's environment without PUSKESOS_* settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSKESOS_")}
    return env | overrides


def run_puskesos(
    *args: str, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``puskesos *args`` to completion (stdin is a pipe: never a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "puskesos", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(),
        check=False,
    )


def puskesos(*args: str, stdin: str = "", timeout: float = 120) -> str:
    """Run ``puskesos *args`` to completion; returns its output, raises on failure."""
    result = run_puskesos(*args, stdin=stdin, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"puskesos {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout


class _BrokerProcess:
    """A broker as a child process in ``workdir``, listening on ``host:port``."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None, log_file: Path) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port(self.host)
        self.log_file = log_file
        #: What the process writes to stdout and stderr (start-up errors).
        self.console_file = workdir / "console.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _launch(self, name: str, argv: list[str], timeout: float) -> None:
        """Start ``argv`` and return once the port accepts connections."""
        if self._process is not None:
            raise RuntimeError("broker already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.console_file, "ab") as console:
            self._process = subprocess.Popen(argv, stdout=console, stderr=console)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"{name} exited at start:\n{self._console()}{self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{name} did not listen on {self.port}:\n{self.log_text()}")

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop cleanly (SIGTERM; Mosquitto saves its persistence file first)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill at once (SIGKILL), like a power cut: what came since the last autosave is lost."""
        self._end(signal.SIGKILL)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def _console(self) -> str:
        try:
            return self.console_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        """The broker's log so far (for assertion messages)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class MosquittoBroker(_BrokerProcess):
    """One Mosquitto process listening on ``host:port``, configured from ``workdir``.

    Without a password file anonymous clients may connect. ``restart()`` keeps the port and
    the persistence folder, so persistent sessions and retained messages survive it (up to
    the last autosave, like a real broker after a crash).
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        persistence: bool = True,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        super().__init__(workdir, port, workdir / "mosquitto.log")
        self.password_file = password_file
        self.acl_file = acl_file
        self.persistence = persistence
        self.tls = tls
        self.config_file = workdir / "mosquitto.conf"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            # Run as root (tests in CI), Mosquitto would switch to the "mosquitto" user and
            # then could not write its log and database in this folder.
            "user root",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            # A listener's setting: a client's id is its user name, so that one account can
            # knock no other off by taking its id (only with accounts: anonymous clients
            # have no user name, and would be refused).
            *(["use_username_as_clientid true"] if self.password_file else []),
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type all",
            "connection_messages true",
        ]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls is not None:
            certificate, key = self.tls
            lines += [f"certfile {certificate}", f"keyfile {key}"]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once its port accepts connections."""
        self._write_config()
        self._launch("mosquitto", [MOSQUITTO, "-c", str(self.config_file)], timeout)

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence folder."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Make the broker re-read its password file and ACL (SIGHUP), like ``kill -HUP``."""
        if self._process is None:
            raise RuntimeError("broker not running")
        mark = self.log_text().count("Reloading config")
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log_text().count("Reloading config") == mark:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not reload:\n{self.log_text()}")
            time.sleep(0.05)


class AmqttBroker(_BrokerProcess):
    """The pure-Python broker amqtt (``pip install 'puskesos[demo]'``), for a machine
    without Mosquitto: MQTT 3.1.1 only, anonymous, no ACL (a demonstration, never a
    district's broker). Same interface as :class:`MosquittoBroker`."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port, workdir / "console.log")  # amqtt logs to stderr
        self.config_file = workdir / "amqtt.yaml"

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and return once its port accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n",
            encoding="utf-8",
        )
        argv = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(self.config_file)]
        self._launch("amqtt", argv, timeout)

    def reload(self) -> None:
        """Nothing to re-read: amqtt runs without a password file or an ACL here."""


class Service:
    """A ``puskesos ... serve`` child process answering ``/healthz`` on ``port``.

    It runs ``[*command, *argv]``: by default this interpreter's ``python -m puskesos``,
    or another ``puskesos`` (e.g. a provisioned venv's) given as ``command``. With
    ``tls`` = (port, certificate file) its UI and API answer HTTPS on that port, trusted
    by :attr:`context`; ``port`` then answers ``/healthz`` and ``/metrics`` only.
    """

    def __init__(
        self,
        argv: list[str],
        log: Path,
        port: int,
        *,
        tls: tuple[int, Path] | None = None,
        command: Sequence[str] = (sys.executable, "-m", "puskesos"),
    ) -> None:
        self.argv = argv
        self.command = tuple(command)
        self.log = log
        self.port = port
        self.tls = tls
        #: Extra environment of the next start (e.g. a fake clock for a test).
        self.env: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where its UI and API answer."""
        if self.tls is not None:
            return f"https://127.0.0.1:{self.tls[0]}"
        return self.plain_url

    @property
    def plain_url(self) -> str:
        """Where ``/healthz`` and ``/metrics`` answer over plain HTTP."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def context(self) -> ssl.SSLContext | None:
        """A client TLS context that trusts its certificate (``None`` without TLS)."""
        if self.tls is None:
            return None
        return ssl.create_default_context(cafile=self.tls[1])

    def client(self, **settings: Any) -> aiohttp.ClientSession:
        """An aiohttp session (``settings`` as for ``ClientSession``) that trusts its
        certificate."""
        connector = aiohttp.TCPConnector(ssl=self.context or True)
        return aiohttp.ClientSession(connector=connector, **settings)

    def opener(self) -> urllib.request.OpenerDirector:
        """A urllib opener with a cookie jar that trusts its certificate."""
        return urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(),
            urllib.request.HTTPSHandler(context=self.context),
        )

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60, *, healthy: bool = False) -> None:
        """Start and wait until ``/healthz`` answers (with 200 when ``healthy``)."""
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                [*self.command, *self.argv],
                stdout=output,
                stderr=output,
                env=environment(**self.env),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[:2]} exited: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.plain_url}/healthz", timeout=2):
                    return
            except urllib.error.HTTPError:
                if not healthy:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.argv[:2]} did not come up: {self.output()[-2000:]}")

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (what systemd sends), then wait; returns the exit status (``None`` when
        it had to be killed or never ran)."""
        if not self.running:
            return self.process.returncode if self.process is not None else None
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL: a power cut."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(30)

    def output(self) -> str:
        """Everything it wrote so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


class NationalReceiver(Service):
    """The reference national receiver (``puskesos national serve``) in ``folder``: its
    configuration (``settings`` are more :class:`NationalConfig` values) written, then
    set up with ``national init``, as an operator does; not started."""

    def __init__(self, folder: Path, port: int | None = None, **settings: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        port = port if port is not None else free_port()
        self.folder = folder
        self.config = folder / "national.toml"
        self.data_dir = folder / "data"
        config = NationalConfig(data_dir=self.data_dir, listen_port=port, **settings)
        self.config.write_text(render_national(config), encoding="utf-8")
        puskesos("national", "init", "--config", str(self.config))
        self.public_key_file = self.data_dir / "receiver.pub"
        super().__init__(
            ["national", "serve", "--config", str(self.config)], folder / "national.log", port
        )

    def add_district(self, code: str, public_key_file: Path) -> str:
        """Register a district by its public key (PEM file); returns its token."""
        return puskesos(
            "national", "district", "add", "--config", str(self.config),
            "--code", code, "--public-key", str(public_key_file),
        ).strip()  # fmt: skip


@dataclass
class Hub:
    """One hub worker."""

    node: str
    folder: Path
    config: Path
    service: Service
    token: str = ""

    def api(self, path: str, body: Any = None) -> Any:
        """Call the hub API with the fleet's token; JSON in, JSON out."""
        return _call(self.service, path, self.token, body)


def sign_in(service: Service, username: str, password: str) -> urllib.request.OpenerDirector:
    """Sign in on a box's web UI as a person would (the form with its CSRF token); the
    opener keeps the session cookie. A refused sign-in raises ``urllib.error.HTTPError``."""
    opener = service.opener()
    with opener.open(service.url + "/masuk", timeout=10) as response:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', response.read().decode())
    if csrf is None:
        raise RuntimeError(f"{service.url}/masuk has no CSRF token")
    form = {"username": username, "password": password, "csrf_token": csrf[1], "next": "/"}
    opener.open(service.url + "/masuk", urllib.parse.urlencode(form).encode(), timeout=10)
    return opener


class BoxService(Service):
    """``edge serve`` of a box. An encrypted box starts locked (docs/storage.md §3): each
    :meth:`start` then signs in as ``unlock_as`` (user name, password) over HTTP(S), as the
    first person at the office would, and the box opens its store and starts syncing."""

    def __init__(self, *args: Any, unlock_as: tuple[str, str], **settings: Any) -> None:
        super().__init__(*args, **settings)
        self.unlock_as = unlock_as

    def start(self, timeout: float = 60, *, healthy: bool = False) -> None:
        super().start(timeout, healthy=healthy)
        if self.locked():
            sign_in(self, *self.unlock_as)

    def locked(self) -> bool:
        """Whether the box waits for a sign-in (its ``/healthz`` says so)."""
        try:
            with urllib.request.urlopen(f"{self.plain_url}/healthz", timeout=10) as response:
                return bool(json.loads(response.read()).get("locked"))
        except urllib.error.HTTPError:
            return False


@dataclass
class Box:
    """One village box."""

    village: str
    node: str
    folder: Path
    config: Path
    service: Service
    token: str = ""
    users: dict[str, str] = field(default_factory=dict)
    _key: bytes | None = field(default=None, repr=False)

    @property
    def database(self) -> Path:
        """The box's SQLite file."""
        return self.folder / "data" / "edge.sqlite"

    def data_key(self) -> bytes | None:
        """The key of an encrypted box's database, from its first account's key slot
        (``None`` for a plain box)."""
        from edge import keys
        from edge.config import load_config

        if self._key is None:
            config = load_config(self.config, env={})
            if keys.encrypted(config):
                username, password = next(iter(self.users.items()))
                self._key = keys.open_with_password(config, username, password)
        return self._key

    def broker_password(self) -> str | None:
        """The box's broker password as the box reads it (sealed to an encrypted box, which
        `edge init` did with the file :meth:`Fleet.enrol` wrote), for a test that speaks
        with the box's credentials."""
        from edge.boxsecrets import broker_password
        from edge.config import load_config

        return broker_password(load_config(self.config, env={}), self.data_key())

    def connect(self, *, readonly: bool = False) -> Any:
        """A DB-API connection to the box's database (keyed when it is encrypted), for a
        test or a benchmark that looks inside; ``readonly`` while the box may be serving."""
        from edge.db import connect

        where = f"file:{self.database}" + ("?mode=ro" if readonly else "")
        return connect(where, self.data_key(), uri=True)

    def api(self, path: str, body: Any = None, method: str | None = None) -> Any:
        """Call the box API with its admin token; JSON in, JSON out."""
        return _call(self.service, path, self.token, body, method)


def _call(
    service: Service, path: str, token: str, body: Any = None, method: str | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(service.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30, context=service.context) as response:
        return json.loads(response.read() or b"null")


class Fleet:
    """Broker, hub workers and boxes under ``root``; stop everything with :meth:`stop`.

    Boxes are encrypted at rest, set up with the fleet's recovery key
    (:meth:`recovery_key`), and unlocked after every start by a sign-in of their first
    account (:class:`BoxService`).

    ``database_url`` puts the hub on PostgreSQL (default: SQLite in the first hub's
    folder). ``mqtt_version`` 4 makes every client speak MQTT 3.1.1. ``sync`` holds the
    boxes' ``[sync]`` settings (tests shorten the timeouts). With ``port_base``, ports are
    handed out in order from it (the broker's first; then per hub worker its plain and
    its HTTPS port, per receiver one, per box its plain and its HTTPS port), so the same
    set-up gets the same ports every time; without, any free ones. ``changed_keys_only``
    writes the hubs' and boxes' configuration files with only the keys not at their
    default, so that the code of an older checkout (a bench's baseline), which refuses
    keys added since, runs in the fleet too.
    """

    def __init__(
        self,
        root: Path,
        *,
        database_url: str = "",
        mqtt_version: int = 5,
        sync: SyncConfig | None = None,
        district: str = "",
        broker: str = "mosquitto",
        port_base: int | None = None,
        changed_keys_only: bool = False,
    ) -> None:
        self.root = root
        self.changed_keys_only = changed_keys_only
        self.port_base = port_base
        self._ports_given = 0
        self.root.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.sync = replace(sync or SyncConfig(), enabled=True)
        self.district = district
        broker_dir = root / "broker"
        self.broker: MosquittoBroker | AmqttBroker
        if broker == "amqtt":
            self.broker = AmqttBroker(broker_dir, self.port())
            mqtt_version = 4  # amqtt speaks MQTT 3.1.1 only
        else:
            self.broker = MosquittoBroker(
                broker_dir,
                self.port(),
                password_file=broker_dir / "passwd",
                acl_file=broker_dir / "acl",
            )
        self.mqtt_version = mqtt_version
        self.hubs: list[Hub] = []
        self.boxes: list[Box] = []
        self.receivers: list[NationalReceiver] = []

    def port(self) -> int:
        """The next port of ``port_base`` (a free one without)."""
        if self.port_base is None:
            return free_port()
        self._ports_given += 1
        return self.port_base + self._ports_given - 1

    def recovery_key(self) -> Path:
        """The district's recovery public key its boxes are set up with (made on first use,
        the private key beside it: ``hub keys recovery-init``)."""
        private = self.root / "recovery" / "recovery.key"
        if not private.exists():
            puskesos("hub", "keys", "recovery-init", "--out", str(private))
        return private.with_suffix(".pub")

    # --- hub ------------------------------------------------------------------------------

    def add_hub(self, node: str = "hub-1", *, start: bool = True, **settings: Any) -> Hub:
        """Set up a hub worker (the first one makes the database and the hub account);
        ``settings`` are more :class:`HubConfig` values (e.g. ``box_stale_after_s``)."""
        folder = self.root / node
        folder.mkdir(parents=True, exist_ok=True)
        first = self.hubs[0] if self.hubs else None
        port, tls_port = self.port(), self.port()
        data_dir = first.folder if first else folder
        config = HubConfig(
            node=node,
            district=self.district,
            data_dir=data_dir,
            database_url=self.database_url,
            listen_port=port,
            tls=True,
            tls_port=tls_port,
            sweep_interval_s=1,
            resend_after_s=10,
            workers=",".join([*(h.node for h in self.hubs), node]),
            broker=BrokerConfig(
                port=self.broker.port,
                password_file="broker.password",
                mqtt_version=self.mqtt_version,
            ),
            **settings,
        )
        path = folder / "hub.toml"
        path.write_text(render_hub(config, changed_only=self.changed_keys_only), encoding="utf-8")
        puskesos("hub", "init", "--config", str(path))
        if first is not None:
            # broker-config reads the first worker's file: it gives every worker an account.
            known = load_hub_config(first.config, env={})
            text = render_hub(
                replace(known, workers=config.workers), changed_only=self.changed_keys_only
            )
            first.config.write_text(text, encoding="utf-8")
        service = Service(
            ["hub", "serve", "--config", str(path)], folder / "hub.log", port,
            tls=(tls_port, config.path(config.tls_cert)),
        )  # fmt: skip
        hub = Hub(node, folder, path, service)
        hub.token = (first.token if first else puskesos(
            "hub", "token", "add", "--config", str(path), "--name", "fleet", "--write"
        ).strip())  # fmt: skip
        self.hubs.append(hub)
        if start:
            hub.service.start()
        return hub

    def write_broker_config(self) -> None:
        """``puskesos hub broker-config`` into the broker's folder; reload it if running."""
        puskesos(
            "hub", "broker-config", "--config", str(self.hubs[0].config),
            "--out", str(self.broker.workdir),
        )  # fmt: skip
        if self.broker.running:
            self.broker.reload()

    # --- national receiver ------------------------------------------------------------------

    def add_national(self) -> NationalReceiver:
        """Set up a reference national receiver that the first hub worker delivers to: the
        district's signing key made (``hub keys init``) and registered there, its token
        stored, the receiver's key trusted for published results. Needs ``district``; the
        hub's configuration is rewritten, so add it before the hub starts."""
        if not self.district:
            raise ValueError("a national receiver needs the fleet's district")
        hub = self.hubs[0]
        receiver = NationalReceiver(self.root / "national", self.port())
        known = load_hub_config(hub.config, env={})
        puskesos("hub", "keys", "init", "--config", str(hub.config))
        token = receiver.add_district(
            self.district, public_key_file(known.path(known.signing_key_file))
        )
        token_file = known.data_dir / "national.token"
        token_file.write_text(token + "\n", encoding="utf-8")
        token_file.chmod(0o600)
        configured = replace(
            known,
            national_url=receiver.plain_url,
            national_token_file=str(token_file),
            national_key_file=str(receiver.public_key_file),
        )
        hub.config.write_text(
            render_hub(configured, changed_only=self.changed_keys_only), encoding="utf-8"
        )
        self.receivers.append(receiver)
        return receiver

    # --- boxes ----------------------------------------------------------------------------

    def enrol(
        self,
        village: str,
        node: str,
        *,
        users: dict[str, tuple[str, str]] | None = None,
        broker_port: int | None = None,
    ) -> Box:
        """Register a box at the hub (``device add``) and set it up (``edge init``, users,
        an API token for its first user); not started, the broker config not rewritten.
        ``broker_port``: where the box finds the broker (a test's proxy; default: the
        broker's own port)."""
        out = puskesos(
            "hub", "device", "add", "--config", str(self.hubs[0].config),
            "--village", village, "--node", node,
        )  # fmt: skip
        lines = out.splitlines()
        password = lines[lines.index("broker password (shown only this once):") + 1].strip()
        folder = self.root / node
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "broker.password").write_text(password + "\n", encoding="utf-8")
        (folder / "broker.password").chmod(0o600)
        port, tls_port = self.port(), self.port()
        config = EdgeConfig(
            village=village,
            node=node,
            data_dir=folder / "data",
            listen_host="127.0.0.1",
            listen_port=port,
            tls=True,
            tls_port=tls_port,
            broker=BrokerConfig(
                port=broker_port or self.broker.port,
                username=node,
                password_file=str(folder / "broker.password"),
                mqtt_version=self.mqtt_version,
            ),
            sync=self.sync,
        )
        path = folder / "edge.toml"
        path.write_text(render_edge(config, changed_only=self.changed_keys_only), encoding="utf-8")
        puskesos("edge", "init", "--config", str(path), "--recovery-key", str(self.recovery_key()))
        users = users or {"admin": ("admin", "rahasia-balai-123")}
        # The first account replaces the setup slot; the others are added as that account,
        # whose password opens the encrypted database (the first line of stdin).
        first, (first_role, first_secret) = next(iter(users.items()))
        unlock = ["--as", first]

        def add_user(username: str, role: str, secret: str, *, then: bool = True) -> str:
            return puskesos(
                "edge", "user", "add", "--config", str(path), "--username", username,
                "--full-name", username.title(), "--role", role, *(unlock if then else []),
                stdin=(f"{first_secret}\n" if then else "") + secret + "\n",
            )  # fmt: skip

        add_user(first, first_role, first_secret, then=False)
        others = {name: user for name, user in users.items() if name != first}
        # Side by side: most of each command's time is Python starting up.
        with ThreadPoolExecutor() as pool:
            list(pool.map(add_user, others, *zip(*others.values(), strict=True)))
        token = puskesos(
            "edge", "token", "add", "--config", str(path), "--username", first,
            "--name", "fleet", *unlock, stdin=first_secret + "\n",
        ).strip()  # fmt: skip
        service = BoxService(
            ["edge", "serve", "--config", str(path)], folder / "edge.log", port,
            tls=(tls_port, config.path(config.tls_cert)), unlock_as=(first, first_secret),
        )  # fmt: skip
        box = Box(
            village, node, folder, path, service, token, {u: p for u, (_, p) in users.items()}
        )
        self.boxes.append(box)
        return box

    def start(self) -> None:
        """Write the broker config; start the broker, receivers, hub workers and boxes not
        running."""
        self.write_broker_config()
        if not self.broker.running:
            self.broker.start()
        services = [
            *self.receivers,
            *(h.service for h in self.hubs),
            *(b.service for b in self.boxes),
        ]
        with ThreadPoolExecutor() as pool:  # each waits for its /healthz: side by side
            list(pool.map(lambda service: service.start(), [s for s in services if not s.running]))

    def stop(self) -> None:
        """Stop every box, hub worker and the broker (SIGTERM, then wait)."""
        for service in [b.service for b in self.boxes] + [h.service for h in self.hubs]:
            service.stop()
        for receiver in self.receivers:
            receiver.stop()
        self.broker.stop()


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate()`` until it returns something truthy; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"gave up waiting for {what} after {timeout} s (last: {last!r})")
