"""The nightly backup of a running box needs no password: ``edge backup`` asks the serving
process over ``<data_dir>/control.sock`` (docs/storage.md §3). A locked box refuses clearly
and touches nothing; once a staff member has signed in, the backup opens with the box's data
key and holds what was saved; a plain box backs up as before."""

from __future__ import annotations

import json
import socket
import sqlite3
import stat
import urllib.request
from pathlib import Path

import pytest

from edge import keys
from edge.config import load_config
from edge.db import connect
from puskesos.fleet import sign_in
from tests.edge.box_process import ServedBox, household_body, init_box, puskesos
from tests.edge.conftest import PASSWORD
from tests.edge.test_encrypted_box import recovery_key

SAVED = "backup made through the control socket"


def save_household(box: ServedBox, token: str, seed: int) -> str:
    """Save a household through the API; returns its id."""
    request = urllib.request.Request(
        f"{box.url}/api/v1/households",
        data=json.dumps(household_body(seed)).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=box.context))
    with opener.open(request, timeout=10) as answer:
        return str(json.loads(answer.read())["id"])


def households(database: Path, key: bytes | None) -> set[str]:
    with connect(f"file:{database}?mode=ro", key, uri=True) as connection:
        rows = connection.execute("SELECT id FROM records WHERE entity = 'household'")
        return {row[0] for row in rows}


def backup(config: Path, destination: Path) -> tuple[int, str, str]:
    """``edge backup DEST/`` without ``--as`` and with nothing on stdin, as the timer runs it."""
    done = puskesos("edge", "backup", f"{destination}/", "--config", str(config))
    return done.returncode, done.stdout.strip(), done.stderr


def test_a_locked_box_refuses_and_an_unlocked_one_backs_up_without_a_password(tmp_path):
    public = recovery_key(tmp_path)
    config = init_box(tmp_path, users={"admin": ("admin", PASSWORD)}, recovery_key=public)
    made = puskesos("edge", "token", "add", "--config", str(config), "--username", "admin",
                    "--name", "uji", "--as", "admin", stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[0]
    sock = tmp_path / "data" / "control.sock"
    backups = tmp_path / "backups"

    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        mode = sock.lstat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

        status, out, err = backup(config, backups)
        assert status == 3, err
        assert "the box is locked" in err and "--as NAME" in err
        assert not backups.exists() or list(backups.iterdir()) == []

        sign_in(box, "admin", PASSWORD)
        saved = save_household(box, token, seed=7)
        status, out, err = backup(config, backups)
        assert status == 0, err
        copy = Path(out)
        assert copy.parent == backups and stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert SAVED in box.output()
    finally:
        assert box.stop() == 0
    assert not sock.exists(), "the socket outlived the box"

    with pytest.raises(sqlite3.DatabaseError), sqlite3.connect(copy) as plain:
        plain.execute("SELECT count(*) FROM records").fetchone()
    key = keys.open_with_password(load_config(config), "admin", PASSWORD)
    assert saved in households(copy, key)

    # Not serving: no socket answers, and an encrypted box needs a password again.
    status, out, err = backup(config, backups)
    assert status == 2 and "--as NAME" in err


def test_a_new_encrypted_box_without_accounts_is_backed_up_with_its_setup_slot(tmp_path):
    config = init_box(tmp_path, recovery_key=recovery_key(tmp_path))
    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        status, out, err = backup(config, tmp_path / "backups")
        assert status == 0, err  # locked, but the empty box's setup slot opens it
    finally:
        assert box.stop() == 0
    assert households(Path(out), keys.setup_key(load_config(config))) == set()


def test_a_plain_box_backs_up_as_before_and_a_dead_box_s_socket_is_replaced(tmp_path):
    config = init_box(tmp_path, users={"admin": ("admin", PASSWORD)})
    sock = tmp_path / "data" / "control.sock"
    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        status, out, err = backup(config, tmp_path / "backups")
        assert status == 0, err
        assert households(Path(out), None) == set()
        assert SAVED in box.output()
        box.kill()  # a power cut leaves the socket file behind
        assert stat.S_ISSOCK(sock.lstat().st_mode)
        status, out, err = backup(config, tmp_path / "backups")
        assert status == 0, err  # nobody answers: the command copies the database itself

        box.start()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            client.sendall(b'{"command": "restore", "destination": "/tmp/x"}\n')
            assert json.loads(client.makefile().readline())["error"] == "bad_request"
        database = tmp_path / "data" / "edge.sqlite"
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            client.sendall(json.dumps({"command": "backup", "destination": str(database)}).encode())
            client.sendall(b"\n")
            answer = json.loads(client.makefile().readline())
        assert answer["error"] == "failed" and "database itself" in answer["message"]
    finally:
        assert box.stop() == 0


def test_a_file_where_the_socket_goes_is_left_alone(tmp_path):
    config = init_box(tmp_path, users={"admin": ("admin", PASSWORD)})
    squatter = tmp_path / "data" / "control.sock"
    squatter.write_text("not a socket\n")
    box = ServedBox(config, tmp_path / "serve.log").start()
    try:
        assert "is not a socket" in box.output()
        status, _, err = backup(config, tmp_path / "backups")
        assert status == 0, err  # a plain box: the command copies the database itself
        assert SAVED not in box.output()
    finally:
        assert box.stop() == 0
    assert squatter.read_text() == "not a socket\n"
