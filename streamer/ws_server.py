"""WebSocket server for subscribers (dashboards) on ``/events``.

Protocol:
- Connect to ``ws://host:port/events`` (optionally ``?streams=a,b&channels=customer``);
  with ``websocket.token`` set, authenticate with ``Authorization: Bearer <token>``
  or ``?token=<token>``, else the handshake is refused with HTTP 401.
- The server first sends ``hello`` (schema version, active streams and channels).
- The client may send ``{"type": "subscribe", "streams": [...] | "*", "channels": [...] | "*"}``
  at any time; the server answers ``subscribed`` and filters from then on.
- Events follow as JSON text messages. A client that reads too slowly loses
  its oldest queued events (bus overflow policy) and is told so with a
  ``subscriber.lagged`` message carrying the count.

Other components (the dashboard) add WebSocket routes with ``add_route`` and plain
HTTP routes with ``add_http`` on the same port; listening, routing, authentication
and error responses are ``streamer.http_edge.HttpEdge``'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streamer.bus import EventBus
from streamer.config import WebSocketConfig
from streamer.events import SCHEMA_VERSION, Event, control, to_json
from streamer.http_edge import Guard, Handler, HttpEdge, HttpHandler, Listen, token_guard

log = logging.getLogger(__name__)


class SubscriberFilter:
    """Which streams/channels one subscriber wants; None means all."""

    def __init__(self, streams: set[str] | None = None, channels: set[str] | None = None) -> None:
        self.streams = streams
        self.channels = channels

    @classmethod
    def from_path(cls, path: str) -> SubscriberFilter:
        query = parse_qs(urlsplit(path).query)

        def values(key: str) -> set[str] | None:
            items = [v for raw in query.get(key, []) for v in raw.split(",") if v]
            return set(items) if items and "*" not in items else None

        return cls(values("streams") or values("stream"), values("channels") or values("channel"))

    def update(self, message: dict[str, Any]) -> None:
        self.streams = _selection(message.get("streams", "*"), "streams")
        self.channels = _selection(message.get("channels", "*"), "channels")

    def accept(self, event: Event) -> bool:
        if self.streams is not None and event.get("stream_id") not in self.streams:
            return False
        return self.channels is None or event.get("channel") in self.channels

    def describe(self) -> dict[str, Any]:
        return {"streams": sorted(self.streams) if self.streams is not None else "*",
                "channels": sorted(self.channels) if self.channels is not None else "*"}


def _selection(value: Any, key: str) -> set[str] | None:
    if value == "*" or value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return set(value)
    raise ValueError(f"'{key}' must be \"*\" or a list of strings, got {value!r}")


class WebSocketServer:
    """Serves subscribers and any routes other components register. Use ``async with``."""

    def __init__(self, config: WebSocketConfig, bus: EventBus) -> None:
        self.config = config
        self.bus = bus
        self.edge = HttpEdge(Listen(
            config.host, config.port, config.max_message_bytes,
            purpose="WebSocket subscribers",
            port_hint="choose another port with --set websocket.port=N or disable it with "
                      "--set websocket.enabled=false"))
        self.add_route("/events", self._serve_subscriber, token=config.token)

    def add_route(self, path: str, handler: Handler, token: str | None) -> None:
        """Route WebSocket connections on ``path`` to ``handler``; ``token`` guards it."""
        self.edge.add_websocket(path, handler, token_guard(token))

    def add_http(self, path: str, handler: HttpHandler, guard: Guard | None = None) -> None:
        """Serve plain HTTP requests on exactly ``path``; ``guard`` may refuse them."""
        self.edge.add_http(path, handler, guard)

    @property
    def port(self) -> int:
        return self.edge.port

    async def __aenter__(self) -> WebSocketServer:
        await self.edge.start()
        log.info("WebSocket subscribers: ws://%s:%d/events", self.config.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.edge.stop()

    async def _serve_subscriber(self, ws: ServerConnection) -> None:
        filt = SubscriberFilter.from_path(ws.request.path if ws.request else "")
        sub = self.bus.subscribe(f"ws:{ws.remote_address}", filt.accept)
        try:
            await ws.send(to_json(control("hello", server="emotion-stream",
                                          streams=self.bus.streams.as_list())))
            reader = asyncio.create_task(self._read_requests(ws, filt))
            writer = asyncio.create_task(self._write_events(ws, sub))
            done, pending = await asyncio.wait({reader, writer},
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, ConnectionClosed):
                    raise exc
        finally:
            sub.close()

    async def _read_requests(self, ws: ServerConnection, filt: SubscriberFilter) -> None:
        async for raw in ws:
            try:
                message = json.loads(raw)
                if not isinstance(message, dict) or message.get("type") != "subscribe":
                    raise ValueError('expected {"type": "subscribe", "streams": ..., '
                                     '"channels": ...}')
                filt.update(message)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                await ws.send(to_json(control("error", message=f"bad request: {exc}")))
                continue
            await ws.send(to_json(control("subscribed", **filt.describe())))

    async def _write_events(self, ws: ServerConnection, sub: Any) -> None:
        while True:
            event = await sub.get()
            dropped = sub.take_dropped()
            if dropped:
                await ws.send(to_json(control("subscriber.lagged", dropped=dropped)))
            await ws.send(to_json(event))


__all__ = ["WebSocketServer", "SubscriberFilter", "SCHEMA_VERSION"]
