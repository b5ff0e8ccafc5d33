"""A box whose disk fills up (issue 14, item 4): a real, small file system, filled for real.

The box's data folder is a tmpfs of a few MiB, mounted for the test (we run as root in CI;
where ``mount`` is not allowed the tests are skipped and say why). A filler file takes every
free byte, as logs or forgotten backups do in the field. The box must then say plainly that
nothing was saved (507 ``disk_full``, and an Indonesian page in the UI), report the disk in
``/healthz`` and on Beranda, keep showing what it holds, and save again without a restart
once space is freed.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import EdgeConfig
from edge.db import upgrade
from edge.disk import classify
from tests.edge.api_client import household_body, token_headers
from tests.edge.conftest import login
from tests.edge.test_ui import household_form
from tests.factories import DEFAULT_VILLAGE, make_household_with_members

#: Big enough that an empty one is neither "low" nor "full" (edge.disk's thresholds).
DISK_SIZE = "32m"
MIB = 2**20
FULL_MESSAGE = "Penyimpanan perangkat ini penuh. Data TIDAK tersimpan. Hubungi TI kabupaten."


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs of :data:`DISK_SIZE`, unmounted after the test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "a full disk needs a small real file system, and mounting a tmpfs is not "
            f"allowed here: {mounted.stderr.strip() or mounted.returncode}"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def edge_config(small_disk: Path) -> EdgeConfig:
    """The box of ``tests/edge/conftest.py``'s ``client``, with its data on the small disk."""
    config = EdgeConfig(village=DEFAULT_VILLAGE, node="edge-test-a", data_dir=small_disk / "box")
    upgrade(config.database_path)
    return config


def fill(disk: Path) -> Path:
    """Write a filler file until the file system refuses another byte."""
    filler = disk / "filler.log"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (b"\0" * 1024 * 1024, b"\0" * 4096, b"\0"):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


async def test_a_full_disk_refuses_saves_plainly_keeps_reads_and_recovers_without_restart(
    client, small_disk: Path
) -> None:
    csrf = await login(client, "operator1")
    api = await token_headers(client, "operator1")
    assert (
        await client.post("/api/v1/households", json=household_body(seed=1), headers=api)
    ).status == 201
    health = await (await client.get("/healthz")).json()
    assert health["checks"]["disk"] == "ok"

    filler = fill(small_disk)

    # The API says what happened, in a code a program can act on.
    response = await client.post("/api/v1/households", json=household_body(seed=2), headers=api)
    assert response.status == 507
    assert (await response.json())["error"] == "disk_full"
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert "507" in document["paths"]["/api/v1/households"]["post"]["responses"]

    # The operator is told, in the normal layout, that nothing was saved and whom to call.
    household, members = make_household_with_members(3, seed=3)
    response = await client.post(
        "/rumah-tangga/baru", data=household_form(csrf, household, members)
    )
    page = await response.text()
    assert response.status == 507
    assert FULL_MESSAGE in page
    assert 'href="/rumah-tangga"' in page  # the menu of the layout: not a bare error text

    # Health says so: the disk is full, and the box is not healthy.
    response = await client.get("/healthz")
    health = await response.json()
    assert response.status == 503
    assert health["checks"]["disk"] == "full"
    assert health["disk"]["free_bytes"] == 0

    # What the box holds can still be read, and Beranda warns.
    beranda = await client.get("/")
    assert beranda.status == 200
    assert "Penyimpanan perangkat ini penuh" in await beranda.text()
    assert (await client.get("/rumah-tangga")).status == 200
    listing = await client.get("/api/v1/households", headers=api)
    assert listing.status == 200
    assert (await listing.json())["total"] == 1  # the refused saves left nothing behind
    assert (await client.get("/api/v1/sync/status", headers=api)).status == 200

    # Someone frees space: the next save works, and health and Beranda say so, no restart.
    filler.unlink()
    response = await client.post("/api/v1/households", json=household_body(seed=4), headers=api)
    assert response.status == 201, await response.text()
    response = await client.post(
        "/rumah-tangga/baru", data=household_form(csrf, household, members), allow_redirects=False
    )
    assert response.status == 303, await response.text()
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["checks"]["disk"] == "ok"
    assert "Penyimpanan perangkat ini" not in await (await client.get("/")).text()


async def test_health_notices_freed_space_without_waiting_for_a_save(
    client, small_disk: Path
) -> None:
    """After a refused save, the box remembers the disk as full; it checks again by itself
    once space is back, so the operator who cleaned up sees it at once."""
    api = await token_headers(client, "operator1")
    filler = fill(small_disk)
    response = await client.post("/api/v1/households", json=household_body(seed=5), headers=api)
    assert response.status == 507
    filler.unlink()
    response = await client.get("/healthz")
    assert response.status == 200, await response.text()
    assert (await response.json())["checks"]["disk"] == "ok"


@pytest.mark.parametrize(
    ("free", "size", "write_failed", "state"),
    [
        (30 * MIB, 32 * MIB, False, "ok"),
        (32 * MIB // 10 + 1, 32 * MIB, False, "ok"),  # a tenth free: the hub alerts below
        (32 * MIB // 10, 32 * MIB, False, "low"),
        (2 * MIB, 32 * MIB, False, "low"),
        (2 * MIB - 1, 32 * MIB, False, "full"),  # too little left for the next checkpoint
        (30 * MIB, 32 * MIB, True, "full"),  # writes fail: believe them, not statvfs
        (0, 0, False, "full"),
    ],
)
def test_disk_state_from_free_space_and_the_last_write(
    free: int, size: int, write_failed: bool, state: str
) -> None:
    assert classify(free, size, write_failed=write_failed) == state
