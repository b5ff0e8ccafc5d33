"""Edge configuration: one TOML file, overridden by ``PUSKESOS_*`` environment variables.

Every key, its default and its meaning are in :data:`KEYS` (rendered into the README's
configuration table). Environment variable names are ``PUSKESOS_<SECTION>_<KEY>`` in
capitals, e.g. ``PUSKESOS_EDGE_LISTEN_PORT=8081``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["KEYS", "BrokerConfig", "ConfigError", "EdgeConfig", "load_config", "render_toml"]


class ConfigError(Exception):
    """The configuration file or an override is not usable; the message says which key."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How the box reaches the district's MQTT broker (used by the sync client)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str = ""
    username: str = ""
    password_file: str = ""
    keepalive_s: int = 60


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Settings of one edge box. Relative paths are relative to ``data_dir``."""

    village: str = ""
    node: str = ""
    data_dir: Path = Path("/var/lib/puskesos")
    database: str = "edge.sqlite"
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    session_secret_file: str = "session.key"
    session_max_age_s: int = 8 * 3600
    cookie_secure: bool = False
    login_max_failures: int = 5
    login_lockout_s: int = 15 * 60
    max_clock_drift_ms: int = 5 * 60 * 1000
    page_size: int = 25
    timezone: str = "Asia/Jakarta"
    broker: BrokerConfig = BrokerConfig()

    @property
    def database_path(self) -> Path:
        """Absolute path of the SQLite database file."""
        return self.data_dir / self.database


#: (section, key) → one line of documentation. Sections: ``edge`` and ``broker``.
KEYS: Mapping[tuple[str, str], str] = {
    ("edge", "village"): "10-digit Kemendagri code of the box's village (set by `edge init`)",
    ("edge", "node"): "node id of the box, unique in the district (set by `edge init`)",
    ("edge", "data_dir"): "folder of the database, the session key and backups",
    ("edge", "database"): "SQLite file name, relative to data_dir",
    ("edge", "listen_host"): "address the web UI listens on",
    ("edge", "listen_port"): "port of the web UI and API",
    ("edge", "session_secret_file"): "key file CSRF tokens are derived from (made by `edge init`)",
    ("edge", "session_max_age_s"): "seconds a login lasts",
    ("edge", "cookie_secure"): "mark the session cookie Secure (when served over HTTPS)",
    ("edge", "login_max_failures"): "failed logins in a row that lock an account",
    ("edge", "login_lockout_s"): "seconds an account stays locked",
    ("edge", "max_clock_drift_ms"): "how far ahead a remote clock may be before it is refused",
    ("edge", "page_size"): "rows per page in lists",
    (
        "edge",
        "timezone",
    ): "IANA time zone of the village (WIB Asia/Jakarta, WITA Asia/Makassar, WIT Asia/Jayapura)",
    ("broker", "host"): "MQTT broker host",
    ("broker", "port"): "MQTT broker port",
    ("broker", "tls"): "connect with TLS",
    ("broker", "ca_file"): "CA certificate for TLS (empty: system CAs)",
    ("broker", "username"): "broker user name (defaults to the node id)",
    ("broker", "password_file"): "file holding the broker password",
    ("broker", "keepalive_s"): "MQTT keepalive in seconds",
}


def _coerce(name: str, default: Any, raw: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError(raw)
            return int(raw)
        if not isinstance(raw, str):
            raise ValueError(raw)
        return Path(raw) if isinstance(default, Path) else raw
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a valid {type(default).__name__}") from None


def _section(cls: type[Any], section: str, table: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    known = {f.name for f in fields(cls) if f.name != "broker"}
    unknown = set(table) - known - {"broker"}
    if unknown:
        raise ConfigError(f"[{section}] unknown keys: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    defaults = cls()
    for name in known:
        default = getattr(defaults, name)
        env_name = f"PUSKESOS_{section.upper()}_{name.upper()}"
        if env_name in env:
            values[name] = _coerce(env_name, default, env[env_name])
        elif name in table:
            values[name] = _coerce(f"[{section}] {name}", default, table[name])
    return values


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> EdgeConfig:
    """Read ``path`` (optional: defaults only) and apply environment overrides."""
    env = os.environ if env is None else env
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    unknown = set(document) - {"edge", "broker"}
    if unknown:
        raise ConfigError(f"unknown sections: {', '.join(sorted(unknown))}")
    broker = BrokerConfig(**_section(BrokerConfig, "broker", document.get("broker", {}), env))
    edge_values = _section(EdgeConfig, "edge", document.get("edge", {}), env)
    config = EdgeConfig(**edge_values, broker=broker)
    if path is not None and not config.data_dir.is_absolute():
        config = EdgeConfig(
            **{**edge_values, "data_dir": (path.parent / config.data_dir).resolve()},
            broker=broker,
        )
    return config


def render_toml(config: EdgeConfig) -> str:
    """The configuration as a TOML file, every key with its documentation line."""
    lines = []
    for section, obj in (("edge", config), ("broker", config.broker)):
        lines.append(f"[{section}]")
        for f in fields(obj):
            if f.name == "broker":
                continue
            value = getattr(obj, f.name)
            lines.append(f"# {KEYS[(section, f.name)]}")
            if isinstance(value, bool):
                lines.append(f"{f.name} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{f.name} = {value}")
            else:
                escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'{f.name} = "{escaped}"')
        lines.append("")
    return "\n".join(lines)
