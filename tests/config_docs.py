"""The check both configuration files share: the README documents every key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def assert_readme_documents(keys: Mapping[tuple[str, str], str], defaults_toml: str) -> None:
    """Each key of ``keys`` has its README row: name, variable, default (as TOML), meaning."""
    readme = README.read_text(encoding="utf-8")
    section = ""
    defaults: dict[tuple[str, str], str] = {}  # the TOML literal of each default
    for line in defaults_toml.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif " = " in line:
            key, literal = line.split(" = ", 1)
            defaults[(section, key)] = literal
    for (section, key), doc in keys.items():
        variable = f"PUSKESOS_{section.upper()}_{key.upper()}"
        row = f"| `{section}.{key}` | `{variable}` | `{defaults[(section, key)]}` | {doc} |"
        assert row in readme, row
