"""The hub's configuration file: every key documented, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import KEYS, HubConfig, load_config, render_toml
from puskesos.tomlconfig import ConfigError
from tests.config_docs import assert_readme_documents


def write(folder: Path, text: str) -> Path:
    path = folder / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_written_file_reads_back_and_the_environment_overrides_it(tmp_path):
    config = HubConfig(node="hub-2", database_url="postgresql+asyncpg://hub@db/puskesos")
    path = write(tmp_path, render_toml(config))
    assert load_config(path, env={}) == config
    overridden = load_config(
        path, env={"PUSKESOS_HUB_LISTEN_PORT": "9100", "PUSKESOS_BROKER_MQTT_VERSION": "4"}
    )
    assert (overridden.listen_port, overridden.broker.mqtt_version) == (9100, 4)
    # Each worker is its own broker user (the broker ties client ids to user names).
    assert load_config(None, env={}).broker_user == "hub-1"
    two = load_config(path, env={"PUSKESOS_HUB_NODE": "hub-2", "PUSKESOS_HUB_WORKERS": "hub-1"})
    assert (two.broker_user, two.broker_users) == ("hub-2", ("hub-2", "hub-1"))


def test_without_a_database_url_the_hub_uses_sqlite_in_its_data_dir(tmp_path):
    config = load_config(write(tmp_path, '[hub]\ndata_dir = "state"\n'), env={})
    assert config.url == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'hub.sqlite'}"


@pytest.mark.parametrize(
    ("text", "names"),
    [("[hub]\nlisten_port = 'x'\n", "listen_port"), ("[hub]\ncolour = 1\n", "colour")],
)
def test_a_wrong_key_or_type_is_named(tmp_path, text, names):
    with pytest.raises(ConfigError, match=names):
        load_config(write(tmp_path, text), env={})


def test_the_readme_documents_every_key_with_its_variable_and_default():
    assert_readme_documents(KEYS, render_toml(HubConfig()))
