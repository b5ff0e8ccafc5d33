"""The OpenAPI document matches the API: every API route is in it and nothing else, it is
valid OpenAPI, its required fields are enough for a create, and schemathesis, fuzzing the
live app with a bearer token, finds no server error and no answer outside the document."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edge import auth
from edge.config import EdgeConfig
from edge.web.app import ROUTES, STORE, create_app
from protocol.entities import ENTITIES
from tests.edge.api_client import household_body, token_headers

API = "/api/v1"


async def _document(client) -> dict[str, Any]:
    answer = await client.get(f"{API}/openapi.json")
    assert answer.status == 200
    return await answer.json()


async def test_every_api_route_is_documented_and_nothing_more(client):
    document = await _document(client)
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    routes = client.server.app[ROUTES].values()
    assert {(r.method, r.path) for r in routes if r.api} == documented
    served = {
        (r.method, r.resource.canonical)
        for r in client.server.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/")
    }
    assert served == documented
    # An /api route outside the API table would escape the document (and JSON errors).
    assert all(r.api for r in routes if r.path.startswith("/api/"))
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            route = client.server.app[ROUTES][(method.upper(), path)]
            assert operation["x-roles"] == sorted(role.value for role in route.roles)


async def test_the_document_is_valid_openapi_3(client):
    validate(await _document(client))


async def test_entity_schemas_come_from_the_protocol(client):
    schemas = (await _document(client))["components"]["schemas"]
    for name, entity in ENTITIES.items():
        values = schemas[f"{name.title()}Values"]["properties"]
        assert set(values) == set(entity.fields), name
        change = schemas[f"{name.title()}Change"]["properties"]
        for spec in entity.fields.values():
            if spec.choices and spec.name in change:
                shown = change[spec.name].get("enum") or change[spec.name]["items"]["enum"]
                assert [c for c in shown if c is not None] == list(spec.choices)
            if spec.max_length and spec.name in change:
                assert change[spec.name]["maxLength"] == spec.max_length


async def test_the_documented_required_fields_are_enough_to_create(client):
    """Each create made of only the fields the document requires is saved."""
    schemas = (await _document(client))["components"]["schemas"]
    headers = await token_headers(client, "operator1")

    def only_required(entity: str, values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k in schemas[f"{entity}New"]["required"]}

    full = household_body(2)
    body = {"household": {}, "members": [only_required("Member", m) for m in full["members"]]}
    assert "required" not in schemas["HouseholdNew"]
    created = await client.post(f"{API}/households", json=body, headers=headers)
    assert created.status == 201, await created.text()
    household_id = (await created.json())["id"]

    proposal = {"household_id": household_id, "kind": "sanggahan", "description": "x"}
    complaint = {"channel": "sms", "category": "lainnya", "chronology": "x", "anonymous": True}
    complaint_id = await _create(client, headers, schemas, "complaint", complaint)
    await _create(client, headers, schemas, "proposal", proposal)
    referral = {"complaint_id": complaint_id, "need": "x", "destination": "sekolah"}
    await _create(client, headers, schemas, "referral", referral)


async def _create(client, headers, schemas, entity: str, values: dict[str, Any]) -> str:
    new = schemas[f"{entity.title()}New"]
    anyone = {name for choice in new.get("anyOf", ()) for name in choice["required"]}
    kept = {k: v for k, v in values.items() if k in {*new["required"], *anyone}}
    answer = await client.post(f"{API}/{entity}s", json={entity: kept}, headers=headers)
    assert answer.status == 201, (entity, await answer.text())
    return str((await answer.json())["id"])


# --- schemathesis against the live app -----------------------------------------------------


class LiveBox:
    """The app served on 127.0.0.1 and a free port, in a thread with its own event loop,
    with an admin and an API token acting as that admin."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""
        self.headers: dict[str, str] = {}

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    async def _start(self) -> None:
        app = create_app(self.config)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        store = app[STORE]
        admin = await auth.create_user(
            store, username="admin", full_name="Admin", role=auth.Role.ADMIN,
            password="rahasia-desa-123", actor="test",
        )  # fmt: skip
        token = await auth.create_api_token(store, admin, "schemathesis")
        self.headers = {"Authorization": f"Bearer {token}"}

    def __enter__(self) -> LiveBox:
        self.thread.start()
        self._run(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def post(self, path: str, body: dict[str, Any]) -> str:
        """Create a record through the API; its id."""
        answer = requests.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=30)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


@pytest.fixture
def live_box(edge_config: EdgeConfig) -> Iterator[LiveBox]:
    with LiveBox(edge_config) as box:
        yield box


def _seed(box: LiveBox) -> dict[str, str]:
    """Real records, so that fuzzed reads and changes also reach existing ones."""
    household_id = box.post(f"{API}/households", household_body(3))
    detail = requests.get(f"{box.url}{API}/households/{household_id}", headers=box.headers)
    complaint = {"channel": "sms", "category": "lainnya", "chronology": "Atap bocor."}
    complaint_id = box.post(f"{API}/complaints", {"complaint": complaint})
    referral = {"complaint_id": complaint_id, "need": "Perbaikan rumah", "destination": "lainnya"}
    return {
        "households": household_id,
        "members": detail.json()["members"][1]["id"],
        "proposals": detail.json()["proposals"][0]["id"],
        "complaints": complaint_id,
        "referrals": box.post(f"{API}/referrals", {"referral": referral}),
    }


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(live_box):
    schema = schemathesis.openapi.from_url(f"{live_box.url}{API}/openapi.json")
    ids = _seed(live_box)
    failures: dict[str, BaseException] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:
        strategies = [
            operation.as_strategy(mode)
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        ]
        known = ids.get(operation.path.split("/")[3])
        if "{id}" in operation.path and known:
            strategies.append(operation.as_strategy(path_parameters={"id": known}))

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=live_box.url, headers=live_box.headers, checks=CHECKS, timeout=30
            )

        try:
            fuzz()
        # FailureGroup is a BaseExceptionGroup: caught by name so every operation runs and
        # all failures are reported at the end.
        except (Exception, FailureGroup) as exc:
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
