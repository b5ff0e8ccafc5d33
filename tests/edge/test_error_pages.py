"""A wrong link or a page one may not open answers inside the box's layout, in Indonesian,
with the menu and a way back; the API keeps answering JSON."""

from __future__ import annotations

import uuid

from tests.edge.api_client import token_headers
from tests.edge.conftest import login


async def test_errors_of_pages_come_inside_the_layout_in_indonesian(client):
    await login(client, "operator1")
    missing = await client.get(f"/rumah-tangga/{uuid.uuid4()}")
    page = await missing.text()
    assert missing.status == 404
    assert "Rumah tangga tidak ditemukan." in page
    assert 'aria-label="Menu utama"' in page and 'href="/">Kembali ke Beranda' in page

    unknown = await client.get("/halaman-yang-tidak-ada")
    page = await unknown.text()
    assert unknown.status == 404 and "Not Found" not in page
    assert "tidak ada di perangkat ini" in page and 'aria-label="Menu utama"' in page

    forbidden = await client.get("/pengguna")
    page = await forbidden.text()
    assert forbidden.status == 403
    assert "Anda tidak berhak membuka halaman ini." in page and "Kembali ke Beranda" in page


async def test_the_api_still_answers_errors_in_json(client):
    headers = await token_headers(client, "operator1")
    answer = await client.get(f"/api/v1/households/{uuid.uuid4()}", headers=headers)
    assert answer.status == 404 and (await answer.json())["error"] == "not_found"
