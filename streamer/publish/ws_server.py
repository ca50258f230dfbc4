"""WebSocket server for subscribers (dashboards) on ``/events``.

Protocol:
- Connect to ``ws://host:port/events`` (optionally ``?streams=a,b&channels=customer``);
  with ``websocket.token`` set, authenticate with ``Authorization: Bearer <token>``
  or ``?token=<token>``, else the handshake is refused with HTTP 401.
- The server first sends ``hello`` (schema version, active streams and channels).
- The client may send ``{"type": "subscribe", "streams": [...] | "*", "channels": [...] | "*"}``
  at any time; the server answers ``subscribed`` and filters from then on.
- Replay: after ``hello`` the server sends ``{"type": "replay", "events": N}`` and then the
  last N (> 0) published events its filter accepts (``bus.replay_events``, partials excepted), so
  a reconnecting dashboard is not blank; then live events, with none lost or repeated.
- Requests other components register with ``add_request`` (``summary.request``, see
  ``streamer.supervise.supervisor``) are answered with events queued for this subscriber only.
- Events follow as JSON text messages. A client that reads too slowly loses
  its oldest queued events (bus overflow policy) and is told so with a
  ``subscriber.lagged`` message carrying the count.

Hostile input: stream and channel names in filters (query string or ``subscribe``) follow
the edge rule of ``streamer.core.validation`` (at most ``MAX_FILTER_ITEMS`` each). A bad query
string is refused at the handshake (HTTP 400); a bad ``subscribe`` message (not JSON,
nested too deeply, wrong shape, a bad name) is answered ``{"type": "error", ...}`` and
the filter stays as it was. More than ``websocket.max_subscribers`` subscribers: HTTP 503.
An event that cannot be encoded is skipped for every subscriber (logged, counted in
``WebSocketServer.faults``); the subscriber stays connected.

Slow subscribers: while a client does not read, the server's send waits (TCP and the
library's buffers are full) and the client's bus queue (``bus.subscriber_queue``) drops
its oldest events; when the client reads again it first gets ``subscriber.lagged`` with
the count. A client that takes nothing for ``websocket.send_timeout_s`` is closed with
1008 ("too slow"); one that stops answering pings (no events to send, so no send to time
out) gets a ping after ``send_timeout_s`` without events and is closed the same way
if it does not answer within ``send_timeout_s`` (websockets' own keepalive, 20 s + 20 s, is
the backstop). The close handshake may take ``CLOSE_TIMEOUT_S``.
A subscriber closed by the server (too slow, keepalive) or that vanished is logged with
the events it never got. Counted: ``events_dropped`` (all subscribers), ``lagged_notices``,
``dropped_subscribers``, ``events_undelivered`` (queued or dropped at the close).
At most ``websocket.max_subscribers_per_address`` subscribers per client IP (503).
``websocket.host`` beyond loopback without ``websocket.token`` is warned about at start.

Other components (the dashboard) add WebSocket routes with ``add_route`` and plain
HTTP routes with ``add_http`` on the same port; listening, routing, authentication
and error responses are ``streamer.publish.http_edge.HttpEdge``'s.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from streamer.core.config import WebSocketConfig
from streamer.core.errors import EventEncodingError
from streamer.core.events import SCHEMA_VERSION, Event, control, to_json
from streamer.core.faults import FaultLog
from streamer.core.validation import InvalidClientString, check_identifier, shown
from streamer.publish.bus import EventBus
from streamer.publish.http_edge import (
    Guard,
    Handler,
    HttpEdge,
    HttpHandler,
    Listen,
    Refusal,
    audit,
    peer_host,
    token_guard,
)

log = logging.getLogger(__name__)

MAX_FILTER_ITEMS = 256
CLOSE_TOO_SLOW = 1008
CLOSE_TIMEOUT_S = 2.0  # a subscriber being closed gets this long for the close handshake
# A subscriber request handler: the message in, the events for that subscriber out; a
# ValueError is answered with an ``error`` message.
RequestHandler = Callable[[dict[str, Any]], list[Event]]


class SubscriberTooSlow(Exception):
    """The client took no data for ``websocket.send_timeout_s``; it was closed."""


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
            if not items or "*" in items:
                return None
            return _names(items, key)

        return cls(values("streams") or values("stream"), values("channels") or values("channel"))

    def update(self, message: dict[str, Any]) -> None:
        """Apply a ``subscribe`` message; on a ValueError the filter is unchanged."""
        streams = _selection(message.get("streams", "*"), "streams")
        channels = _selection(message.get("channels", "*"), "channels")
        self.streams, self.channels = streams, channels

    def accept(self, event: Event) -> bool:
        if self.streams is not None and event.get("stream_id") not in self.streams:
            return False
        return self.channels is None or event.get("channel") in self.channels

    def describe(self) -> dict[str, Any]:
        return {"streams": sorted(self.streams) if self.streams is not None else "*",
                "channels": sorted(self.channels) if self.channels is not None else "*"}


def _selection(value: Any, key: str) -> set[str] | None:
    if value is None or isinstance(value, str) and value == "*":
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _names(value, key)
    raise ValueError(f"'{key}' must be \"*\" or a list of strings, got {shown(value)}")


def _names(values: list[str], key: str) -> set[str]:
    """Stream or channel names of a filter, each checked with the edge rule."""
    if len(values) > MAX_FILTER_ITEMS:
        raise InvalidClientString(f"'{key}' lists {len(values)} names, at most "
                                  f"{MAX_FILTER_ITEMS} are allowed")
    return {check_identifier(v, f"'{key}' entry") for v in values}


def subscribe_reply(filt: SubscriberFilter, raw: str | bytes) -> Event:
    """The subscriber channel, sans I/O: apply one client message, return the answer
    (``subscribed`` with the new filter, or ``error`` leaving the filter as it was)."""
    try:
        message = json.loads(raw)
        if not isinstance(message, dict) or message.get("type") != "subscribe":
            raise ValueError('expected {"type": "subscribe", "streams": ..., "channels": ...}')
        filt.update(message)
    except RecursionError:
        return control("error", message="bad request: JSON nested too deeply")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, InvalidClientString
        return control("error", message=f"bad request: {exc}")
    return control("subscribed", **filt.describe())


def _request(raw: str | bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object, or None (``subscribe_reply`` then says what is wrong)."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses; False for 0.0.0.0, :: and the rest."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class WebSocketServer:
    """Serves subscribers and any routes other components register. Use ``async with``."""

    def __init__(self, config: WebSocketConfig, bus: EventBus) -> None:
        self.config = config
        self.bus = bus
        self.edge = HttpEdge(Listen(
            config.host, config.port, config.max_message_bytes,
            purpose="WebSocket subscribers",
            port_hint="choose another port with --set websocket.port=N or disable it with "
                      "--set websocket.enabled=false",
            tls_cert=config.tls_cert, tls_key=config.tls_key,
            close_timeout_s=CLOSE_TIMEOUT_S))
        self.faults = FaultLog("WebSocket subscribers")
        self.subscribers = 0
        self.by_address: collections.Counter[str] = collections.Counter()
        self.events_undelivered = 0  # queued or dropped for subscribers when they closed
        self.refused_busy = 0
        self.events_dropped = 0  # bus-queue overflow of closed subscribers (open: sub.dropped)
        self.lagged_notices = 0
        self.dropped_subscribers = 0
        self.events_sent = 0  # events handed to subscribers' sockets (all subscribers)
        self._requests: dict[str, RequestHandler] = {}
        token = token_guard(config.token)

        def events_guard(request: Request) -> Refusal | None:
            return token(request) or self._admit(request)

        self.edge.add_websocket("/events", self._serve_subscriber, events_guard,
                                peer_guard=self._admit_address)
        if config.enabled and config.token is None and not is_loopback(config.host):
            log.warning("WebSocket subscribers listen on %s without websocket.token: anyone "
                        "who can reach port %d reads every call's events (transcripts "
                        "included); set websocket.token, or websocket.host=127.0.0.1",
                        config.host, config.port)

    def add_route(self, path: str, handler: Handler, token: str | None) -> None:
        """Route WebSocket connections on ``path`` to ``handler``; ``token`` guards it."""
        self.edge.add_websocket(path, handler, token_guard(token))

    def add_request(self, kind: str, handler: RequestHandler) -> None:
        """Answer subscriber messages of type ``kind`` with ``handler``'s events."""
        self._requests[kind] = handler

    def add_http(self, path: str, handler: HttpHandler, guard: Guard | None = None) -> None:
        """Serve plain HTTP requests on exactly ``path``; ``guard`` may refuse them."""
        self.edge.add_http(path, handler, guard)

    @property
    def port(self) -> int:
        return self.edge.port

    async def __aenter__(self) -> WebSocketServer:
        await self.edge.start()
        log.info("WebSocket subscribers: %s://%s:%d/events", self.edge.listen.scheme,
                 self.config.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.edge.stop()

    def _admit(self, request: Request) -> Refusal | None:
        """After the token: the subscriber cap (503) and the query-string filter (400)."""
        if self.subscribers >= self.config.max_subscribers:
            self.refused_busy += 1
            return Refusal(HTTPStatus.SERVICE_UNAVAILABLE,
                           f"this server already has {self.subscribers} subscribers "
                           "(websocket.max_subscribers); retry later", (("Retry-After", "5"),),
                           reason="max_subscribers")
        try:
            SubscriberFilter.from_path(request.path)
        except ValueError as exc:
            return Refusal(HTTPStatus.BAD_REQUEST, f"bad subscription filter: {exc}",
                           reason="bad_filter")
        return None

    def _admit_address(self, address: str, request: Request) -> Refusal | None:
        most = self.config.max_subscribers_per_address
        if most is not None and self.by_address[address] >= most:
            self.refused_busy += 1
            return Refusal(HTTPStatus.SERVICE_UNAVAILABLE,
                           f"this address already has {self.by_address[address]} subscribers "
                           "(websocket.max_subscribers_per_address); close one or retry later",
                           (("Retry-After", "5"),), reason="max_subscribers_per_address")
        return None

    def _hello(self) -> str:
        hello = control("hello", server="emotion-stream", streams=self.bus.streams.as_list())
        try:
            return to_json(hello)
        except EventEncodingError as exc:  # not expected: names are checked at the edge
            self.faults.record(hello, exc, "sent hello without the stream list")
            return to_json(control("hello", server="emotion-stream", streams=[]))

    async def _serve_subscriber(self, ws: ServerConnection) -> None:
        filt = SubscriberFilter.from_path(ws.request.path if ws.request else "")
        sub = self.bus.subscribe(f"ws:{ws.remote_address}", filt.accept)
        history = self.bus.recent_events()  # taken with the subscription: no gap, no repeat
        self.subscribers += 1
        address = peer_host(ws)
        self.by_address[address] += 1
        too_slow = False
        audit("subscriber connected", route="/events", remote=ws.remote_address,
              identity="token" if self.config.token else "anonymous")
        try:
            await ws.send(self._hello())
            await self._replay(ws, filt, history)
            reader = asyncio.create_task(self._read_requests(ws, filt, sub))
            writer = asyncio.create_task(self._write_events(ws, sub))
            done, pending = await asyncio.wait({reader, writer},
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                exc = task.exception()
                too_slow = too_slow or isinstance(exc, SubscriberTooSlow)
                if exc is not None and not isinstance(exc, ConnectionClosed
                                                      | SubscriberTooSlow):
                    raise exc
        finally:
            self.subscribers -= 1
            self.by_address[address] -= 1
            if self.by_address[address] <= 0:
                del self.by_address[address]
            self.events_dropped += sub.dropped
            self._report_close(ws, sub, too_slow)
            sub.close()

    def _report_close(self, ws: ServerConnection, sub: Any, too_slow: bool) -> None:
        """A subscriber that did not leave normally (closed by the keepalive, or its
        connection lost) is logged and counted with the events it never got; one closed as
        too slow was logged already."""
        undelivered = sub.dropped + sub.qsize()
        self.events_undelivered += undelivered
        code = ws.close_code
        if too_slow or code in (1000, 1001):
            return
        self.dropped_subscribers += 1
        log.warning("WebSocket subscriber %s closed (code %s%s) with %d events it never got "
                    "(%d dropped from its queue, %d still queued); a reader that stops "
                    "answering pings is closed after 2 x websocket.send_timeout_s",
                    ws.remote_address, code, f", {ws.close_reason}" if ws.close_reason else "",
                    undelivered, sub.dropped, sub.qsize())

    async def _replay(self, ws: ServerConnection, filt: SubscriberFilter,
                      history: list[Event]) -> None:
        texts = []
        for event in history:
            if filt.accept(event):
                try:
                    texts.append(to_json(event))
                except EventEncodingError as exc:
                    self.faults.record(event, exc, "left it out of a replay")
        if not texts:
            return
        await ws.send(to_json(control("replay", events=len(texts))))
        for text in texts:
            await ws.send(text)

    async def _read_requests(self, ws: ServerConnection, filt: SubscriberFilter,
                             sub: Any) -> None:
        async for raw in ws:
            message = _request(raw)
            kind = message.get("type") if message else None
            handler = self._requests.get(str(kind)) if message else None
            if message is not None and handler is None and kind != "subscribe":
                known = ", ".join(["subscribe", *sorted(self._requests)])
                await ws.send(to_json(control("error", message=(
                    f"bad request: unknown type {shown(kind)}; this server takes {known}"))))
                continue
            if handler is None or message is None:
                await ws.send(to_json(subscribe_reply(filt, raw)))
                continue
            try:
                events = handler(message)
            except ValueError as exc:
                await ws.send(to_json(control("error", message=f"bad request: {exc}")))
                continue
            for event in events:
                sub.offer(event)  # through its queue: the overflow policy holds

    async def _write_events(self, ws: ServerConnection, sub: Any) -> None:
        while True:
            try:  # get() is cancel-safe: an event is never lost to the timeout
                event = await asyncio.wait_for(sub.get(), self.config.send_timeout_s)
            except TimeoutError:
                await self._probe(ws, sub)
                continue
            dropped = sub.take_dropped()
            if dropped:
                self.lagged_notices += 1
                await self._send(ws, to_json(control("subscriber.lagged", dropped=dropped)),
                                 sub)
            try:
                text = to_json(event)
            except EventEncodingError as exc:
                self.faults.record(event, exc, "skipped it for this subscriber")
                continue
            await self._send(ws, text, sub)
            self.events_sent += 1

    async def _probe(self, ws: ServerConnection, sub: Any) -> None:
        """Nothing to send for a while: a ping, so a client that stopped reading is found
        (and its slot freed) within 2 x ``send_timeout_s``, not websockets' 40 s."""
        timeout = self.config.send_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await (await ws.ping())
        except TimeoutError:
            await self._too_slow(ws, sub, f"answered no ping for {timeout:g} s")

    async def _too_slow(self, ws: ServerConnection, sub: Any, what: str) -> None:
        self.dropped_subscribers += 1
        log.warning("WebSocket subscriber %s %s (%d events dropped so far); closing it",
                    ws.remote_address, what, sub.dropped)
        await ws.close(CLOSE_TOO_SLOW, f"too slow: {what} (websocket.send_timeout_s)")
        raise SubscriberTooSlow

    async def _send(self, ws: ServerConnection, text: str, sub: Any) -> None:
        """Send, or close a client that has taken nothing for ``send_timeout_s``."""
        timeout = self.config.send_timeout_s
        try:
            # Cancelling only interrupts the wait for buffer space: the frame is whole.
            await asyncio.wait_for(ws.send(text), timeout)
        except TimeoutError:
            await self._too_slow(ws, sub, f"took no data for {timeout:g} s")


__all__ = ["WebSocketServer", "SubscriberFilter", "subscribe_reply", "SCHEMA_VERSION",
           "MAX_FILTER_ITEMS"]
