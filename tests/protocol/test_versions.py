"""Entity schema versions: what a box of an older version can read, and how it says which
version it is (protocol/SPEC.md §8)."""

from __future__ import annotations

import json

from protocol.changes import FieldVersion
from protocol.entities import ENTITIES, SCHEMA_VERSION, known_state
from protocol.status import Status, decode_status, encode_status


def _version(value: object) -> tuple[FieldVersion, ...]:
    return (FieldVersion(value, 1 << 16, "hub-1", ()),)


def test_every_later_field_and_code_names_a_version_that_exists():
    for entity in ENTITIES.values():
        assert 1 <= entity.since <= SCHEMA_VERSION
        for spec in entity.fields.values():
            assert 1 <= spec.since <= SCHEMA_VERSION, spec.name
            assert all(1 < since <= SCHEMA_VERSION for _, since in spec.codes_since), spec.name


def test_a_version_1_box_gets_the_fields_it_knows_and_keeps_its_own_value_of_the_rest():
    household = {
        "address": _version("Kp. Babakan"),
        "programmes": _version(["pkh", "pbi_jk"]),
        "review_status": _version("ditolak"),
        "eligible_programmes": _version(["pkh"]),
    }
    assert set(known_state("household", household, 1)) == {"address", "programmes"}
    assert known_state("household", household, SCHEMA_VERSION) == household
    member = {"name": _version("Budi"), "status": _version("ganda")}
    assert known_state("member", member, 1) == {"name": member["name"]}
    # A field whose versions disagree is left out whole if one of them is unknown.
    moved = {"status": (*_version("pindah"), FieldVersion("ganda", 2 << 16, "hub-1", ()))}
    assert known_state("member", moved, 1) == {}
    assert known_state("member", {"status": _version("pindah")}, 1) == {
        "status": _version("pindah")
    }
    assert known_state("no-such-entity", member, SCHEMA_VERSION) == {}


def test_a_status_says_its_schema_and_one_from_an_older_box_means_version_1():
    status = decode_status(encode_status(Status("online", schema=SCHEMA_VERSION)))
    assert status.schema == SCHEMA_VERSION
    older = json.dumps({"state": "online", "software": "0.4.0", "wire": 1}).encode()
    assert decode_status(older).schema == 1


def test_a_version_6_box_is_not_sent_the_register_fields_of_version_7():
    member = {
        "name": _version("Siti"),
        "school_status": _version("putus_sekolah"),
        "breastfeeding": _version("ya"),
        "health_insurance": _version("tidak_ada"),
    }
    assert known_state("member", member, 6) == {"name": member["name"]}
    assert known_state("member", member, 7) == member
