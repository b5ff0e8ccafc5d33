"""A district provisioned by the real playbooks onto this machine.

Every machine of the inventory (hub, broker, two village boxes) is a folder under a temporary
root (``puskesos_root``) reached with ``ansible_connection=local``; the ``<role>_manage_system``
switches are off, so no package, user, service, firewall or mount of this machine changes.
There is no systemd here: a service is started with the command line of its rendered unit.
"""

from __future__ import annotations

import configparser
import getpass
import grp
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from puskesos.fleet import MosquittoBroker, Service, environment, free_port

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "provisioning"
PLAYBOOKS = (
    "site.yml",
    "enrol-edge.yml",
    "upgrade.yml",
    "replace-edge.yml",
    "rotate-credentials.yml",
)
#: Two villages of Kecamatan Gunungputri, Kabupaten Bogor.
VILLAGE_A = "3201022001"
VILLAGE_B = "3201022002"
#: The address office computers reach the hub at (in its certificate; nothing listens on it).
HUB_VPN_ADDRESS = "10.32.0.1"


def ansible(tool: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run an Ansible command (``ansible-playbook``, ``ansible-lint``) in ``provisioning/``."""
    beside = Path(sys.executable).with_name(tool)
    command = str(beside) if beside.exists() else shutil.which(tool) or tool
    return subprocess.run(
        [command, *args],
        cwd=PROVISIONING,
        env=environment(
            ANSIBLE_CONFIG=str(PROVISIONING / "ansible.cfg"), ANSIBLE_NOCOLOR="1", NO_COLOR="1"
        ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a playbook run: host → {"ok": n, "changed": n, "failed": n, ...}."""
    return {
        host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE)
    }


def build_wheel(folder: Path, version: str = "") -> Path:
    """A wheel of this checkout (``pip wheel --no-deps``), built from a copy so that nothing
    is written into the repository; ``version`` makes it another release of the same code."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {name.split(".")[0] for name in project["tool"]["setuptools"]["packages"]}
    source = folder / "source"
    source.mkdir(parents=True)
    for name in ["pyproject.toml", project["project"]["readme"], *sorted(packages)]:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    if version:
        init = source / "puskesos" / "__init__.py"
        text = init.read_text(encoding="utf-8")
        init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', text))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = folder.glob("puskesos-*.whl")
    return wheel


def unit_settings(unit: Path, instance: str = "") -> dict[str, str]:
    """The ``[Service]`` settings of a rendered unit file (``%i`` replaced by ``instance``)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text(encoding="utf-8"))
    return {key: value.replace("%i", instance) for key, value in parser["Service"].items()}


class UnitService(Service):
    """What a rendered systemd unit runs (its ``ExecStart`` and ``EnvironmentFile``), as a
    child process of the test. ``instance`` is the ``%i`` of a template unit."""

    def __init__(
        self,
        unit: Path,
        log: Path,
        port: int,
        instance: str = "",
        *,
        tls: tuple[int, Path] | None = None,
    ) -> None:
        settings = unit_settings(unit, instance)
        program, *argv = shlex.split(settings["ExecStart"])
        super().__init__(argv, log, port, tls=tls, command=[program])
        if "EnvironmentFile" in settings:
            lines = Path(settings["EnvironmentFile"]).read_text(encoding="utf-8").splitlines()
            pairs = (line.split("=", 1) for line in lines if "=" in line and line[0] != "#")
            self.env = dict(pairs)


class ProvisionedMosquitto(MosquittoBroker):
    """Mosquitto started with the configuration the broker role rendered under ``root``."""

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(root / "var/lib/mosquitto", port)
        self.config_file = root / "etc/mosquitto/mosquitto.conf"

    def _write_config(self) -> None:
        """Nothing to write: the playbook did."""


@dataclass
class District:
    """The inventory of a district on this machine, and what runs of it."""

    root: Path
    wheel: Path
    broker_port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    hub_tls_port: int = field(default_factory=free_port)
    #: Inventory host → its host_vars (the boxes).
    boxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: list[Service | MosquittoBroker] = field(default_factory=list)
    #: The output of the first site.yml run.
    first_run: str = ""

    def machine(self, host: str) -> Path:
        """The folder a host's files are rendered into (its ``puskesos_root``)."""
        if host in self.boxes:
            return Path(self.boxes[host]["puskesos_root"])
        return self.root / host

    @property
    def ca_dir(self) -> Path:
        """The pilot CA's folder on the "control host"."""
        return self.root / "control" / "ca"

    def add_box(self, host: str, village: str, node: str, **more: Any) -> None:
        """Put a village box in the inventory, in a folder named after its node."""
        self.boxes[host] = {
            "puskesos_root": str(self.root / node),
            "edge_village": village,
            "edge_node": node,
            "edge_listen_port": free_port(),
            "edge_tls_port": free_port(),
            **more,
        }

    def inventory(self) -> Path:
        """Write the inventory (again, after a change to the boxes); returns its file."""
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        ca_cert = str(self.ca_dir / "ca.crt")
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        everywhere = {
            "ansible_connection": "local",
            "ansible_python_interpreter": python,
            "puskesos_wheel": str(self.wheel),
            # The venv sees this interpreter's packages: pip downloads nothing.
            "puskesos_python": sys.executable,
            "puskesos_venv_site_packages": True,
            "puskesos_pip_extra_args": "--no-index",
            **{f"{role}_manage_system": False for role in ("puskesos", "edge", "hub", "broker")},
            **{f"{role}_user": user for role in ("edge", "hub", "broker")},
            **{f"{role}_group": group for role in ("edge", "hub", "broker")},
            "broker_ca_dir": str(self.ca_dir),
            "broker_tls_names": ["127.0.0.1"],
            "broker_tls_port": self.broker_port,
            "broker_local_port": 0,
            "hub_district": "3201",
            "hub_workers": [
                {"node": "hub-1", "listen_port": self.hub_port, "tls_port": self.hub_tls_port}
            ],
            "hub_broker_port": self.broker_port,
            "hub_broker_tls": True,
            "hub_broker_ca_cert": ca_cert,
            "hub_settings": {"hub": {"sweep_interval_s": 1, "resend_after_s": 10}},
            "hub_tls_ca_dir": str(self.ca_dir),
            "hub_tls_names": [HUB_VPN_ADDRESS],
            "edge_broker_host": "127.0.0.1",
            "edge_broker_port": self.broker_port,
            "edge_broker_ca_cert": ca_cert,
            "edge_tls_ca_dir": str(self.ca_dir),
            "edge_listen_host": "127.0.0.1",
            "edge_settings": {"sync": {"ack_timeout_s": 3, "backoff_min_s": 1, "backoff_max_s": 2}},
        }
        broker = {
            "puskesos_root": str(self.machine("broker")),
            "broker_log_dest": f"file {self.machine('broker')}/var/lib/mosquitto/mosquitto.log",
        }
        document = {
            "all": {
                "vars": everywhere,
                "children": {
                    "hubs": {"hosts": {"hub": {"puskesos_root": str(self.machine("hub"))}}},
                    "brokers": {"hosts": {"broker": broker}},
                    "edges": {"hosts": self.boxes},
                },
            }
        }
        path = self.root / "inventory.yml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path

    def play(self, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``ansible-playbook -i <inventory> playbook *args``."""
        return ansible("ansible-playbook", "-i", str(self.inventory()), playbook, *args)

    def puskesos(self, host: str, *args: str, stdin: str = "") -> str:
        """Run the ``puskesos`` command of a host's provisioned venv; returns its output."""
        command = self.machine(host) / "opt/puskesos/venv/bin/puskesos"
        result = subprocess.run(
            [str(command), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=environment(),
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"puskesos {' '.join(args[:3])}: {result.stderr}"
        return result.stdout

    def config(self, host: str) -> Path:
        """A host's rendered configuration (edge.toml or hub.toml)."""
        name = "hub.toml" if host == "hub" else "edge.toml"
        return self.machine(host) / "etc/puskesos" / name

    def unit(self, host: str, name: str) -> Path:
        """A rendered systemd unit of a host."""
        return self.machine(host) / "etc/systemd/system" / name


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Iterator[District]:
    """A two-village district after a first run of site.yml (asserted to succeed): desa-b
    set up with the defaults (encrypted, with the recovery key the hub made), desa-a made
    plain on purpose (edge_plain); whatever the tests start is stopped at the end."""
    root = tmp_path_factory.mktemp("district")
    made = District(root, build_wheel(root / "dist"))
    made.add_box("desa-a", VILLAGE_A, "edge-3201022001-a", edge_plain=True)
    made.add_box("desa-b", VILLAGE_B, "edge-3201022002-a")
    result = made.play("site.yml")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    made.first_run = result.stdout
    yield made
    for service in reversed(made.services):
        service.stop()
