"""The one HTTP edge: the listening shell the ingest server and the subscriber server share.

An ``HttpEdge`` listens on one host and port (websockets' server) and answers from one
route table:

- WebSocket routes (``add_websocket``): an upgrade request on the path, with or without a
  trailing slash, passes the route's guard and is then handed to the route's handler.
- Plain HTTP routes (``add_http``): a request without ``Upgrade: websocket`` on exactly that
  path passes the guard and gets the handler's response. The path is matched exactly
  because pages load their assets by relative URL (``/dashboard/`` would break them).

A plain request on a WebSocket path also runs the guard and then gets websockets' own
426 Upgrade Required. Refusals (unknown path 404, guard refusals such as 401 or 503) are
JSON ``{"error": ...}`` bodies and are logged with the client's address.

Authentication helpers (``token_ok``, ``token_guard``, ``secret_matches``) compare secrets
in constant time; the response helpers build complete responses (Content-Length included).

Audit: every refusal with 401 and every accepted connection (``audit``) is one INFO line
on the ``streamer.audit`` logger: what happened, route, remote address, identity (which
credential passed, never the secret) and, for calls, the stream id.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from streamer.core.errors import PublisherError
from streamer.core.validation import shown

log = logging.getLogger(__name__)
audit_log = logging.getLogger("streamer.audit")

Handler = Callable[[ServerConnection], Awaitable[None]]
HttpHandler = Callable[[Request], Response]
STOP_TIMEOUT_S = 15.0  # stop() waits this long for connection handlers to return
TOKEN_HINT = "missing or wrong token: send 'Authorization: Bearer <token>' or ?token=<token>"
# A refusal's metrics reason when its guard gave none.
REFUSAL_REASONS = {HTTPStatus.UNAUTHORIZED: "auth", HTTPStatus.TOO_MANY_REQUESTS: "rate",
                   HTTPStatus.SERVICE_UNAVAILABLE: "busy", HTTPStatus.BAD_REQUEST: "bad_request",
                   HTTPStatus.NOT_FOUND: "not_found"}


# ------------------------------------------------------------------ responses
def response(status: HTTPStatus, body: bytes,
             headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A complete response: ``headers`` plus the Content-Length of ``body``."""
    all_headers = Headers([*headers, ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, all_headers, body)


def json_response(status: HTTPStatus, body: dict[str, Any],
                  headers: Iterable[tuple[str, str]] = ()) -> Response:
    # The trailing newline keeps curl output and shell prompts apart.
    data = (json.dumps(body) + "\n").encode()
    return response(status, data, [("Content-Type", "application/json"), *headers])


def error_response(status: HTTPStatus, message: str,
                   headers: Iterable[tuple[str, str]] = ()) -> Response:
    return json_response(status, {"error": message}, headers)


def audit(what: str, **fields: object) -> None:
    """One audit line: ``what`` and ``key=value`` fields (values escaped, never secrets)."""
    details = " ".join(f"{key}={shown(value)}" for key, value in fields.items())
    audit_log.info("%s %s", what, details)


# ----------------------------------------------------------------------- auth
@dataclass(frozen=True)
class Refusal:
    """Why a guard turns a request away: the status, a message for the client, headers."""

    status: HTTPStatus
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""  # for metrics (refused_connections): which limit or check; "" = by status

    @property
    def label(self) -> str:
        return self.reason or REFUSAL_REASONS.get(self.status, str(self.status.value))


# A guard runs on the handshake request: None lets it through.
Guard = Callable[[Request], Refusal | None]
# A guard that also needs the client's address (per-address limits): (host, request).
PeerGuard = Callable[[str, Request], Refusal | None]


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing does not leak the secret's prefix."""
    # An empty secret matches nothing (config refuses one; this is the second line).
    if not expected:
        return False
    # Header values that are not ASCII arrive surrogate-escaped: compare their raw bytes.
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                     expected.encode())


def request_token(request: Request) -> str | None:
    """The token from ``Authorization: Bearer <token>``, else from ``?token=``."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    values = parse_qs(urlsplit(request.path).query).get("token")
    return values[0] if values else None


def token_ok(expected: str | None, request: Request) -> bool:
    """True when no token is configured or the request carries the configured one."""
    return expected is None or secret_matches(request_token(request), expected)


def token_guard(expected: str | None) -> Guard:
    """A guard refusing (401) requests without the ``expected`` bearer token."""

    def guard(request: Request) -> Refusal | None:
        if token_ok(expected, request):
            return None
        return Refusal(HTTPStatus.UNAUTHORIZED, TOKEN_HINT)

    return guard


# --------------------------------------------------------------------- routes
@dataclass(frozen=True)
class Listen:
    """Where an edge listens, and how to talk about it when it cannot."""

    host: str
    port: int  # 0: any free port (tests)
    max_message_bytes: int  # larger WebSocket messages close the connection (1009)
    purpose: str  # e.g. "call ingest", in the error when the port cannot be bound
    port_hint: str  # how to choose another port, in that error
    tls_cert: str | None = None  # PEM certificate chain: serve wss:// / https://
    tls_key: str | None = None  # its PEM private key
    # SO_REUSEPORT: several processes of one user share the port (Ray ingest replicas).
    reuse_port: bool = False
    # WebSocket keepalive (websockets' defaults) and how long a close handshake may take.
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 10.0

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_cert else "ws"


def server_tls(listen: Listen) -> ssl.SSLContext | None:
    """The TLS context for ``listen`` (None: plain), or a PublisherError saying what is
    wrong with the certificate or key."""
    if listen.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(listen.tls_cert, listen.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise PublisherError(
            f"cannot use the TLS certificate {listen.tls_cert} with key {listen.tls_key} for "
            f"{listen.purpose} ({exc}); give PEM files, the key matching the certificate"
        ) from exc
    return context


@dataclass(frozen=True)
class WebSocketRoute:
    handler: Handler
    guard: Guard | None
    peer_guard: PeerGuard | None = None


@dataclass(frozen=True)
class HttpRoute:
    handler: HttpHandler
    guard: Guard | None


def websocket_path(path: str) -> str:
    """The key of a WebSocket route: the path without its query and trailing slash."""
    return urlsplit(path).path.rstrip("/") or "/"


def peer_host(connection: ServerConnection) -> str:
    """The client's IP address without the port (for per-address limits)."""
    address = connection.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


class HttpEdge:
    """One listening socket with its route table; ``start``/``stop`` or ``async with``.

    Routes may be added before or after ``start``.
    """

    def __init__(self, listen: Listen) -> None:
        self.listen = listen
        self._websocket: dict[str, WebSocketRoute] = {}
        self._http: dict[str, HttpRoute] = {}
        self._server: Server | None = None
        # Refused requests and connections by reason (read by streamer.ops.metrics at scrape);
        # servers on the edge add the ones they close after the handshake.
        self.refused: collections.Counter[str] = collections.Counter()

    def add_websocket(self, path: str, handler: Handler, guard: Guard | None = None,
                      peer_guard: PeerGuard | None = None) -> None:
        self._websocket[websocket_path(path)] = WebSocketRoute(handler, guard, peer_guard)

    def add_http(self, path: str, handler: HttpHandler, guard: Guard | None = None) -> None:
        self._http[path] = HttpRoute(handler, guard)

    @property
    def websocket_paths(self) -> list[str]:
        return sorted(self._websocket)

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (the real one when ``listen.port`` is 0)."""
        if self._server is None:
            raise RuntimeError(f"{self.listen.purpose} server not started (or stopped)")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        listen = self.listen
        tls = server_tls(listen)
        try:
            self._server = await serve(self._dispatch, listen.host, listen.port,
                                       process_request=self._process_request,
                                       max_size=listen.max_message_bytes, ssl=tls,
                                       ping_interval=listen.ping_interval_s,
                                       ping_timeout=listen.ping_timeout_s,
                                       close_timeout=listen.close_timeout_s,
                                       reuse_port=listen.reuse_port)
        except OSError as exc:
            raise PublisherError(f"cannot listen on {listen.host}:{listen.port} for "
                                 f"{listen.purpose} ({exc}); {listen.port_hint}") from exc

    async def stop(self) -> None:
        """Stop listening, close open connections (1001) and wait for their handlers, at
        most ``STOP_TIMEOUT_S``; handlers still running then are cancelled (logged)."""
        server, self._server = self._server, None  # ``port`` says "not started" from now on
        if server is None:
            return
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT_S)
        except TimeoutError:
            stuck = [t for t in server.handler_tasks if not t.done()]
            log.error("%s: %d connection handlers still running %.0f s after stop; "
                      "cancelling them", self.listen.purpose, len(stuck), STOP_TIMEOUT_S)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)

    async def __aenter__(self) -> HttpEdge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _process_request(self, connection: ServerConnection,
                         request: Request) -> Response | None:
        path = urlsplit(request.path).path
        upgrade = is_upgrade(request)
        route: WebSocketRoute | HttpRoute | None = self._websocket.get(websocket_path(path))
        if not upgrade and path in self._http:
            route = self._http[path]
        if route is None:
            self.refused["not_found"] += 1
            kind = "WebSocket endpoint" if upgrade else "page"
            return error_response(HTTPStatus.NOT_FOUND,
                                  f"no {kind} at {path}; WebSocket endpoints: "
                                  f"{', '.join(self.websocket_paths)}")
        refusal = route.guard(request) if route.guard is not None else None
        if refusal is None and isinstance(route, WebSocketRoute) and route.peer_guard:
            refusal = route.peer_guard(peer_host(connection), request)
        if refusal is not None:
            self.refused[refusal.label] += 1
            log.warning("%s: refused %s on %s with %d: %s", self.listen.purpose,
                        connection.remote_address, shown(path), refusal.status.value,
                        refusal.message)
            if refusal.status == HTTPStatus.UNAUTHORIZED:
                audit("auth failure", route=path, remote=connection.remote_address,
                      service=self.listen.purpose)
            return error_response(refusal.status, refusal.message, refusal.headers)
        if isinstance(route, HttpRoute):
            return route.handler(request)
        return None  # websockets goes on with the handshake (426 for a plain request)

    async def _dispatch(self, ws: ServerConnection) -> None:
        # The handshake only succeeds on a registered path and routes are never removed.
        path = ws.request.path if ws.request is not None else "/"
        await self._websocket[websocket_path(path)].handler(ws)


__all__ = ["HttpEdge", "Listen", "Refusal", "Handler", "HttpHandler", "Guard", "PeerGuard",
           "TOKEN_HINT", "audit", "peer_host",
           "response", "json_response", "error_response", "secret_matches", "request_token",
           "token_ok", "token_guard"]
