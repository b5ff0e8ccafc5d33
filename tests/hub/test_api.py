"""The hub API: district staff list records, conflicts and devices, and resolve conflicts;
operators read /healthz and /metrics."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from hub import db
from hub.config import HubConfig
from hub.tokens import TokenError, add_token, revoke_token
from hub.web import create_app
from protocol.merge import merge
from protocol.telemetry import Telemetry
from tests.factories import DEFAULT_VILLAGE, new_id
from tests.hub.boxes import Box, enrol
from tests.hub.test_ui import OTHER_VILLAGE, audit_actions
from tests.metrics_text import value


@pytest.fixture
async def api(hub_store, tmp_path):
    app = create_app(HubConfig(data_dir=tmp_path), hub_store, password=None, with_ingest=False)
    token = await add_token(hub_store, "dinsos", scope="write")
    async with TestClient(TestServer(app)) as client:
        client.headers = {"Authorization": f"Bearer {token}"}
        yield client


async def get(client: TestClient, path: str, **params: str) -> dict:
    response = await client.get(path, params=params, headers=client.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_without_a_token_nothing_personal_is_served(api):
    for path in ("/api/v1/records?village=" + DEFAULT_VILLAGE, "/api/v1/conflicts"):
        assert (await api.get(path)).status == 401
        assert (await api.get(path, headers={"Authorization": "Bearer nope"})).status == 401
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/metrics")).status == 200


async def test_staff_resolve_a_conflict_by_choosing_a_version(api, hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    record = new_id()
    now = hub_store.wall()
    await hub_store.apply(a.batch(a.edit(record, now, address="Jl. Mawar")), "edge-a")
    await hub_store.apply(b.batch(b.edit(record, now + 5, address="Jl. Melati")), "edge-b")

    [conflict] = (await get(api, "/api/v1/conflicts"))["conflicts"]
    chosen = next(i for i, v in enumerate(conflict["versions"]) if v["value"] == "Jl. Mawar")
    bad = await api.post(
        f"/api/v1/conflicts/{conflict['id']}/resolve", json={}, headers=api.headers
    )
    assert bad.status == 400
    done = await api.post(
        f"/api/v1/conflicts/{conflict['id']}/resolve",
        json={"choose": chosen},
        headers=api.headers,
    )
    assert done.status == 200, await done.text()
    assert (await done.json())["resolved_by"] == "token:dinsos"
    again = await api.post(
        f"/api/v1/conflicts/{conflict['id']}/resolve", json={"choose": 0}, headers=api.headers
    )
    assert again.status == 409
    assert await audit_actions(hub_store) == [
        ("token:dinsos", "api.conflicts", ""),  # the list, with NIKs maybe: audited
        ("token:dinsos", "conflict.resolve", record),
    ]

    assert (await get(api, "/api/v1/conflicts"))["conflicts"] == []
    [row] = (await get(api, "/api/v1/records", village=DEFAULT_VILLAGE))["records"]
    assert row["values"]["address"] == "Jl. Mawar" and row["conflicts"] == 0
    metrics = await (await api.get("/metrics")).text()
    village = {"district": "3201", "village": DEFAULT_VILLAGE}
    assert value(metrics, "puskesos_hub_village_conflicts_open", **village) == 0
    assert value(metrics, "puskesos_hub_village_records", entity="household", **village) == 1


async def test_a_resolution_with_an_invalid_value_is_refused(api, hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    record = new_id()
    now = hub_store.wall()
    await hub_store.apply(a.batch(a.edit(record, now, rt="001")), "edge-a")
    await hub_store.apply(b.batch(b.edit(record, now + 5, rt="002")), "edge-b")
    [conflict] = (await get(api, "/api/v1/conflicts"))["conflicts"]
    response = await api.post(
        f"/api/v1/conflicts/{conflict['id']}/resolve", json={"value": 7}, headers=api.headers
    )
    assert response.status == 400
    assert len((await get(api, "/api/v1/conflicts"))["conflicts"]) == 1


async def test_a_conflict_a_later_save_on_a_box_settled_is_listed_with_how(api, hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    record = new_id()
    now = hub_store.wall()
    from_a = a.edit(record, now, address="Jl. Mawar")
    from_b = b.edit(record, now + 5, address="Jl. Melati")
    await hub_store.apply(a.batch(from_a), "edge-a")
    assert (await hub_store.apply(b.batch(from_b), "edge-b")).conflicts == 1
    # edge-a receives edge-b's version (the downlink), and its user saves the address again.
    a.states[record] = merge(a.states[record], from_b).state
    await hub_store.apply(a.batch(a.edit(record, now + 60, address="Jl. Mawar 3")), "edge-a")

    assert (await get(api, "/api/v1/conflicts"))["conflicts"] == []
    [settled] = (await get(api, "/api/v1/conflicts", resolved="true"))["conflicts"]
    assert settled["field"] == "address" and settled["resolved_by"] == "edge-a"
    assert settled["resolution"] == {"superseded": True}
    assert settled["resolved_ms"] is not None


async def test_the_device_list_shows_stream_state(api, hub_store):
    a = Box("edge-a")
    await enrol(hub_store, a)
    await hub_store.apply(a.batch(a.edit(new_id(), hub_store.wall(), rt="001")), "edge-a")
    [device] = (await get(api, "/api/v1/devices"))["devices"]
    assert (device["node"], device["up_watermark"], device["changes_applied"]) == ("edge-a", 1, 1)
    assert device["last_seen_ms"] is not None
    assert device["telemetry"] is None, "no health report yet"
    report = Telemetry(wall_ms=hub_store.wall(), outbox=3, disk_free_bytes=10**9)
    assert await hub_store.note_telemetry("edge-a", DEFAULT_VILLAGE, report)
    device = await get(api, "/api/v1/devices/edge-a")
    assert device["telemetry"]["outbox"] == 3
    assert device["telemetry"]["disk_free_bytes"] == 10**9


async def test_one_unreadable_stored_report_does_not_break_the_scrape(api, hub_store):
    a, b = Box("edge-a"), Box("edge-b")
    await enrol(hub_store, a, b)
    report = Telemetry(wall_ms=hub_store.wall(), disk_size_bytes=32 * 10**9)
    for node in ("edge-a", "edge-b"):
        assert await hub_store.note_telemetry(node, DEFAULT_VILLAGE, report)
    async with hub_store.engine.begin() as conn:
        await conn.execute(
            db.devices.update().where(db.devices.c.node == "edge-a").values(telemetry="{broken")
        )
    response = await api.get("/metrics")
    assert response.status == 200
    metrics = await response.text()
    assert value(metrics, "puskesos_box_disk_size_bytes", node="edge-b") == 32 * 10**9
    assert value(metrics, "puskesos_box_disk_size_bytes", node="edge-a") is None
    assert value(metrics, "puskesos_box_online", node="edge-a") is not None


async def test_metrics_travel_compressed_to_a_prometheus_that_asks(api):
    response = await api.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "puskesos_hub_batches_total" in await response.text()


async def test_a_worker_whose_database_is_gone_still_shows_its_own_counters(api, hub_store):
    await hub_store.engine.dispose()
    async with hub_store.engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE devices"))  # every fleet query now fails
    response = await api.get("/metrics")
    assert response.status == 200
    metrics = await response.text()
    assert value(metrics, "puskesos_hub_message_failures_total") == 0
    assert value(metrics, "puskesos_box_online") is None


async def test_a_token_does_what_its_scope_says_until_it_expires_or_is_revoked(
    api, hub_store, tmp_path
):
    """Read tokens read, write tokens also resolve; a token of one village sees nothing of
    another (not even that a record exists); expired and revoked tokens are refused, and
    every read of personal data is in the audit trail with its filter and count."""
    a, b = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(hub_store, a, b)
    here, there = new_id(), new_id()
    now = hub_store.wall()
    await hub_store.apply(a.batch(a.edit(here, now, address="Jl. Mawar")), "edge-a")
    await hub_store.apply(b.batch(b.edit(there, now, address="Jl. Melati")), "edge-b")
    reader = await add_token(hub_store, "laporan", villages=[DEFAULT_VILLAGE])

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    mine = await api.get(f"/api/v1/records?village={DEFAULT_VILLAGE}", headers=bearer(reader))
    assert mine.status == 200 and [r["id"] for r in (await mine.json())["records"]] == [here]
    other = await api.get(f"/api/v1/records?village={OTHER_VILLAGE}", headers=bearer(reader))
    assert other.status == 403
    assert (await api.get(f"/api/v1/records/{here}", headers=bearer(reader))).status == 200
    assert (await api.get(f"/api/v1/records/{there}", headers=bearer(reader))).status == 404
    assert (await api.get("/api/v1/conflicts", headers=bearer(reader))).status == 403
    devices = await (await api.get("/api/v1/devices", headers=bearer(reader))).json()
    assert [d["node"] for d in devices["devices"]] == ["edge-a"]
    resolve = await api.post("/api/v1/conflicts/1/resolve", json={"choose": 0},
                             headers=bearer(reader))  # fmt: skip
    assert resolve.status == 403 and (await resolve.json())["error"] == "forbidden"

    reads = [row for row in await audit_actions(hub_store) if row[0] == "token:laporan"]
    assert reads == [
        ("token:laporan", "api.records", DEFAULT_VILLAGE),
        ("token:laporan", "api.record", here),
    ]
    async with hub_store.engine.connect() as conn:
        detail = (
            await conn.execute(
                sa.select(db.audit.c.detail).where(db.audit.c.action == "api.records")
            )
        ).scalar_one()
    assert '"count": 1' in detail

    assert await revoke_token(hub_store, "laporan") == 1
    gone = await api.get(f"/api/v1/records?village={DEFAULT_VILLAGE}", headers=bearer(reader))
    assert gone.status == 401
    old = await add_token(hub_store, "lama", days=1)
    async with hub_store.engine.begin() as conn:
        await conn.execute(
            db.api_tokens.update().where(db.api_tokens.c.name == "lama").values(expires_ms=now)
        )
    assert (await api.get("/api/v1/devices", headers=bearer(old))).status == 401
    with pytest.raises(TokenError):
        await add_token(hub_store, "salah", villages=["32010"])
