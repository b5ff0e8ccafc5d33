"""A real browser for the UI tests: Debian's Chromium, headless, through Playwright
(Playwright's own browser download does not work here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "LAPTOP",
    "PHONE",
    "browser",
    "notice",
    "reload_until",
    "sign_in",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1280, "height": 900}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A launched Chromium, closed after the test."""
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


async def sign_in(page: Any, base_url: str, username: str, password: str) -> None:
    """Sign in on the box's or the hub's Masuk page; the start page follows."""
    await page.goto(f"{base_url}/masuk")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button:has-text('Masuk')")
    await page.wait_for_url(f"{base_url}/")


async def notice(page: Any, text: str) -> None:
    """Wait for the page's flash message (``role="status"``) saying ``text``: the same
    words may also stand in the page's own explanations."""
    await page.locator("[role=status]", has_text=text).wait_for()


async def reload_until(
    page: Any, url: str, text: str, seconds: float, selector: str = "main"
) -> str:
    """Open ``url`` about once a second until ``selector`` shows ``text`` (what arrives
    over MQTT or from a background step shows only on a reload); what it shows then."""
    shown = ""
    for _ in range(int(seconds)):
        await page.goto(url)
        shown = str(await page.inner_text(selector))
        if text in shown:
            return shown
        await asyncio.sleep(1)
    raise AssertionError(f"{url} never showed {text!r} in {selector}: {shown}")
