"""Edge configuration: one TOML file, overridden by ``PUSKESOS_*`` environment variables.

Every key, its default and its meaning are in :data:`KEYS` (rendered into the README's
configuration table). Environment variable names are ``PUSKESOS_<SECTION>_<KEY>`` in
capitals, e.g. ``PUSKESOS_EDGE_LISTEN_PORT=8081``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from protocol.rounds import ROUND_MONTHS
from puskesos.tls import tls_keys
from puskesos.tomlconfig import (
    BROKER_KEYS,
    BrokerConfig,
    ConfigError,
    check_one_of,
    read_toml,
    render_section,
    section_values,
)

__all__ = [
    "KEYS",
    "BrokerConfig",
    "ConfigError",
    "EdgeConfig",
    "SyncConfig",
    "load_config",
    "render_toml",
]


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Replication with the district hub (section ``[sync]``, see docs/replication.md)."""

    enabled: bool = False
    batch_changes: int = 500
    batch_bytes: int = 65536
    window: int = 8
    ack_timeout_s: int = 30
    audit_delay_s: int = 30
    seal_delay_s: int = 0
    status_interval_s: int = 60
    telemetry_interval_s: int = 300
    session_expiry_s: int = 7 * 24 * 3600
    backoff_min_s: int = 1
    backoff_max_s: int = 120


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Settings of one edge box. Relative paths are relative to ``data_dir``."""

    village: str = ""
    node: str = ""
    data_dir: Path = Path("/var/lib/puskesos")
    database: str = "edge.sqlite"
    backup_dir: str = "backups"
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    session_secret_file: str = "session.key"
    session_max_age_s: int = 8 * 3600
    session_idle_s: int = 30 * 60
    cookie_secure: bool = False
    tls: bool = False
    tls_port: int = 8443
    tls_cert: str = "tls/box.crt"
    tls_key: str = "tls/box.key"
    tls_names: str = ""
    login_max_failures: int = 5
    login_lockout_s: int = 15 * 60
    max_clock_drift_ms: int = 5 * 60 * 1000
    page_size: int = 25
    timezone: str = "Asia/Jakarta"
    round_months: int = 3
    recovery_key: str = ""
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)

    @property
    def database_path(self) -> Path:
        """Absolute path of the SQLite database file."""
        return self.data_dir / self.database

    def path(self, setting: str) -> Path:
        """A file setting's path: as given if absolute, else relative to ``data_dir``."""
        return self.data_dir / setting


#: (section, key) → one line of documentation. Sections: ``edge``, ``broker`` and ``sync``.
KEYS: Mapping[tuple[str, str], str] = {
    ("edge", "village"): "10-digit Kemendagri code of the box's village (set by `edge init`)",
    ("edge", "node"): "node id of the box, unique in the district (set by `edge init`)",
    ("edge", "data_dir"): "folder of the database, the session key and backups",
    ("edge", "database"): "SQLite file name, relative to data_dir",
    ("edge", "backup_dir"): (
        "folder of the backups (`edge backup` without a destination), relative to data_dir or "
        "absolute (a USB stick); securing a plain box deletes its plain backups there too"
    ),
    ("edge", "listen_host"): "address the web UI listens on",
    ("edge", "listen_port"): "port of the web UI and API",
    ("edge", "session_secret_file"): (
        "key file CSRF tokens are derived from on a plain box (made by `edge init`; an "
        "encrypted box derives the key from its data key)"
    ),
    ("edge", "session_max_age_s"): "seconds a login lasts",
    ("edge", "session_idle_s"): "seconds without a request after which a login ends",
    ("edge", "cookie_secure"): (
        "mark cookies Secure on plain HTTP too (HTTPS made by a proxy in front of the box)"
    ),
    **tls_keys("edge"),
    ("edge", "login_max_failures"): (
        "failed logins of one name from one address before that pair must wait (1 minute, doubling)"
    ),
    ("edge", "login_lockout_s"): (
        "longest wait in seconds of one name from one address (accounts are never locked)"
    ),
    ("edge", "max_clock_drift_ms"): "how far ahead a remote clock may be before it is refused",
    ("edge", "page_size"): "rows per page in lists",
    (
        "edge",
        "timezone",
    ): "IANA time zone of the village (WIB Asia/Jakarta, WITA Asia/Makassar, WIT Asia/Jayapura)",
    ("edge", "round_months"): (
        "months of one verification round, from January (1, 2, 3, 4, 6 or 12; give the hub's)"
    ),
    ("edge", "recovery_key"): (
        "the district's recovery public key (`puskesos hub keys recovery-init`): `edge init` "
        "encrypts a new box with it; a plain box given one is encrypted at its first staff "
        "sign-in (docs/storage.md §5)"
    ),
    **BROKER_KEYS,
    (
        "sync",
        "enabled",
    ): "replicate with the district hub over the broker (`edge init` turns it on)",
    ("sync", "batch_changes"): "most changes in one batch sent to the hub",
    ("sync", "batch_bytes"): "most bytes of one batch on the wire (at most 262144)",
    ("sync", "window"): "batches sent and not yet acknowledged by the hub, at most",
    ("sync", "ack_timeout_s"): "seconds without the hub's ack before a batch is sent again",
    ("sync", "audit_delay_s"): (
        "seconds the box gathers audit entries before it sends them to the hub (one message "
        "for many saves; a full batch goes at once; 0: each save's entries at once)"
    ),
    ("sync", "seal_delay_s"): (
        "seconds the box gathers saved changes before it seals them into a batch (one batch "
        "for many saves: fewer bytes on a 2G link; a full batch goes at once; 0: at once)"
    ),
    ("sync", "status_interval_s"): "seconds between two status messages to the hub",
    ("sync", "telemetry_interval_s"): (
        "seconds between two health reports to the hub (monitoring/METRICS.md)"
    ),
    ("sync", "session_expiry_s"): "seconds the broker keeps the box's session while it is away",
    ("sync", "backoff_min_s"): "first wait in seconds before connecting again to the broker",
    ("sync", "backoff_max_s"): "longest wait in seconds between two connection attempts",
}

_NESTED = ("broker", "sync")


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> EdgeConfig:
    """Read ``path`` (optional: defaults only) and apply environment overrides."""
    env = os.environ if env is None else env
    document = read_toml(path, ("edge", *_NESTED))
    broker = BrokerConfig(**section_values(BrokerConfig, "broker", document.get("broker", {}), env))
    sync = _checked(SyncConfig(**section_values(SyncConfig, "sync", document.get("sync", {}), env)))
    edge_values = section_values(EdgeConfig, "edge", document.get("edge", {}), env, nested=_NESTED)
    config = EdgeConfig(**edge_values, broker=broker, sync=sync)
    check_one_of("edge", "round_months", config.round_months, ROUND_MONTHS)
    if path is not None and not config.data_dir.is_absolute():
        config = EdgeConfig(
            **{**edge_values, "data_dir": (path.parent / config.data_dir).resolve()},
            broker=broker,
            sync=sync,
        )
    return config


#: ``[sync]`` numbers for which 0 means "at once"; every other must be at least 1.
_DELAYS = frozenset({"audit_delay_s", "seal_delay_s"})


def _checked(sync: SyncConfig) -> SyncConfig:
    """Refuse ``[sync]`` numbers the client cannot work with (a window of 0 sends nothing)."""
    for item in fields(sync):
        value = getattr(sync, item.name)
        least = 0 if item.name in _DELAYS else 1
        if isinstance(value, int) and not isinstance(value, bool) and value < least:
            raise ConfigError(f"[sync] {item.name} must be at least {least}, not {value}")
    if sync.backoff_min_s > sync.backoff_max_s:
        raise ConfigError("[sync] backoff_min_s must not be above backoff_max_s")
    return sync


def render_toml(config: EdgeConfig, *, changed_only: bool = False) -> str:
    """The configuration as a TOML file, every key with its documentation line
    (``changed_only``: those not at their default, :func:`render_section`)."""
    return "\n".join(
        render_section("edge", config, KEYS, nested=_NESTED, changed_only=changed_only)
        + render_section("broker", config.broker, KEYS, changed_only=changed_only)
        + render_section("sync", config.sync, KEYS, changed_only=changed_only)
    )
