"""Reading the TOML configuration files of the edge and the hub, one way for both.

A section is a frozen dataclass whose fields have safe defaults; a key may be overridden by
the environment variable ``PUSKESOS_<SECTION>_<KEY>`` (in capitals).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "BROKER_KEYS",
    "BrokerConfig",
    "ConfigError",
    "read_toml",
    "render_section",
    "section_values",
]


class ConfigError(Exception):
    """The configuration file or an override is not usable; the message says which key."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How a box or a hub worker reaches the district's MQTT broker (section ``[broker]``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str = ""
    username: str = ""
    password_file: str = ""
    keepalive_s: int = 60
    mqtt_version: int = 5


#: The ``[broker]`` keys and their documentation.
BROKER_KEYS: Mapping[tuple[str, str], str] = {
    ("broker", "host"): "MQTT broker host",
    ("broker", "port"): "MQTT broker port",
    ("broker", "tls"): "connect with TLS",
    ("broker", "ca_file"): "CA certificate for TLS (empty: system CAs)",
    ("broker", "username"): "broker user name (empty: the node id, of a box or a hub worker)",
    ("broker", "password_file"): "file holding the broker password",
    ("broker", "keepalive_s"): "MQTT keepalive in seconds",
    ("broker", "mqtt_version"): "5 (MQTT 5: session expiry, shared subscriptions) or 4 (3.1.1)",
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


def section_values(
    cls: type[Any],
    section: str,
    table: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    nested: Iterable[str] = (),
) -> dict[str, Any]:
    """The values of one section, from ``table`` and the environment, checked and typed.

    ``nested`` names the fields of ``cls`` that are other sections (not read here).
    """
    skip = set(nested)
    known = {f.name for f in fields(cls) if f.name not in skip}
    unknown = set(table) - known - skip
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


def check_one_of(section: str, key: str, value: object, allowed: Iterable[object]) -> None:
    """Refuse a setting outside the values the program can work with."""
    allowed = tuple(allowed)
    if value not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise ConfigError(f"[{section}] {key} must be one of {choices}, not {value}")


def read_toml(path: Path | None, sections: Iterable[str]) -> dict[str, Any]:
    """The document at ``path`` (empty without one); only the named sections are allowed."""
    if path is None:
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(document) - set(sections)
    if unknown:
        raise ConfigError(f"unknown sections: {', '.join(sorted(unknown))}")
    return document


def render_section(
    section: str,
    obj: Any,
    docs: Mapping[tuple[str, str], str],
    *,
    nested: Iterable[str] = (),
    changed_only: bool = False,
) -> list[str]:
    """One section of a TOML file, every key with its documentation line above it;
    ``changed_only``: only the keys whose value is not their default (a file that an older
    release, which lacks keys added since, reads too)."""
    skip = set(nested)
    lines = [f"[{section}]"]
    defaults = type(obj)() if changed_only else None
    for f in fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        if defaults is not None and value == getattr(defaults, f.name):
            continue
        lines.append(f"# {docs[(section, f.name)]}")
        if isinstance(value, bool):
            lines.append(f"{f.name} = {'true' if value else 'false'}")
        elif isinstance(value, int):
            lines.append(f"{f.name} = {value}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{f.name} = "{escaped}"')
    lines.append("")
    return lines
