"""The test command starts its own PostgreSQL when none answers on 127.0.0.1:5432 (a fresh
Debian 12): tests/postgres.sh makes a cluster on a free port that a hub migrates and uses."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from hub import db

SCRIPT = Path(__file__).with_name("postgres.sh")


def test_a_cluster_of_its_own_on_another_port_serves_a_hub():
    # Not under pytest's tmp_path: as root, the cluster's postgres user must reach the
    # folder, and pytest's folders are private to root (tests/run.sh uses /tmp the same way).
    with tempfile.TemporaryDirectory(prefix="puskesos-test-pg.") as scratch:
        _start_use_and_stop(Path(scratch))


def _start_use_and_stop(folder: Path) -> None:
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, check=False
    )
    assert started.returncode == 0, started.stderr + (folder / "initdb.log").read_text()
    url = make_url(started.stdout.strip())
    try:
        assert url.port != 5432, "a port of its own, beside any server already there"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(url.port), "-U", "postgres", "-d",
             "postgres", "-qc", "CREATE DATABASE hub_started"],
            check=True, capture_output=True,
        )  # fmt: skip
        db.upgrade(str(url.set(database="hub_started")))
        tables = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(url.port), "-U", "postgres", "-d",
             "hub_started", "-tAc", "SELECT count(*) FROM records"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        assert tables == "0"
    finally:
        stopped = subprocess.run(
            ["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, text=True
        )
    assert stopped.returncode == 0, stopped.stderr
    answers = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(url.port)])
    assert answers.returncode != 0, "stopped: nothing answers on its port any more"
