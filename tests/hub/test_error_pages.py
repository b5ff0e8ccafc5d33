"""The hub's wrong links and refused forms answer inside its layout, in Indonesian."""

from __future__ import annotations

from tests.hub.test_ui import client, login  # noqa: F401 (fixture)


async def test_a_wrong_link_answers_in_indonesian_inside_the_layout(client):  # noqa: F811
    await login(client, "verif")
    unknown = await client.get("/halaman-yang-tidak-ada")
    page = await unknown.text()
    assert unknown.status == 404 and "Not Found" not in page
    assert "Halaman atau data yang dicari tidak ada." in page and "Kembali ke Ringkasan" in page
    assert 'href="/antrian"' in page, "the menu is there"

    family = await client.get("/antrian/0190d6e0-0000-7000-8000-000000000000")
    assert family.status == 404 and "Keluarga tidak ditemukan." in await family.text()

    refused = await client.post("/antrian/0190d6e0-0000-7000-8000-000000000000", data={})
    assert refused.status == 403 and "Kembali ke Ringkasan" in await refused.text()
