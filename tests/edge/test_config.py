"""An operator configures a box with one TOML file and PUSKESOS_* environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import (
    KEYS,
    BrokerConfig,
    ConfigError,
    EdgeConfig,
    SyncConfig,
    load_config,
    render_toml,
)
from tests.config_docs import assert_readme_documents


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_every_setting_has_a_safe_default():
    config = load_config(None, env={})
    assert config == EdgeConfig()
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 8080)
    assert config.database_path == Path("/var/lib/puskesos/edge.sqlite")
    assert config.cookie_secure is False
    assert config.broker == BrokerConfig()


def test_values_come_from_the_file_and_relative_paths_from_its_folder(tmp_path):
    path = write(
        tmp_path,
        '[edge]\nvillage = "3201022001"\nnode = "edge-3201022001-a"\ndata_dir = "box"\n'
        "listen_port = 9000\ncookie_secure = true\n"
        '[broker]\nhost = "mqtt.dinsos.example"\nport = 8883\ntls = true\n',
    )
    config = load_config(path, env={})
    assert (config.village, config.node, config.listen_port) == (
        "3201022001",
        "edge-3201022001-a",
        9000,
    )
    assert config.cookie_secure is True
    assert config.data_dir == tmp_path / "box"
    assert config.database_path == tmp_path / "box" / "edge.sqlite"
    assert (config.broker.host, config.broker.port, config.broker.tls) == (
        "mqtt.dinsos.example",
        8883,
        True,
    )
    assert config.login_max_failures == 5  # not in the file: the default


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, '[edge]\nlisten_port = 9000\n[broker]\nhost = "from-file"\n')
    env = {
        "PUSKESOS_EDGE_LISTEN_PORT": "8081",
        "PUSKESOS_BROKER_HOST": "broker.local",
        "PUSKESOS_BROKER_TLS": "yes",
        "PUSKESOS_EDGE_DATA_DIR": "/srv/puskesos",
    }
    config = load_config(path, env=env)
    assert config.listen_port == 8081
    assert config.broker.host == "broker.local"
    assert config.broker.tls is True
    assert config.data_dir == Path("/srv/puskesos")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[edge]\nlisten_port = "eighty"\n', "listen_port"),
        ("[edge]\nlisten_port = 80.5\n", "listen_port"),
        ("[edge]\nlisten_port = true\n", "listen_port"),
        ('[edge]\ncookie_secure = "maybe"\n', "cookie_secure"),
        ("[edge]\nvillage = 3201022001\n", "village"),
        ("[edge]\ndata_dir = 5\n", "data_dir"),
        ("[broker]\nport = [1883]\n", "port"),
        ("[edge]\nlisten_prot = 8080\n", "listen_prot"),
        ('[broker]\nhostname = "x"\n', "hostname"),
        ('[hub]\nurl = "x"\n', "hub"),
        ("[sync]\nwindow = 0\n", "window"),
        ("[sync]\nseal_delay_s = -1\n", "seal_delay_s"),
        ("[sync]\nbackoff_min_s = 60\nbackoff_max_s = 10\n", "backoff_min_s"),
        ('[sync]\nenabled = "sometimes"\n', "enabled"),
        ("[edge\n", "edge.toml"),
    ],
)
def test_a_wrong_value_or_unknown_key_is_refused_naming_it(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=named):
        load_config(path, env={})


def test_the_delays_may_be_zero_for_at_once(tmp_path):
    path = write(tmp_path, "[sync]\naudit_delay_s = 0\nseal_delay_s = 0\n")
    sync = load_config(path, env={}).sync
    assert (sync.audit_delay_s, sync.seal_delay_s) == (0, 0)


def test_a_wrong_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="PUSKESOS_EDGE_LISTEN_PORT"):
        load_config(None, env={"PUSKESOS_EDGE_LISTEN_PORT": "http"})
    with pytest.raises(ConfigError, match="PUSKESOS_BROKER_TLS"):
        load_config(None, env={"PUSKESOS_BROKER_TLS": "perhaps"})


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nothing\.toml"):
        load_config(tmp_path / "nothing.toml", env={})


def test_the_rendered_file_documents_every_key_and_reads_back_the_same(tmp_path):
    config = EdgeConfig(
        village="3201022001",
        node="edge-3201022001-a",
        data_dir=tmp_path / 'a "quoted" \\ folder',
        listen_port=8443,
        cookie_secure=True,
        timezone="Asia/Makassar",
        broker=BrokerConfig(host="mqtt.example", tls=True, ca_file="/etc/ssl/ca.pem"),
    )
    text = render_toml(config)
    for (section, key), doc in KEYS.items():
        assert f"# {doc}\n{key} = " in text, (section, key)
    assert load_config(write(tmp_path, text), env={}) == config
    assert load_config(write(tmp_path, render_toml(EdgeConfig())), env={}) == EdgeConfig()


def test_a_file_of_the_changed_keys_only_reads_back_the_same(tmp_path):
    # What a bench writes for an older checkout, which refuses keys added since.
    config = EdgeConfig(
        village="3201022001",
        data_dir=tmp_path / "data",
        broker=BrokerConfig(port=1884),
        sync=SyncConfig(enabled=True, window=4),
    )
    text = render_toml(config, changed_only=True)
    keys = [line.split(" = ")[0] for line in text.splitlines() if " = " in line]
    assert keys == ["village", "data_dir", "port", "enabled", "window"]
    assert load_config(write(tmp_path, text), env={}) == config


def test_the_readme_documents_every_key_with_its_variable_and_default():
    assert_readme_documents(KEYS, render_toml(EdgeConfig()))
