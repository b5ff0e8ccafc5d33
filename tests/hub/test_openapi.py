"""The hub API's OpenAPI document matches the API: every /api route is in it and nothing
else, it is valid OpenAPI and public, and schemathesis, fuzzing the live hub with a write
token, finds no server error and no answer outside the document."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
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

from hub import db
from hub.config import HubConfig
from hub.store import HubStore
from hub.tokens import add_token, required_scope
from hub.web import API_ROUTES, create_app
from protocol.entities import ENTITIES
from protocol.telemetry import Telemetry
from tests.factories import DEFAULT_VILLAGE, new_id
from tests.hub.boxes import Box, enrol

API = "/api/v1"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh hub database on SQLite (the document does not depend on the dialect)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite'}"
    db.upgrade(url)  # runs its own event loop: called outside one
    return url


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    """The hub app with a write token in ``client.headers``."""
    engine = db.create_engine(sqlite_url)
    store = HubStore(engine, node="hub-1", max_clock_drift_ms=300_000)
    app = create_app(HubConfig(data_dir=tmp_path), store, password=None, with_ingest=False)
    token = await add_token(store, "dinsos", scope="write")
    async with TestClient(TestServer(app)) as test_client:
        test_client.headers = {"Authorization": f"Bearer {token}"}
        yield test_client
    await engine.dispose()


async def _document(client: TestClient) -> dict[str, Any]:
    answer = await client.get(f"{API}/openapi.json")  # no token: the document is public
    assert answer.status == 200
    return await answer.json()


async def test_every_api_route_is_documented_and_nothing_more(client):
    document = await _document(client)
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    table = client.server.app[API_ROUTES]
    assert set(table) == documented
    served = {
        (r.method, r.resource.canonical)
        for r in client.server.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/")
    }
    assert served == documented
    for (method, path), route in table.items():
        operation = document["paths"][path][method.lower()]
        if route.public:
            assert operation["security"] == [] and "401" not in operation["responses"]
            continue
        assert operation["x-scope"] == required_scope(method)
        assert "401" in operation["responses"]
        if required_scope(method) == "write":
            assert "403" in operation["responses"], "a read token is refused"


async def test_the_document_is_valid_openapi_3(client):
    validate(await _document(client))


async def test_only_the_document_is_served_without_a_token(client):
    for path in ("/records?village=" + DEFAULT_VILLAGE, "/conflicts", "/devices"):
        answer = await client.get(f"{API}{path}")
        assert answer.status == 401
        assert (await answer.json())["error"] == "unauthorized"
    assert (await client.post(f"{API}/openapi.json")).status == 401, "no other method opens"


async def test_record_values_come_from_the_protocol(client):
    schemas = (await _document(client))["components"]["schemas"]
    for name, entity in ENTITIES.items():
        assert set(schemas[f"{name.title()}Values"]["properties"]) == set(entity.fields), name
    branches = {b["properties"]["entity"]["const"] for b in schemas["Record"]["oneOf"]}
    assert branches == set(ENTITIES)


async def test_odd_input_is_refused_with_a_json_error(client):
    """Odd input gets a 4xx in the JSON error form, never a 500 or plain text. The fuzzing
    found the first two: a `limit` that is not a number was answered in plain text, and a
    conflict id past 64 bits was a 500 (SQLite cannot bind it). Reading the handlers found
    the rest: `{"choose": null}` was taken as `{"value": null}` and cleared the field, and
    JSON nested past Python's recursion limit was a 500."""
    answer = await client.get(
        f"{API}/records", params={"village": DEFAULT_VILLAGE, "limit": "x"}, headers=client.headers
    )
    assert answer.status == 400 and (await answer.json())["error"] == "bad_limit"
    for body in ({"choose": None}, {"choose": True}, {"value": 1, "choose": 0}, [0]):
        answer = await client.post(f"{API}/conflicts/1/resolve", json=body, headers=client.headers)
        assert answer.status == 400, body
        assert (await answer.json())["error"] == "bad_request"
    for conflict_id in ("99999999999999999999", "0"):
        answer = await client.post(
            f"{API}/conflicts/{conflict_id}/resolve", json={"choose": 0}, headers=client.headers
        )
        assert answer.status == 404 and (await answer.json())["error"] == "not_resolved"
    answer = await client.post(
        f"{API}/conflicts/1/resolve", data=b"[" * 100_000, headers=client.headers
    )
    assert answer.status == 400, "JSON nested past Python's recursion limit"


# --- schemathesis against the live hub -----------------------------------------------------


class LiveHub:
    """The hub app on 127.0.0.1 and a free port, in a thread with its own event loop, on
    ``database`` with two boxes' records, open conflicts, a health report and a write
    token."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.tmp_path = tmp_path
        self.database = database
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""
        self.headers: dict[str, str] = {}
        self.known: dict[str, Any] = {}

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    async def _start(self) -> None:
        self.engine = db.create_engine(self.database)
        store = HubStore(self.engine, node="hub-1", max_clock_drift_ms=300_000)
        await self._seed(store)
        app = create_app(HubConfig(data_dir=self.tmp_path), store, password=None, with_ingest=False)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        token = await add_token(store, "schemathesis", scope="write")
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _seed(self, store: HubStore) -> None:
        """Real rows, so that fuzzed reads and resolutions also reach existing ones."""
        a, b = Box("edge-a"), Box("edge-b")
        await enrol(store, a, b)
        household, member, now = new_id(), new_id(), store.wall()
        await store.apply(
            a.batch(
                a.edit(household, now, address="Jl. Mawar", rt="001", rw="002"),
                a.edit(member, now, entity="member", household_id=household, name="Siti"),
            ),
            "edge-a",
        )
        await store.apply(
            b.batch(b.edit(household, now + 5, address="Jl. Melati", rt="003", rw="004")),
            "edge-b",
        )
        report = Telemetry(wall_ms=now, outbox=3, disk_free_bytes=10**9, cpu_temp_c=51.5)
        assert await store.note_telemetry("edge-a", DEFAULT_VILLAGE, report)
        conflicts = await store.conflicts(village=DEFAULT_VILLAGE)
        assert len(conflicts) == 3
        self.known = {
            "record_id": household,
            "conflict_id": conflicts[-1]["id"],
            "node": "edge-a",
            "village": DEFAULT_VILLAGE,
        }

    def __enter__(self) -> LiveHub:
        self.thread.start()
        self._run(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self._run(self.runner.cleanup())
        self._run(self.engine.dispose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def live_hub(tmp_path: Path, hub_url: str) -> Iterator[LiveHub]:
    """On SQLite and on PostgreSQL (which refuses a NUL in text that SQLite stores)."""
    with LiveHub(tmp_path, hub_url) as hub:
        yield hub


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(live_hub):
    schema = schemathesis.openapi.from_url(f"{live_hub.url}{API}/openapi.json")
    seeded = requests.get(
        f"{live_hub.url}{API}/records",
        params={"village": DEFAULT_VILLAGE},
        headers=live_hub.headers,
        timeout=30,
    )
    assert seeded.status_code == 200 and len(seeded.json()["records"]) == 2
    failures: dict[str, BaseException] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {f"{m.upper()} {p}" for p, ops in schema.raw_schema["paths"].items() for m in ops}
    # schemathesis leaves out the operation at the document's own URL
    assert {op.label for op in operations} == documented - {f"GET {API}/openapi.json"}
    for operation in operations:
        strategies = [
            operation.as_strategy(mode)
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        ]
        known = {
            p.name: live_hub.known[p.name]
            for p in operation.path_parameters
            if p.name in live_hub.known
        }
        if known:
            strategies.append(operation.as_strategy(path_parameters=known))
        if any(p.name == "village" for p in operation.query):
            village = {"village": live_hub.known["village"]}
            strategies.append(operation.as_strategy(query=village))

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=live_hub.url, headers=live_hub.headers, checks=CHECKS, timeout=30
            )

        try:
            fuzz()
        # FailureGroup is a BaseExceptionGroup: caught by name so every operation runs and
        # all failures are reported at the end.
        except (Exception, FailureGroup) as exc:
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
