"""The subscriber server with the dashboard routes, and headless Chromium's settings, for
the dashboard tests (``tests/dashboard``) and ``bench/wall_render.py``."""

from __future__ import annotations

import os
from urllib.parse import urlencode

from harness.net import free_port
from streamer.core.config import WebSocketConfig
from streamer.core.events import Event
from streamer.publish.bus import EventBus
from streamer.publish.ws_server import WebSocketServer
from streamer.supervise.dashboard import add_dashboard

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
