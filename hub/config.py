"""Hub configuration: one TOML file (``[hub]``, ``[broker]``), overridden by
``PUSKESOS_HUB_*`` / ``PUSKESOS_BROKER_*`` environment variables.

Every key, its default and its meaning are in :data:`KEYS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from protocol.rounds import ROUND_MONTHS
from puskesos.tls import tls_keys
from puskesos.tomlconfig import (
    BROKER_KEYS,
    BrokerConfig,
    check_one_of,
    read_toml,
    render_section,
    section_values,
)

__all__ = ["KEYS", "HubConfig", "load_config", "render_toml"]


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Settings of one hub worker process. Relative paths are relative to ``data_dir``."""

    node: str = "hub-1"
    district: str = ""
    data_dir: Path = Path("/var/lib/puskesos-hub")
    database_url: str = ""
    listen_host: str = "127.0.0.1"
    listen_port: int = 8090
    max_clock_drift_ms: int = 5 * 60 * 1000
    share_group: str = "hub"
    workers: str = ""
    apply_concurrency: int = 8
    down_window: int = 4
    batch_changes: int = 500
    batch_bytes: int = 128 * 1024
    resend_after_s: int = 30
    sweep_interval_s: int = 5
    box_stale_after_s: int = 900
    audit_gap_grace_s: int = 600
    audit_verify_s: int = 3600
    signing_key_file: str = "signing.key"
    national_url: str = ""
    national_token_file: str = ""
    national_ca_file: str = ""
    forward_chunk_bytes: int = 4 * 1024 * 1024
    session_secret_file: str = "session.secret"
    login_lockout_s: int = 900
    cookie_secure: bool = False
    tls: bool = False
    tls_port: int = 8443
    tls_cert: str = "tls/hub.crt"
    tls_key: str = "tls/hub.key"
    tls_names: str = ""
    national_key_file: str = ""
    cutoff_day: int = 17
    cutoff_time: str = "23:59"
    timezone: str = "Asia/Jakarta"
    round_months: int = 3
    broker: BrokerConfig = field(default_factory=BrokerConfig)

    @property
    def url(self) -> str:
        """The database URL: ``database_url``, or a SQLite file in ``data_dir``."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'hub.sqlite'}"

    @property
    def broker_user(self) -> str:
        """This worker's broker user name: ``[broker] username``, or else its node id."""
        return self.broker.username or self.node

    @property
    def broker_users(self) -> tuple[str, ...]:
        """The broker accounts of the district's hub workers: this worker's and ``workers``.

        The broker ties a client id to its user name (``use_username_as_clientid``), so
        each worker needs an account of its own: sharing one, they would knock each other
        off. They share the hub's password.
        """
        names = [self.broker_user, *(n.strip() for n in self.workers.split(","))]
        return tuple(dict.fromkeys(n for n in names if n))

    def path(self, setting: str) -> Path:
        """A file setting's path: as given if absolute, else relative to ``data_dir``."""
        path = Path(setting)
        return path if path.is_absolute() else self.data_dir / path


#: (section, key) → one line of documentation.
KEYS: Mapping[tuple[str, str], str] = {
    ("hub", "node"): "node id of this hub worker (unique per process: hub-1, hub-2, ...)",
    ("hub", "district"): "4-digit regency code this hub serves (empty: every district)",
    ("hub", "data_dir"): "folder of the SQLite database (when database_url is empty)",
    ("hub", "database_url"): (
        "SQLAlchemy URL, e.g. postgresql+asyncpg://hub@db/puskesos (empty: SQLite in data_dir)"
    ),
    ("hub", "listen_host"): "address the hub API listens on",
    ("hub", "listen_port"): "port of the hub API, /healthz and /metrics",
    ("hub", "max_clock_drift_ms"): "how far ahead of the hub's clock a box's stamp may be",
    ("hub", "share_group"): (
        "MQTT 5 shared-subscription group of the hub workers (the broker sees it with a tag "
        "derived from the hub's broker password)"
    ),
    ("hub", "workers"): (
        "node ids of all the hub workers, comma-separated: broker-config gives each a broker "
        "account named after it (empty: this worker only)"
    ),
    ("hub", "apply_concurrency"): "batches one worker applies at once (different villages)",
    ("hub", "down_window"): "unacked down batches in flight per box",
    ("hub", "batch_changes"): "most changes in one down batch",
    ("hub", "batch_bytes"): "most bytes in one down batch frame",
    ("hub", "resend_after_s"): "seconds before an unacked down batch is sent again",
    ("hub", "sweep_interval_s"): "seconds between checks for downlink work and resends",
    ("hub", "box_stale_after_s"): (
        "seconds without a status, report or batch before a box counts as stale in /metrics"
    ),
    ("hub", "audit_gap_grace_s"): (
        "seconds a missing entry of a box's audit chain may take to arrive before the box's "
        "chain counts as broken (a gap)"
    ),
    ("hub", "audit_verify_s"): (
        "seconds between checks of the hub's own audit chain (puskesos_hub_audit_chain_ok; "
        "each check logs the chain's head)"
    ),
    ("hub", "signing_key_file"): (
        "the district's Ed25519 signing key (PKCS#8 PEM, made by `puskesos hub keys init`)"
    ),
    ("hub", "national_url"): "base URL of the national receiver (empty: no forwarding)",
    ("hub", "national_token_file"): "file holding this district's token at the national receiver",
    ("hub", "national_ca_file"): (
        "CA bundle that signs the national receiver's certificate (empty: the system's)"
    ),
    ("hub", "forward_chunk_bytes"): "bytes per request when forwarding a dataset",
    ("hub", "session_secret_file"): (
        "key file the review UI's CSRF tokens are derived from (made by `puskesos hub init`)"
    ),
    ("hub", "login_lockout_s"): (
        "longest wait in seconds of one name from one address after 5 failed logins (never a lock)"
    ),
    ("hub", "cookie_secure"): (
        "mark the review UI's cookies Secure on plain HTTP too (HTTPS made by a proxy in front)"
    ),
    **tls_keys("hub"),
    ("hub", "national_key_file"): (
        "the national receiver's public key (PEM) that signs published results (empty: none)"
    ),
    ("hub", "cutoff_day"): "day of the month whose cut-off freezes the period (past the end: last)",
    ("hub", "cutoff_time"): "time of day (HH:MM) of the monthly cut-off",
    ("hub", "timezone"): "time zone of the monthly cut-off and of decision dates",
    ("hub", "round_months"): (
        "months of one verification round, from January (1, 2, 3, 4, 6 or 12; give the boxes')"
    ),
    **BROKER_KEYS,
}


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read ``path`` (optional: defaults only) and apply environment overrides."""
    env = os.environ if env is None else env
    document = read_toml(path, ("hub", "broker"))
    broker_values = section_values(BrokerConfig, "broker", document.get("broker", {}), env)
    broker = BrokerConfig(**broker_values)
    values = section_values(HubConfig, "hub", document.get("hub", {}), env, nested=("broker",))
    config = HubConfig(**values, broker=broker)
    check_one_of("hub", "round_months", config.round_months, ROUND_MONTHS)
    if path is not None and not config.data_dir.is_absolute():
        config = HubConfig(
            **{**values, "data_dir": (path.parent / config.data_dir).resolve()}, broker=broker
        )
    return config


def render_toml(config: HubConfig, *, changed_only: bool = False) -> str:
    """The configuration as a TOML file, every key with its documentation line
    (``changed_only``: those not at their default, :func:`render_section`)."""
    return "\n".join(
        render_section("hub", config, KEYS, nested=("broker",), changed_only=changed_only)
        + render_section("broker", config.broker, KEYS, changed_only=changed_only)
    )
