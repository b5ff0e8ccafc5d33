"""Configuration of the reference national receiver: one TOML file (``[national]``),
overridden by ``PUSKESOS_NATIONAL_*`` environment variables.

Every key, its default and its meaning are in :data:`KEYS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from puskesos.tomlconfig import read_toml, render_section, section_values

__all__ = ["KEYS", "NationalConfig", "load_config", "render_toml"]


@dataclass(frozen=True, slots=True)
class NationalConfig:
    """Settings of the receiver. Relative paths are relative to ``data_dir``."""

    data_dir: Path = Path("/var/lib/puskesos-national")
    listen_host: str = "127.0.0.1"
    listen_port: int = 8095
    signing_key_file: str = "receiver.key"
    max_chunk_bytes: int = 16 * 1024 * 1024
    max_delivery_bytes: int = 32 * 1024**3

    @property
    def key_path(self) -> Path:
        """The receiver's own signing key (receipts, published results)."""
        path = Path(self.signing_key_file)
        return path if path.is_absolute() else self.data_dir / path


#: (section, key) → one line of documentation.
KEYS: Mapping[tuple[str, str], str] = {
    ("national", "data_dir"): "folder of the district registry, uploads and deliveries",
    ("national", "listen_host"): "address the receiver listens on",
    ("national", "listen_port"): "port of the receiver's API and /healthz",
    ("national", "signing_key_file"): (
        "the receiver's Ed25519 key that signs receipts and published results"
    ),
    ("national", "max_chunk_bytes"): "largest chunk of a file one request may carry",
    ("national", "max_delivery_bytes"): (
        "largest delivery (all its files) a manifest may announce; a district cannot fill the disk"
    ),
}


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> NationalConfig:
    """Read ``path`` (optional: defaults only) and apply environment overrides."""
    env = os.environ if env is None else env
    document = read_toml(path, ("national",))
    config = NationalConfig(
        **section_values(NationalConfig, "national", document.get("national", {}), env)
    )
    if path is not None and not config.data_dir.is_absolute():
        config = replace(config, data_dir=(path.parent / config.data_dir).resolve())
    return config


def render_toml(config: NationalConfig) -> str:
    """The configuration as a TOML file, every key with its documentation line."""
    return "\n".join(render_section("national", config, KEYS))
