"""Forwarding a signed dataset to a real national receiver (a child process on loopback):
it lands whole, twice is stored once, a kill of either side mid-upload resumes without
sending again what was stored, and an unsigned or tampered dataset never leaves the hub."""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.forward import ForwardError, forward
from hub.keys import load_public_key, verify
from protocol.dataset import MANIFEST_FILE, SIGNATURE_FILE, canonical_json
from puskesos.fleet import free_port, puskesos
from tests.national.receiver import (
    DISTRICT,
    PERIOD,
    ServedReceiver,
    district_key,
    log_events,
    make_dataset,
)


@pytest.fixture
def receiver(tmp_path: Path):
    served = ServedReceiver(tmp_path / "national")
    served.start()
    yield served
    served.stop()


@pytest.fixture
async def dataset(tmp_path: Path):
    """(folder, district key): a signed dataset of 300 households."""
    key = district_key(tmp_path)
    folder = tmp_path / "dataset"
    await make_dataset(folder, key, 300)
    return folder, key


def stored_bytes(receiver: ServedReceiver) -> int:
    return sum(event["bytes"] for event in log_events(receiver.log, "chunk stored"))


def dataset_bytes(folder: Path) -> int:
    manifest = json.loads((folder / MANIFEST_FILE).read_bytes())
    return sum(f["bytes"] for f in manifest["files"])


async def test_a_dataset_lands_whole_with_a_signed_receipt_and_twice_is_stored_once(
    receiver, dataset, tmp_path
):
    folder, key = dataset
    token = receiver.add_district(DISTRICT, tmp_path / "signing.key")
    first = await forward(folder, receiver.url, token, public_key=key.public_key())
    again = await forward(folder, receiver.url, token, public_key=key.public_key())

    assert first.bytes_sent == dataset_bytes(folder)
    assert again.bytes_sent == 0
    assert again.receipt == first.receipt
    assert (first.receipt.district, first.receipt.period) == (DISTRICT, PERIOD)
    stored = receiver.data_dir / "deliveries" / DISTRICT / PERIOD
    names = [p.name for p in folder.iterdir()]
    same, different, missing = filecmp.cmpfiles(folder, stored, names, shallow=False)
    assert (sorted(same), different, missing) == (sorted(names), [], [])
    assert [p.name for p in (receiver.data_dir / "deliveries" / DISTRICT).iterdir()] == [PERIOD]
    assert stored_bytes(receiver) == dataset_bytes(folder)
    receiver_key = load_public_key(receiver.public_key_pem)
    assert verify(receiver_key, canonical_json(first.signed["receipt"]), first.signed["signature"])


async def test_an_unsigned_or_tampered_dataset_is_refused_before_anything_is_sent(
    receiver, dataset, tmp_path
):
    folder, key = dataset
    token = receiver.add_district(DISTRICT, tmp_path / "signing.key")
    manifest = folder / MANIFEST_FILE
    original = manifest.read_bytes()
    manifest.write_bytes(
        original.replace(b'"created_ms":1795000000000', b'"created_ms":1795000000001')
    )
    with pytest.raises(ForwardError) as refused:
        await forward(folder, receiver.url, token, public_key=key.public_key())
    assert refused.value.reason == "bad_signature"

    manifest.write_bytes(original)
    other = district_key(tmp_path / "other")
    with pytest.raises(ForwardError) as refused:
        await forward(folder, receiver.url, token, public_key=other.public_key())
    assert refused.value.reason == "bad_signature"

    (folder / SIGNATURE_FILE).unlink()
    with pytest.raises(ForwardError) as refused:
        await forward(folder, receiver.url, token, public_key=key.public_key())
    assert refused.value.reason == "unsigned"
    assert "refused before signing" in str(refused.value)
    assert log_events(receiver.log, "upload opened") == []


async def test_a_file_changed_after_signing_is_refused_by_the_receiver(receiver, dataset, tmp_path):
    folder, key = dataset
    token = receiver.add_district(DISTRICT, tmp_path / "signing.key")
    household = folder / "household.jsonl"
    data = bytearray(household.read_bytes())
    data[100] = ord("X") if data[100] != ord("X") else ord("Y")  # same size, other bytes
    household.write_bytes(bytes(data))
    with pytest.raises(ForwardError) as refused:
        await forward(folder, receiver.url, token, public_key=key.public_key())
    assert refused.value.reason == "checksum_mismatch"
    assert "household.jsonl" in refused.value.detail
    assert not (receiver.data_dir / "deliveries" / DISTRICT / PERIOD).exists()


FORWARD_SCRIPT = """
import asyncio, sys
from pathlib import Path
from hub.forward import forward
from hub.keys import load_private_key
key = load_private_key(Path(sys.argv[2])).public_key()
asyncio.run(forward(Path(sys.argv[1]), sys.argv[3], sys.argv[4], public_key=key,
                    chunk_bytes=int(sys.argv[5])))
"""


def received_on_disk(receiver: ServedReceiver) -> int:
    """Bytes of JSON Lines files in open uploads. An upload's folder may be renamed while
    it is walked: ``os.walk`` skips what vanished, where ``Path.rglob`` raises."""
    total = 0
    for folder, _, names in os.walk(receiver.data_dir / "uploads"):
        for name in names:
            if name.endswith(".jsonl"):
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(folder, name)).st_size
    return total


@pytest.mark.slow
async def test_a_forwarder_killed_mid_upload_resumes_without_sending_again_what_was_stored(
    receiver, tmp_path
):
    key = district_key(tmp_path)
    folder = tmp_path / "dataset"
    await make_dataset(folder, key, 2000)
    token = receiver.add_district(DISTRICT, tmp_path / "signing.key")
    total = dataset_bytes(folder)
    process = subprocess.Popen(
        [sys.executable, "-c", FORWARD_SCRIPT, str(folder), str(tmp_path / "signing.key"),
         receiver.url, token, str(8192)],
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while received_on_disk(receiver) < total // 5 and time.monotonic() < deadline:
        assert process.poll() is None, "the forwarder finished before it could be killed"
        await asyncio.sleep(0.005)
    process.kill()
    process.wait()
    before = -1
    while before != stored_bytes(receiver):  # the receiver finishes the chunk it was given
        before = stored_bytes(receiver)
        await asyncio.sleep(0.3)
    assert 0 < before < total

    done = await forward(folder, receiver.url, token, public_key=key.public_key())
    assert done.bytes_sent == total - before
    assert stored_bytes(receiver) == total
    assert (receiver.data_dir / "deliveries" / DISTRICT / PERIOD / "member.jsonl").stat().st_size


@pytest.mark.slow
async def test_a_receiver_that_dies_mid_upload_is_retried_and_the_upload_continues(tmp_path):
    receiver = ServedReceiver(tmp_path / "national")
    receiver.start()
    key = district_key(tmp_path)
    folder = tmp_path / "dataset"
    await make_dataset(folder, key, 2000)
    token = receiver.add_district(DISTRICT, tmp_path / "signing.key")
    total = dataset_bytes(folder)
    notes: list[str] = []
    delivery = asyncio.create_task(
        forward(
            folder,
            receiver.url,
            token,
            public_key=key.public_key(),
            chunk_bytes=8192,
            backoff_s=0.2,
            backoff_max_s=0.5,
            max_attempts=50,
            log=notes.append,
        )
    )
    try:
        while received_on_disk(receiver) < total // 5:
            assert not delivery.done()
            await asyncio.sleep(0.005)
        await asyncio.to_thread(receiver.kill)  # a power cut at the national side
        await asyncio.sleep(1)
        await asyncio.to_thread(receiver.start)
        done = await asyncio.wait_for(delivery, 120)
    finally:
        receiver.stop()
    assert notes, "the forwarder had to retry"
    # Nothing is sent twice but, at most, the one chunk whose answer the kill cut off.
    assert total - 8192 <= done.bytes_sent <= total
    assert done.receipt.bytes == total
    stored = receiver.data_dir / "deliveries" / DISTRICT / PERIOD
    names = [p.name for p in folder.iterdir()]
    assert filecmp.cmpfiles(folder, stored, names, shallow=False)[1:] == ([], [])


async def test_an_unreachable_receiver_is_given_up_after_the_last_retry(dataset):
    folder, key = dataset
    with pytest.raises(ForwardError) as refused:
        await forward(
            folder,
            f"http://127.0.0.1:{free_port()}",
            "token",
            public_key=key.public_key(),
            max_attempts=3,
            backoff_s=0.01,
        )
    assert refused.value.reason == "unreachable"


def test_hub_keys_init_and_hub_forward_deliver_a_period_from_the_command_line(receiver, tmp_path):
    config = tmp_path / "hub.toml"
    data_dir = tmp_path / "hub"
    puskesos("hub", "init", "--config", str(config), "--data-dir", str(data_dir))
    printed = puskesos("hub", "keys", "init", "--config", str(config))
    assert printed.startswith("-----BEGIN PUBLIC KEY-----")
    key_file = data_dir / "signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = subprocess.run(
        [sys.executable, "-m", "puskesos", "hub", "keys", "init", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 1 and "never overwritten" in again.stderr

    token = receiver.add_district(DISTRICT, key_file)
    (data_dir / "national.token").write_text(token + "\n", encoding="utf-8")
    from hub.keys import load_private_key

    folder = tmp_path / "dataset"
    asyncio.run(make_dataset(folder, load_private_key(key_file), 20))
    edited = (
        config.read_text(encoding="utf-8")
        .replace('national_url = ""', f'national_url = "{receiver.url}"')
        .replace('national_token_file = ""', 'national_token_file = "national.token"')
    )
    config.write_text(edited, encoding="utf-8")
    wrong = subprocess.run(
        [sys.executable, "-m", "puskesos", "hub", "forward", "--config", str(config),
         "--period", "2026-12", "--dataset", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert wrong.returncode == 1 and "not 2026-12" in wrong.stderr
    printed = puskesos(
        "hub", "forward", "--config", str(config), "--period", PERIOD, "--dataset", str(folder)
    )
    receipt = json.loads(printed)
    assert json.loads((folder / "receipt.json").read_text(encoding="utf-8")) == receipt
    assert receipt["receipt"]["period"] == PERIOD
