"""Panduan (``/bantuan``) on the hub, on SQLite and on PostgreSQL: each role reads its own
guide first, every signed-in page's menu links to it, and every link in a guide opens a
page its role may see."""

from __future__ import annotations

import re

from hub.roles import ROLE_LABELS, Role
from hub.ui.base import ROUTES
from tests.hub.test_ui import PAGES, USERS, client, login  # noqa: F401 (fixture)

_MENU = re.compile(r'<nav aria-label="Menu utama">(.*?)</nav>', re.S)
_GUIDE = re.compile(r'<article class="panduan" id="panduan-([a-z_]+)">(.*?)</article>', re.S)
_HREF = re.compile(r'href="([^"#]*)')
_GUIDE_LINK = re.compile(r'<a href="/bantuan"[^>]*>Panduan</a>')


async def test_each_role_reads_its_own_guide_first_and_may_open_the_others(client):  # noqa: F811
    for username, role in USERS.items():
        await login(client, username)
        html = await (await client.get("/bantuan")).text()
        assert f"<h1>Panduan: {ROLE_LABELS[role]}</h1>" in html
        assert _GUIDE.search(html).group(1) == role.value
        first = re.search(r"<li>(.*?)</li>", html.split('id="panduan-peran"')[1]).group(1)
        assert f"{ROLE_LABELS[role]}</strong> (peran Anda)" in first, "own guide first"
        for other in Role:
            shown = await client.get(f"/bantuan?peran={other.value}")
            assert _GUIDE.search(await shown.text()).group(1) == other.value
    unknown = await client.get("/bantuan?peran=bupati")
    assert unknown.status == 404
    assert "Panduan untuk peran itu tidak ada." in await unknown.text()


async def test_the_menu_of_every_signed_in_page_links_to_the_guide(client):  # noqa: F811
    table = client.server.app[ROUTES]
    pages = [
        path for (method, path), route in table.items()
        if method == "GET" and route.roles and "{" not in path
        and not path.endswith((".xlsx", ".csv"))
    ]  # fmt: skip
    assert set(PAGES) <= set(pages) and "/bantuan" in pages
    for username in USERS:
        await login(client, username)
        # Pages of the role, pages it may not open (403) and a missing one: all have the menu.
        for path in (*pages, "/tidak-ada"):
            page = await client.get(path)
            assert page.content_type == "text/html", path
            menu = _MENU.search(await page.text())
            assert menu and _GUIDE_LINK.search(menu.group(1)), (username, path, page.status)


async def test_every_link_in_every_guide_opens(client):  # noqa: F811
    """Walked as each role: the links of its own guide open (200); those of another role's
    guide open or say that this role may not (403), never a page that does not exist."""
    for username, role in USERS.items():
        await login(client, username)
        for guide in Role:
            page = await client.get(f"/bantuan?peran={guide.value}")
            links = set(_HREF.findall(_GUIDE.search(await page.text()).group(2)))
            assert len(links) >= 3, guide
            for href in sorted(links):
                answer = await client.get(href, allow_redirects=False)
                allowed = {200} if guide is role else {200, 403}
                assert answer.status in allowed, (username, guide.value, href, answer.status)
