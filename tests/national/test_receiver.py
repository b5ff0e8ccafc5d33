"""The reference national receiver, spoken to over HTTP as any district's client would: it
follows its OpenAPI contract, refuses what is not the district's signed, whole delivery
with a reason code, keeps tokens hashed, and publishes deciles with its own signature."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from yarl import URL

from hub.forward import forward
from hub.keys import load_public_key, sign, verify
from national import web as national_web
from national.publish import programmes_of
from protocol.dataset import MANIFEST_FILE, canonical_bytes, canonical_json, parse_manifest
from puskesos.fleet import run_puskesos
from tests.national.receiver import (
    PERIOD,
    ServedReceiver,
    district_key,
    make_dataset,
)

#: District codes of the tests; odd, so that code + 1 is free for a neighbour district.
CODES = itertools.count(3201, 2)
CONTRACT = Path(__file__).parents[2] / "docs" / "national-api.yaml"


def contract() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    return document


def conforms(body: Any, schema: str) -> bool:
    """Whether ``body`` is valid against the contract's ``components/schemas/<schema>``."""
    root = {**contract(), "$ref": f"#/components/schemas/{schema}"}
    return Draft202012Validator(root).is_valid(body)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory):
    served = ServedReceiver(tmp_path_factory.mktemp("national"), max_chunk_bytes=1 << 20)
    served.start()
    yield served
    served.stop()


@pytest.fixture
async def district(receiver, tmp_path):
    """(token, key, dataset folder) of a newly registered district with its dataset."""
    code = str(next(CODES))
    key = district_key(tmp_path)
    token = receiver.add_district(code, tmp_path / "signing.key")
    folder = tmp_path / "dataset"
    await make_dataset(folder, key, 40, district=code)
    return code, token, key, folder


async def call(
    receiver: ServedReceiver,
    method: str,
    path: str | URL,
    token: str | None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Call the receiver; a ``URL`` is sent as it is (a path already percent-encoded)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = path if isinstance(path, URL) else receiver.url + path
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


def open_body(folder: Path, key: Any, *, manifest: dict[str, Any] | None = None) -> dict:
    manifest = manifest or json.loads((folder / MANIFEST_FILE).read_bytes())
    return {"manifest": manifest, "signature": sign(key, canonical_bytes(parse_manifest(manifest)))}


def test_the_contract_is_valid_openapi_and_names_exactly_the_served_routes():
    document = contract()
    validate(document)
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method != "parameters"
    }
    served = {(route.method, route.path) for route in national_web.routes}
    assert served == documented


async def test_a_tampered_wrongly_signed_or_unsigned_manifest_is_refused_with_its_reason(
    receiver, district, tmp_path
):
    code, token, key, folder = district
    base = f"/api/v1/districts/{code}/periods/{PERIOD}/delivery"
    good = open_body(folder, key)

    tampered = {**good, "manifest": {**good["manifest"], "created_ms": 1}}
    other = district_key(tmp_path / "other")
    wrong_key = open_body(folder, other)
    unsigned = {"manifest": good["manifest"]}
    garbage = {**good, "signature": "not base64 at all"}
    for body, reason in (
        (tampered, "bad_signature"),
        (wrong_key, "bad_signature"),
        (garbage, "bad_signature"),
        (unsigned, "unsigned"),
    ):
        status, answer = await call(receiver, "PUT", base, token, json=body)
        assert (status, answer["error"]) == (422, reason)
        assert conforms(answer, "Refusal")

    status, answer = await call(receiver, "PUT", base, token, data=b"{not json")
    assert (status, answer["error"]) == (400, "malformed")
    broken = {**good, "manifest": {**good["manifest"], "files": []}}
    status, answer = await call(receiver, "PUT", base, token, json=broken)
    assert (status, answer["error"]) == (400, "malformed")
    assert not (receiver.data_dir / "uploads" / code).exists()


async def test_strangers_other_districts_and_the_wrong_period_are_refused(
    receiver, district, tmp_path
):
    code, token, key, folder = district
    body = open_body(folder, key)
    path = f"/api/v1/districts/{code}/periods/{PERIOD}/delivery"
    assert (await call(receiver, "PUT", path, None, json=body))[1]["error"] == "unauthorized"
    status, answer = await call(receiver, "PUT", path, "guess", json=body)
    assert (status, answer["error"]) == (401, "unauthorized")
    status, answer = await call(
        receiver, "PUT", f"/api/v1/districts/9999/periods/{PERIOD}/delivery", token, json=body
    )
    assert (status, answer["error"]) == (404, "unknown_district")

    neighbour = str(int(code) + 1)
    neighbour_key = district_key(tmp_path / "neighbour")
    neighbour_token = receiver.add_district(neighbour, tmp_path / "neighbour" / "signing.key")
    status, answer = await call(
        receiver, "PUT", f"/api/v1/districts/{neighbour}/periods/{PERIOD}/delivery", token,
        json=body,
    )  # fmt: skip
    assert (status, answer["error"]) == (401, "unauthorized")
    status, answer = await call(
        receiver, "PUT", f"/api/v1/districts/{neighbour}/periods/{PERIOD}/delivery",
        neighbour_token, json=open_body(folder, neighbour_key),
    )  # fmt: skip
    assert (status, answer["error"]) == (422, "wrong_district")
    status, answer = await call(
        receiver, "PUT", f"/api/v1/districts/{code}/periods/2026-12/delivery", token, json=body
    )
    assert (status, answer["error"]) == (422, "wrong_period")


async def test_chunks_go_at_the_reported_offset_and_never_past_the_manifest(receiver, district):
    code, token, key, folder = district
    base = f"/api/v1/districts/{code}/periods/{PERIOD}"
    status, opened = await call(
        receiver, "PUT", f"{base}/delivery", token, json=open_body(folder, key)
    )
    assert status == 201 and conforms(opened, "OpenUpload")
    assert {f["received"] for f in opened["files"]} == {0}
    upload = opened["manifest_sha256"]
    data = (folder / "household.jsonl").read_bytes()
    chunk = f"{base}/uploads/{upload}/files/household.jsonl"

    status, answer = await call(
        receiver, "PUT", chunk, token, params={"offset": "0"}, data=data[:1000]
    )
    assert (status, answer["received"]) == (200, 1000) and conforms(answer, "FileState")
    status, answer = await call(
        receiver, "PUT", chunk, token, params={"offset": "0"}, data=data[:10]
    )
    assert (status, answer["error"], answer["received"]) == (409, "offset_mismatch", 1000)
    status, answer = await call(
        receiver, "PUT", chunk, token, params={"offset": "1000"}, data=data[1000:] + b"extra"
    )
    assert (status, answer["error"]) == (413, "too_large")
    for name, refused in (
        ("secret.jsonl", (404, "unknown_file")),
        ("secret.txt", (400, "malformed")),
    ):
        status, answer = await call(
            receiver, "PUT", f"{base}/uploads/{upload}/files/{name}", token,
            params={"offset": "0"}, data=b"x",
        )  # fmt: skip
        assert (status, answer["error"]) == refused
    status, answer = await call(receiver, "POST", f"{base}/uploads/{upload}/finalize", token)
    assert (status, answer["error"]) == (409, "incomplete")

    status, resumed = await call(
        receiver, "PUT", f"{base}/delivery", token, json=open_body(folder, key)
    )
    assert status == 200
    assert {f["name"]: f["received"] for f in resumed["files"]}["household.jsonl"] == 1000
    status, state = await call(receiver, "GET", f"{base}/delivery", token)
    assert status == 200 and state == resumed


async def test_a_delivered_period_is_final_and_answers_the_same_receipt(
    receiver, district, tmp_path
):
    code, token, key, folder = district
    first = await forward(folder, receiver.url, token, public_key=key.public_key())
    base = f"/api/v1/districts/{code}/periods/{PERIOD}"
    status, state = await call(receiver, "GET", f"{base}/delivery", token)
    assert status == 200 and conforms(state, "Delivered")
    assert state["receipt"] == first.signed
    status, again = await call(
        receiver, "POST", f"{base}/uploads/{first.receipt.manifest_sha256}/finalize", token
    )
    assert (status, again["receipt"]) == (200, first.signed)

    redone = tmp_path / "redone"
    await make_dataset(redone, key, 41, district=code)
    status, answer = await call(
        receiver, "PUT", f"{base}/delivery", token, json=open_body(redone, key)
    )
    assert (status, answer["error"]) == (409, "already_delivered")
    assert first.receipt.manifest_sha256 in answer["message"]


def test_tokens_are_kept_hashed_and_a_district_is_registered_once(receiver, tmp_path):
    key_file = tmp_path / "signing.key"
    district_key(tmp_path)
    token = receiver.add_district("8000", key_file)
    with sqlite3.connect(receiver.data_dir / "registry.sqlite") as db:
        rows = db.execute("SELECT * FROM districts WHERE code = '8000'").fetchall()
    assert token not in repr(rows)
    assert hashlib.sha256(token.encode()).hexdigest() in repr(rows)
    again = run_puskesos(
        "national", "district", "add", "--config", str(receiver.config),
        "--code", "8000", "--public-key", str(tmp_path / "signing.pub"),
    )  # fmt: skip
    assert again.returncode == 1 and "already registered" in again.stderr


async def test_published_results_give_each_household_a_decile_and_are_signed(
    receiver, district, tmp_path
):
    code, token, key, folder = district
    out = tmp_path / "published.jsonl"
    early = run_puskesos(
        "national", "publish", "--config", str(receiver.config), "--district", code,
        "--period", PERIOD, "--out", str(out),
    )  # fmt: skip
    assert early.returncode == 1 and "no delivery" in early.stderr
    await forward(folder, receiver.url, token, public_key=key.public_key())
    done = run_puskesos(
        "national", "publish", "--config", str(receiver.config), "--district", code,
        "--period", PERIOD, "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    header, *lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (header["district"], header["period"]) == (code, PERIOD)
    households = [
        json.loads(line)["id"]
        for line in (folder / "household.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [line["id"] for line in lines] == households
    assert all(1 <= line["decile"] <= 10 for line in lines)
    assert all(line["programmes"] == programmes_of(line["decile"]) for line in lines)
    assert len({line["decile"] for line in lines}) > 2

    signed = json.loads((tmp_path / "published.jsonl.sig").read_text(encoding="utf-8"))
    statement = signed["statement"]
    assert statement["file_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert statement["households"] == len(households)
    status, pem = 0, b""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{receiver.url}/api/v1/receiver-key") as answer,
    ):
        status, pem = answer.status, await answer.read()
    assert status == 200
    receiver_key = load_public_key(pem)
    assert verify(receiver_key, canonical_json(statement), signed["signature"])
    assert not verify(
        receiver_key, canonical_json({**statement, "households": 1}), signed["signature"]
    )


async def test_a_district_cannot_reach_another_districts_upload_through_the_path(
    receiver, district, tmp_path
):
    """District A's token, with ``..%2F`` in the period, once read, appended to and finalized
    district B's upload (the receiver decoded the path parameter into a file path)."""
    code, token, _, _ = district
    other = str(int(code) + 1)
    other_key = district_key(tmp_path / "other")
    other_token = receiver.add_district(other, tmp_path / "other" / "signing.key")
    other_folder = tmp_path / "other-dataset"
    await make_dataset(other_folder, other_key, 10, district=other)
    base = f"/api/v1/districts/{other}/periods/{PERIOD}"
    status, opened = await call(
        receiver, "PUT", f"{base}/delivery", other_token, json=open_body(other_folder, other_key)
    )
    assert status == 201
    upload = opened["manifest_sha256"]
    data = (other_folder / "household.jsonl").read_bytes()
    status, _ = await call(
        receiver, "PUT", f"{base}/uploads/{upload}/files/household.jsonl", other_token,
        params={"offset": "0"}, data=data[:100],
    )  # fmt: skip
    assert status == 200

    sneaky = f"/api/v1/districts/{code}/periods/..%2F{other}%2F{PERIOD}"
    for method, path, extra in (
        ("GET", f"{sneaky}/delivery", {}),
        ("PUT", f"{sneaky}/uploads/{upload}/files/household.jsonl?offset=100", {"data": b"x"}),
        ("POST", f"{sneaky}/uploads/{upload}/finalize", {}),
        ("PUT", f"/api/v1/districts/{code}/periods/{PERIOD}/uploads/..%2F..%2F{other}%2F"
                f"{PERIOD}%2F{upload}/files/household.jsonl?offset=100", {"data": b"x"}),
    ):  # fmt: skip
        status, answer = await call(
            receiver, method, URL(receiver.url + path, encoded=True), token, **extra
        )
        assert (status, answer["error"]) == (400, "malformed"), (method, path, answer)
    stored = receiver.data_dir / "uploads" / other / PERIOD / upload / "household.jsonl"
    assert stored.read_bytes() == data[:100], "district B's upload is untouched"


async def test_a_delivery_larger_than_the_receiver_takes_is_refused_before_any_byte(tmp_path):
    small = ServedReceiver(tmp_path / "small", max_delivery_bytes=10_000)
    small.start()
    try:
        key = district_key(tmp_path)
        token = small.add_district("3299", tmp_path / "signing.key")
        folder = tmp_path / "dataset"
        await make_dataset(folder, key, 40, district="3299")
        status, answer = await call(
            small, "PUT", f"/api/v1/districts/3299/periods/{PERIOD}/delivery", token,
            json=open_body(folder, key),
        )  # fmt: skip
        assert (status, answer["error"]) == (413, "too_large")
        assert not (small.data_dir / "uploads" / "3299").exists()
    finally:
        small.stop()
