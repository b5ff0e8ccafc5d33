"""Panduan (``/bantuan``) on the box: each role reads its own guide first, every signed-in
page's menu links to it, and every link in a guide opens a page its role may see."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from edge.auth import ROLE_LABELS, Role
from edge.web.app import ROUTES
from tests.edge.conftest import login

USERS = {"operator1": Role.OPERATOR, "kades": Role.KEPALA_DESA, "admin": Role.ADMIN}
_MENU = re.compile(r'<nav aria-label="Menu utama">(.*?)</nav>', re.S)
_GUIDE = re.compile(r'<article class="panduan" id="panduan-([a-z_]+)">(.*?)</article>', re.S)
_HREF = re.compile(r'href="([^"#]*)')
_GUIDE_LINK = re.compile(r'<a href="/bantuan"[^>]*>Panduan</a>')
#: Pages that answer with an error, in the layout: forbidden to an operator, and missing.
ERROR_PAGES = ("/pengguna", "/tidak-ada", "/rumah-tangga/0190aaaa-0000-7000-8000-000000000000")


async def _signed_in(client: TestClient, username: str) -> None:
    client.session.cookie_jar.clear()
    await login(client, username)


def _menu(html: str) -> str:
    menu = _MENU.search(html)
    assert menu, "the page has the menu"
    return menu.group(1)


async def test_each_role_reads_its_own_guide_first_and_may_open_the_others(client):
    for username, role in USERS.items():
        await _signed_in(client, username)
        page = await client.get("/bantuan")
        html = await page.text()
        assert page.status == 200
        assert f"<h1>Panduan: {ROLE_LABELS[role]}</h1>" in html
        assert _GUIDE.search(html).group(1) == role.value
        listed = re.findall(r"<li>(.*?)</li>", html.split('id="panduan-peran"')[1])[: len(USERS)]
        assert f"{ROLE_LABELS[role]}</strong> (peran Anda)" in listed[0], "own guide first"
        for other in Role:
            if other is not role:
                shown = await client.get(f"/bantuan?peran={other.value}")
                assert _GUIDE.search(await shown.text()).group(1) == other.value
    unknown = await client.get("/bantuan?peran=bupati")
    assert unknown.status == 404
    assert "Panduan untuk peran itu tidak ada." in await unknown.text()


async def test_the_menu_of_every_signed_in_page_links_to_the_guide(client):
    table = client.server.app[ROUTES]
    for username, role in USERS.items():
        await _signed_in(client, username)
        pages = [
            path for (method, path), route in table.items()
            if method == "GET" and not route.api and not route.public and role in route.roles
            and "{" not in path and not path.endswith((".xlsx", ".csv"))
        ]  # fmt: skip
        assert "/verifikasi" in pages and "/bantuan" in pages
        # The lists, the forms, and pages that refuse or do not exist: each has the menu.
        for path in (*pages, *ERROR_PAGES):
            page = await client.get(path)
            assert page.content_type == "text/html", path
            assert _GUIDE_LINK.search(_menu(await page.text())), (username, path)


async def test_every_link_in_every_guide_opens(client):
    """Walked as each role: the links of its own guide open (200); those of another role's
    guide open or say that this role may not (403), never a page that does not exist."""
    for username, role in USERS.items():
        await _signed_in(client, username)
        for guide in Role:
            page = await client.get(f"/bantuan?peran={guide.value}")
            links = set(_HREF.findall(_GUIDE.search(await page.text()).group(2)))
            assert len(links) >= 4, guide
            for href in sorted(links):
                answer = await client.get(href, allow_redirects=False)
                allowed = {200} if guide is role else {200, 403}
                assert answer.status in allowed, (username, guide.value, href, answer.status)
