"""Fixtures for the dashboard: a real WebSocketServer + EventBus
(``harness.dashboard.DashboardServer``) and headless Chromium (its settings are there too)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from harness.dashboard import CHROMIUM, CHROMIUM_ARGS, DashboardServer

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO / "test-output" / "dashboard"  # git-ignored; screenshots for people to look at


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[DashboardServer]]]:
    made: list[DashboardServer] = []

    async def make(token: str | None = None) -> DashboardServer:
        server = await DashboardServer(token).start()
        made.append(server)
        return server

    yield make
    for server in made:
        await server.stop()


@pytest.fixture
async def browser():  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run 'bash .ci/setup' (apt-get install "
                    "chromium) or point EMOTION_STREAM_CHROMIUM at a Chromium binary")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def new_page(browser, console_errors: bool = True):  # type: ignore[no-untyped-def]
    """A page in a browser context of its own (storage, sockets: another person's browser);
    ``page.errors`` collects uncaught exceptions (and console errors with
    ``console_errors``). Close ``page.context`` when done."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(f"pageerror: {exc}"))
    if console_errors:
        page.on("console", lambda msg: page.errors.append(f"console: {msg.text}")
                if msg.type == "error" else None)
    return page


@pytest.fixture
async def page(browser):  # type: ignore[no-untyped-def]
    """A fresh page; ``page.errors`` collects uncaught exceptions and console errors."""
    page = await new_page(browser)
    yield page
    await page.context.close()


def screenshot_path(name: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR / name
