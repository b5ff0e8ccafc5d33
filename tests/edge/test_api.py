"""The JSON API as automation uses it: create, read, list and change every entity (never
delete), refused input that writes nothing, warnings that need a confirmation, and
NIK/KK numbers masked in lists but shown (and audited) on a household's detail."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.edge.api_client import household_body, store_of, token_headers, written
from tests.factories import make_nik

API = "/api/v1"
UNKNOWN_ID = "01970000-0000-7000-8000-000000000000"


async def _create_household(client, headers, body: dict[str, Any] | None = None) -> dict[str, Any]:
    body = body or household_body(3)
    response = await client.post(f"{API}/households", json=body, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_household_with_members_round_trip(client):
    headers = await token_headers(client, "operator1")
    body = household_body(3)
    created = await client.post(f"{API}/households", json=body, headers=headers)
    assert created.status == 201, await created.text()
    result = await created.json()
    household_id = result["id"]
    assert result["record"]["values"]["kk_number"] == body["household"]["kk_number"]
    assert result["record"]["values"]["village_code"] == store_of(client).village
    kinds = [r["values"]["kind"] for r in result["records"] if r["entity"] == "proposal"]
    assert kinds == ["usulan_baru"]
    assert result["warnings"] == {}

    detail = await (await client.get(f"{API}/households/{household_id}", headers=headers)).json()
    names = sorted(m["values"]["name"] for m in detail["members"])
    assert names == sorted(m["name"] for m in body["members"])
    first = detail["members"][0]

    change = {
        "household": {"address": "Kp. Sukamaju No. 3"},
        "members": [
            {"id": first["id"], "occupation": "Pedagang"},
            {k: v for k, v in household_body(1)["members"][0].items() if k != "relation_to_head"}
            | {"relation_to_head": "famili_lain"},
        ],
    }
    patched = await client.patch(f"{API}/households/{household_id}", json=change, headers=headers)
    assert patched.status == 200, await patched.text()

    detail = await (await client.get(f"{API}/households/{household_id}", headers=headers)).json()
    assert detail["household"]["values"]["address"] == "Kp. Sukamaju No. 3"
    assert len(detail["members"]) == 4
    by_id = {m["id"]: m["values"] for m in detail["members"]}
    assert by_id[first["id"]]["occupation"] == "Pedagang"
    kinds = sorted(p["values"]["kind"] for p in detail["proposals"])
    assert kinds == ["perbaikan_data", "usulan_baru"]

    deleted = await client.delete(f"{API}/households/{household_id}", headers=headers)
    assert deleted.status == 405
    assert (await deleted.json())["error"] == "method_not_allowed"


async def test_member_read_and_change_keep_household_rules(client):
    headers = await token_headers(client, "operator1")
    result = await _create_household(client, headers)
    household_id = result["id"]
    members = [r for r in result["records"] if r["entity"] == "member"]
    head = next(m for m in members if m["values"]["relation_to_head"] == "kepala_keluarga")
    other = next(m for m in members if m is not head)

    answer = await client.get(f"{API}/members/{other['id']}", headers=headers)
    assert (await answer.json())["values"]["nik"] == other["values"]["nik"]
    views, _ = await store_of(client).audit_log(record_id=other["id"])
    assert (views[0].actor, views[0].action) == ("operator1", "view")

    # A second head breaks a household rule: refused, with the issue on this member's field.
    before = await written(client)
    second_head = {"member": {"relation_to_head": "kepala_keluarga"}}
    refused = await client.patch(f"{API}/members/{other['id']}", json=second_head, headers=headers)
    assert refused.status == 422
    assert "relation_to_head" in (await refused.json())["fields"]
    assert await written(client) == before

    leaving = {"status": "pindah", "status_date": "2026-11-02", "status_document": "SKPWNI/88"}
    moved = await client.patch(
        f"{API}/members/{other['id']}", json={"member": leaving}, headers=headers
    )
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["record"]["values"]["status"] == "pindah"
    detail = await (await client.get(f"{API}/households/{household_id}", headers=headers)).json()
    assert "pindah" in [p["values"]["kind"] for p in detail["proposals"]]


async def test_complaint_referral_and_proposal_workflows(client):
    operator = await token_headers(client, "operator1")
    kades = await token_headers(client, "kades")
    household_id = (await _create_household(client, operator))["id"]

    complaint = {
        "channel": "langsung",
        "category": "bantuan_belum_cair",
        "reporter_name": "Ibu Euis",
        "household_id": household_id,
        "chronology": "Terdaftar PKH tetapi bantuan belum cair sejak Maret.",
    }
    created = await client.post(
        f"{API}/complaints", json={"complaint": complaint}, headers=operator
    )
    assert created.status == 201, await created.text()
    complaint_id = (await created.json())["id"]
    assert (await created.json())["record"]["values"]["status"] == "baru"

    bad_step = {"complaint": {"status": "selesai"}}
    refused = await client.patch(
        f"{API}/complaints/{complaint_id}", json=bad_step, headers=operator
    )
    assert refused.status == 422 and "status" in (await refused.json())["fields"]
    taken_up = {"complaint": {"status": "diproses"}}
    moved = await client.patch(f"{API}/complaints/{complaint_id}", json=taken_up, headers=operator)
    assert moved.status == 200

    listed = await client.get(f"{API}/complaints?status=diproses", headers=operator)
    assert [c["id"] for c in (await listed.json())["items"]] == [complaint_id]
    assert (await (await client.get(f"{API}/complaints?status=baru", headers=operator)).json())[
        "total"
    ] == 0

    referral = {"complaint_id": complaint_id, "need": "Cek data PKH", "destination": "dinas_sosial"}
    referred = await client.post(f"{API}/referrals", json={"referral": referral}, headers=operator)
    assert referred.status == 201, await referred.text()
    referral_id = (await referred.json())["id"]
    complaint_now = await (
        await client.get(f"{API}/complaints/{complaint_id}", headers=operator)
    ).json()
    assert complaint_now["values"]["status"] == "dirujuk"
    accepted = await client.patch(
        f"{API}/referrals/{referral_id}",
        json={"referral": {"status": "diterima"}},
        headers=operator,
    )
    assert accepted.status == 200
    got = await (await client.get(f"{API}/referrals/{referral_id}", headers=operator)).json()
    assert got["values"]["status"] == "diterima"

    objection = {"household_id": household_id, "kind": "sanggahan", "description": "Salah desil"}
    made = await client.post(f"{API}/proposals", json={"proposal": objection}, headers=operator)
    assert made.status == 201, await made.text()
    proposal_id = (await made.json())["id"]
    agree = {"proposal": {"status": "disepakati_musdes", "agreement_ref": "BA/07/2025"}}
    before = await written(client)
    denied = await client.patch(f"{API}/proposals/{proposal_id}", json=agree, headers=operator)
    assert denied.status == 403
    assert await written(client) == before
    agreed = await client.patch(f"{API}/proposals/{proposal_id}", json=agree, headers=kades)
    assert agreed.status == 200, await agreed.text()
    listed = await client.get(f"{API}/proposals?status=disepakati_musdes", headers=kades)
    assert [p["id"] for p in (await listed.json())["items"]] == [proposal_id]


def _h(**fields: Any) -> dict[str, Any]:
    """A household body with ``fields`` changed."""
    body = household_body(2, seed=7)
    body["household"].update(fields)
    return body


def _m(**fields: Any) -> dict[str, Any]:
    """A household body with ``fields`` of its first member changed."""
    body = household_body(2, seed=8)
    body["members"][0].update(fields)
    return body


def _c(**fields: Any) -> dict[str, Any]:
    """A complaint body with ``fields`` changed."""
    return {"complaint": {"channel": "sms", "category": "lainnya", "chronology": "Rusak."} | fields}


H, C, P, R = "households", "complaints", "proposals", "referrals"
M0 = "members[0]"
NO_HOUSEHOLD = {"household_id": UNKNOWN_ID, "kind": "sanggahan"}
BAD_PERIOD = NO_HOUSEHOLD | {"period": "2025-13"}
ABOUT_NOTHING = {"referral": {"need": "Bantuan biaya sekolah", "destination": "lainnya"}}
CONFIRM = "confirm_warnings"
BAD_BODIES = [
    # (what, path, body, status, field, code)
    ("wrong type", H, _h(floor_area_m2="luas"), 422, "floor_area_m2", "not_number"),
    ("nested junk", H, _h(floor_area_m2={"a": [{"b": None}]}), 422, "floor_area_m2", "not_number"),
    ("huge number", H, _h(floor_area_m2=10**300), 422, "floor_area_m2", "out_of_range"),
    ("huge string", H, _h(address="x" * 200_000), 422, "address", "too_long"),
    ("unknown enum", H, _h(roof_material="emas"), 422, "roof_material", "unknown_choice"),
    ("unknown field", H, _h(nama_kepala="Asep"), 422, "nama_kepala", "unknown_field"),
    ("hub-only field", H, _h(decile=1), 422, "decile", "readonly"),
    ("KK letters", H, _h(kk_number="3201O2191007609X"), 422, "kk_number", "kk_digits"),
    ("NIK too short", H, _m(nik="320102"), 422, f"{M0}.nik", "nik_length"),
    ("NIK letters", H, _m(nik="32010217O5800001"), 422, f"{M0}.nik", "nik_digits"),
    ("NIK month 13", H, _m(nik="3201021713800001"), 422, f"{M0}.nik", "nik_month"),
    ("NIK serial 0000", H, _m(nik="3201021705800000"), 422, f"{M0}.nik", "nik_serial_zero"),
    ("member id on create", H, _m(id=UNKNOWN_ID), 422, f"{M0}.id", "unknown_field"),
    ("unknown sex", H, _m(sex="x"), 422, f"{M0}.sex", "unknown_choice"),
    ("bool as text", H, _m(pregnant="ya"), 422, f"{M0}.pregnant", "not_boolean"),
    ("members not a list", H, {**_h(), "members": {"a": 1}}, 400, "members", "not_list"),
    ("member not an object", H, {**_h(), "members": [7]}, 400, M0, "invalid_value"),
    ("household missing", H, {"members": []}, 400, "household", "required"),
    ("confirm not a bool", H, _h() | {CONFIRM: 1}, 400, CONFIRM, "not_boolean"),
    ("unknown top-level key", H, {**_h(), "extra": 1}, 400, "extra", "unknown_field"),
    ("body is a list", H, [_h()], 400, "", "invalid_value"),
    ("body is a string", C, "pengaduan", 400, "", "invalid_value"),
    ("unknown channel", C, _c(channel="merpati"), 422, "channel", "unknown_choice"),
    ("no chronology", C, _c(chronology=None), 422, "chronology", "required"),
    ("in the future", C, _c(received_date="2999-01-01"), 422, "received_date", "date_in_future"),
    ("about nothing", R, ABOUT_NOTHING, 422, "complaint_id", "referral_subject_missing"),
    ("bad period", P, {"proposal": BAD_PERIOD}, 422, "period", "invalid_period"),
    ("unknown household", P, {"proposal": NO_HOUSEHOLD}, 422, "household_id", "invalid_ref"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "code"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_bad_input_is_refused_with_field_errors_and_nothing_written(
    client, path, body, status, field, code
):
    headers = await token_headers(client, "operator1")
    before = await written(client)
    response = await client.post(f"{API}/{path}", json=body, headers=headers)
    answer = await response.json()
    assert response.status == status, answer
    assert answer["error"] == ("invalid_body" if status == 400 else "validation_failed")
    assert answer["fields"], answer
    assert code in [issue["code"] for issue in answer["fields"][field]], answer
    assert all(issue["message"] for issue in answer["fields"][field])
    assert await written(client) == before


MALFORMED = [
    ("not JSON", b"{household:"),
    ("NaN", b'{"household": {"floor_area_m2": NaN}}'),
    ("too deep", b"[" * 100_000 + b"]" * 100_000),
    ("huge integer literal", b'{"household": {"floor_area_m2": ' + b"9" * 5000 + b"}}"),
    ("lone surrogate", b'{"household": {"address": "\\ud800"}}'),
    ("not UTF-8", b'{"household": {"address": "\xff\xfe"}}'),
    ("empty", b""),
]


@pytest.mark.parametrize("raw", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_json_is_a_400(client, raw):
    headers = await token_headers(client, "operator1") | {"Content-Type": "application/json"}
    before = await written(client)
    response = await client.post(f"{API}/households", data=raw, headers=headers)
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_json"
    assert await written(client) == before


async def test_a_body_over_the_size_limit_is_a_413(client):
    headers = await token_headers(client, "operator1")
    before = await written(client)
    body = _h(notes="x" * 2_000_000)
    response = await client.post(f"{API}/households", json=body, headers=headers)
    assert response.status == 413
    assert (await response.json())["error"] == "too_large"
    assert await written(client) == before


BAD_ADDRESSES = [
    ("GET", f"{API}/households/not-a-uuid", 404),
    ("GET", f"{API}/households/{UNKNOWN_ID}", 404),
    ("PATCH", f"{API}/complaints/123", 404),
    ("PATCH", f"{API}/referrals/{UNKNOWN_ID}", 404),
    ("GET", f"{API}/members/{UNKNOWN_ID.upper()}", 404),
    ("GET", f"{API}/households?page=abc", 400),
    ("GET", f"{API}/households?page=99999999999999999999", 400),
    ("GET", f"{API}/households?per_page=1000", 400),
    ("GET", f"{API}/households?q={'9' * 500}", 400),
    ("GET", f"{API}/proposals?status=bogus", 400),
    ("GET", f"{API}/proposals?period=2025-1", 400),
    ("GET", f"{API}/search", 400),
    ("GET", f"{API}/search?q=%F4%8F%BF%BF", 200),  # U+10FFFF, the last code point
]


@pytest.mark.parametrize(("method", "url", "status"), BAD_ADDRESSES)
async def test_bad_ids_and_queries_are_4xx(client, method, url, status):
    headers = await token_headers(client, "operator1")
    body = {"complaint": {"status": "diproses"}, "referral": {"status": "diterima"}}
    kind = url.split("/")[3]
    payload = {kind[:-1]: body.get(kind[:-1], {})} if method == "PATCH" else None
    response = await client.request(method, url, json=payload, headers=headers)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"


async def test_unknown_member_id_in_a_household_change_is_a_field_error(client):
    headers = await token_headers(client, "operator1")
    household_id = (await _create_household(client, headers))["id"]
    before = await written(client)
    change = {"members": [{"id": UNKNOWN_ID, "name": "Siapa"}]}
    response = await client.patch(f"{API}/households/{household_id}", json=change, headers=headers)
    assert response.status == 422
    assert "members[0].id" in (await response.json())["fields"]
    assert await written(client) == before


async def test_warnings_need_confirmation_then_are_saved_with_the_record(client):
    headers = await token_headers(client, "operator1")
    body = household_body(2)
    head = body["members"][0]
    # The NIK says born on the 1st of January; the form says otherwise: a warning only.
    head["nik"] = make_nik("1981-01-01", head["sex"], serial=4321)
    before = await written(client)
    asked = await client.post(f"{API}/households", json=body, headers=headers)
    answer = await asked.json()
    assert asked.status == 409, answer
    assert answer["error"] == "needs_confirmation"
    issues = answer["fields"]["members[0].nik"]
    assert [i["level"] for i in issues] == ["warning"]
    assert "nik_birth_date_mismatch" in [i["code"] for i in issues]
    assert await written(client) == before

    saved = await client.post(
        f"{API}/households", json=body | {"confirm_warnings": True}, headers=headers
    )
    result = await saved.json()
    assert saved.status == 201, result
    assert "members[0].nik" in result["warnings"]
    rows, _ = await store_of(client).audit_log(record_id=result["id"])
    assert "confirm_warnings" in [row.action for row in rows]


async def test_lists_mask_numbers_while_the_audited_detail_shows_them(client):
    headers = await token_headers(client, "operator1")
    body = household_body(2)
    result = await _create_household(client, headers, body)
    nik = body["members"][1]["nik"]
    kk = body["household"]["kk_number"]

    for url in (f"{API}/households", f"{API}/search?q={nik}", f"{API}/households?q={kk}"):
        page = await (await client.get(url, headers=headers)).json()
        assert page["total"] == 1, url
        text = json.dumps(page)
        assert nik not in text and kk not in text, url
        item = page["items"][0]
        assert item["household"]["values"]["kk_number"] == kk[:4] + "********" + kk[-4:]
        assert nik[:4] + "********" + nik[-4:] in [m["values"]["nik"] for m in item["members"]]

    store = store_of(client)
    assert not [r for r in (await store.audit_log(record_id=result["id"]))[0] if r.action == "view"]
    detail = await (await client.get(f"{API}/households/{result['id']}", headers=headers)).json()
    assert detail["household"]["values"]["kk_number"] == kk
    assert nik in [m["values"]["nik"] for m in detail["members"]]
    rows, _ = await store.audit_log(record_id=result["id"])
    assert ("operator1", "view") in [(r.actor, r.action) for r in rows]
