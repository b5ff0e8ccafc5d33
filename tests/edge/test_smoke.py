from __future__ import annotations

from tests.edge.conftest import login


async def test_login_shows_beranda(client):
    await login(client, "operator1")
    page = await client.get("/")
    text = await page.text()
    assert page.status == 200
    assert "Beranda" in text
    assert (await client.get("/healthz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert "puskesos_edge_records" in metrics
