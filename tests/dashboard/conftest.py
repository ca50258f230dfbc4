"""Fixtures for the dashboard: a real WebSocketServer + EventBus and headless Chromium."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest

from streamer.bus import EventBus
from streamer.config import WebSocketConfig
from streamer.dashboard import add_dashboard
from streamer.events import Event
from streamer.ws_server import WebSocketServer
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO / "test-output" / "dashboard"  # git-ignored; screenshots for people to look at
CHROMIUM = os.environ.get("EMOTION_STREAM_CHROMIUM", "/usr/bin/chromium")
# Debian's Chromium on a machine without a display, a sandbox or an open network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class DashboardServer:
    """The streamer's subscriber server with the dashboard routes; restartable on its port."""

    def __init__(self, token: str | None = None) -> None:
        self.port = free_port()
        self.token = token
        self.bus = EventBus()
        self._server: WebSocketServer | None = None

    async def start(self) -> DashboardServer:
        server = WebSocketServer(WebSocketConfig(port=self.port, token=self.token), self.bus)
        add_dashboard(server)
        self._server = await server.__aenter__()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.__aexit__(None, None, None)
            self._server = None

    async def restart(self) -> None:
        """Stop, then start a new process-like server (fresh bus) on the same port."""
        await self.stop()
        self.bus = EventBus()
        await self.start()

    def publish(self, *events: Event) -> None:
        for event in events:
            self.bus.publish(event)

    def url(self, path: str = "/", **query: str) -> str:
        suffix = "?" + urlencode(query) if query else ""
        return f"http://127.0.0.1:{self.port}{path}{suffix}"


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


@pytest.fixture
async def page(browser):  # type: ignore[no-untyped-def]
    """A fresh page; ``page.errors`` collects uncaught exceptions and console errors."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: page.errors.append(f"console: {msg.text}")
            if msg.type == "error" else None)
    yield page
    await context.close()


def screenshot_path(name: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR / name
